"""Stock in many places, against DynamoDB Local: real transactions and conditions.

Shoppers racing for the last units spread over locations, one customer's carts racing
against ``maxPerCustomer``, backorder floors under load, and every way a hold ends
returning its units to exactly the cells it took them from (and the customer's
allowance back exactly once). Every test reads every cell item of the table after,
not just the SKU's totals, so a unit returned to the wrong location is caught.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from stockhold import wiring
from stockhold.data.schema import allowance_key, from_av, reservation_from_item, reservation_key, stock_key, to_av
from stockhold.domain.allocation import Rules
from stockhold.domain.errors import (
    InsufficientStock,
    NotFound,
    OrderNotOpen,
    PurchaseLimitReached,
    ReservationExpired,
    ReservationNotActive,
    StockConflict,
    StockholdError,
    TooBusy,
)
from stockhold.domain.ids import now_ms
from stockhold.domain.models import DEFAULT_LOCATION, Line, Location, OrderStatus, Reservation, ReservationStatus
from stockhold.domain.rules import ExpirePath
from stockhold.settings import Settings
from stockhold.wiring import Services, build
from tests.helpers import load_function
from tests.integration.conftest import assert_invariants, hold_stream_source, race, stock_items, stream_records
from tools.local.context import LambdaContext

pytestmark = pytest.mark.integration
STORE = "demo"
SHOPPERS = 24
ROUNDS = 10  # of the all-paths race on one split hold
Cells = dict[str, tuple[int, int, int, int]]  # location -> (onHand, reserved, allocated, available)


class Clock:
    """The shop's clock: real time when the test starts, moved on only by the test."""

    def __init__(self) -> None:
        self.now = now_ms()
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += int(seconds * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def shop(local: Services, clock: Clock) -> Services:
    """The use cases on the test's tables and clock; reconciliation acts at once (no grace, no quiet wait).
    TTL_GRACE_SECONDS stays long, so DynamoDB Local's own TTL sweeper never deletes a hold of these tests."""
    settings = Settings.model_validate(
        {
            **local.settings.model_dump(),
            "SWEEP_GRACE_SECONDS": 0,
            "RECONCILE_QUIET_SECONDS": 0,
            "TTL_GRACE_SECONDS": 3600,
        }
    )
    return build(wiring.dynamodb_client(), settings, clock)


# ----- reading what is stored -------------------------------------------------------------------


def cells(svc: Services, sku: str) -> Cells:
    """Every stock item (cell) of ``sku`` in the table, read consistently, by location."""
    out: Cells = {}
    for item in stock_items(svc):
        if item["sku"]["S"] != sku:
            continue
        where = item["location"]["S"]
        location = DEFAULT_LOCATION if where == "_" else where
        out[location] = (item["onHand"], item["reserved"], item["allocated"], item["available"])
    return out


def stored_holds(svc: Services, status: ReservationStatus | None = ReservationStatus.ACTIVE) -> list[Reservation]:
    client = wiring.dynamodb_client()
    found: list[Reservation] = []
    for page in client.get_paginator("scan").paginate(
        TableName=svc.settings.TABLE_NAME,
        FilterExpression="#t = :r",
        ExpressionAttributeNames={"#t": "type"},
        ExpressionAttributeValues={":r": {"S": "RESERVATION"}},
        ConsistentRead=True,
    ):
        found.extend(reservation_from_item(from_av(x)) for x in page["Items"])
    return [r for r in found if status is None or r.status is status]


def held_by_cell(holds: list[Reservation], sku: str) -> Counter[str]:
    """Units of ``sku`` the given holds took, per location (from their recorded allocations)."""
    units: Counter[str] = Counter()
    for res in holds:
        for line in res.held_lines:
            if line.sku == sku:
                for part in line.cells():
                    units[part.location_id] += part.quantity
    return units


def allowance_used(svc: Services, customer_id: str, sku: str) -> int:
    item = wiring.dynamodb_client().get_item(
        TableName=svc.settings.TABLE_NAME, Key=to_av(allowance_key(STORE, customer_id, sku)), ConsistentRead=True
    )
    return int(item["Item"]["used"]["N"]) if "Item" in item else 0


def assert_cells_hold_what_active_holds_took(svc: Services, sku: str) -> None:
    """Per cell: the counters add up, nothing is below its floor, and ``reserved`` equals the
    units the ACTIVE holds' allocations took from that cell."""
    taken = held_by_cell(stored_holds(svc), sku)
    found = cells(svc, sku)
    for location, (on_hand, reserved, allocated, available) in found.items():
        assert available + reserved + allocated == on_hand, (location, found[location])
        assert reserved == taken[location], (location, found[location], dict(taken))
    assert set(taken) <= set(found), (dict(taken), found)


# ----- setting up ---------------------------------------------------------------------------------


def define_locations(svc: Services, *locations: tuple[str, int, bool]) -> None:
    for location_id, priority, active in locations:
        svc.stock.put_location(
            STORE, Location(location_id=location_id, name=location_id.upper(), priority=priority, active=active)
        )


def stock_at(svc: Services, sku: str, units: dict[str, int], **settings: Any) -> None:
    for location_id, on_hand in units.items():
        svc.stock.set_at(STORE, sku, location_id, on_hand)
    if settings:
        svc.stock.set(STORE, sku, **settings)


def won(results: list[Any]) -> list[Reservation]:
    return [r for r in results if isinstance(r, Reservation)]


def lost(results: list[Any]) -> list[StockholdError]:
    return [r for r in results if isinstance(r, StockholdError)]


# ----- 1. the last units, spread over locations ------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "locations"),
    [
        pytest.param({"a": 3, "b": 2}, [("a", 10, True), ("b", 20, True)], id="two-locations"),
        pytest.param(
            {"a": 3, "b": 2, "closed": 4},
            [("a", 10, True), ("b", 20, True), ("closed", 1, False)],
            id="plus-an-inactive-one-with-stock",
        ),
    ],
)
def test_24_shoppers_race_for_the_last_5_units_over_two_locations(
    shop: Services, layout: dict[str, int], locations: list[tuple[str, int, bool]]
) -> None:
    define_locations(shop, *locations)
    stock_at(shop, "LAST", layout)
    # 16 shoppers want 1; 6 want 2 and may split; 2 want 2 from one location only.
    wants = [(2, True) if i % 4 == 0 else (2, False) if i in (1, 13) else (1, True) for i in range(SHOPPERS)]
    results = race(
        SHOPPERS,
        lambda i: shop.reserving.reserve(
            STORE,
            cart_id=f"last-{i}",
            customer_id=None,
            lines=[Line(sku="LAST", quantity=wants[i][0])],
            rules=Rules(split=wants[i][1]),
        ),
    )
    winners, losers = won(results), lost(results)
    # Every shopper gets a clean answer: a hold or "sold out", never "busy, retry" while units are left.
    assert all(isinstance(e, InsufficientStock) for e in losers), [type(e).__name__ for e in losers]
    assert all(s["requested"] > s["available"] for e in losers for s in e.details["items"])
    # Exactly the 5 units that exist are held, by as many winners as their quantities allow.
    assert sum(r.lines[0].quantity for r in winners) == 5
    assert {r.reservation_id for r in winners} == {r.reservation_id for r in stored_holds(shop)}
    for res in winners:
        line = res.lines[0]
        assert sum(a.quantity for a in line.allocations) == line.quantity
        assert all(a.location_id in ("a", "b") for a in line.allocations), line.allocations
        if not wants[int(res.cart_id.split("-")[1])][1]:
            assert len(line.allocations) == 1, line.allocations  # split: false came whole from one place
    # Every cell item: sold out where it was open, untouched where it was closed, nothing below zero.
    found = cells(shop, "LAST")
    assert found["a"] == (3, 3, 0, 0) and found["b"] == (2, 2, 0, 0)
    assert found[DEFAULT_LOCATION] == (0, 0, 0, 0)
    if "closed" in layout:
        assert found["closed"] == (4, 0, 0, 4)
    assert shop.stock.get(STORE, "LAST").available == layout.get("closed", 0)
    assert_cells_hold_what_active_holds_took(shop, "LAST")
    assert_invariants(shop)


