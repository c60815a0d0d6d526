"""Reserving's decisions on fakes of the data room: no AWS emulator. The fake unit of work
refuses as DynamoDB would, naming the intents whose condition failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from stockhold.domain.allocation import Rules
from stockhold.domain.errors import CartAlreadyReserved, InsufficientStock
from stockhold.domain.ids import derived_id
from stockhold.domain.intents import Cause, Failed, MoveStock, PutHold, PutLocation, Refused, TakeCart
from stockhold.domain.models import Line, Location, Reservation, StockLevel
from stockhold.domain.rules import StockMove
from stockhold.settings import Settings
from stockhold.usecases.expiry import ExpireOutcome
from stockhold.usecases.reserve import Reserving
from stockhold.usecases.sold_out import SoldOut

NOW = 1_800_000_000_000


def level(sku: str, available: int, unlimited: bool = False) -> StockLevel:
    return StockLevel(
        sku=sku,
        on_hand=available,
        reserved=0,
        allocated=0,
        available=available,
        low_stock_threshold=None,
        unlimited=unlimited,
        updated_at=NOW,
    )


@dataclass
class FakeUnit:
    """Stock per SKU; a unit is refused when any move would take available below zero."""

    stock: dict[str, StockLevel]
    cart_holder: dict[str, Any] | None = None
    committed: list[list[Any]] = field(default_factory=list)
    tries: int = 0  # every commit asked for, refused or not: each is a write on DynamoDB
    holds: dict[str, Reservation] = field(default_factory=dict)  # made by an earlier run

    def commit(self, intents: list[Any], mark: Any = None, now_ms: int = 0) -> None:
        self.tries += 1
        failed = []
        for i in intents:
            if isinstance(i, PutHold) and i.res.reservation_id in self.holds:
                failed.append(Failed(i, None))
            if isinstance(i, TakeCart) and self.cart_holder is not None:
                failed.append(Failed(i, self.cart_holder))
            if isinstance(i, MoveStock):
                current = self.stock.get(i.move.sku)
                if current is None:
                    failed.append(Failed(i, None))
                elif i.move.require_unlimited != current.unlimited or current.available + i.move.available < 0:
                    failed.append(Failed(i, current))
        if failed:
            raise Refused(tuple(failed))
        self.committed.append(intents)


@dataclass
class FakeHolds:
    unit: FakeUnit
    reads: int = 0

    def cart_holder(self, store_id: str, cart_id: str) -> None:
        return None

    def get(self, store_id: str, rid: str) -> Reservation | None:
        self.reads += 1
        return self.unit.holds.get(rid)


class FakeSweep:
    def overdue_holds(self, before_ms: int) -> list[Any]:
        return []


class FakeExpiry:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def expire(self, store_id: str, rid: str, path: Any) -> ExpireOutcome:
        self.asked.append(rid)
        return ExpireOutcome(False, None, "not_due")


@dataclass
class FakeStock:
    unit: FakeUnit

    def get_many(self, store_id: str, skus: list[str]) -> dict[str, StockLevel]:
        return {s: self.unit.stock[s] for s in skus if s in self.unit.stock}


@dataclass
class FakeLocations:
    defined: dict[str, Location] = field(default_factory=dict)

    def cached(self, store_id: str) -> dict[str, Location]:
        return self.defined

    def all(self, store_id: str) -> dict[str, Location]:
        return self.defined


def reserving(
    unit: FakeUnit,
    expiry: FakeExpiry | None = None,
    locations: FakeLocations | None = None,
    clock: Callable[[], int] = lambda: NOW,
    holds: FakeHolds | None = None,
) -> Reserving:
    return Reserving(
        holds or FakeHolds(unit),  # type: ignore[arg-type]
        FakeSweep(),  # type: ignore[arg-type]
        FakeStock(unit),  # type: ignore[arg-type]
        locations or FakeLocations(),  # type: ignore[arg-type]
        unit,  # type: ignore[arg-type]
        expiry or FakeExpiry(),  # type: ignore[arg-type]
        SoldOut(Settings().SOLD_OUT_CACHE_SECONDS, clock),
        Settings(),
        clock,
    )


def test_every_short_line_is_named_with_what_could_have_been_used() -> None:
    unit = FakeUnit({"A": level("A", 1), "B": level("B", 10)})
    with pytest.raises(InsufficientStock) as refused:
        reserving(unit).reserve(
            "demo", cart_id="c", customer_id=None, lines=[Line(sku="A", quantity=3), Line(sku="Z", quantity=1)]
        )
    assert refused.value.short == [
        {"sku": "A", "requested": 3, "available": 1},
        {"sku": "Z", "requested": 1, "available": 0},
    ]
    assert unit.committed == []


def test_a_line_found_unlimited_is_held_again_without_counting() -> None:
    unit = FakeUnit({"U": level("U", 0, unlimited=True)})
    res = reserving(unit).reserve("demo", cart_id="c", customer_id=None, lines=[Line(sku="U", quantity=5)])
    assert [line.held for line in res.lines] == [False]
    (intents,) = unit.committed
    assert [i.move.require_unlimited for i in intents if isinstance(i, MoveStock)] == [True]
    assert isinstance(intents[0], PutHold) and isinstance(intents[1], TakeCart)


def test_a_cart_held_by_a_live_hold_is_cart_already_reserved() -> None:
    unit = FakeUnit({"A": level("A", 5)}, cart_holder={"reservationId": "res_other", "expiresAt": NOW + 60_000})
    with pytest.raises(CartAlreadyReserved) as refused:
        reserving(unit).reserve("demo", cart_id="c", customer_id=None, lines=[Line(sku="A", quantity=1)])
    assert refused.value.details["reservationId"] == "res_other"


def test_a_cart_held_by_a_due_hold_asks_expiry_to_end_it_first() -> None:
    expiry = FakeExpiry()
    unit = FakeUnit({"A": level("A", 5)}, cart_holder={"reservationId": "res_dead", "expiresAt": NOW - 1})
    with pytest.raises(CartAlreadyReserved):
        reserving(unit, expiry).reserve("demo", cart_id="c", customer_id=None, lines=[Line(sku="A", quantity=1)])
    assert expiry.asked == ["res_dead"]


# ----- sold out: once a container finds a SKU with nothing usable, it refuses without a write


def shop(unit: FakeUnit, lines: list[Line], r: Reserving, **kw: Any) -> list[dict[str, Any]] | Reservation:
    try:
        return r.reserve("demo", cart_id=kw.pop("cart_id", "c"), customer_id=None, lines=lines, **kw)
    except InsufficientStock as refused:
        return refused.short


def test_a_sold_out_sku_is_refused_without_a_write_for_a_second_then_tried_again() -> None:
    unit = FakeUnit({"A": level("A", 0)})
    t = [NOW]
    r = reserving(unit, clock=lambda: t[0])
    first = shop(unit, [Line(sku="A", quantity=1)], r)
    assert first == [{"sku": "A", "requested": 1, "available": 0}]
    assert unit.tries == 1  # the refusal that found it sold out was a write
    for n in range(20):
        t[0] = NOW + 50 * n  # the next 950 ms
        assert shop(unit, [Line(sku="A", quantity=1)], r, cart_id=f"c{n}") == first
    assert unit.tries == 1  # ... and the 20 after it were not

    unit.stock["A"] = level("A", 3)  # units came back (a release, a delivery)
    t[0] = NOW + Settings().SOLD_OUT_CACHE_SECONDS * 1000
    held = shop(unit, [Line(sku="A", quantity=1)], r)
    assert isinstance(held, Reservation) and unit.tries == 2


def test_a_cart_with_a_sold_out_line_names_it_and_holds_nothing() -> None:
    unit = FakeUnit({"A": level("A", 0), "B": level("B", 5)})
    r = reserving(unit)
    shop(unit, [Line(sku="A", quantity=1)], r)
    assert shop(unit, [Line(sku="B", quantity=1), Line(sku="A", quantity=2)], r) == [
        {"sku": "A", "requested": 2, "available": 0}
    ]
    assert unit.tries == 1 and unit.committed == []
    assert isinstance(shop(unit, [Line(sku="B", quantity=1)], r), Reservation)  # B is not affected


def test_short_but_not_sold_out_is_asked_again_every_time() -> None:
    """1 unit left: a request for 3 is refused, but a request for 1 must still get it."""
    unit = FakeUnit({"A": level("A", 1)})
    r = reserving(unit)
    assert shop(unit, [Line(sku="A", quantity=3)], r) == [{"sku": "A", "requested": 3, "available": 1}]
    assert isinstance(shop(unit, [Line(sku="A", quantity=1)], r), Reservation)
    assert unit.tries == 2


def test_a_refusal_restricted_to_some_locations_says_nothing_of_the_sku() -> None:
    """Nothing left at the shop asked for (click and collect) is not the SKU sold out."""
    unit = FakeUnit({"A": level("A", 0)})
    r = reserving(unit)
    for _ in range(2):
        shop(unit, [Line(sku="A", quantity=1)], r, rules=Rules(location_ids=("default",)))
    assert unit.tries == 0  # refused by the plan, before any write
    shop(unit, [Line(sku="A", quantity=1)], r)
    assert unit.tries == 1  # an unrestricted request is still asked of the database


def test_a_retry_of_a_request_whose_hold_was_made_gets_that_hold_not_sold_out() -> None:
    """The request took the last unit and its answer was lost; the SKU is sold out since.
    Its retry (same Idempotency-Key) must answer the hold it made."""
    unit = FakeUnit({"A": level("A", 0)})
    holds = FakeHolds(unit)
    r = reserving(unit, holds=holds)
    shop(unit, [Line(sku="A", quantity=1)], r, cart_id="other")  # finds it sold out
    rid = derived_id("res_", "demo", "key-1", "reserve")
    made = Reservation.model_validate(
        {
            "reservation_id": rid,
            "store_id": "demo",
            "cart_id": "c",
            "customer_id": None,
            "status": "ACTIVE",
            "lines": [{"sku": "A", "quantity": 1}],
            "created_at": NOW - 100,
            "expires_at": NOW + 60_000,
            "extensions_used": 0,
            "max_extensions": 3,
        }
    )
    unit.holds[rid] = made
    again = shop(unit, [Line(sku="A", quantity=1)], r, idempotency_key="key-1")
    assert isinstance(again, Reservation) and again.reservation_id == rid
    # without a key there is nothing to find: no read
    reads = holds.reads
    shop(unit, [Line(sku="A", quantity=1)], r)
    assert holds.reads == reads


def test_sold_out_memory_off_with_zero_seconds() -> None:
    unit = FakeUnit({"A": level("A", 0)})
    r = Reserving(
        FakeHolds(unit),  # type: ignore[arg-type]
        FakeSweep(),  # type: ignore[arg-type]
        FakeStock(unit),  # type: ignore[arg-type]
        FakeLocations(),  # type: ignore[arg-type]
        unit,  # type: ignore[arg-type]
        FakeExpiry(),  # type: ignore[arg-type]
        SoldOut(0, lambda: NOW),
        Settings(),
        lambda: NOW,
    )
    shop(unit, [Line(sku="A", quantity=1)], r)
    shop(unit, [Line(sku="A", quantity=1)], r)
    assert unit.tries == 2


def test_a_unit_this_container_commits_that_gives_units_back_forgets_the_sku() -> None:
    unit = FakeUnit({"A": level("A", 0), "B": level("B", 0)})
    memo = SoldOut(1, lambda: NOW)
    memo.remember("demo", ["A", "B"])
    memo.committed(
        [MoveStock("demo", StockMove(sku="A", reserved=-1, available=1), NOW, Cause("reservation_released"))]
    )
    assert memo.known("demo", ["A", "B"]) == {"B"}  # A came back; B did not
    memo.committed([MoveStock("demo", StockMove(sku="B", reserved=1, available=-1), NOW, Cause("reservation_created"))])
    assert memo.known("demo", ["B"]) == {"B"}  # taking units says nothing new
    memo.committed([PutLocation("demo", Location(location_id="x", name="X", priority=1, active=True))])
    assert memo.known("demo", ["B"]) == set()  # a location (re)activated: anything may be usable
    assert unit.tries == 0
