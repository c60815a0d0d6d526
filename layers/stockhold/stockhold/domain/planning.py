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


def plan_hold(
    lines: Sequence[Line],
    levels: Mapping[str, StockLevel],
    locations: Mapping[str, Location],
    rules: allocation.Rules,
    customer_id: str | None,
    replacing: Reservation | None = None,
) -> HoldPlan:
    """The plan of a hold of ``lines`` (every line, or the reasons it cannot be made)."""
    places = {k: allocation.Location(v.location_id, v.name, v.priority, v.active) for k, v in locations.items()}
    same_customer = replacing is not None and replacing.customer_id == customer_id
    old = {x.sku: x for x in replacing.held_lines} if replacing else {}
    plan = HoldPlan()
    for line in lines:
        level = levels.get(line.sku)
        if level is None:
            plan.short.append({"sku": line.sku, "requested": line.quantity, "available": 0})
            continue
        if level.unlimited:
            plan.lines.append(HeldLine(sku=line.sku, quantity=line.quantity, held=False))
            continue
        counted = _limits(line, level, customer_id, plan)
        returned = {c.location_id: c.quantity for c in old[line.sku].cells()} if line.sku in old else {}
        available = {c.location_id: c.available + returned.get(c.location_id, 0) for c in level.locations}
        got = allocation.allocate(line.sku, line.quantity, available, places, rules, level.backorder_limit)
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
            was = old[line.sku].quantity if same_customer and line.sku in old and old[line.sku].counted else 0
            plan.allowances.append(Allowance(line.sku, line.quantity - was, level.max_per_customer))
    if same_customer:  # a replaced hold's counted SKUs the new one drops: their units go back
        kept = {x.sku for x in plan.lines}
        plan.allowances.extend(
            Allowance(x.sku, -x.quantity, None) for x in old.values() if x.counted and x.sku not in kept
        )
    return plan


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
