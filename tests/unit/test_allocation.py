"""Allocation and hold planning (stockhold.domain.allocation, stockhold.domain.planning):
which locations' cells a line takes its units from, what it backorders, what a refusal
says the request could have used, and the purchase limits a plan checks. API.md, "Stock in
many places"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockhold.domain.allocation import (
    DEFAULT_LOCATION,
    IMPLICIT_DEFAULT,
    LinePlan,
    Location,
    Rules,
    Shortfall,
    Take,
    allocate,
    order_locations,
)
from stockhold.domain.errors import ValidationFailed
from stockhold.domain.models import (
    CellLevel,
    HeldLine,
    Line,
    LineAllocation,
    Reservation,
    ReservationStatus,
    StockLevel,
)
from stockhold.domain.models import Location as StoredLocation
from stockhold.domain.planning import Allowance, HoldPlan, plan_hold
from stockhold.domain.rules import Floor

NOW = 1_800_000_000_000

# --- helpers --------------------------------------------------------------------------


def places(*locations: Location) -> dict[str, Location]:
    return {x.location_id: x for x in locations}


def planned(result: LinePlan | Shortfall) -> LinePlan:
    assert isinstance(result, LinePlan), f"expected a plan, got {result}"
    return result


def short(result: LinePlan | Shortfall) -> Shortfall:
    assert isinstance(result, Shortfall), f"expected a shortfall, got {result}"
    return result


def units(result: LinePlan | Shortfall) -> dict[str, int]:
    """Where a plan's units come from: location -> units (in the order taken)."""
    return {t.location_id: t.quantity for t in planned(result).takes}


WAREHOUSES = places(
    Location("leeds", "Leeds DC", priority=10),
    Location("bristol", "Bristol DC", priority=20),
    Location("shop-12", "Shop 12", priority=50),
)


# --- order of locations ----------------------------------------------------------------


def test_lower_priority_allocates_first() -> None:
    result = allocate("SKU", 3, {"leeds": 5, "bristol": 5, "shop-12": 5}, WAREHOUSES, Rules())
    assert units(result) == {"leeds": 3}


def test_a_location_with_negative_priority_goes_before_the_implicit_default() -> None:
    locations = places(Location("front", priority=-1))
    result = allocate("SKU", 2, {DEFAULT_LOCATION: 9, "front": 9}, locations, Rules())
    assert units(result) == {"front": 2}


def test_the_implicit_default_location_has_priority_zero() -> None:
    locations = places(Location("late", priority=1))
    assert order_locations(locations, {DEFAULT_LOCATION: 0, "late": 50}, Rules()) == [DEFAULT_LOCATION, "late"]
    result = allocate("SKU", 2, {DEFAULT_LOCATION: 9, "late": 50}, locations, Rules())
    assert units(result) == {DEFAULT_LOCATION: 2}


def test_a_priority_tie_goes_to_the_location_with_most_available() -> None:
    locations = places(Location("a", priority=5), Location("b", priority=5))
    result = allocate("SKU", 3, {"a": 4, "b": 7}, locations, Rules())
    assert units(result) == {"b": 3}


def test_a_tie_on_priority_and_available_goes_to_the_lower_id() -> None:
    locations = places(Location("zeta", priority=5), Location("alpha", priority=5), Location("mid", priority=5))
    assert order_locations(locations, {"zeta": 4, "alpha": 4, "mid": 4}, Rules()) == [
        DEFAULT_LOCATION,
        "alpha",
        "mid",
        "zeta",
    ]
    result = allocate("SKU", 3, {"zeta": 4, "alpha": 4, "mid": 4}, locations, Rules())
    assert units(result) == {"alpha": 3}


def test_priority_beats_availability() -> None:
    locations = places(Location("small", priority=1), Location("big", priority=2))
    result = allocate("SKU", 2, {"small": 2, "big": 1000}, locations, Rules())
    assert units(result) == {"small": 2}


# --- split (default) or whole ----------------------------------------------------------


