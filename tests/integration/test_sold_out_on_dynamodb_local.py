"""Sold out, on DynamoDB Local (docs/flash-sales.md, "Sold out"): once a container has
found a SKU with nothing usable, further attempts are refused without a write (and
without a read) for SOLD_OUT_CACHE_SECONDS; units that come back are reachable again
after that; and nothing is ever oversold."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from stockhold import wiring
from stockhold.domain.errors import InsufficientStock, StockholdError
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Line, Location, Reservation
from stockhold.domain.rules import ExpirePath
from stockhold.wiring import Services, build
from tests.integration.conftest import assert_invariants, race

pytestmark = pytest.mark.integration
STORE = "demo"


@contextmanager
def calls() -> Iterator[Counter[str]]:
    """Every DynamoDB call this process makes meanwhile, by operation."""
    sent: Counter[str] = Counter()
    client = wiring.dynamodb_client()

    def record(event_name: str, **_: Any) -> None:
        sent[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("before-call.dynamodb", record)
    try:
        yield sent
    finally:
        client.meta.events.unregister("before-call.dynamodb", record)


def shopper(local: Services, sku: str, **kw: Any) -> Callable[[int], Reservation]:
    def buy(i: int) -> Reservation:
        return local.reserving.reserve(STORE, cart_id=f"{sku}-{i}", lines=[Line(sku=sku, quantity=1)], **kw)

    return buy


def test_after_the_last_unit_goes_refusals_cost_no_write_and_no_oversell(local: Services) -> None:
    local.stock.set(STORE, "HOT", on_hand=5, low_stock_threshold=None, unlimited=False)
    buy = shopper(local, "HOT", customer_id=None)
    with calls() as during_race:
        results = race(24, buy)
    won = [r for r in results if isinstance(r, Reservation)]
    lost = [r for r in results if isinstance(r, StockholdError)]
    assert len(won) == 5 and all(isinstance(x, InsufficientStock) for x in lost)
    # The winners' holds and at least the first refusal reached the table; racers that
    # started after a refusal may already have been answered from memory.
    assert during_race["TransactWriteItems"] >= len(won) + 1

    with pytest.raises(InsufficientStock):
        buy(99)  # the race may have outlasted the window: this one may ask the table again
    with calls() as after:
        for i in range(100, 150):
            with pytest.raises(InsufficientStock) as refused:
                buy(i)
            assert refused.value.short == [{"sku": "HOT", "requested": 1, "available": 0}]
    assert sum(after.values()) == 0, after  # 50 refusals: no write, no read
    level = local.stock.get(STORE, "HOT")
    assert (level.reserved, level.available) == (5, 0)
    assert_invariants(local)


def test_a_unit_released_by_another_container_is_reachable_again_after_the_window(local: Services) -> None:
    local.stock.set(STORE, "BACK", on_hand=1, low_stock_threshold=None, unlimited=False)
    buy = shopper(local, "BACK", customer_id=None)
    first = buy(0)
    with pytest.raises(InsufficientStock):
        buy(1)  # finds it sold out
    other = build(wiring.dynamodb_client(), local.settings)  # another API container
    other.holds.release(STORE, first.reservation_id, "cancelled")
    with pytest.raises(InsufficientStock):
        buy(2)  # this container still believes it sold out (at most SOLD_OUT_CACHE_SECONDS)
    time.sleep(local.settings.SOLD_OUT_CACHE_SECONDS + 0.05)
    again = buy(3)
    assert local.stock.get(STORE, "BACK").reserved == 1 and again.reservation_id != first.reservation_id
    assert_invariants(local)


@pytest.mark.parametrize("gives_back", ["release", "expire", "restock", "adjust", "cancel order"])
def test_units_given_back_in_the_same_container_are_reachable_at_once(local: Services, gives_back: str) -> None:
    now = [now_ms()]
    shop = build(wiring.dynamodb_client(), local.settings, lambda: now[0])
    shop.stock.set(STORE, "SAME", on_hand=1, low_stock_threshold=None, unlimited=False)
    first = shopper(shop, "SAME", customer_id=None)(0)
    with pytest.raises(InsufficientStock):
        shopper(shop, "SAME", customer_id=None)(1)
    if gives_back == "release":
        shop.holds.release(STORE, first.reservation_id, "cancelled")
    elif gives_back == "expire":
        now[0] = first.expires_at + 1
        assert shop.expiry.expire(STORE, first.reservation_id, ExpirePath.TIMER).expired
    elif gives_back == "restock":
        shop.stock.set(STORE, "SAME", on_hand=2)
    elif gives_back == "adjust":
        shop.stock.adjust(STORE, "SAME", 1)
    else:
        shop.holds.confirm(STORE, first.reservation_id, "ord-same")
        shop.orders.cancel(STORE, "ord-same")
    again = shopper(shop, "SAME", customer_id=None)(2)  # no wait: this container saw it come back
    assert again.status.value == "ACTIVE"
    assert_invariants(shop)


def test_a_sold_out_sku_over_two_locations_with_a_customer_limit_never_touches_the_allowance(
    local: Services,
) -> None:
    """The last units sit in two locations; the customer limit items are not written (nor
    read) by the refusals once the SKU is sold out, so they cannot become hot keys."""
    local.stock.put_location(STORE, Location(location_id="leeds", name="Leeds", priority=10, active=True))
    local.stock.set_at(STORE, "TEE", "default", 2)
    local.stock.set_at(STORE, "TEE", "leeds", 2)
    local.stock.set(STORE, "TEE", max_per_customer=2)
    results = race(12, lambda i: shopper(local, "TEE", customer_id=f"u{i % 6}")(i))
    won = [r for r in results if isinstance(r, Reservation)]
    assert len(won) == 4
    with calls() as after:
        for i in range(20):
            with pytest.raises(InsufficientStock):
                shopper(local, "TEE", customer_id=f"late-{i}")(100 + i)
    assert sum(after.values()) == 0, after
    assert local.stock.get(STORE, "TEE").available == 0
    assert_invariants(local)


def test_a_keyed_retry_after_sold_out_answers_the_hold_it_made(local: Services) -> None:
    """The request took the last unit; its answer was lost; others found the SKU sold out.
    The retry with its Idempotency-Key answers that hold (one read), not 409."""
    local.stock.set(STORE, "ONE", on_hand=1, low_stock_threshold=None, unlimited=False)
    made = local.reserving.reserve(
        STORE, cart_id="c-1", customer_id=None, lines=[Line(sku="ONE", quantity=1)], idempotency_key="k-1"
    )
    with pytest.raises(InsufficientStock):
        shopper(local, "ONE", customer_id=None)(2)
    with calls() as retry:
        again = local.reserving.reserve(
            STORE, cart_id="c-1", customer_id=None, lines=[Line(sku="ONE", quantity=1)], idempotency_key="k-1"
        )
    assert again.reservation_id == made.reservation_id
    assert local.stock.get(STORE, "ONE").reserved == 1
    assert retry["GetItem"] >= 1