# ----- 2. one customer, many carts, maxPerCustomer ---------------------------------------------------


def test_8_carts_of_one_customer_race_against_max_per_customer_2(shop: Services) -> None:
    define_locations(shop, ("a", 10, True), ("b", 20, True))
    stock_at(shop, "LIM", {"a": 1, "b": 9}, max_per_customer=2)
    results = race(
        8,
        lambda i: shop.reserving.reserve(
            STORE, cart_id=f"cart-{i}", customer_id="u-1", lines=[Line(sku="LIM", quantity=1)]
        ),
    )
    winners, losers = won(results), lost(results)
    assert len(winners) == 2
    assert all(isinstance(e, PurchaseLimitReached) for e in losers), [type(e).__name__ for e in losers]
    assert all(e.details["items"][0]["limit"] == 2 for e in losers)
    assert allowance_used(shop, "u-1", "LIM") == 2
    assert sum(c[1] for c in cells(shop, "LIM").values()) == 2  # the refused carts moved no stock
    assert_cells_hold_what_active_holds_took(shop, "LIM")

    first, second = winners
    shop.holds.release(STORE, first.reservation_id, "cancelled")
    assert allowance_used(shop, "u-1", "LIM") == 1
    again = shop.holds.release(STORE, first.reservation_id, "cancelled")  # a retried release
    assert again.status is ReservationStatus.RELEASED
    assert allowance_used(shop, "u-1", "LIM") == 1
    # Six retries of the other release at once: the allowance comes back once.
    retries = race(6, lambda _: shop.holds.release(STORE, second.reservation_id, "cancelled"))
    assert all(isinstance(r, Reservation) and r.status is ReservationStatus.RELEASED for r in retries), retries
    assert allowance_used(shop, "u-1", "LIM") == 0
    assert cells(shop, "LIM") == {DEFAULT_LOCATION: (0, 0, 0, 0), "a": (1, 0, 0, 1), "b": (9, 0, 0, 9)}
    # What was given back can be used again, and no more than that.
    shop.reserving.reserve(STORE, cart_id="again", customer_id="u-1", lines=[Line(sku="LIM", quantity=2)])
    with pytest.raises(PurchaseLimitReached):
        shop.reserving.reserve(STORE, cart_id="third", customer_id="u-1", lines=[Line(sku="LIM", quantity=1)])
    assert allowance_used(shop, "u-1", "LIM") == 2
    assert_cells_hold_what_active_holds_took(shop, "LIM")
    assert_invariants(shop)


