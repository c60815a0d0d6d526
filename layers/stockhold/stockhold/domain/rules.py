"""The rules of stock and holds: pure functions of values.

What each transition moves between a SKU's counters, which lines a request may hold,
how long a hold lasts and when its records are purged, and what a checkout does when
its hold ends. A change of rule is a change here (and in its unit tests), not in the
use cases or the data access."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stockhold.domain.errors import ValidationFailed
from stockhold.domain.models import (
    DEFAULT_LOCATION,
    Checkout,
    CheckoutStatus,
    HeldLine,
    Line,
    Order,
    OrderStatus,
    Reservation,
    ReservationStatus,
    StockLevel,
)
from stockhold.settings import Settings

# A unit of work is one DynamoDB transaction: at most 100 writes (docs/decisions.md).
MAX_UNIT_ACTIONS = 100
# Lines per request. A reservation's unit carries the hold, the cart slot and one write
# per line; checkout completion adds the order and checkout records. Four bookkeeping
# actions within 100 leave 96 lines (docs/decisions.md).
MAX_LINES = MAX_UNIT_ACTIONS - 4
MAX_QUANTITY = 1_000_000
MAX_ON_HAND = 1_000_000_000


class Deadline(StrEnum):
    """The deadline condition an ending of a hold carries."""

    BEFORE = "before"  # confirm, release: only while not yet due
    DUE = "due"  # expire: only once due


class ExpirePath(StrEnum):
    TIMER = "timer"
    TTL = "ttl"
    RECONCILE = "reconcile"
    REQUEST = "request"


class StockStatus(StrEnum):
    IN_STOCK = "IN_STOCK"
    LOW_STOCK = "LOW_STOCK"
    OUT_OF_STOCK = "OUT_OF_STOCK"


@dataclass(frozen=True)
class Floor:
    """How far below zero a move may take the ``default`` cell's available, and what it relied
    on (the data access pins each, so a stale plan is refused, never an oversell):
    ``limit`` the SKU's backorder limit; ``at_available`` the cell's available exactly (a
    line partly covered by stock); ``none_covered`` the cell had nothing to give (available
    <= 0), so every unit taken is backordered."""

    limit: int
    at_available: int | None = None
    none_covered: bool = False


@dataclass(frozen=True)
class StockMove:
    """Units moving between counters of one cell (a SKU at one location) in one write.

    ``available``/``reserved``/``allocated``/``on_hand`` are signed deltas; no counter may
    go below zero, except ``available`` down to ``-floor.limit`` when a ``floor`` is given.
    ``require_unlimited`` moves nothing and only checks the SKU is unlimited. ``plain``: the
    move was planned without reading the SKU, so it holds only while the SKU has no cell but
    ``default`` and no purchase limit (else it is refused, and planned again with a read).
    """

    sku: str
    available: int = 0
    reserved: int = 0
    allocated: int = 0
    on_hand: int = 0
    require_unlimited: bool = False
    location: str = DEFAULT_LOCATION
    floor: Floor | None = None
    plain: bool = False


@dataclass(frozen=True)
class LineCheck:
    sku: str
    requested: int
    available: int
    status: StockStatus
    unlimited: bool


def check_lines(lines: Sequence[Line]) -> None:
    """Domain rules for a cart; the API checks the same first and names the field."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise ValidationFailed(f"a request holds 1 to {MAX_LINES} lines", {"fields": [{"field": "items"}]})
    seen: set[str] = set()
    for line in lines:
        if line.sku in seen:
            raise ValidationFailed(f"SKU {line.sku} appears twice", {"fields": [{"field": "items", "sku": line.sku}]})
        seen.add(line.sku)
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise ValidationFailed(f"quantity of {line.sku} must be 1..{MAX_QUANTITY}")


def check_line(line: Line, level: StockLevel | None, default_threshold: int, usable: int | None = None) -> LineCheck:
    """Could ``line`` be held now (``POST /stock/validate``)? ``usable``: what a reservation
    could take (active locations, backorders); the SKU's ``available`` when not given."""
    available = (level.available if usable is None else usable) if level else 0
    unlimited = bool(level and level.unlimited)
    if unlimited:
        status = StockStatus.IN_STOCK
    elif available < line.quantity:
        status = StockStatus.OUT_OF_STOCK
    elif level and level.is_low(default_threshold):
        status = StockStatus.LOW_STOCK
    else:
        status = StockStatus.IN_STOCK
    return LineCheck(line.sku, line.quantity, available, status, unlimited)


# --- what each transition moves --------------------------------------------------------


