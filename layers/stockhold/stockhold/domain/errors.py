"""Domain errors. Each carries its API code and HTTP status as class attributes; the
API maps them in one place (never by matching message strings)."""

from __future__ import annotations

from typing import Any, ClassVar


class StockholdError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ValidationFailed(StockholdError):
    code = "VALIDATION_ERROR"
    status = 400


class Unauthorized(StockholdError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(StockholdError):
    code = "FORBIDDEN"
    status = 403


class NotFound(StockholdError):
    code = "NOT_FOUND"
    status = 404


class PayloadTooLarge(StockholdError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class InsufficientStock(StockholdError):
    code = "INSUFFICIENT_STOCK"
    status = 409

    def __init__(self, short: list[dict[str, Any]]) -> None:
        noun = "item is" if len(short) == 1 else "items are"
        super().__init__(f"{len(short)} {noun} short", {"items": short})
        self.short = short


class PurchaseLimitReached(StockholdError):
    code = "PURCHASE_LIMIT_REACHED"
    status = 409

    def __init__(self, items: list[dict[str, Any]]) -> None:
        skus = ", ".join(x["sku"] for x in items)
        super().__init__(f"over the purchase limit of {skus}", {"items": items})


class CartAlreadyReserved(StockholdError):
    code = "CART_ALREADY_RESERVED"
    status = 409

    def __init__(self, cart_id: str, reservation_id: str) -> None:
        super().__init__(
            f"cart {cart_id} already has an active reservation; send replace: true to swap it",
            {"reservationId": reservation_id},
        )
        self.reservation_id = reservation_id


class ReservationNotActive(StockholdError):
    code = "RESERVATION_NOT_ACTIVE"
    status = 409

    def __init__(self, reservation_id: str, status: str) -> None:
        super().__init__(f"reservation {reservation_id} has already ended ({status})", {"status": status})
        self.reservation_status = status


class ExtensionLimitReached(StockholdError):
    code = "EXTENSION_LIMIT_REACHED"
    status = 409


class StockConflict(StockholdError):
    code = "STOCK_CONFLICT"
    status = 409


class IdempotencyKeyReused(StockholdError):
    code = "IDEMPOTENCY_KEY_REUSED"
    status = 409


class IdempotencyKeyInUse(StockholdError):
    code = "IDEMPOTENCY_KEY_IN_USE"
    status = 409


class ReservationExpired(StockholdError):
    code = "RESERVATION_EXPIRED"
    status = 410

    def __init__(self, reservation_id: str, expires_at: str) -> None:
        super().__init__(
            f"reservation {reservation_id} expired at {expires_at}",
            {"status": "EXPIRED", "expiresAt": expires_at},
        )


class TooBusy(StockholdError):
    """Transactions kept colliding on hot items after every bounded retry."""

    code = "TOO_BUSY"
    status = 503


class CheckoutNotOpen(StockholdError):
    """The checkout is not in a status that allows this step (completed, abandoned, or
    ``active`` with nothing held)."""

    code = "CHECKOUT_NOT_OPEN"
    status = 409

    def __init__(self, checkout_id: str, status: str, message: str | None = None) -> None:
        super().__init__(message or f"checkout {checkout_id} is {status}", {"status": status})


class HeldByCheckout(StockholdError):
    """A checkout's hold is ended through the checkout (complete / cancel), not directly."""

    code = "RESERVATION_HELD_BY_CHECKOUT"
    status = 409

    def __init__(self, reservation_id: str, checkout_id: str, action: str) -> None:
        super().__init__(
            f"reservation {reservation_id} belongs to checkout {checkout_id}; {action} the checkout instead",
            {"checkoutId": checkout_id},
        )


class OrderNotOpen(StockholdError):
    code = "ORDER_NOT_OPEN"
    status = 409

    def __init__(self, order_id: str, status: str) -> None:
        super().__init__(f"order {order_id} is already {status}", {"status": status})


class OrderIdTaken(StockholdError):
    code = "ORDER_ID_TAKEN"
    status = 409

    def __init__(self, order_id: str, reservation_id: str | None) -> None:
        super().__init__(
            f"order {order_id} already exists for another reservation", {"orderId": order_id, "of": reservation_id}
        )
