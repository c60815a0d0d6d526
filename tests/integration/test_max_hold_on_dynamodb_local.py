"""``maxHoldSeconds`` (API.md, "Hot SKUs"): a SKU's cap on how long any hold containing it
lasts, on DynamoDB Local. Each grant (the hold, an extension, a checkout's extension and
its payment window) ends at most ``maxHoldSeconds`` after it is made; ``expiresAt`` says
what was granted. A store that sets none is unchanged."""

from __future__ import annotations

import pytest

from stockhold.domain.ids import now_ms
from stockhold.domain.models import Line
from stockhold.wiring import Services

pytestmark = pytest.mark.integration
S = 1000  # ms


def reserve(svc: Services, cart: str, *lines: tuple[str, int], hold: int | None = None) -> tuple[int, int]:
    res = svc.reserving.reserve(
        "demo", cart_id=cart, customer_id=None, lines=[Line(sku=s, quantity=q) for s, q in lines], hold_seconds=hold
    )
    return res.created_at, res.expires_at


def test_a_hold_of_a_capped_sku_ends_by_its_cap_and_the_cart_takes_the_lowest(local: Services) -> None:
    svc = local
    svc.stock.set("demo", "FLASH", on_hand=10, max_hold_seconds=120)
    svc.stock.set("demo", "FLASHER", on_hand=10, max_hold_seconds=90)
    svc.stock.set("demo", "PLAIN", on_hand=10)

    made, ends = reserve(svc, "c1", ("FLASH", 1))
    assert ends - made == 120 * S  # the default 900 s, capped
    made, ends = reserve(svc, "c2", ("PLAIN", 1), ("FLASH", 1), ("FLASHER", 1), hold=1800)
    assert ends - made == 90 * S
    made, ends = reserve(svc, "c3", ("PLAIN", 1), hold=1800)
    assert ends - made == 1800 * S  # no capped SKU: as asked
    made, ends = reserve(svc, "c4", ("FLASH", 1), hold=60)
    assert ends - made == 60 * S  # shorter than the cap: as asked
    assert svc.stock.get("demo", "FLASH").reserved == 3


def test_an_extension_of_a_capped_hold_is_capped_too_and_never_moves_it_earlier(local: Services) -> None:
    svc = local
    svc.stock.set("demo", "FLASH", on_hand=10, max_hold_seconds=120)
    res = svc.reserving.reserve("demo", cart_id="c1", customer_id=None, lines=[Line(sku="FLASH", quantity=1)])
    extended = svc.holds.extend("demo", res.reservation_id, 1800)
    assert res.expires_at <= extended.expires_at <= now_ms() + 120 * S
    assert extended.expires_at - res.expires_at < 1800 * S


def test_clearing_the_cap_lets_the_next_hold_run_its_full_time(local: Services) -> None:
    svc = local
    svc.stock.set("demo", "FLASH", on_hand=10, max_hold_seconds=120)
    assert svc.stock.get("demo", "FLASH").max_hold_seconds == 120
    svc.stock.set("demo", "FLASH", max_hold_seconds=None)
    assert svc.stock.get("demo", "FLASH").max_hold_seconds is None
    made, ends = reserve(svc, "c1", ("FLASH", 1))
    assert ends - made == svc.settings.DEFAULT_HOLD_SECONDS * S


def test_a_checkouts_hold_and_its_payment_window_are_capped(local: Services) -> None:
    svc = local
    svc.stock.set("demo", "FLASH", on_hand=10, max_hold_seconds=100)
    view = svc.checkouts.start("demo", cart_id="c1", customer_id="u1", lines=[Line(sku="FLASH", quantity=1)])
    assert view.reservation is not None
    held = view.reservation
    assert held.expires_at - held.created_at == 100 * S  # CHECKOUT_HOLD_SECONDS (300) capped
    paying = svc.checkouts.payment("demo", view.checkout.checkout_id)
    assert paying.reservation is not None
    assert paying.reservation.expires_at <= now_ms() + 100 * S  # PAYMENT_HOLD_SECONDS (900) capped
