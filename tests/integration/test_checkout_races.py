"""Checkout and orders raced against DynamoDB Local: real transactions decide.

32 shoppers start checkout for the last 5 units; completes retried at once; complete
against expiry at the deadline and against payment failure; fulfil against cancel.
Every race has exactly one winner, and the counters always add up."""

from __future__ import annotations

from collections import Counter

import pytest

from stockhold import wiring
from stockhold.domain.errors import InsufficientStock, StockholdError
from stockhold.domain.models import CheckoutStatus, Line, Order, OrderStatus, ReservationStatus
from stockhold.domain.rules import ExpirePath
from stockhold.settings import Settings
from stockhold.usecases.checkout import CheckoutService
from stockhold.wiring import Services, build
from tests.integration.conftest import assert_invariants, race

pytestmark = pytest.mark.integration
SHOPPERS = 32


def _orders_of(local: Services, sku: str) -> tuple[int, int, int]:
    level = local.stock.get("demo", sku)
    return level.available, level.reserved, level.allocated


def test_32_shoppers_start_checkout_for_the_last_5_units_and_exactly_5_orders_follow(local: Services) -> None:
    local.stock.set("demo", "LAST", on_hand=5, low_stock_threshold=None, unlimited=False)
    started = race(
        SHOPPERS,
        lambda i: local.checkouts.start(
            "demo", cart_id=f"cart-{i}", customer_id=f"u-{i}", lines=[Line(sku="LAST", quantity=1)]
        ),
    )
    won = [v for v in started if not isinstance(v, StockholdError)]
    lost = [v for v in started if isinstance(v, StockholdError)]
    assert len(won) == 5
    assert all(isinstance(e, InsufficientStock) for e in lost), lost
    assert _orders_of(local, "LAST") == (0, 5, 0)
    # Everyone who got a checkout completes it, all at once.
    orders = race(len(won), lambda i: local.checkouts.complete("demo", won[i].checkout.checkout_id, f"pay-{i}"))
    assert all(isinstance(o, Order) for o in orders), orders
    assert len({o.order_id for o in orders if isinstance(o, Order)}) == 5
    assert _orders_of(local, "LAST") == (0, 0, 5)
    assert_invariants(local)


def test_complete_retried_8_times_at_once_makes_one_order_and_one_allocation(local: Services) -> None:
    local.stock.set("demo", "A", on_hand=10, low_stock_threshold=None, unlimited=False)
    cid = local.checkouts.start("demo", cart_id="c", customer_id=None, lines=[Line(sku="A", quantity=3)])
    results = race(8, lambda _: local.checkouts.complete("demo", cid.checkout.checkout_id, "pay-1"))
    assert all(isinstance(r, Order) for r in results), results
    assert len({r.order_id for r in results if isinstance(r, Order)}) == 1
    assert _orders_of(local, "A") == (7, 0, 3)
    assert_invariants(local)


def test_starts_for_one_cart_at_once_make_one_checkout_and_one_hold(local: Services) -> None:
    local.stock.set("demo", "A", on_hand=10, low_stock_threshold=None, unlimited=False)
    views = race(
        8, lambda _: local.checkouts.start("demo", cart_id="c", customer_id=None, lines=[Line(sku="A", quantity=2)])
    )
    assert not [v for v in views if isinstance(v, StockholdError)], views
    assert len({v.checkout.checkout_id for v in views if not isinstance(v, StockholdError)}) == 1
    assert _orders_of(local, "A") == (8, 2, 0)
    assert_invariants(local)


def _at(local: Services, moment: list[int]) -> tuple[Services, CheckoutService]:
    """Services sharing the table, on a clock the test sets."""
    cfg = Settings.model_validate({**local.settings.model_dump(), "MIN_HOLD_SECONDS": 1, "CHECKOUT_HOLD_SECONDS": 60})
    shop = build(wiring.dynamodb_client(), cfg, lambda: moment[0])
    return shop, shop.checkouts