# ----- 3. backorders ------------------------------------------------------------------------------


def _backordered(holds: list[Reservation], sku: str) -> int:
    return sum(x.backordered for r in holds for x in r.held_lines if x.sku == sku)


def _assert_backorder_floor(svc: Services, sku: str, limit: int) -> None:
    found = cells(svc, sku)
    default = found[DEFAULT_LOCATION]
    assert default[3] >= -limit, found
    for location, (on_hand, reserved, allocated, available) in found.items():
        assert available + reserved + allocated == on_hand, (location, found)
        assert min(on_hand, reserved, allocated) >= 0, (location, found)
        if location != DEFAULT_LOCATION:
            assert available >= 0, (location, found)  # only the default cell goes below zero


def test_backorder_floor_holds_when_racers_want_more_than_stock(shop: Services) -> None:
    limit = 4
    define_locations(shop, ("a", 10, True))
    stock_at(shop, "BO", {DEFAULT_LOCATION: 2, "a": 3}, backorder_limit=limit)
    wants = [2 if i % 5 == 0 else 1 for i in range(SHOPPERS)]
    results = race(
        SHOPPERS,
        lambda i: shop.reserving.reserve(
            STORE, cart_id=f"bo-{i}", customer_id=None, lines=[Line(sku="BO", quantity=wants[i])]
        ),
    )
    winners, losers = won(results), lost(results)
    # Refused for stock, or (a loaded machine: the cells moved under every re-plan) 503 TOO_BUSY, safe to retry.
    assert all(isinstance(e, InsufficientStock | TooBusy) for e in losers), [type(e).__name__ for e in losers]
    assert sum(isinstance(e, InsufficientStock) for e in losers) > 0
    held = sum(r.lines[0].quantity for r in winners)
    assert held == 5 + limit  # onHand + backorderLimit, exactly: there were 1-unit racers left to take it
    _assert_backorder_floor(shop, "BO", limit)
    found = cells(shop, "BO")
    assert found == {DEFAULT_LOCATION: (2, 6, 0, -4), "a": (3, 3, 0, 0)}
    holds = stored_holds(shop)
    assert _backordered(holds, "BO") == held - 5 == limit  # the lines say which units stock did not cover
    for res in holds:
        line = res.lines[0]
        by_cell = {a.location_id: a.quantity for a in line.allocations}
        assert line.backordered <= by_cell.get(DEFAULT_LOCATION, 0)  # backorders sit on the default cell
    assert_cells_hold_what_active_holds_took(shop, "BO")

    # Lowering the limit below what is backordered is a 409 and changes nothing.
    before = cells(shop, "BO")
    with pytest.raises(StockConflict) as refused:
        shop.stock.set(STORE, "BO", backorder_limit=limit - 1)
    assert refused.value.status == 409 and refused.value.code == "STOCK_CONFLICT"
    assert refused.value.details["backordered"] == limit
    assert cells(shop, "BO") == before
    assert shop.stock.get(STORE, "BO").backorder_limit == limit

    # Once a backordered unit is released, the limit may come down to what is left backordered.
    one = next(r for r in holds if r.lines[0].backordered == 1 and r.lines[0].quantity == 1)
    shop.holds.release(STORE, one.reservation_id, "cancelled")
    lowered = shop.stock.set(STORE, "BO", backorder_limit=limit - 1)
    assert lowered.backorder_limit == limit - 1
    assert cells(shop, "BO") == {DEFAULT_LOCATION: (2, 5, 0, -3), "a": (3, 3, 0, 0)}
    with pytest.raises(InsufficientStock):
        shop.reserving.reserve(STORE, cart_id="late", customer_id=None, lines=[Line(sku="BO", quantity=1)])
    assert_invariants_with_backorders(shop, "BO", limit - 1)


