"""HTTP answers of API.md: camelCase on the wire, built from domain values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from stockhold.domain.models import (
    DEFAULT_LOCATION,
    CheckoutStatus,
    HeldLine,
    Location,
    Order,
    Reservation,
    ReservationStatus,
    StockLevel,
    rfc3339,
)
from stockhold.domain.rules import LineCheck

if TYPE_CHECKING:
    from stockhold.usecases.checkout_view import CheckoutView


class ApiOutput(BaseModel):
    # defer_build: built when an answer first needs it, not at import (see api_models.ApiInput).
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, defer_build=True
    )


def unused_omitted(description: str) -> Any:
    """A "Stock in many places" field, left out of the answer while unused (None): a store that
    never uses locations, backorders or limits sees exactly the answers it saw before."""
    return Field(default=None, exclude_if=lambda value: value is None, description=description)


class CellOut(ApiOutput):
    location_id: str
    on_hand: int
    reserved: int
    allocated: int
    available: int


class StockOut(ApiOutput):
    """A SKU's stock: the sums over its locations, each listed in ``locations`` (left out,
    like the backorder and purchase-limit fields, while the SKU uses none)."""

    sku: str
    on_hand: int
    reserved: int
    allocated: int
    available: int
    low_stock: bool
    low_stock_threshold: int
    unlimited: bool
    updated_at: str
    backorder_limit: int | None = unused_omitted("available may go down to -backorderLimit (absent: 0)")
    backordered: int | None = unused_omitted("Units held or ordered beyond stock")
    max_per_cart: int | None = unused_omitted("Most units of this SKU one cart may hold (absent: no limit)")
    max_per_customer: int | None = unused_omitted("Most units one customer may hold and have ordered (absent: none)")
    max_hold_seconds: int | None = unused_omitted("A hold containing this SKU lasts at most this long (absent: no cap)")
    locations: list[CellOut] | None = unused_omitted("Each location's counters (absent: all at default)")

    @classmethod
    def of(cls, level: StockLevel, default_threshold: int) -> StockOut:
        threshold = default_threshold if level.low_stock_threshold is None else level.low_stock_threshold
        return cls(
            sku=level.sku,
            on_hand=level.on_hand,
            reserved=level.reserved,
            allocated=level.allocated,
            available=level.available,
            low_stock=level.is_low(default_threshold),
            low_stock_threshold=threshold,
            unlimited=level.unlimited,
            updated_at=rfc3339(level.updated_at),
            backorder_limit=level.backorder_limit or None,
            backordered=level.backordered if level.backorder_limit or level.backordered else None,
            max_per_cart=level.max_per_cart,
            max_per_customer=level.max_per_customer,
            max_hold_seconds=level.max_hold_seconds,
            locations=None
            if [c.location_id for c in level.locations] in ([], [DEFAULT_LOCATION])
            else [
                CellOut(
                    location_id=c.location_id,
                    on_hand=c.on_hand,
                    reserved=c.reserved,
                    allocated=c.allocated,
                    available=c.available,
                )
                for c in level.locations
            ],
        )


class LocationOut(ApiOutput):
    location_id: str
    name: str
    priority: int
    active: bool

    @classmethod
    def of(cls, loc: Location) -> LocationOut:
        return cls(location_id=loc.location_id, name=loc.name, priority=loc.priority, active=loc.active)


class LocationListOut(ApiOutput):
    items: list[LocationOut]


class StockListOut(ApiOutput):
    items: list[StockOut]
    missing: list[str]


class LineCheckOut(ApiOutput):
    sku: str
    requested: int
    available: int
    status: Literal["IN_STOCK", "LOW_STOCK", "OUT_OF_STOCK"]
    unlimited: bool

    @classmethod
    def of(cls, check: LineCheck) -> LineCheckOut:
        return cls(
            sku=check.sku,
            requested=check.requested,
            available=check.available,
            status=check.status.value,
            unlimited=check.unlimited,
        )


class ValidateOut(ApiOutput):
    items: list[LineCheckOut]


class AllocationOut(ApiOutput):
    location_id: str
    quantity: int


class LineOut(ApiOutput):
    sku: str
    quantity: int


class HeldLineOut(LineOut):
    """A reservation's line: where its units are held, and how many of them stock did not
    cover (backordered). Both are left out for a line held wholly at ``default`` without
    backorders (every line of a store that never uses locations) and for unlimited SKUs."""

    allocations: list[AllocationOut] | None = unused_omitted("Where the units are held: each location's part")
    backordered: int | None = unused_omitted("Units of the line that stock did not cover when it was held")

    @classmethod
    def of(cls, line: HeldLine) -> HeldLineOut:
        if not line.held or (not line.allocations and not line.backordered) or _only_default(line):
            return cls(sku=line.sku, quantity=line.quantity)
        return cls(
            sku=line.sku,
            quantity=line.quantity,
            allocations=[AllocationOut(location_id=c.location_id, quantity=c.quantity) for c in line.cells()],
            backordered=line.backordered,
        )


def _only_default(line: HeldLine) -> bool:
    cells = line.cells()
    return not line.backordered and len(cells) == 1 and cells[0].location_id == DEFAULT_LOCATION


class ReservationOut(ApiOutput):
    reservation_id: str
    cart_id: str
    customer_id: str | None
    status: Literal["ACTIVE", "CONFIRMED", "RELEASED", "EXPIRED"]
    items: list[HeldLineOut]
    created_at: str
    expires_at: str
    extensions_used: int
    extensions_left: int
    ended_at: str | None
    end_reason: str | None
    order_id: str | None

    @classmethod
    def of(cls, res: Reservation, now_ms: int) -> ReservationOut:
        status = res.status_at(now_ms)
        return cls(
            reservation_id=res.reservation_id,
            cart_id=res.cart_id,
            customer_id=res.customer_id,
            status=status.value,
            items=[HeldLineOut.of(x) for x in res.lines],
            created_at=rfc3339(res.created_at),
            expires_at=rfc3339(res.expires_at),
            extensions_used=res.extensions_used,
            extensions_left=res.extensions_left if status == "ACTIVE" else 0,
            ended_at=rfc3339(res.ended_at) if res.ended_at is not None else None,
            end_reason=res.end_reason,
            order_id=res.order_id,
        )


# --- checkout and orders


class WarningOut(ApiOutput):
    code: Literal["LOW_STOCK", "EXTENSION_LIMIT_REACHED"]
    message: str
    sku: str | None = None
    available: int | None = None


class CheckoutHoldOut(ApiOutput):
    reservation_id: str
    status: Literal["ACTIVE", "CONFIRMED", "RELEASED", "EXPIRED"]
    expires_at: str
    extensions_left: int


class CheckoutOut(ApiOutput):
    checkout_id: str
    cart_id: str
    customer_id: str | None
    status: Literal["active", "checkout", "completed", "abandoned"]
    items: list[LineOut]
    expires_at: str | None = Field(description="While in checkout: when the hold ends unless extended")
    reservation: CheckoutHoldOut | None
    shipping_address: dict[str, str] | None
    billing_address: dict[str, str] | None
    payment_method: str | None
    shipping_method_id: str | None
    step: str | None
    order_id: str | None
    end_reason: str | None
    warnings: list[WarningOut]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, view: CheckoutView, now_ms: int) -> CheckoutOut:
        chk, res = view.checkout, view.reservation
        hold = None
        if res is not None:
            status = res.status_at(now_ms)
            hold = CheckoutHoldOut(
                reservation_id=res.reservation_id,
                status=status.value,
                expires_at=rfc3339(res.expires_at),
                extensions_left=res.extensions_left if status is ReservationStatus.ACTIVE else 0,
            )
        live = view.status is CheckoutStatus.CHECKOUT and res is not None
        return cls(
            checkout_id=chk.checkout_id,
            cart_id=chk.cart_id,
            customer_id=chk.customer_id,
            status=view.status.value,
            items=[LineOut(sku=x.sku, quantity=x.quantity) for x in chk.items],
            expires_at=rfc3339(res.expires_at) if live and res is not None else None,
            reservation=hold,
            shipping_address=chk.shipping_address,
            billing_address=chk.billing_address,
            payment_method=chk.payment_method,
            shipping_method_id=chk.shipping_method_id,
            step=chk.step,
            order_id=chk.order_id,
            end_reason=chk.end_reason
            or (res.end_reason if res is not None and view.status is not CheckoutStatus.CHECKOUT else None)
            or ("expired" if view.status is CheckoutStatus.ABANDONED else None),
            warnings=[WarningOut.model_validate(w) for w in view.warnings],
            created_at=rfc3339(chk.created_at),
            updated_at=rfc3339(chk.updated_at),
        )


class OrderLineOut(HeldLineOut):
    unlimited: bool = Field(description="True for unlimited items: never held or counted")


class OrderOut(ApiOutput):
    order_id: str
    checkout_id: str | None
    reservation_id: str
    cart_id: str
    customer_id: str | None
    items: list[OrderLineOut]
    status: Literal["PLACED", "FULFILLED", "CANCELLED"]
    payment_reference: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(
            order_id=order.order_id,
            checkout_id=order.checkout_id,
            reservation_id=order.reservation_id,
            cart_id=order.cart_id,
            customer_id=order.customer_id,
            items=[OrderLineOut(**HeldLineOut.of(x).model_dump(), unlimited=not x.held) for x in order.lines],
            status=order.status.value,
            payment_reference=order.payment_reference,
            created_at=rfc3339(order.created_at),
            updated_at=rfc3339(order.updated_at),
        )


class ErrorDetail(BaseModel):
    model_config = ConfigDict(defer_build=True)  # only the OpenAPI document builds these two

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    model_config = ConfigDict(defer_build=True)

    error: ErrorDetail


# --- audit (GET /audit)


class AuditEntityOut(ApiOutput):
    type: Literal["reservation", "stock", "checkout", "order"]
    id: str


class AuditEntryOut(ApiOutput):
    at: str = Field(description="When the change was written (RFC 3339 UTC)")
    action: str = Field(description="What it was, e.g. reservation_created, stock_adjusted (docs/audit.md)")
    entity: AuditEntityOut
    ref: str | None = Field(description="The record that caused a stock move: a reservation or order id")
    before: dict[str, Any] | None = Field(description="The relevant fields before the change; null when created")
    after: dict[str, Any] | None = Field(description="The relevant fields after the change")
    actor: str = Field(description="Who: storefront:<key id>, admin:<key id> or system:<path>")
    reason: str | None


class AuditPageOut(ApiOutput):
    items: list[AuditEntryOut] = Field(description="Newest first")
    next_token: str | None = Field(description="Pass as nextToken for the next page; null on the last page")
