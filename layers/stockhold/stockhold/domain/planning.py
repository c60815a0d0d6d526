"""Planning a hold on a store with locations (or a SKU with backorders or purchase limits):
from the cells read, which cells each line takes, what it backorders, which units count
against a customer's allowance, and what is short or over a limit. Pure: the data access
re-checks every cell and allowance in the transaction's conditions, so a stale plan is
refused and planned again, never an oversell (docs/decisions.md, "Locations")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stockhold.domain import allocation
from stockhold.domain.errors import ValidationFailed
from stockhold.domain.models import DEFAULT_LOCATION, HeldLine, Line, LineAllocation, Location, Reservation, StockLevel
from stockhold.domain.rules import Floor


@dataclass(frozen=True)
class Allowance:
    """A customer's units of a SKU with ``maxPerCustomer``: ``delta`` to count (net of a
    replaced hold's), against ``limit``."""

    sku: str
    delta: int
    limit: int | None


@dataclass
class HoldPlan:
    lines: list[HeldLine] = field(default_factory=list)
    floors: dict[str, Floor] = field(default_factory=dict)
    allowances: list[Allowance] = field(default_factory=list)
    short: list[dict[str, Any]] = field(default_factory=list)  # INSUFFICIENT_STOCK details.items
    over_limit: list[dict[str, Any]] = field(default_factory=list)  # PURCHASE_LIMIT_REACHED details.items
    max_hold_seconds: int | None = None  # the lowest maxHoldSeconds of the lines' SKUs


def places(locations: Mapping[str, Location]) -> dict[str, allocation.Location]:
    return {k: allocation.Location(v.location_id, v.name, v.priority, v.active) for k, v in locations.items()}


def usable_units(level: StockLevel, locations: Mapping[str, Location]) -> int:
    """What a reservation with no allocation fields could take of ``level`` now: active
    locations only, and the backorder room (``POST /stock/validate`` answers this)."""
    available = {c.location_id: c.available for c in level.locations}
    return allocation.usable(available, places(locations), allocation.Rules(), level.backorder_limit)


def plan_hold(
    lines: Sequence[Line],
    levels: Mapping[str, StockLevel],
    locations: Mapping[str, Location],
    rules: allocation.Rules,
    customer_id: str | None,
    replacing: Reservation | None = None,
) -> HoldPlan:
    """The plan of a hold of ``lines`` (every line, or the reasons it cannot be made)."""
    cells_at = places(locations)
    same_customer = replacing is not None and replacing.customer_id == customer_id
    old = {x.sku: x for x in replacing.held_lines} if replacing else {}
    # What the replaced hold counted against this customer's allowances (another customer's
    # units go back to them when the hold ends: usecases/reserve.py).
    counted_before = {x.sku: x for x in replacing.lines if x.counted} if replacing and same_customer else {}
    plan = HoldPlan()
    for line in lines:
        level = levels.get(line.sku)
        if level is None:
            plan.short.append({"sku": line.sku, "requested": line.quantity, "available": 0})
            continue
        counted = _limits(line, level, customer_id, plan)
        if level.max_hold_seconds is not None:
            plan.max_hold_seconds = min(level.max_hold_seconds, plan.max_hold_seconds or level.max_hold_seconds)
        if level.unlimited:  # never held, but limits apply to it too
            plan.lines.append(HeldLine(sku=line.sku, quantity=line.quantity, held=False, counted=counted))
            if counted:
                plan.allowances.append(
                    Allowance(line.sku, line.quantity - _was(counted_before, line.sku), level.max_per_customer)
                )
            continue
        returned = {c.location_id: c.quantity for c in old[line.sku].cells()} if line.sku in old else {}
        available = {c.location_id: c.available + returned.get(c.location_id, 0) for c in level.locations}
        got = allocation.allocate(line.sku, line.quantity, available, cells_at, rules, level.backorder_limit)
        if isinstance(got, allocation.Shortfall):
            plan.short.append({"sku": line.sku, "requested": line.quantity, "available": got.available})
            continue
        plan.lines.append(
            HeldLine(
                sku=line.sku,
                quantity=line.quantity,
                allocations=tuple(
                    LineAllocation(location_id=a.location_id, quantity=a.quantity) for a in got.allocations
                ),
                backordered=got.backordered,
                counted=counted,
            )
        )
        if got.backordered:
            plan.floors[line.sku] = _floor(level, DEFAULT_LOCATION in returned)
        if counted:
            plan.allowances.append(
                Allowance(line.sku, line.quantity - _was(counted_before, line.sku), level.max_per_customer)
            )
    # A replaced hold's counted SKUs the new one no longer counts: their units go back.
    kept = {x.sku for x in plan.lines if x.counted}
    plan.allowances.extend(Allowance(x.sku, -x.quantity, None) for x in counted_before.values() if x.sku not in kept)
    return plan


def _was(counted_before: Mapping[str, HeldLine], sku: str) -> int:
    """The units of ``sku`` the replaced hold (of the same customer) already counted."""
    line = counted_before.get(sku)
    return line.quantity if line is not None and line.counted else 0


def _limits(line: Line, level: StockLevel, customer_id: str | None, plan: HoldPlan) -> bool:
    """Check ``maxPerCart`` now; True when the line counts against ``maxPerCustomer``."""
    if level.max_per_cart is not None and line.quantity > level.max_per_cart:
        plan.over_limit.append({"sku": line.sku, "requested": line.quantity, "limit": level.max_per_cart, "used": 0})
    if level.max_per_customer is None:
        return False
    if customer_id is None:
        raise ValidationFailed(
            f"{line.sku} has a per-customer purchase limit: customerId is required",
            {"fields": [{"field": "customerId", "sku": line.sku}]},
        )
    return True


def _floor(level: StockLevel, replaced_on_default: bool) -> Floor:
    """What a backordering take on the default cell relies on, exactly (see ``Floor``)."""
    cell = level.cell(DEFAULT_LOCATION)
    seen = cell.available if cell else 0
    if seen <= 0 and not replaced_on_default:
        return Floor(level.backorder_limit, none_covered=True)
    return Floor(level.backorder_limit, at_available=seen)