def assert_invariants_with_backorders(svc: Services, sku: str, limit: int) -> None:
    _assert_backorder_floor(svc, sku, limit)
    assert_cells_hold_what_active_holds_took(svc, sku)


def test_lowering_the_backorder_limit_while_shoppers_backorder_keeps_the_floor(shop: Services) -> None:
    """An admin lowers the limit from 4 to 1 in the middle of the race: whichever wins each
    conflict, the default cell never ends below the final limit's floor."""
    define_locations(shop, ("a", 10, True))
    stock_at(shop, "BOL", {DEFAULT_LOCATION: 1, "a": 1}, backorder_limit=4)
    lowered: list[Any] = []

    def work(i: int) -> Any:
        if i == 8:
            try:
                lowered.append(shop.stock.set(STORE, "BOL", backorder_limit=1))
            except StockConflict as exc:
                lowered.append(exc)
            return None
        return shop.reserving.reserve(STORE, cart_id=f"bol-{i}", customer_id=None, lines=[Line(sku="BOL", quantity=1)])

    results = race(16, work)
    assert all(isinstance(e, InsufficientStock) for e in lost(results)), lost(results)
    final_limit = shop.stock.get(STORE, "BOL").backorder_limit
    assert final_limit == (4 if isinstance(lowered[0], StockConflict) else 1)
    held = sum(r.lines[0].quantity for r in won(results))
    assert held <= 2 + 4
    _assert_backorder_floor(shop, "BOL", final_limit)
    assert _backordered(stored_holds(shop), "BOL") == max(0, held - 2)
    assert_cells_hold_what_active_holds_took(shop, "BOL")


# ----- 4. every ending path returns units to the right cells ----------------------------------------

SPLIT_STOCK = {DEFAULT_LOCATION: 1, "a": 2, "b": 3}
# default (priority 0) gives 1, a (10) gives 2, b (20) gives the last 2 of the 5.
SPLIT_HELD = {DEFAULT_LOCATION: 1, "a": 2, "b": 2}


def _split_hold(shop: Services) -> Reservation:
    define_locations(shop, ("a", 10, True), ("b", 20, True))
    stock_at(shop, "END", SPLIT_STOCK, max_per_customer=10)
    stock_at(shop, "SIDE", {"a": 1, "b": 1})
    res = shop.reserving.reserve(
        STORE,
        cart_id="split",
        customer_id="u-9",
        lines=[Line(sku="END", quantity=5), Line(sku="SIDE", quantity=2)],
    )
    assert {a.location_id: a.quantity for a in res.lines[0].allocations} == SPLIT_HELD
    assert {a.location_id: a.quantity for a in res.lines[1].allocations} == {"a": 1, "b": 1}
    assert cells(shop, "END") == {loc: (n, SPLIT_HELD[loc], 0, n - SPLIT_HELD[loc]) for loc, n in SPLIT_STOCK.items()}
    assert allowance_used(shop, "u-9", "END") == 5
    return res


