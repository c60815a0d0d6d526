"""Checkout against time (a fake clock, moto): the hold's deadline decides, whichever path
ends it. Expired by the timer, the TTL backstop, reconciliation or a request, the checkout
reads ``abandoned``, its stock is back and completing it answers 410 with no order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from stockhold import wiring
from stockhold.data.schema import from_av, reservation_from_item, reservation_key, to_av
from stockhold.domain.errors import CheckoutNotOpen, ReservationExpired
from stockhold.domain.models import CheckoutStatus, Line, ReservationStatus
from stockhold.domain.rules import ExpirePath
from stockhold.settings import Settings
from stockhold.usecases.checkout import CheckoutService
from stockhold.usecases.orders import OrderService
from stockhold.usecases.reconcile import Reconciler
from stockhold.usecases.stock import StockService
from stockhold.wiring import Services, build
from tools.template import create_tables

TABLE = "StockholdTable"


@dataclass
class Shop:
    client: object
    clock: list[int]
    svc: Services
    stock: StockService
    checkouts: CheckoutService
    orders: OrderService
    reconciler: Reconciler

    def tick(self, seconds: float) -> None:
        self.clock[0] += int(seconds * 1000)

    def available(self, sku: str) -> tuple[int, int, int]:
        level = self.stock.get("demo", sku)
        return level.available, level.reserved, level.allocated


@pytest.fixture
def shop() -> Iterator[Shop]:
    with mock_aws():
        wiring.reset()
        client = boto3.client("dynamodb")
        create_tables(client)
        cfg = Settings(
            TABLE_NAME=TABLE,
            MIN_HOLD_SECONDS=1,
            CHECKOUT_HOLD_SECONDS=300,
            EXTEND_THRESHOLD_SECONDS=120,
            PAYMENT_HOLD_SECONDS=900,
            MAX_EXTENSIONS=2,
            TTL_GRACE_SECONDS=60,
            SWEEP_GRACE_SECONDS=5,
            RECONCILE_QUIET_SECONDS=0,
        )
        clock = [1_800_000_000_000]
        now = lambda: clock[0]  # noqa: E731
        svc = build(client, cfg, now, sleep=lambda _: None)
        shop = Shop(client, clock, svc, svc.stock, svc.checkouts, svc.orders, svc.reconciler)
        svc.stock.set("demo", "A", on_hand=5, low_stock_threshold=None, unlimited=False)
        yield shop
    wiring.reset()


def begin(shop: Shop) -> str:
    view = shop.checkouts.start("demo", cart_id="c1", customer_id="u1", lines=[Line(sku="A", quantity=2)])
    assert shop.available("A") == (3, 2, 0)
    return view.checkout.checkout_id


def ttl_delete(shop: Shop, rid: str) -> None:
    """What DynamoDB's TTL does to an item, then the backstop with the deleted image."""
    old = shop.client.delete_item(  # type: ignore[attr-defined]
        TableName=TABLE, Key=to_av(reservation_key("demo", rid)), ReturnValues="ALL_OLD"
    )["Attributes"]
    assert shop.svc.expiry.restore_after_ttl(reservation_from_item(from_av(old)))


PATHS = ["timer", "ttl", "reconcile", "request"]


@pytest.mark.parametrize("path", PATHS)
def test_expiry_by_any_path_abandons_the_checkout_and_returns_the_stock(shop: Shop, path: str) -> None:
    cid = begin(shop)
    rid = shop.checkouts.get("demo", cid).checkout.reservation_id
    assert rid
    shop.tick(301)
    # From the deadline on it reads abandoned, even before anything ended the hold.
    assert shop.checkouts.get("demo", cid).status is CheckoutStatus.ABANDONED
    if path == "timer":
        assert shop.svc.expiry.expire("demo", rid, ExpirePath.TIMER).expired
    elif path == "ttl":
        shop.tick(60)
        ttl_delete(shop, rid)
    elif path == "reconcile":
        shop.tick(10)
        shop.reconciler.run()
    else:
        with pytest.raises(ReservationExpired):
            shop.checkouts.complete("demo", cid, "pay-1")
    view = shop.checkouts.get("demo", cid)
    assert view.checkout.status is CheckoutStatus.ABANDONED  # stored, not only derived
    assert view.checkout.end_reason == "expired"
    assert view.reservation is not None and view.reservation.status is ReservationStatus.EXPIRED
    assert shop.available("A") == (5, 0, 0)
    with pytest.raises(ReservationExpired):
        shop.checkouts.complete("demo", cid, "pay-1")
    with pytest.raises(ReservationExpired):  # saving details after the deadline: 410 too, nothing saved
        shop.checkouts.update("demo", cid, {"step": "review"})
    with pytest.raises(ReservationExpired):
        shop.checkouts.payment("demo", cid)
    assert shop.checkouts.get("demo", cid).checkout.step is None
    assert shop.checkouts.get("demo", cid).checkout.order_id is None
    assert shop.available("A") == (5, 0, 0)
    # The shopper starts again: a new checkout with a fresh hold.
    again = shop.checkouts.start("demo", cart_id="c1", customer_id="u1", lines=[Line(sku="A", quantity=2)])
    assert again.checkout.checkout_id != cid
    assert shop.available("A") == (3, 2, 0)