def reserve_moves(
    res: Reservation,
    replacing: Reservation | None,
    floors: Mapping[str, Floor] | None = None,
    plain: bool = False,
) -> list[StockMove]:
    """Net counter moves per cell of a new hold (and the one it replaces): one write per cell.
    ``floors``: per SKU, the backorder its ``default`` cell takes (allocation decided it)."""
    old = _units_by_cell(replacing.lines) if replacing else {}
    floors = floors or {}
    moves: list[StockMove] = []
    for line in res.lines:
        if not line.held:
            if not any(sku == line.sku for sku, _ in old):
                moves.append(StockMove(line.sku, require_unlimited=True, plain=plain))
            continue
        for cell in line.cells():
            delta = cell.quantity - old.pop((line.sku, cell.location_id), 0)
            if delta != 0:
                floor = floors.get(line.sku) if cell.location_id == DEFAULT_LOCATION and delta > 0 else None
                moves.append(
                    StockMove(
                        line.sku, available=-delta, reserved=delta, location=cell.location_id, floor=floor, plain=plain
                    )
                )
    moves.extend(StockMove(sku, available=q, reserved=-q, location=loc) for (sku, loc), q in old.items())
    return moves


def _units_by_cell(lines: Iterable[HeldLine]) -> dict[tuple[str, str], int]:
    return {(x.sku, c.location_id): c.quantity for x in lines for c in x.cells()}


def _per_cell(
    lines: Iterable[HeldLine], *, available: int = 0, reserved: int = 0, allocated: int = 0, on_hand: int = 0
) -> list[StockMove]:
    """The same move of each held line's units on each cell they are in (each sign +1, -1 or 0)."""
    return [
        StockMove(
            x.sku,
            available=available * c.quantity,
            reserved=reserved * c.quantity,
            allocated=allocated * c.quantity,
            on_hand=on_hand * c.quantity,
            location=c.location_id,
        )
        for x in lines
        for c in x.cells()
    ]


def release_moves(lines: Iterable[HeldLine]) -> list[StockMove]:
    """Released or expired: held units go back to available, on the cells they came from."""
    return _per_cell(lines, reserved=-1, available=1)


def confirm_moves(lines: Iterable[HeldLine]) -> list[StockMove]:
    """Payment succeeded: held units become allocated, on their cells."""
    return _per_cell(lines, reserved=-1, allocated=1)


def order_moves(lines: Iterable[HeldLine], to: OrderStatus) -> list[StockMove]:
    """Fulfilled: allocated units leave their cells' onHand. Cancelled: they return to available there."""
    if to is OrderStatus.FULFILLED:
        return _per_cell(lines, allocated=-1, on_hand=-1)
    return _per_cell(lines, allocated=-1, available=1)


def allowance_returns(lines: Iterable[HeldLine]) -> dict[str, int]:
    """Units per SKU that go back to the customer's ``maxPerCustomer`` allowance when the
    hold (released, expired) or the order (cancelled) ends."""
    return {x.sku: x.quantity for x in lines if x.counted}


# --- deadlines and retention -----------------------------------------------------------


def hold_seconds(settings: Settings, requested: int | None) -> int:
    hold = settings.DEFAULT_HOLD_SECONDS if requested is None else requested
    if not settings.MIN_HOLD_SECONDS <= hold <= settings.MAX_HOLD_SECONDS:
        raise ValidationFailed(
            f"holdSeconds must be between {settings.MIN_HOLD_SECONDS} and {settings.MAX_HOLD_SECONDS}",
            {"fields": [{"field": "holdSeconds", "min": settings.MIN_HOLD_SECONDS, "max": settings.MAX_HOLD_SECONDS}]},
        )
    return hold


def active_purge_at(expires_at_ms: int, settings: Settings) -> int:
    """An active hold's TTL (epoch s): a grace period past its deadline (the backstop)."""
    return expires_at_ms // 1000 + settings.TTL_GRACE_SECONDS


def ended_purge_at(now_ms: int, settings: Settings) -> int:
    """An ended record's TTL (epoch s): kept for the history retention."""
    return now_ms // 1000 + settings.history_retention_seconds


def expiring_notice_at(res: Reservation, notice_seconds: int, now_ms: int) -> int | None:
    """When to warn of ``res``'s deadline (epoch ms, whole seconds): ``notice_seconds`` before
    it, for an ACTIVE checkout's hold whose deadline is still ahead. A timer that starts
    inside the notice warns at once: late is better than never."""
    if notice_seconds <= 0 or not res.checkout_id or res.status is not ReservationStatus.ACTIVE:
        return None
    if res.expires_at <= now_ms:
        return None
    at = res.expires_at - notice_seconds * 1000
    return at - at % 1000  # a Wait state's whole second, never later than the notice asks


# --- checkouts follow their holds --------------------------------------------------------


@dataclass(frozen=True)
class CheckoutFollow:
    """What a checkout becomes when its hold ends: its status, the audit action, and whether
    it is over (its retention starts)."""

    status: CheckoutStatus
    action: str
    over: bool


