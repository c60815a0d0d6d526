"""HTTP input models of API.md: camelCase on the wire, strict on input (the answers are
in ``api_outputs``).

Input models forbid unknown fields (a typo such as ``quantiy`` is an error) and do not
coerce types ("2", 2.0 and true are not quantities).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from stockhold.domain.allocation import Rules
from stockhold.domain.rules import MAX_LINES, MAX_ON_HAND, MAX_QUANTITY

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}$"
Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
# Storefront-chosen ids (cart, customer, order): printable ASCII without spaces.
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ApiInput(BaseModel):
    # defer_build: a model's validator is built when a request first needs it, not as the module
    # is imported (a cold start builds the one or two models its route uses, not all of them).
    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False, defer_build=True
    )


def example(**body: Any) -> ConfigDict:
    """An input model's example request body, for the OpenAPI document (and the fuzzer's first cases)."""
    return ConfigDict(json_schema_extra={"examples": [body]})


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


LOCATION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
LocationId = Annotated[str, StringConstraints(pattern=LOCATION_PATTERN)]


class AllocationRulesIn(ApiInput):
    """The allocation fields of a reservation or checkout ("Stock in many places")."""

    location_ids: (
        Annotated[
            list[LocationId],
            Field(
                min_length=1,
                max_length=20,
                json_schema_extra={"uniqueItems": True},
                description="Only these locations, in this order (click and collect)",
            ),
        ]
        | None
    ) = None
    split: Annotated[bool, Field(description="false: each line comes whole from one location")] = True

    def rules(self) -> Rules:
        ids = tuple(self.location_ids) if self.location_ids is not None else None
        return Rules(location_ids=ids, split=self.split)

    @field_validator("location_ids")
    @classmethod
    def _unique_locations(cls, ids: list[str] | None) -> list[str] | None:
        if ids is not None and len(set(ids)) != len(ids):
            raise ValueError("a location appears more than once in locationIds")
        return ids


class ReserveIn(CartIn, AllocationRulesIn):
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


Count = Annotated[int, Field(strict=True, ge=0, le=MAX_ON_HAND)]
Limit = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]


class StockIn(ApiInput):
    """Every field optional: one left out keeps its value (a new SKU: onHand 0, no limits);
    ``null`` clears a threshold or a purchase limit."""

    model_config = ConfigDict(
        json_schema_extra={
            "minProperties": 1,
            "examples": [{"onHand": 10, "lowStockThreshold": 2, "unlimited": False}],
        }
    )

    on_hand: Annotated[Count, Field(description="The default location's onHand")] | None = None
    low_stock_threshold: Count | None = None
    unlimited: bool | None = None
    backorder_limit: Annotated[Count, Field(description="available may go down to -backorderLimit")] | None = None
    max_per_cart: Limit | None = None
    max_per_customer: Limit | None = None
    max_hold_seconds: (
        Annotated[
            int,
            Field(
                strict=True,
                ge=1,
                le=86_400,
                description="Any hold containing this SKU ends at most this long after "
                "it is granted (extensions and the payment window too); null: no cap",
            ),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _something(self) -> StockIn:
        if not self.model_fields_set:
            raise ValueError("give at least one field")
        for name in ("on_hand", "unlimited", "backorder_limit"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{to_camel(name)} cannot be null")
        return self

    def given_settings(self) -> dict[str, Any]:
        """The settings this request names (SkuSettings field names), null ones included."""
        names = (
            "low_stock_threshold",
            "unlimited",
            "backorder_limit",
            "max_per_cart",
            "max_per_customer",
            "max_hold_seconds",
        )
        return {n: getattr(self, n) for n in names if n in self.model_fields_set}


class StockAtLocationIn(ApiInput):
    model_config = example(onHand=10)

    on_hand: Count


class LocationIn(ApiInput):
    model_config = example(name="Leeds DC", priority=10, active=True)

    name: Text
    priority: Annotated[int, Field(strict=True, ge=-1_000_000, le=1_000_000, description="Lower allocates first")]
    active: bool = True


class AdjustmentIn(ApiInput):
    model_config = example(delta=-2, reason="damaged")

    delta: Annotated[int, Field(strict=True, ge=-MAX_ON_HAND, le=MAX_ON_HAND, json_schema_extra={"not": {"const": 0}})]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    location_id: LocationId = "default"

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("delta must not be zero")
        return delta


class ValidateIn(CartIn):
    model_config = example(items=[{"sku": "A-1", "quantity": 2}])


# --- outputs


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


class CheckoutIn(CartIn, AllocationRulesIn):
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