def test_a_line_is_split_across_locations_in_order_by_default() -> None:
    result = allocate("SKU", 8, {"leeds": 3, "bristol": 4, "shop-12": 10}, WAREHOUSES, Rules())
    plan = planned(result)
    assert plan.takes == (Take("leeds", 3), Take("bristol", 4), Take("shop-12", 1))
    assert plan.quantity == 8
    assert plan.backordered == 0


def test_a_split_line_skips_locations_with_nothing_to_give() -> None:
    result = allocate("SKU", 5, {DEFAULT_LOCATION: 0, "leeds": 0, "bristol": 2, "shop-12": 9}, WAREHOUSES, Rules())
    assert units(result) == {"bristol": 2, "shop-12": 3}


def test_split_false_takes_the_whole_line_from_the_first_location_that_covers_it() -> None:
    # leeds comes first but cannot cover 5 alone: the whole line comes from bristol.
    result = allocate("SKU", 5, {"leeds": 4, "bristol": 6, "shop-12": 50}, WAREHOUSES, Rules(split=False))
    assert planned(result).takes == (Take("bristol", 5),)


def test_split_false_is_short_when_no_single_location_covers_the_line() -> None:
    result = allocate("SKU", 5, {"leeds": 3, "bristol": 4, "shop-12": 2}, WAREHOUSES, Rules(split=False))
    # 9 units in total, but one location gives at most 4.
    assert short(result) == Shortfall("SKU", 5, 4)


def test_split_true_would_have_covered_what_split_false_refuses() -> None:
    available = {"leeds": 3, "bristol": 4, "shop-12": 2}
    assert units(allocate("SKU", 5, available, WAREHOUSES, Rules())) == {"leeds": 3, "bristol": 2}
    assert isinstance(allocate("SKU", 5, available, WAREHOUSES, Rules(split=False)), Shortfall)


def test_a_split_line_short_everywhere_reports_the_total_it_could_use() -> None:
    result = allocate("SKU", 20, {DEFAULT_LOCATION: 1, "leeds": 3, "bristol": 4, "shop-12": 2}, WAREHOUSES, Rules())
    assert short(result) == Shortfall("SKU", 20, 10)


# --- locationIds (click and collect) ---------------------------------------------------


def test_location_ids_restrict_the_locations_used() -> None:
    available = {DEFAULT_LOCATION: 100, "leeds": 100, "shop-12": 5}
    result = allocate("SKU", 3, available, WAREHOUSES, Rules(location_ids=("shop-12",)))
    assert units(result) == {"shop-12": 3}


def test_location_ids_are_used_in_the_order_given_not_by_priority() -> None:
    available = {"leeds": 2, "bristol": 2, "shop-12": 2}
    result = allocate("SKU", 3, available, WAREHOUSES, Rules(location_ids=("shop-12", "leeds")))
    plan = planned(result)
    assert plan.takes == (Take("shop-12", 2), Take("leeds", 1))
    assert order_locations(WAREHOUSES, available, Rules(location_ids=("shop-12", "leeds"))) == ["shop-12", "leeds"]


def test_location_ids_order_beats_most_available_with_split_false() -> None:
    available = {"leeds": 50, "shop-12": 3}
    result = allocate("SKU", 3, available, WAREHOUSES, Rules(location_ids=("shop-12", "leeds"), split=False))
    assert planned(result).takes == (Take("shop-12", 3),)


def test_a_short_click_and_collect_location_names_only_what_it_has() -> None:
    # Plenty elsewhere, but the request may only use shop-12, which has 2.
    available = {DEFAULT_LOCATION: 100, "leeds": 100, "bristol": 100, "shop-12": 2}
    result = allocate("SKU", 5, available, WAREHOUSES, Rules(location_ids=("shop-12",)))
    assert short(result) == Shortfall("SKU", 5, 2)


def test_a_short_click_and_collect_set_names_the_sum_of_its_locations() -> None:
    available = {DEFAULT_LOCATION: 100, "leeds": 100, "bristol": 1, "shop-12": 2}
    result = allocate("SKU", 5, available, WAREHOUSES, Rules(location_ids=("shop-12", "bristol")))
    assert short(result) == Shortfall("SKU", 5, 3)