def test_activity_extends_the_hold_only_near_its_deadline_and_within_the_limit(shop: Shop) -> None:
    cid = begin(shop)
    first = shop.checkouts.get("demo", cid).reservation
    assert first is not None
    shop.tick(100)  # 200 s left: more than the 120 s threshold
    view = shop.checkouts.update("demo", cid, {"step": "shipping"})
    assert view.reservation is not None and view.reservation.expires_at == first.expires_at
    shop.tick(100)  # 100 s left: extend back to 300 s from now
    view = shop.checkouts.update("demo", cid, {"step": "review"})
    assert view.reservation is not None
    assert view.reservation.expires_at == shop.clock[0] + 300_000
    assert view.reservation.extensions_used == 1
    shop.tick(250)
    view = shop.checkouts.update("demo", cid, {"payment_method": "card"})
    assert view.reservation is not None and view.reservation.extensions_used == 2
    shop.tick(250)
    view = shop.checkouts.update("demo", cid, {"payment_method": "paypal"})
    # No extension left: the details are saved, and the answer says the hold will not move.
    assert view.checkout.payment_method == "paypal"
    assert [w["code"] for w in view.warnings] == ["EXTENSION_LIMIT_REACHED"]
    assert view.reservation is not None and view.reservation.expires_at == shop.clock[0] + 50_000


def test_payment_moves_the_deadline_to_the_payment_window_once(shop: Shop) -> None:
    cid = begin(shop)
    shop.tick(10)
    paying = shop.checkouts.payment("demo", cid)
    assert paying.reservation is not None
    assert paying.reservation.expires_at == shop.clock[0] + 900_000
    assert paying.reservation.extensions_used == 0
    shop.tick(600)
    again = shop.checkouts.payment("demo", cid)  # re-checks the hold, does not push it again
    assert again.reservation is not None and again.reservation.expires_at == paying.reservation.expires_at
    shop.tick(301)
    with pytest.raises(ReservationExpired):
        shop.checkouts.payment("demo", cid)
    assert shop.available("A") == (5, 0, 0)


def test_a_completed_checkout_ignores_its_old_deadline(shop: Shop) -> None:
    cid = begin(shop)
    order = shop.checkouts.complete("demo", cid, "pay-1")
    shop.tick(10_000)
    view = shop.checkouts.get("demo", cid)
    assert view.status is CheckoutStatus.COMPLETED
    assert shop.checkouts.complete("demo", cid, "pay-1") == order
    with pytest.raises(CheckoutNotOpen):
        shop.checkouts.cancel("demo", cid, "cancelled")
    assert shop.available("A") == (3, 0, 2)
    shop.orders.cancel("demo", order.order_id)
    assert shop.available("A") == (5, 0, 0)


def test_payment_failed_after_the_deadline_is_410_and_the_checkout_is_abandoned(shop: Shop) -> None:
    cid = begin(shop)
    shop.tick(301)
    with pytest.raises(ReservationExpired):
        shop.checkouts.cancel("demo", cid, "payment_failed")
    assert shop.checkouts.get("demo", cid).checkout.status is CheckoutStatus.ABANDONED
    # Cancelling an expired checkout just confirms where it is.
    assert shop.checkouts.cancel("demo", cid, "cancelled").status is CheckoutStatus.ABANDONED
    assert shop.available("A") == (5, 0, 0)
