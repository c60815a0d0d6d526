"""Allocation: which cells a line takes its units from.

A cell is a SKU's counters at one location. A line takes from the locations its request
allows, in order: active ones by priority (lower first), ties broken by most available,
then by id; or the request's ``locationIds`` in the order given. It may be split across
them unless ``split`` is false. Only the ``default`` location's cell carries backorders,
down to ``-backorder_limit``, and only once stock everywhere allowed is used up.

The plan is made from cells read a moment ago; the data access re-checks every cell it
takes from in the transaction's conditions, so a stale ``available`` makes the plan
refused and planned again, never an oversell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_LOCATION = "default"


@dataclass(frozen=True)
class Location:
    location_id: str
    name: str = ""
    priority: int = 0  # lower allocates first
    active: bool = True


IMPLICIT_DEFAULT = Location(DEFAULT_LOCATION, "Default", 0, True)


@dataclass(frozen=True)
class Allocation:
    location_id: str
    quantity: int


@dataclass(frozen=True)
class Take:
    """What one line takes from one cell, and how many of those units are backordered
    (only ever on the ``default`` cell)."""

    location_id: str
    quantity: int
    backordered: int = 0


@dataclass(frozen=True)
class LinePlan:
    sku: str
    quantity: int
    takes: tuple[Take, ...]

    @property
    def allocations(self) -> tuple[Allocation, ...]:
        return tuple(Allocation(t.location_id, t.quantity) for t in self.takes)

    @property
    def backordered(self) -> int:
        return sum(t.backordered for t in self.takes)


@dataclass(frozen=True)
class Shortfall:
    sku: str
    requested: int
    available: int  # the most this line could have got under the request's own rules


@dataclass(frozen=True)
class Rules:
    """A request's allocation fields."""

    location_ids: tuple[str, ...] | None = None  # only these, in this order (click and collect)
    split: bool = True


def order_locations(locations: Mapping[str, Location], available: Mapping[str, int], rules: Rules) -> list[str]:
    """The location ids a line may use, in the order it takes from them (inactive ones never)."""
    known = {DEFAULT_LOCATION: IMPLICIT_DEFAULT, **locations}
    if rules.location_ids is not None:
        return [x for x in dict.fromkeys(rules.location_ids) if x in known and known[x].active]
    active = [x for x in known.values() if x.active]
    active.sort(key=lambda x: (x.priority, -available.get(x.location_id, 0), x.location_id))
    return [x.location_id for x in active]


def allocate(
    sku: str,
    quantity: int,
    available: Mapping[str, int],
    locations: Mapping[str, Location],
    rules: Rules,
    backorder_limit: int = 0,
) -> LinePlan | Shortfall:
    """Which cells ``quantity`` units of ``sku`` come from, or how short the line is."""
    order = order_locations(locations, available, rules)
    room = _backorder_room(order, available, backorder_limit)
    if rules.split:
        return _split(sku, quantity, available, order, room)
    return _whole(sku, quantity, available, order, room)


def usable(
    available: Mapping[str, int], locations: Mapping[str, Location], rules: Rules, backorder_limit: int = 0
) -> int:
    """The most units one line could take under ``rules`` (split), backorders included."""
    order = order_locations(locations, available, rules)
    return sum(_give(available, x) for x in order) + _backorder_room(order, available, backorder_limit)


def _give(available: Mapping[str, int], location_id: str) -> int:
    return max(0, available.get(location_id, 0))


def _backorder_room(order: list[str], available: Mapping[str, int], limit: int) -> int:
    """Units the ``default`` cell may take beyond its stock (0 when it is not allowed)."""
    if limit <= 0 or DEFAULT_LOCATION not in order:
        return 0
    return max(0, limit + min(0, available.get(DEFAULT_LOCATION, 0)))


def _split(sku: str, quantity: int, available: Mapping[str, int], order: list[str], room: int) -> LinePlan | Shortfall:
    takes: dict[str, int] = {}
    need = quantity
    for location_id in order:
        got = min(need, _give(available, location_id))
        if got:
            takes[location_id] = got
            need -= got
        if need == 0:
            break
    if need > room:
        return Shortfall(sku, quantity, quantity - need + room)
    backordered = need
    if backordered:
        takes[DEFAULT_LOCATION] = takes.get(DEFAULT_LOCATION, 0) + backordered
    plan = tuple(Take(x, q, backordered if x == DEFAULT_LOCATION else 0) for x, q in takes.items())
    return LinePlan(sku, quantity, plan)


def _whole(sku: str, quantity: int, available: Mapping[str, int], order: list[str], room: int) -> LinePlan | Shortfall:
    for location_id in order:
        if _give(available, location_id) >= quantity:
            return LinePlan(sku, quantity, (Take(location_id, quantity),))
    stock = _give(available, DEFAULT_LOCATION) if DEFAULT_LOCATION in order else 0
    if room and stock + room >= quantity:
        return LinePlan(sku, quantity, (Take(DEFAULT_LOCATION, quantity, quantity - stock),))
    best = max([_give(available, x) for x in order] + [stock + room], default=0)
    return Shortfall(sku, quantity, min(best, quantity - 1))