def test_a_location_named_twice_is_used_once() -> None:
    rules = Rules(location_ids=("shop-12", "leeds", "shop-12"))
    assert order_locations(WAREHOUSES, {}, rules) == ["shop-12", "leeds"]
    assert short(allocate("SKU", 9, {"shop-12": 2, "leeds": 3}, WAREHOUSES, rules)).available == 5


def test_location_ids_may_name_the_implicit_default() -> None:
    result = allocate("SKU", 4, {DEFAULT_LOCATION: 4, "leeds": 10}, WAREHOUSES, Rules(location_ids=(DEFAULT_LOCATION,)))
    assert units(result) == {DEFAULT_LOCATION: 4}


# --- inactive locations ----------------------------------------------------------------


def test_an_inactive_location_is_never_allocated_from() -> None:
    locations = places(Location("closed", priority=-10, active=False), Location("open", priority=10))
    result = allocate("SKU", 3, {"closed": 100, "open": 3}, locations, Rules())
    assert units(result) == {"open": 3}


def test_an_inactive_locations_stock_does_not_count_towards_a_shortfall() -> None:
    locations = places(Location("closed", priority=-10, active=False), Location("open", priority=10))
    result = allocate("SKU", 5, {"closed": 100, "open": 3}, locations, Rules())
    assert short(result) == Shortfall("SKU", 5, 3)


def test_an_inactive_location_named_in_location_ids_is_still_not_used() -> None:
    locations = places(Location("closed", active=False), Location("open"))
    rules = Rules(location_ids=("closed", "open"))
    assert order_locations(locations, {"closed": 9, "open": 1}, rules) == ["open"]
    assert short(allocate("SKU", 2, {"closed": 9, "open": 1}, locations, rules)) == Shortfall("SKU", 2, 1)


def test_an_inactive_location_is_not_used_whole_either() -> None:
    locations = places(Location("closed", active=False), Location("open", priority=5))
    result = allocate("SKU", 4, {"closed": 9, "open": 2, DEFAULT_LOCATION: 1}, locations, Rules(split=False))
    assert short(result) == Shortfall("SKU", 4, 2)


def test_an_inactive_default_location_is_not_used_and_carries_no_backorders() -> None:
    locations = places(Location(DEFAULT_LOCATION, "Default", 0, active=False), Location("open", priority=5))
    result = allocate("SKU", 4, {DEFAULT_LOCATION: 10, "open": 1}, locations, Rules(), backorder_limit=20)
    assert short(result) == Shortfall("SKU", 4, 1)


# --- backorders ------------------------------------------------------------------------


def test_backorders_come_only_after_stock_everywhere_else_is_used() -> None:
    # The default cell allocates first (priority 0), but its backorders wait for leeds and bristol.
    result = allocate("SKU", 10, {DEFAULT_LOCATION: 2, "leeds": 3, "bristol": 1}, WAREHOUSES, Rules(), 20)
    plan = planned(result)
    assert plan.takes == (Take(DEFAULT_LOCATION, 6, backordered=4), Take("leeds", 3), Take("bristol", 1))
    assert plan.backordered == 4
    assert plan.allocations[0].quantity == 6


def test_backorders_sit_on_the_default_cell_even_when_it_has_no_stock_and_comes_last() -> None:
    locations = places(Location("first", priority=-5))
    result = allocate("SKU", 6, {"first": 2}, locations, Rules(), backorder_limit=10)
    plan = planned(result)
    assert plan.takes == (Take("first", 2), Take(DEFAULT_LOCATION, 4, backordered=4))
    assert plan.backordered == 4


def test_no_backorders_without_a_limit() -> None:
    result = allocate("SKU", 3, {DEFAULT_LOCATION: 1}, {}, Rules(), backorder_limit=0)
    assert short(result) == Shortfall("SKU", 3, 1)