def test_complete_against_expiry_at_the_deadline_has_one_winner_every_round(local: Services) -> None:
    """The complete sees the last millisecond before the deadline, the timer the deadline itself."""
    local.stock.set("demo", "A", on_hand=1000, low_stock_threshold=None, unlimited=False)
    start_at = [1_900_000_000_000]
    _, checkouts = _at(local, start_at)
    outcomes: Counter[str] = Counter()
    for round_ in range(30):
        view = checkouts.start("demo", cart_id=f"c{round_}", customer_id=None, lines=[Line(sku="A", quantity=2)])
        assert view.reservation is not None
        deadline = view.reservation.expires_at
        _, early = _at(local, [deadline - 1])
        late_holds, _ = _at(local, [deadline])
        cid, rid = view.checkout.checkout_id, view.reservation.reservation_id
        results = race(
            2,
            lambda i, early=early, late=late_holds, cid=cid, rid=rid: (  # type: ignore[misc]
                early.complete("demo", cid, "pay") if i == 0 else late.expiry.expire("demo", rid, ExpirePath.TIMER)
            ),
        )
        completed = isinstance(results[0], Order)
        expired = not isinstance(results[1], StockholdError) and results[1].expired  # type: ignore[union-attr]
        assert completed != expired, results
        stored = local.checkouts.get("demo", cid)
        if completed:
            outcomes["completed"] += 1
            assert stored.checkout.status is CheckoutStatus.COMPLETED
            assert stored.reservation is not None and stored.reservation.status is ReservationStatus.CONFIRMED
        else:
            outcomes["expired"] += 1
            assert stored.checkout.status is CheckoutStatus.ABANDONED
            assert stored.checkout.order_id is None
        start_at[0] = deadline + 1
    level = local.stock.get("demo", "A")
    assert (level.reserved, level.allocated) == (0, 2 * outcomes["completed"])
    assert_invariants(local)


def test_complete_against_payment_failure_has_one_winner_every_round(local: Services) -> None:
    local.stock.set("demo", "A", on_hand=1000, low_stock_threshold=None, unlimited=False)
    completed = 0
    for round_ in range(20):
        view = local.checkouts.start("demo", cart_id=f"c{round_}", customer_id=None, lines=[Line(sku="A", quantity=1)])
        cid = view.checkout.checkout_id
        results = race(
            2,
            lambda i, cid=cid: (  # type: ignore[misc]
                local.checkouts.complete("demo", cid, "p")
                if i == 0
                else local.checkouts.cancel("demo", cid, "payment_failed")
            ),
        )
        stored = local.checkouts.get("demo", cid)
        if isinstance(results[0], Order):
            completed += 1
            assert stored.status is CheckoutStatus.COMPLETED
            assert isinstance(results[1], StockholdError)  # too late to fail a paid checkout
        else:
            assert stored.status is CheckoutStatus.ACTIVE
            assert stored.checkout.order_id is None
    level = local.stock.get("demo", "A")
    assert (level.reserved, level.allocated) == (0, completed)
    assert_invariants(local)


def test_fulfil_against_cancel_of_one_order_has_one_winner(local: Services) -> None:
    local.stock.set("demo", "A", on_hand=1000, low_stock_threshold=None, unlimited=False)
    orders = local.orders
    tally: Counter[OrderStatus] = Counter()
    for round_ in range(20):
        view = local.checkouts.start("demo", cart_id=f"c{round_}", customer_id=None, lines=[Line(sku="A", quantity=2)])
        order = local.checkouts.complete("demo", view.checkout.checkout_id, "p")
        oid = order.order_id
        results = race(4, lambda i, oid=oid: orders.fulfil("demo", oid) if i % 2 else orders.cancel("demo", oid))
        final = orders.get("demo", order.order_id).status
        tally[final] += 1
        for r in results:
            # Every answer is either the final state or "not open any more" - never a second move.
            assert (isinstance(r, Order) and r.status is final) or isinstance(r, StockholdError), (r, final)
    level = local.stock.get("demo", "A")
    assert level.allocated == 0
    assert level.on_hand == 1000 - 2 * tally[OrderStatus.FULFILLED]
    assert level.available == level.on_hand
    assert_invariants(local)


def test_the_largest_checkout_starts_and_completes_in_one_real_transaction_each(local: Services) -> None:
    """96 lines: start = hold + cart slot + checkout + cart pointer + 96 counters = 100 actions;
    complete = hold + cart slot + checkout + order + 96 counters = 100 (DynamoDB's limit)."""
    skus = [f"BIG-{i:02d}" for i in range(96)]
    for sku in skus:
        local.stock.set("demo", sku, on_hand=3, low_stock_threshold=0, unlimited=False)
    lines = [Line(sku=s, quantity=2) for s in skus]
    view = local.checkouts.start("demo", cart_id="big", customer_id=None, lines=lines)
    order = local.checkouts.complete("demo", view.checkout.checkout_id, "pay-big")
    assert len(order.lines) == 96
    assert {_orders_of(local, s) for s in skus} == {(1, 0, 2)}
    assert local.orders.fulfil("demo", order.order_id).status is OrderStatus.FULFILLED
    assert {local.stock.get("demo", s).on_hand for s in skus} == {1}
    assert_invariants(local)