def checkout_after(res: Reservation, to: ReservationStatus, reason: str) -> CheckoutFollow | None:
    """A checkout's hold expired or released: payment failed -> ``active`` (start again),
    otherwise ``abandoned``. None when the hold is no checkout's, or it was confirmed
    (completion writes the checkout itself)."""
    if not res.checkout_id or to not in (ReservationStatus.EXPIRED, ReservationStatus.RELEASED):
        return None
    if to is ReservationStatus.RELEASED and reason == "payment_failed":
        return CheckoutFollow(CheckoutStatus.ACTIVE, "checkout_payment_failed", over=False)
    action = "checkout_cancelled" if reason == "cancelled" else "checkout_abandoned"
    return CheckoutFollow(CheckoutStatus.ABANDONED, action, over=True)


def effective_status(chk: Checkout, res: Reservation | None, now: int) -> CheckoutStatus:
    """A checkout as of ``now``: in checkout exactly while its hold is live."""
    if chk.status is not CheckoutStatus.CHECKOUT:
        return chk.status
    held = res.status_at(now) if res is not None else ReservationStatus.EXPIRED
    if held is ReservationStatus.ACTIVE:
        return CheckoutStatus.CHECKOUT
    if held is ReservationStatus.CONFIRMED:
        return CheckoutStatus.COMPLETED
    if held is ReservationStatus.RELEASED and res is not None and res.end_reason == "payment_failed":
        return CheckoutStatus.ACTIVE
    return CheckoutStatus.ABANDONED


def same_lines(a: Sequence[Line], b: Sequence[Line]) -> bool:
    return sorted((x.sku, x.quantity) for x in a) == sorted((x.sku, x.quantity) for x in b)


def order_for(
    res: Reservation, order_id: str, checkout_id: str | None, payment_reference: str | None, now: int
) -> Order:
    """The order a confirmed hold becomes: its lines (unlimited ones too), PLACED."""
    return Order(
        order_id=order_id,
        store_id=res.store_id,
        checkout_id=checkout_id,
        reservation_id=res.reservation_id,
        cart_id=res.cart_id,
        customer_id=res.customer_id,
        lines=res.lines,
        status=OrderStatus.PLACED,
        payment_reference=payment_reference,
        created_at=now,
        updated_at=now,
    )


def short_lines(
    lines: Sequence[Line], unknown: Iterable[str], available: dict[str, int], replacing: Reservation | None
) -> list[dict[str, Any]]:
    """A refusal's ``details.items``: every short line, with what the request could have used
    (a replaced hold's own units count as available to its replacement; 0 for an unknown SKU)."""
    returned = {x.sku: x.quantity for x in replacing.held_lines} if replacing else {}
    missing = set(unknown)
    short = []
    for line in lines:
        if line.sku in missing:
            short.append({"sku": line.sku, "requested": line.quantity, "available": 0})
        elif line.sku in available:
            short.append(
                {
                    "sku": line.sku,
                    "requested": line.quantity,
                    "available": available[line.sku] + returned.get(line.sku, 0),
                }
            )
    return short


# --- slot timers (docs/expiry.md): one timer per second of deadlines, not one per hold ------


class SlotKind(StrEnum):
    EXPIRE = "expire"  # ends every hold due by its second
    WARN = "warn"  # warns the checkout holds whose notice falls in its second (ReservationExpiring)


WARN_LOOKBACK_SECONDS = 2  # a warn slot also covers the second before its own: a late wake-up misses nothing


def expiry_slot(expires_at_ms: int, now_ms: int) -> int:
    """The second (epoch s) whose timer ends a hold due at ``expires_at_ms``: the first whole
    second at or after the deadline, and never one less than a second away, so a late stream
    record or an extension into the past still gets a timer that wakes, and the Sweep index
    (eventually consistent) has a second to list the hold before its slot looks."""
    return max(-(-expires_at_ms // 1000), now_ms // 1000 + 2)


def warn_slot(warn_at_ms: int, now_ms: int) -> int | None:
    """The second whose timer warns at ``warn_at_ms`` (a whole second, ``expiring_notice_at``),
    or None when that second is this one or past: warn at once (late is better than never)."""
    second = warn_at_ms // 1000
    return second if second > now_ms // 1000 + 1 else None


def warn_window(slot: int, notice_seconds: int) -> tuple[int, int]:
    """The deadlines (epoch ms, both inclusive) a warn slot looks at: those whose notice second
    is ``slot`` or one of the WARN_LOOKBACK_SECONDS - 1 before it."""
    notice_ms = notice_seconds * 1000
    return (slot - WARN_LOOKBACK_SECONDS + 1) * 1000 + notice_ms, (slot + 1) * 1000 + notice_ms - 1