def test_backorders_stop_at_the_limit() -> None:
    result = allocate("SKU", 6, {DEFAULT_LOCATION: 1}, {}, Rules(), backorder_limit=5)
    assert planned(result).takes == (Take(DEFAULT_LOCATION, 6, backordered=5),)
    result = allocate("SKU", 7, {DEFAULT_LOCATION: 1}, {}, Rules(), backorder_limit=5)
    assert short(result) == Shortfall("SKU", 7, 6)


def test_existing_backorders_use_up_the_limit() -> None:
    # available already -3 of a limit of 5: two more units at most, never below -5.
    assert planned(allocate("SKU", 2, {DEFAULT_LOCATION: -3}, {}, Rules(), 5)).takes == (
        Take(DEFAULT_LOCATION, 2, backordered=2),
    )
    assert short(allocate("SKU", 3, {DEFAULT_LOCATION: -3}, {}, Rules(), 5)) == Shortfall("SKU", 3, 2)


def test_a_default_cell_at_the_limit_takes_nothing_more() -> None:
    result = allocate("SKU", 1, {DEFAULT_LOCATION: -5, "leeds": 0}, WAREHOUSES, Rules(), backorder_limit=5)
    assert short(result) == Shortfall("SKU", 1, 0)


def test_no_backorders_when_location_ids_leave_out_the_default() -> None:
    result = allocate("SKU", 4, {DEFAULT_LOCATION: 0, "shop-12": 1}, WAREHOUSES, Rules(location_ids=("shop-12",)), 20)
    assert short(result) == Shortfall("SKU", 4, 1)


def test_a_shortfall_counts_the_backorder_room() -> None:
    result = allocate("SKU", 30, {DEFAULT_LOCATION: 2, "leeds": 3}, WAREHOUSES, Rules(), backorder_limit=10)
    assert short(result) == Shortfall("SKU", 30, 15)


def test_whole_line_prefers_a_location_with_stock_over_backordering() -> None:
    available = {DEFAULT_LOCATION: 1, "shop-12": 5}
    result = allocate("SKU", 5, available, WAREHOUSES, Rules(split=False), backorder_limit=20)
    assert planned(result).takes == (Take("shop-12", 5),)


def test_whole_line_backorders_on_the_default_cell_when_no_location_covers_it() -> None:
    available = {DEFAULT_LOCATION: 1, "shop-12": 4}
    result = allocate("SKU", 5, available, WAREHOUSES, Rules(split=False), backorder_limit=20)
    plan = planned(result)
    assert plan.takes == (Take(DEFAULT_LOCATION, 5, backordered=4),)
    assert plan.backordered == 4


def test_whole_line_short_with_backorders_reports_the_best_single_location() -> None:
    available = {DEFAULT_LOCATION: 1, "shop-12": 4}
    # default: 1 + 2 room = 3; shop-12: 4.
    assert short(allocate("SKU", 5, available, WAREHOUSES, Rules(split=False), 2)) == Shortfall("SKU", 5, 4)
    # default: 1 + 3 room = 4... still short of 5; with 4 room it is 5 and the line is held.
    assert isinstance(allocate("SKU", 5, available, WAREHOUSES, Rules(split=False), 3), Shortfall)
    assert planned(allocate("SKU", 5, available, WAREHOUSES, Rules(split=False), 4)).backordered == 4


# --- properties ------------------------------------------------------------------------

IDS = (DEFAULT_LOCATION, "a", "b", "c", "d")


@dataclass(frozen=True)
class Case:
    quantity: int
    available: dict[str, int]
    locations: dict[str, Location]
    rules: Rules
    limit: int

    def allowed(self) -> set[str]:
        """The locations the request may take from (API.md): active ones, only those named if any."""
        known = {DEFAULT_LOCATION: IMPLICIT_DEFAULT, **self.locations}
        ids = known if self.rules.location_ids is None else self.rules.location_ids
        return {x for x in ids if x in known and known[x].active}

    def give(self, location_id: str) -> int:
        return max(0, self.available.get(location_id, 0))

    def room(self) -> int:
        """Backorder room: the default cell may go down to -limit."""
        if DEFAULT_LOCATION not in self.allowed():
            return 0
        return max(0, self.limit + min(0, self.available.get(DEFAULT_LOCATION, 0)))


