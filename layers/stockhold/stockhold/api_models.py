"""HTTP input and output models of API.md: camelCase on the wire, strict on input.

Input models forbid unknown fields (a typo such as ``quantiy`` is an error) and do not
coerce types ("2", 2.0 and true are not quantities).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from stockhold.checkout import CheckoutView
from stockhold.models import CheckoutStatus, Order, Reservation, ReservationStatus, StockLevel, rfc3339
from stockhold.service import MAX_LINES, MAX_ON_HAND, MAX_QUANTITY, LineCheck

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}$"
Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
# Storefront-chosen ids (cart, customer, order): printable ASCII without spaces.
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]


class ApiInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False)


def example(**body: Any) -> ConfigDict:
    """An input model's example request body, for the OpenAPI document (and the fuzzer's first cases)."""
    return ConfigDict(json_schema_extra={"examples": [body]})


class ApiOutput(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class LineIn(ApiInput):
    sku: Sku
    quantity: Quantity


def _unique_skus(items: list[LineIn]) -> list[LineIn]:
    seen: set[str] = set()
    for item in items:
        if item.sku in seen:
            raise ValueError(f"SKU {item.sku} appears more than once; send one line per SKU")
        seen.add(item.sku)
    return items


class CartIn(ApiInput):
    items: Annotated[list[LineIn], Field(min_length=1, max_length=MAX_LINES)]

    @field_validator("items")
    @classmethod
    def _no_duplicates(cls, items: list[LineIn]) -> list[LineIn]:
        return _unique_skus(items)


# Bounded by the settings MIN_HOLD_SECONDS..MAX_HOLD_SECONDS, checked by the service; the API
# function's OpenAPI document writes the bounds in (functions/api/openapi_doc.py).
HoldSeconds = Annotated[
    int,
    Field(
        strict=True,
        description="Seconds to hold, within the store's configured range; left out or null: the default "
        "(DEFAULT_HOLD_SECONDS)",
    ),
]


class ReserveIn(CartIn):
    model_config = example(
        cartId="cart-1", customerId="customer-9", items=[{"sku": "A-1", "quantity": 2}], holdSeconds=900
    )

    cart_id: Ident
    customer_id: Ident | None = None
    hold_seconds: HoldSeconds | None = None
    replace: bool = False


class ExtendIn(ApiInput):
    model_config = example(holdSeconds=600)

    hold_seconds: HoldSeconds | None = None


class ConfirmIn(ApiInput):
    model_config = example(orderId="order-1")

    order_id: Ident


class ReleaseIn(ApiInput):
    model_config = example(reason="cancelled")

    reason: Literal["cancelled", "payment_failed", "manual"]


class StockIn(ApiInput):
    model_config = example(onHand=10, lowStockThreshold=2, unlimited=False)

    on_hand: Annotated[int, Field(strict=True, ge=0, le=MAX_ON_HAND)]
    low_stock_threshold: Annotated[int, Field(strict=True, ge=0, le=MAX_ON_HAND)] | None = None
    unlimited: bool = False


class AdjustmentIn(ApiInput):
    model_config = example(delta=-2, reason="damaged")

    delta: Annotated[int, Field(strict=True, ge=-MAX_ON_HAND, le=MAX_ON_HAND, json_schema_extra={"not": {"const": 0}})]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("delta must not be zero")
        return delta


class ValidateIn(CartIn):
    model_config = example(items=[{"sku": "A-1", "quantity": 2}])


# --- outputs


class StockOut(ApiOutput):
    sku: str
    on_hand: int
    reserved: int
    allocated: int
    available: int
    low_stock: bool
    low_stock_threshold: int
    unlimited: bool
    updated_at: str

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
        )


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


class LineOut(ApiOutput):
    sku: str
    quantity: int


class ReservationOut(ApiOutput):
    reservation_id: str
    cart_id: str
    customer_id: str | None
    status: Literal["ACTIVE", "CONFIRMED", "RELEASED", "EXPIRED"]
    items: list[LineOut]
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
            items=[LineOut(sku=x.sku, quantity=x.quantity) for x in res.lines],
            created_at=rfc3339(res.created_at),
            expires_at=rfc3339(res.expires_at),
            extensions_used=res.extensions_used,
            extensions_left=res.extensions_left if status == "ACTIVE" else 0,
            ended_at=rfc3339(res.ended_at) if res.ended_at is not None else None,
            end_reason=res.end_reason,
            order_id=res.order_id,
        )


# --- checkout and orders

Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class AddressIn(ApiInput):
    first_name: Text | None = None
    last_name: Text | None = None
    company: Text | None = None
    line1: Text | None = None
    line2: Text | None = None
    city: Text | None = None
    region: Text | None = None
    postal_code: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO 3166-1 alpha-2, e.g. DE"
    )
    phone: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None


class CheckoutIn(CartIn):
    model_config = example(cartId="cart-2", customerId="customer-9", items=[{"sku": "A-1", "quantity": 1}])

    cart_id: Ident
    customer_id: Ident | None = None


class CheckoutUpdateIn(ApiInput):
    model_config = ConfigDict(
        json_schema_extra={
            "minProperties": 1,  # checked by _something below
            "examples": [
                {
                    "shippingAddress": {"firstName": "Ada", "line1": "1 Main St", "city": "Leeds", "country": "GB"},
                    "step": "shipping",
                }
            ],
        }
    )

    shipping_address: AddressIn | None = None
    billing_address: AddressIn | None = None
    payment_method: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    shipping_method_id: Ident | None = None
    step: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")] | None = Field(
        default=None, description="The storefront's own step name, e.g. shipping, payment, review"
    )

    @model_validator(mode="after")
    def _something(self) -> CheckoutUpdateIn:
        if not self.model_fields_set:
            raise ValueError(
                "send at least one of shippingAddress, billingAddress, paymentMethod, shippingMethodId, step"
            )
        return self

    def changes(self) -> dict[str, Any]:
        """The fields sent, as domain values (addresses as plain dicts without empty fields)."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            out[name] = value.model_dump(by_alias=True, exclude_none=True) if isinstance(value, AddressIn) else value
        return out


class EmptyIn(ApiInput):
    """No fields: the body may be left out or be ``{}``."""


class CompleteIn(ApiInput):
    model_config = example(paymentReference="pay_123")

    payment_reference: Text = Field(
        description="The payment provider's reference; a retry with it returns the same order"
    )


class CheckoutCancelIn(ApiInput):
    model_config = example(reason="payment_failed")

    reason: Literal["payment_failed", "cancelled"]


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


class OrderLineOut(ApiOutput):
    sku: str
    quantity: int
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
            items=[OrderLineOut(sku=x.sku, quantity=x.quantity, unlimited=not x.held) for x in order.lines],
            status=order.status.value,
            payment_reference=order.payment_reference,
            created_at=rfc3339(order.created_at),
            updated_at=rfc3339(order.updated_at),
        )


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
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
