"""Reserving's decisions on fakes of the data room: no AWS emulator. The fake unit of work
refuses as DynamoDB would, naming the intents whose condition failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from stockhold.domain.errors import CartAlreadyReserved, InsufficientStock
from stockhold.domain.intents import Failed, MoveStock, PutHold, Refused, TakeCart
from stockhold.domain.models import Line, Location, StockLevel
from stockhold.settings import Settings
from stockhold.usecases.expiry import ExpireOutcome
from stockhold.usecases.reserve import Reserving

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

    def commit(self, intents: list[Any], mark: Any = None, now_ms: int = 0) -> None:
        failed = []
        for i in intents:
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


class FakeHolds:
    def cart_holder(self, store_id: str, cart_id: str) -> None:
        return None

    def get(self, store_id: str, rid: str) -> None:
        return None


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


def reserving(unit: FakeUnit, expiry: FakeExpiry | None = None, locations: FakeLocations | None = None) -> Reserving:
    return Reserving(
        FakeHolds(),  # type: ignore[arg-type]
        FakeSweep(),  # type: ignore[arg-type]
        FakeStock(unit),  # type: ignore[arg-type]
        locations or FakeLocations(),  # type: ignore[arg-type]
        unit,  # type: ignore[arg-type]
        expiry or FakeExpiry(),  # type: ignore[arg-type]
        Settings(),
        lambda: NOW,
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