@st.composite
def cases(draw: st.DrawFn, split: bool | None = None) -> Case:
    defined = draw(st.lists(st.sampled_from(IDS), unique=True))
    locations = {
        x: Location(x, x.upper(), draw(st.integers(-2, 2)), draw(st.booleans(), label=f"{x} active")) for x in defined
    }
    limit = draw(st.integers(0, 6))
    stocked = draw(st.lists(st.sampled_from(IDS), unique=True))
    available = {x: draw(st.integers(0, 12)) for x in stocked}
    if DEFAULT_LOCATION in available and draw(st.booleans()):
        available[DEFAULT_LOCATION] = draw(st.integers(-limit, 0))  # already backordered, within the limit
    location_ids = draw(st.none() | st.lists(st.sampled_from((*IDS, "unknown")), max_size=4).map(tuple))
    whole = draw(st.booleans()) if split is None else not split
    quantity = draw(st.integers(1, 40))
    return Case(quantity, available, locations, Rules(location_ids=location_ids, split=not whole), limit)


def run(case: Case) -> LinePlan | Shortfall:
    return allocate("SKU", case.quantity, case.available, case.locations, case.rules, case.limit)


fast = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(cases())
def test_a_plan_takes_exactly_the_quantity_from_allowed_cells_within_their_stock(case: Case) -> None:
    result = run(case)
    if isinstance(result, Shortfall):
        return
    allowed = case.allowed()
    assert result.quantity == case.quantity
    assert sum(t.quantity for t in result.takes) == case.quantity
    seen = [t.location_id for t in result.takes]
    assert len(seen) == len(set(seen)), "a location appears once per line"
    for t in result.takes:
        assert t.location_id in allowed, f"took from {t.location_id}, not allowed"
        assert t.quantity > 0
        if t.location_id != DEFAULT_LOCATION:
            assert t.backordered == 0
            assert t.quantity <= case.give(t.location_id)
        else:
            assert 0 <= t.backordered <= case.room()
            assert t.quantity - t.backordered <= case.give(DEFAULT_LOCATION)
            # the cell's available never goes below -limit
            assert case.available.get(DEFAULT_LOCATION, 0) - t.quantity >= -case.limit
    assert result.backordered == sum(t.backordered for t in result.takes)


@fast
@given(cases(split=True))
def test_a_split_line_is_short_exactly_when_its_usable_units_and_room_are(case: Case) -> None:
    usable = sum(case.give(x) for x in case.allowed()) + case.room()
    result = run(case)
    if usable >= case.quantity:
        assert isinstance(result, LinePlan)
    else:
        assert result == Shortfall("SKU", case.quantity, usable)


@fast
@given(cases(split=True))
def test_a_split_line_backorders_only_what_stock_everywhere_allowed_left_uncovered(case: Case) -> None:
    result = run(case)
    if isinstance(result, Shortfall):
        return
    stock = sum(case.give(x) for x in case.allowed())
    assert result.backordered == max(0, case.quantity - stock)
    if result.backordered:
        taken = {t.location_id: t.quantity - t.backordered for t in result.takes}
        assert all(taken.get(x, 0) == case.give(x) for x in case.allowed()), "every allowed cell's stock used first"


@fast
@given(cases(split=True))
def test_a_split_line_drains_each_location_before_taking_from_the_next(case: Case) -> None:
    result = run(case)
    if isinstance(result, Shortfall):
        return
    order = order_locations(case.locations, case.available, case.rules)
    stock_taken = {t.location_id: t.quantity - t.backordered for t in result.takes}
    used = [i for i, x in enumerate(order) if stock_taken.get(x, 0) > 0]
    for i in range(used[-1] if used else 0):
        assert stock_taken.get(order[i], 0) == case.give(order[i]), f"{order[i]} skipped before {order[used[-1]]}"