def _ttl_delete(svc: Services, res: Reservation) -> dict[str, Any]:
    """What the TTL service does: delete the hold (here as soon as it is asked), and the stream
    record of that deletion as Lambda gets it (with the TTL service's userIdentity)."""
    client = wiring.dynamodb_client()
    key = to_av(reservation_key(STORE, res.reservation_id))
    old = client.delete_item(TableName=svc.settings.TABLE_NAME, Key=key, ReturnValues="ALL_OLD")["Attributes"]
    assert old["status"]["S"] == "ACTIVE"
    record = next(
        r for r in stream_records(svc) if r["eventName"] == "REMOVE" and r["dynamodb"]["Keys"]["pk"] == key["pk"]
    )
    record = {**record, "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}}
    assert hold_stream_source().matches(record)  # the template's FilterCriteria admit it
    return record


def _release(shop: Services, clock: Clock, res: Reservation) -> None:
    shop.holds.release(STORE, res.reservation_id, "cancelled")
    assert shop.holds.release(STORE, res.reservation_id, "cancelled").status is ReservationStatus.RELEASED


def _expire_by_timer(shop: Services, clock: Clock, res: Reservation) -> None:
    clock.advance(shop.settings.DEFAULT_HOLD_SECONDS + 1)
    assert shop.expiry.expire(STORE, res.reservation_id, ExpirePath.TIMER).expired
    assert shop.expiry.expire(STORE, res.reservation_id, ExpirePath.TIMER).reason == "already_ended"


def _ttl_backstop(shop: Services, clock: Clock, res: Reservation) -> None:
    clock.advance(shop.settings.DEFAULT_HOLD_SECONDS + shop.settings.TTL_GRACE_SECONDS + 1)
    record = _ttl_delete(shop, res)
    handler = load_function("hold_stream").lambda_handler
    assert handler({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    assert handler({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}  # delivered again
    assert shop.holds.get(STORE, res.reservation_id).expired_by == "ttl"


def _reconcile(shop: Services, clock: Clock, res: Reservation) -> None:
    clock.advance(shop.settings.DEFAULT_HOLD_SECONDS + 1)
    report = shop.reconciler.run()
    assert report.expired == [res.reservation_id]
    assert shop.holds.get(STORE, res.reservation_id).expired_by == "reconcile"


ENDINGS = {
    "release": (_release, ReservationStatus.RELEASED),
    "expire-by-timer": (_expire_by_timer, ReservationStatus.EXPIRED),
    "ttl-backstop": (_ttl_backstop, ReservationStatus.EXPIRED),
    "reconcile-sweep": (_reconcile, ReservationStatus.EXPIRED),
}


@pytest.mark.parametrize("path", list(ENDINGS))
def test_a_split_hold_that_ends_unpaid_returns_each_unit_to_its_cell_and_the_allowance_once(
    shop: Services, clock: Clock, path: str
) -> None:
    res = _split_hold(shop)
    end, status = ENDINGS[path]
    end(shop, clock, res)
    assert shop.holds.get(STORE, res.reservation_id).status is status
    assert cells(shop, "END") == {loc: (n, 0, 0, n) for loc, n in SPLIT_STOCK.items()}
    assert cells(shop, "SIDE") == {DEFAULT_LOCATION: (0, 0, 0, 0), "a": (1, 0, 0, 1), "b": (1, 0, 0, 1)}
    assert allowance_used(shop, "u-9", "END") == 0
    assert shop.reconciler.run().as_dict() == {"dryRun": False, "overdue": [], "expired": [], "drift": []}
    # The cart is free again, and the units are there to take.
    again = shop.reserving.reserve(STORE, cart_id="split", customer_id="u-9", lines=[Line(sku="END", quantity=6)])
    assert {a.location_id: a.quantity for a in again.lines[0].allocations} == SPLIT_STOCK
    assert allowance_used(shop, "u-9", "END") == 6
    assert_invariants(shop)


@pytest.mark.parametrize(
    ("finish", "after_end", "after_side", "used"),
    [
        pytest.param(
            "cancel",
            {loc: (n, 0, 0, n) for loc, n in SPLIT_STOCK.items()},
            {DEFAULT_LOCATION: (0, 0, 0, 0), "a": (1, 0, 0, 1), "b": (1, 0, 0, 1)},
            0,
            id="cancel",
        ),
        pytest.param(
            "fulfil",
            {DEFAULT_LOCATION: (0, 0, 0, 0), "a": (0, 0, 0, 0), "b": (1, 0, 0, 1)},
            {DEFAULT_LOCATION: (0, 0, 0, 0), "a": (0, 0, 0, 0), "b": (0, 0, 0, 0)},
            5,  # shipped units stay counted against the customer's limit
            id="fulfil",
        ),
    ],
)
def test_a_confirmed_split_hold_moves_units_on_its_own_cells_through_the_order(
    shop: Services, finish: str, after_end: Cells, after_side: Cells, used: int
) -> None:
    res = _split_hold(shop)
    shop.holds.confirm(STORE, res.reservation_id, "o-split")
    assert cells(shop, "END") == {DEFAULT_LOCATION: (1, 0, 1, 0), "a": (2, 0, 2, 0), "b": (3, 0, 2, 1)}
    assert cells(shop, "SIDE") == {DEFAULT_LOCATION: (0, 0, 0, 0), "a": (1, 0, 1, 0), "b": (1, 0, 1, 0)}
    assert allowance_used(shop, "u-9", "END") == 5  # a placed order keeps its units counted
    assert shop.reconciler.run().drift == []

    act = shop.orders.cancel if finish == "cancel" else shop.orders.fulfil
    order = act(STORE, "o-split")
    assert order.status is (OrderStatus.CANCELLED if finish == "cancel" else OrderStatus.FULFILLED)
    assert act(STORE, "o-split").status is order.status  # again: nothing more moves
    other = shop.orders.fulfil if finish == "cancel" else shop.orders.cancel
    with pytest.raises(OrderNotOpen):
        other(STORE, "o-split")
    assert cells(shop, "END") == after_end
    assert cells(shop, "SIDE") == after_side
    assert allowance_used(shop, "u-9", "END") == used
    assert shop.reconciler.run().drift == []
    assert_invariants(shop)


# ----- reconciliation recounts per cell ---------------------------------------------------------------


def _corrupt(svc: Services, sku: str, location_id: str, reserved_delta: int) -> None:
    """Drift injected behind the service's back: ``reserved`` moves, available the other way."""
    wiring.dynamodb_client().update_item(
        TableName=svc.settings.TABLE_NAME,
        Key=to_av(stock_key(STORE, sku, location_id)),
        UpdateExpression="SET reserved = reserved + :d, available = available - :d",
        ExpressionAttributeValues={":d": {"N": str(reserved_delta)}},
    )


def test_reconcile_finds_and_repairs_drift_on_one_non_default_cell(shop: Services) -> None:
    res = _split_hold(shop)
    assert shop.reconciler.run().drift == []
    # Cell b lost a unit of its count (the oversell direction: b would offer 2 units, not 1).
    _corrupt(shop, "END", "b", -1)
    assert cells(shop, "END")["b"] == (3, 1, 0, 2)
    report = shop.reconciler.run()
    assert [(d.sku, d.location_id, d.reserved, d.counted, d.action) for d in report.drift] == [
        ("END", "b", 1, 2, "corrected")
    ]
    assert cells(shop, "END") == {DEFAULT_LOCATION: (1, 1, 0, 0), "a": (2, 2, 0, 0), "b": (3, 2, 0, 1)}
    assert shop.reconciler.run().drift == []

    # Cell a counts 2 units too many (stuck): reported for an operator, not fixed on its own.
    _corrupt(shop, "END", "a", +2)
    stuck = shop.reconciler.run()
    assert [(d.location_id, d.reserved, d.counted, d.action) for d in stuck.drift] == [("a", 4, 2, "reported")]
    assert cells(shop, "END")["a"] == (2, 4, 0, -2)
    fixed = shop.reconciler.run(correct_stuck=True)
    assert [(d.location_id, d.action) for d in fixed.drift] == [("a", "corrected")]
    assert cells(shop, "END") == {DEFAULT_LOCATION: (1, 1, 0, 0), "a": (2, 2, 0, 0), "b": (3, 2, 0, 1)}
    # The repaired cells end the hold cleanly.
    shop.holds.release(STORE, res.reservation_id, "cancelled")
    assert cells(shop, "END") == {loc: (n, 0, 0, n) for loc, n in SPLIT_STOCK.items()}
    assert allowance_used(shop, "u-9", "END") == 0
    assert shop.reconciler.run().drift == []
    assert_invariants(shop)


# ----- a hold replaced in the same cart ----------------------------------------------------------------


@pytest.mark.parametrize("new_customer", ["u-9", "u-10"], ids=["same-customer", "other-customer"])
def test_replacing_a_split_hold_returns_its_cells_and_its_customers_allowance(
    shop: Services, new_customer: str
) -> None:
    old = _split_hold(shop)
    new = shop.reserving.reserve(
        STORE, cart_id="split", customer_id=new_customer, lines=[Line(sku="END", quantity=1)], replace=True
    )
    assert shop.holds.get(STORE, old.reservation_id).status is ReservationStatus.RELEASED
    assert {a.location_id: a.quantity for a in new.lines[0].allocations} == {DEFAULT_LOCATION: 1}
    assert cells(shop, "END") == {DEFAULT_LOCATION: (1, 1, 0, 0), "a": (2, 0, 0, 2), "b": (3, 0, 0, 3)}
    assert cells(shop, "SIDE") == {DEFAULT_LOCATION: (0, 0, 0, 0), "a": (1, 0, 0, 1), "b": (1, 0, 0, 1)}
    # What each customer holds now counts against them, and nothing else.
    used = {c: allowance_used(shop, c, "END") for c in ("u-9", "u-10")}
    assert used == {"u-9": 1 if new_customer == "u-9" else 0, "u-10": 1 if new_customer == "u-10" else 0}
    assert_cells_hold_what_active_holds_took(shop, "END")
    assert_invariants(shop)


# ----- every ending path at once, on one split hold ---------------------------------------------


def _fixed(ms: int) -> Callable[[], int]:
    return lambda: ms


def _runner(paths: list[Callable[[], object]]) -> Callable[[int], object]:
    return lambda i: paths[i]()


def test_all_ending_paths_racing_on_a_split_hold_return_cells_and_allowance_exactly_once(shop: Services) -> None:
    """confirm and release (a millisecond before the deadline), the timer, reconciliation and the
    TTL backstop (at it) fired together: one wins, and the cells and allowance say which."""
    res = _split_hold(shop)
    shop.holds.release(STORE, res.reservation_id, "cancelled")
    table = shop.settings.TABLE_NAME
    client = wiring.dynamodb_client()
    winners: Counter[ReservationStatus] = Counter()
    for round_ in range(ROUNDS):
        res = shop.reserving.reserve(
            STORE, cart_id=f"r{round_}", customer_id="u-9", lines=[Line(sku="END", quantity=5)]
        )
        before = build(client, shop.settings, _fixed(res.expires_at - 1))
        after = build(client, shop.settings, _fixed(res.expires_at))

        def ttl(r: Reservation = res, after: Services = after) -> bool:
            try:
                old = client.delete_item(
                    TableName=table,
                    Key=to_av(reservation_key(STORE, r.reservation_id)),
                    ConditionExpression="purgeAt <= :now",
                    ExpressionAttributeValues={":now": {"N": str(r.expires_at // 1000 + 3600)}},
                    ReturnValues="ALL_OLD",
                )["Attributes"]
            except client.exceptions.ConditionalCheckFailedException:
                return False
            if old["status"]["S"] != "ACTIVE":
                return False
            return after.expiry.restore_after_ttl(reservation_from_item(from_av(old)))

        paths: list[Callable[[], object]] = [
            partial(before.holds.confirm, STORE, res.reservation_id, f"o-{res.reservation_id}"),
            partial(before.holds.release, STORE, res.reservation_id, "cancelled"),
            partial(after.expiry.expire, STORE, res.reservation_id, ExpirePath.TIMER),
            after.reconciler.run,
            ttl,
        ]
        results = race(len(paths), _runner(paths))
        bad = [e for e in lost(results) if not isinstance(e, NotFound | ReservationExpired | ReservationNotActive)]
        assert not bad, bad
        final = shop.holds.get(STORE, res.reservation_id)
        assert final.status is not ReservationStatus.ACTIVE
        winners[final.status] += 1
        if final.status is ReservationStatus.CONFIRMED:
            assert cells(shop, "END") == {DEFAULT_LOCATION: (1, 0, 1, 0), "a": (2, 0, 2, 0), "b": (3, 0, 2, 1)}
            assert allowance_used(shop, "u-9", "END") == 5
            shop.orders.cancel(STORE, final.order_id or "")
        assert cells(shop, "END") == {loc: (n, 0, 0, n) for loc, n in SPLIT_STOCK.items()}, (round_, final.status)
        assert allowance_used(shop, "u-9", "END") == 0, (round_, final.status)
    assert sum(winners.values()) == ROUNDS
    assert shop.reconciler.run().drift == []
    assert_invariants(shop)


def test_a_limited_sku_in_a_store_without_locations_pays_the_refused_try_once_per_container(
    local: Services,
) -> None:
    """The one-request reserve is refused by a SKU with a limit; the container remembers that
    SKU (LOCATIONS_CACHE_SECONDS), so later reserves read and plan straight away: no refused
    transaction (billed by DynamoDB) on every request."""
    local.stock.set(STORE, "LTD", on_hand=100, max_per_customer=50)
    sent: list[str] = []
    client = wiring.dynamodb_client()

    def record(event_name: str, **_: Any) -> None:
        sent.append(event_name.rsplit(".", 1)[-1])

    client.meta.events.register("before-call.dynamodb", record)
    try:
        for n in range(3):
            local.reserving.reserve(STORE, cart_id=f"ltd-{n}", customer_id="u1", lines=[Line(sku="LTD", quantity=1)])
            if n == 0:
                first, sent[:] = list(sent), []
    finally:
        client.meta.events.unregister("before-call.dynamodb", record)
    assert first.count("TransactWriteItems") == 2  # the one-request try, refused, then the planned one
    assert sent.count("TransactWriteItems") == 2  # two more reserves: one transaction each
    assert local.stock.get(STORE, "LTD").reserved == 3


def test_a_customers_first_hold_above_max_per_customer_is_refused(local: Services) -> None:
    """No allowance item yet is no licence: one line of 4 against maxPerCustomer 3 is
    refused by the transaction's own condition, and nothing is held or counted."""
    local.stock.set(STORE, "CAP", on_hand=6, max_per_customer=3)
    racers = race(
        4,
        lambda i: local.reserving.reserve(
            STORE, cart_id=f"cap-{i}", customer_id="new", lines=[Line(sku="CAP", quantity=4)]
        ),
    )
    assert all(isinstance(x, PurchaseLimitReached) for x in racers), racers
    assert racers[0].details["items"] == [{"sku": "CAP", "requested": 4, "limit": 3, "used": 0}]  # type: ignore[union-attr]
    assert local.stock.get(STORE, "CAP").reserved == 0
    assert allowance_used(local, "new", "CAP") == 0
    held = local.reserving.reserve(STORE, cart_id="cap-ok", customer_id="new", lines=[Line(sku="CAP", quantity=3)])
    assert held.lines[0].counted and allowance_used(local, "new", "CAP") == 3


def test_placing_less_stock_at_default_may_use_the_backorder_limit(local: Services) -> None:
    """PUT /stock/{sku}/locations/default lowers onHand below what is held when the SKU
    takes backorders: the floor is -backorderLimit, as for every other write of that cell
    (it answered 503 TOO_BUSY, the write's condition using a floor of 0)."""
    local.stock.set(STORE, "BO", on_hand=5, backorder_limit=2)
    local.reserving.reserve(STORE, cart_id="bo-1", customer_id=None, lines=[Line(sku="BO", quantity=2)])
    level = local.stock.set_at(STORE, "BO", DEFAULT_LOCATION, 0)
    assert (level.on_hand, level.reserved, level.available) == (0, 2, -2)
    local.stock.set(STORE, "BO1", on_hand=5, backorder_limit=1)
    local.reserving.reserve(STORE, cart_id="bo-2", customer_id=None, lines=[Line(sku="BO1", quantity=2)])
    with pytest.raises(StockConflict):  # 2 held, 0 on hand: past a limit of 1
        local.stock.set_at(STORE, "BO1", DEFAULT_LOCATION, 0)
    assert local.stock.get(STORE, "BO1").on_hand == 5
    for sku, limit in (("BO", 2), ("BO1", 1)):
        c = local.stock.get(STORE, sku)
        assert c.available + c.reserved + c.allocated == c.on_hand and c.available >= -limit, c
