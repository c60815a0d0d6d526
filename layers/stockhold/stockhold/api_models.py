"""HTTP input and output models of API.md: camelCase on the wire, strict on input.

Input models forbid unknown fields (a typo such as ``quantiy`` is an error) and do not
coerce types ("2", 2.0 and true are not quantities).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.alias_generators import to_camel

from stockhold.models import Reservation, StockLevel, rfc3339
from stockhold.service import MAX_LINES, MAX_ON_HAND, MAX_QUANTITY, LineCheck

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}$"
Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
# Storefront-chosen ids (cart, customer, order): printable ASCII without spaces.
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]


class ApiInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False)


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


class ReserveIn(CartIn):
    cart_id: Ident
    customer_id: Ident | None = None
    hold_seconds: Annotated[int, Field(strict=True)] | None = None
    replace: bool = False


class ExtendIn(ApiInput):
    hold_seconds: Annotated[int, Field(strict=True)] | None = None


class ConfirmIn(ApiInput):
    order_id: Ident


class ReleaseIn(ApiInput):
    reason: Literal["cancelled", "payment_failed", "manual"]


class StockIn(ApiInput):
    on_hand: Annotated[int, Field(strict=True, ge=0, le=MAX_ON_HAND)]
    low_stock_threshold: Annotated[int, Field(strict=True, ge=0, le=MAX_ON_HAND)] | None = None
    unlimited: bool = False


class AdjustmentIn(ApiInput):
    delta: Annotated[int, Field(strict=True, ge=-MAX_ON_HAND, le=MAX_ON_HAND)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("delta must not be zero")
        return delta


class ValidateIn(CartIn):
    pass


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


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    error: ErrorDetail