@fast
@given(cases(split=False))
def test_a_whole_line_comes_from_exactly_one_location(case: Case) -> None:
    allowed = case.allowed()
    covering = [x for x in allowed if case.give(x) >= case.quantity]
    backorderable = DEFAULT_LOCATION in allowed and case.give(DEFAULT_LOCATION) + case.room() >= case.quantity
    result = run(case)
    if not covering and not backorderable:
        best = max((case.give(x) for x in allowed), default=0)
        if DEFAULT_LOCATION in allowed:
            best = max(best, case.give(DEFAULT_LOCATION) + case.room())
        assert result == Shortfall("SKU", case.quantity, best)
        return
    plan = planned(result)
    assert len(plan.takes) == 1
    (take,) = plan.takes
    assert take.quantity == case.quantity
    if covering:
        assert take.backordered == 0, "a location with the stock is used before any backorder"
        assert take.location_id in covering
        order = order_locations(case.locations, case.available, case.rules)
        assert take.location_id == next(x for x in order if x in covering)
    else:
        assert take.location_id == DEFAULT_LOCATION
        assert take.backordered == case.quantity - case.give(DEFAULT_LOCATION)


@fast
@given(cases())
def test_a_shortfall_is_less_than_requested_and_never_negative(case: Case) -> None:
    result = run(case)
    if isinstance(result, Shortfall):
        assert result.requested == case.quantity
        assert 0 <= result.available < case.quantity


@fast
@given(cases(), st.data())
def test_the_order_follows_priority_then_most_available_then_id(case: Case, data: st.DataObject) -> None:
    rules = Rules(location_ids=None, split=case.rules.split)
    order = order_locations(case.locations, case.available, rules)
    known = {DEFAULT_LOCATION: IMPLICIT_DEFAULT, **case.locations}
    assert set(order) == {x for x, v in known.items() if v.active}
    keys = [(known[x].priority, -case.available.get(x, 0), x) for x in order]
    assert keys == sorted(keys)


# --- plan_hold: cells, allowances, floors ----------------------------------------------


def cell(location_id: str, available: int) -> CellLevel:
    return CellLevel(
        location_id=location_id,
        on_hand=max(available, 0),
        reserved=max(-available, 0),
        allocated=0,
        available=available,
    )


def level(
    sku: str,
    cells: Mapping[str, int],
    *,
    backorder_limit: int = 0,
    max_per_cart: int | None = None,
    max_per_customer: int | None = None,
    unlimited: bool = False,
) -> StockLevel:
    got = tuple(cell(k, v) for k, v in cells.items())
    return StockLevel(
        sku=sku,
        on_hand=sum(c.on_hand for c in got),
        reserved=sum(c.reserved for c in got),
        allocated=0,
        available=sum(c.available for c in got),
        low_stock_threshold=None,
        unlimited=unlimited,
        updated_at=NOW,
        backorder_limit=backorder_limit,
        max_per_cart=max_per_cart,
        max_per_customer=max_per_customer,
        locations=got,
        cell_ids=tuple(cells),
    )


STORE_LOCATIONS = {
    "leeds": StoredLocation(location_id="leeds", name="Leeds DC", priority=10, active=True),
    "shop-12": StoredLocation(location_id="shop-12", name="Shop 12", priority=50, active=True),
    "closed": StoredLocation(location_id="closed", name="Closed", priority=-1, active=False),
}


def held(sku: str, quantity: int, cells: Mapping[str, int] | None = None, counted: bool = False) -> HeldLine:
    allocations = tuple(LineAllocation(location_id=k, quantity=v) for k, v in (cells or {}).items())
    return HeldLine(sku=sku, quantity=quantity, allocations=allocations, counted=counted)


def hold(customer_id: str | None, *lines: HeldLine) -> Reservation:
    return Reservation(
        reservation_id="res_old",
        store_id="demo",
        cart_id="c-1",
        customer_id=customer_id,
        status=ReservationStatus.ACTIVE,
        lines=lines,
        created_at=NOW,
        expires_at=NOW + 60_000,
        extensions_used=0,
        max_extensions=3,
    )


