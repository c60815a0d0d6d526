"""Domain values: stock levels, reservations and their lines.

Times are integer epoch milliseconds inside the domain; the API renders RFC 3339.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ReservationStatus(StrEnum):
    ACTIVE = "ACTIVE"
    CONFIRMED = "CONFIRMED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


class Role(StrEnum):
    STOREFRONT = "storefront"
    ADMIN = "admin"


class EndReason(StrEnum):
    CANCELLED = "cancelled"
    PAYMENT_FAILED = "payment_failed"
    MANUAL = "manual"
    REPLACED = "replaced"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"


class RequestKey(BaseModel):
    """A request's ``Idempotency-Key`` as the domain sees it: the key, and a fingerprint of
    the request it came with (method, path, body). A change made under a key writes the
    key's mark in its own transaction, so a re-run of the same request finds the mark and
    answers from the current state instead of changing anything again (docs/operations.md)."""

    model_config = ConfigDict(frozen=True)
    store_id: str
    value: str
    fingerprint: str


DEFAULT_LOCATION = "default"  # the implicit location of a store that defines none


class Line(BaseModel):
    """A requested line: ``quantity`` units of ``sku``."""

    model_config = ConfigDict(frozen=True)
    sku: str
    quantity: int


class LineAllocation(BaseModel):
    """Units of a line taken from one location's cell."""

    model_config = ConfigDict(frozen=True)
    location_id: str
    quantity: int


class HeldLine(Line):
    """A line of a reservation. ``held`` is False for unlimited items, which never hold units.

    ``allocations``: which locations' cells the units came from (empty: all from ``default``,
    as every hold made before locations existed). ``backordered``: units stock did not cover
    when held (carried by the ``default`` cell). ``counted``: the units count against the
    customer's ``maxPerCustomer`` allowance, and go back to it when the hold or order ends."""

    held: bool = True
    allocations: tuple[LineAllocation, ...] = ()
    backordered: int = 0
    counted: bool = False

    def cells(self) -> tuple[LineAllocation, ...]:
        """Where this line's units are: (location, units), each location once."""
        if not self.held:
            return ()
        return self.allocations or (LineAllocation(location_id=DEFAULT_LOCATION, quantity=self.quantity),)


class CellLevel(BaseModel):
    """A SKU's counters at one location."""

    model_config = ConfigDict(frozen=True)
    location_id: str
    on_hand: int
    reserved: int
    allocated: int
    available: int
    updated_at: int = 0


class Location(BaseModel):
    """A place stock is kept. Lower ``priority`` allocates first; an inactive one keeps its
    stock but is never allocated from."""

    model_config = ConfigDict(frozen=True)
    location_id: str
    name: str
    priority: int
    active: bool
    updated_at: int = 0


class StockLevel(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    on_hand: int
    reserved: int
    allocated: int
    available: int
    low_stock_threshold: int | None
    unlimited: bool
    updated_at: int
    backorder_limit: int = 0
    max_per_cart: int | None = None
    max_per_customer: int | None = None
    max_hold_seconds: int | None = None  # every hold of this SKU ends at most this long after it is granted
    locations: tuple[CellLevel, ...] = ()  # every cell, ``default`` first; the counters above are their sums
    cell_ids: tuple[str, ...] = ()  # read from a SKU's head: every location it has a cell in

    def cell(self, location_id: str) -> CellLevel | None:
        return next((c for c in self.locations if c.location_id == location_id), None)

    @property
    def backordered(self) -> int:
        """Units held or ordered beyond stock (the ``default`` cell's available below zero)."""
        default = self.cell(DEFAULT_LOCATION)
        return max(0, -default.available) if default else 0

    def is_low(self, default_threshold: int) -> bool:
        if self.unlimited:
            return False
        threshold = default_threshold if self.low_stock_threshold is None else self.low_stock_threshold
        return self.available <= threshold


class Reservation(BaseModel):
    model_config = ConfigDict(frozen=True)

    reservation_id: str
    store_id: str
    cart_id: str
    customer_id: str | None
    status: ReservationStatus
    lines: tuple[HeldLine, ...]
    created_at: int
    expires_at: int
    extensions_used: int
    max_extensions: int
    ended_at: int | None = None
    end_reason: str | None = None
    order_id: str | None = None
    expired_by: str | None = None  # timer | ttl | reconcile | request: which path ended it
    checkout_id: str | None = None  # set when a checkout made the hold: the checkout follows its end
    payment_window_at: int | None = None  # when the checkout entered payment (extended once, for free)
    max_hold_seconds: int | None = None  # the lowest maxHoldSeconds of its SKUs when it was made

    def grant(self, seconds: int) -> int:
        """The seconds a deadline may be moved to from now: ``seconds``, capped by the hold's SKUs."""
        return seconds if self.max_hold_seconds is None else min(seconds, self.max_hold_seconds)

    def status_at(self, now_ms: int) -> ReservationStatus:
        """A hold is over at its deadline, whether or not anything has released it yet."""
        if self.status is ReservationStatus.ACTIVE and now_ms >= self.expires_at:
            return ReservationStatus.EXPIRED
        return self.status

    def is_due(self, now_ms: int) -> bool:
        return self.status is ReservationStatus.ACTIVE and now_ms >= self.expires_at

    @property
    def held_lines(self) -> tuple[HeldLine, ...]:
        return tuple(line for line in self.lines if line.held)

    @property
    def extensions_left(self) -> int:
        return max(0, self.max_extensions - self.extensions_used)


class CheckoutStatus(StrEnum):
    """The cart-as-quote lifecycle: ``active -> checkout -> completed | abandoned``."""

    ACTIVE = "active"  # no hold (payment failed): the shopper may start again
    CHECKOUT = "checkout"  # stock held on the checkout's deadline
    COMPLETED = "completed"
    ABANDONED = "abandoned"


class Checkout(BaseModel):
    model_config = ConfigDict(frozen=True)

    checkout_id: str
    store_id: str
    cart_id: str
    customer_id: str | None
    status: CheckoutStatus
    items: tuple[Line, ...]
    reservation_id: str | None
    order_id: str | None = None
    shipping_address: dict[str, str] | None = None
    billing_address: dict[str, str] | None = None
    payment_method: str | None = None
    shipping_method_id: str | None = None
    step: str | None = None
    end_reason: str | None = None
    created_at: int
    updated_at: int
    version: int = 0  # bumped by every write; full writes are conditional on it


class OrderStatus(StrEnum):
    PLACED = "PLACED"  # paid; units allocated
    FULFILLED = "FULFILLED"  # shipped; units left onHand
    CANCELLED = "CANCELLED"  # units back to available


class Order(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str
    store_id: str
    checkout_id: str | None
    reservation_id: str
    cart_id: str
    customer_id: str | None
    lines: tuple[HeldLine, ...]
    status: OrderStatus
    payment_reference: str | None
    created_at: int
    updated_at: int

    @property
    def held_lines(self) -> tuple[HeldLine, ...]:
        return tuple(line for line in self.lines if line.held)


def rfc3339(epoch_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with millisecond precision, e.g. 2026-01-02T03:04:05.678Z."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def timer_deadline(epoch_ms: int) -> str:
    """A deadline for a Step Functions Wait state: RFC 3339 rounded *up* to the whole second.

    Wait states work in whole seconds (moto truncates fractions), so waking at the
    truncated time would find the hold not yet due and loop."""
    seconds = -(-epoch_ms // 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