def plan(
    lines: list[tuple[str, int]],
    levels: list[StockLevel],
    rules: Rules | None = None,
    customer_id: str | None = None,
    replacing: Reservation | None = None,
) -> HoldPlan:
    return plan_hold(
        [Line(sku=s, quantity=q) for s, q in lines],
        {x.sku: x for x in levels},
        STORE_LOCATIONS,
        rules or Rules(),
        customer_id,
        replacing,
    )


def test_a_hold_plan_records_each_lines_allocations_from_the_stores_locations() -> None:
    got = plan(
        [("A", 7), ("B", 1)],
        [level("A", {"default": 2, "leeds": 3, "shop-12": 9, "closed": 50}), level("B", {"default": 0, "shop-12": 1})],
    )
    assert got.short == []
    assert got.over_limit == []
    assert got.lines == [
        held("A", 7, {"default": 2, "leeds": 3, "shop-12": 2}),
        held("B", 1, {"shop-12": 1}),
    ]
    assert got.floors == {}


def test_a_hold_plan_names_every_short_line_with_what_it_could_use() -> None:
    got = plan(
        [("A", 3), ("B", 4), ("GHOST", 2)],
        [level("A", {"default": 5}), level("B", {"default": 1, "shop-12": 2, "closed": 40})],
    )
    assert got.short == [
        {"sku": "B", "requested": 4, "available": 3},
        {"sku": "GHOST", "requested": 2, "available": 0},
    ]
    assert [x.sku for x in got.lines] == ["A"]


def test_a_hold_plan_applies_location_ids_and_split_to_every_line() -> None:
    levels = [level("A", {"default": 9, "leeds": 2, "shop-12": 2}), level("B", {"default": 9, "shop-12": 5})]
    got = plan([("A", 3), ("B", 3)], levels, Rules(location_ids=("shop-12", "leeds"), split=False))
    assert got.short == [{"sku": "A", "requested": 3, "available": 2}]
    assert got.lines == [held("B", 3, {"shop-12": 3})]


def test_an_unlimited_line_rides_along_unheld() -> None:
    got = plan([("E-BOOK", 1000)], [level("E-BOOK", {}, unlimited=True)])
    assert got.short == []
    assert got.lines == [HeldLine(sku="E-BOOK", quantity=1000, held=False)]


def test_a_replaced_holds_units_count_as_available_in_the_cells_they_came_from() -> None:
    # shop-12 shows 0 because the old hold of this cart has its 2 units; the replacement may use them.
    old = hold(None, held("A", 2, {"shop-12": 2}))
    got = plan(
        [("A", 3)],
        [level("A", {"default": 50, "shop-12": 1})],
        Rules(location_ids=("shop-12",)),
        replacing=old,
    )
    assert got.lines == [held("A", 3, {"shop-12": 3})]
    short_got = plan(
        [("A", 4)], [level("A", {"default": 50, "shop-12": 1})], Rules(location_ids=("shop-12",)), None, old
    )
    assert short_got.short == [{"sku": "A", "requested": 4, "available": 3}]


def test_a_backordering_line_reports_its_backordered_units_and_a_floor() -> None:
    got = plan([("A", 8)], [level("A", {"default": 2, "leeds": 1}, backorder_limit=10)])
    assert got.lines == [
        HeldLine(
            sku="A",
            quantity=8,
            allocations=(
                LineAllocation(location_id="default", quantity=7),
                LineAllocation(location_id="leeds", quantity=1),
            ),
            backordered=5,
        )
    ]
    # partly covered by the default cell's 2: the move relies on available being exactly 2
    assert got.floors == {"A": Floor(10, at_available=2)}


def test_a_line_the_default_cell_covers_none_of_relies_on_nothing_being_there() -> None:
    got = plan([("A", 3)], [level("A", {"default": -2}, backorder_limit=10)])
    assert got.lines[0].backordered == 3
    assert got.floors == {"A": Floor(10, none_covered=True)}


def test_a_replacement_backordering_on_the_same_default_cell_pins_its_available() -> None:
    old = hold(None, HeldLine(sku="A", quantity=3, backordered=3))
    got = plan([("A", 5)], [level("A", {"default": -3}, backorder_limit=10)], replacing=old)
    assert got.lines[0].backordered == 5
    assert got.floors == {"A": Floor(10, at_available=-3)}


def test_a_line_that_backorders_nothing_has_no_floor() -> None:
    got = plan([("A", 2)], [level("A", {"default": 5}, backorder_limit=10)])
    assert got.lines[0].backordered == 0
    assert got.floors == {}


def test_a_line_above_max_per_cart_is_over_the_limit() -> None:
    got = plan(
        [("A", 3), ("B", 2)], [level("A", {"default": 9}, max_per_cart=2), level("B", {"default": 9}, max_per_cart=2)]
    )
    assert got.over_limit == [{"sku": "A", "requested": 3, "limit": 2, "used": 0}]


def test_max_per_customer_requires_a_customer_id() -> None:
    with pytest.raises(ValidationFailed) as raised:
        plan([("A", 1)], [level("A", {"default": 9}, max_per_customer=4)], customer_id=None)
    assert raised.value.details == {"fields": [{"field": "customerId", "sku": "A"}]}


def test_a_line_with_max_per_customer_counts_against_the_allowance() -> None:
    got = plan(
        [("A", 3), ("B", 1)],
        [level("A", {"default": 9}, max_per_customer=4), level("B", {"default": 9})],
        customer_id="cus-1",
    )
    assert got.allowances == [Allowance("A", 3, 4)]
    assert [(x.sku, x.counted) for x in got.lines] == [("A", True), ("B", False)]


def test_a_replacement_by_the_same_customer_counts_only_the_difference() -> None:
    old = hold("cus-1", held("A", 2, counted=True), held("B", 1, counted=True))
    got = plan(
        [("A", 3)],
        [level("A", {"default": 9}, max_per_customer=4), level("B", {"default": 9}, max_per_customer=4)],
        customer_id="cus-1",
        replacing=old,
    )
    # A: 3 now, 2 before; B dropped: its unit goes back.
    assert got.allowances == [Allowance("A", 1, 4), Allowance("B", -1, None)]


def test_a_replaced_line_that_was_not_counted_counts_in_full() -> None:
    old = hold("cus-1", held("A", 2, counted=False))  # held before A had a per-customer limit
    got = plan([("A", 3)], [level("A", {"default": 9}, max_per_customer=4)], customer_id="cus-1", replacing=old)
    assert got.allowances == [Allowance("A", 3, 4)]


def test_a_replacement_by_another_customer_counts_the_new_customers_units_in_full() -> None:
    old = hold("cus-1", held("A", 2, counted=True))
    got = plan([("A", 3)], [level("A", {"default": 9}, max_per_customer=4)], customer_id="cus-2", replacing=old)
    assert Allowance("A", 3, 4) in got.allowances


def test_a_replaced_holds_counted_units_go_back_when_the_sku_is_no_longer_limited() -> None:
    # The old hold counted 2 units of A; A's maxPerCustomer has since been cleared. The old hold is
    # released by the replacement, and a released hold gives its units back (API.md).
    old = hold("cus-1", held("A", 2, counted=True))
    got = plan([("A", 3)], [level("A", {"default": 9})], customer_id="cus-1", replacing=old)
    assert got.allowances == [Allowance("A", -2, None)]


def test_max_per_cart_applies_to_an_unlimited_sku() -> None:
    got = plan([("E-BOOK", 3)], [level("E-BOOK", {}, unlimited=True, max_per_cart=2)])
    assert got.over_limit == [{"sku": "E-BOOK", "requested": 3, "limit": 2, "used": 0}]


def test_a_line_at_max_per_cart_is_within_the_limit() -> None:
    got = plan([("A", 2)], [level("A", {"default": 9}, max_per_cart=2)])
    assert got.over_limit == []
    assert got.lines == [held("A", 2, {"default": 2})]
