"""Checkout routes (cart as quote): start or resume, update, payment, complete, cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from http_common import answers, caller, idempotency_key
from request_key import request_key

from stockhold.api_models import CheckoutCancelIn, CheckoutIn, CheckoutUpdateIn, CompleteIn, EmptyIn
from stockhold.api_outputs import CheckoutOut, OrderOut
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Line
from stockhold.wiring import services

if TYPE_CHECKING:
    from stockhold.usecases.checkout_view import CheckoutView

router = APIGatewayRouter()
CheckoutId = Annotated[str, Path(min_length=1, max_length=64, description="The checkout id")]
_BY_ID = {"checkoutId": "$response.body#/checkoutId"}
# Where a checkout goes from here (OpenAPI links on the answers that return one).
NEXT = {
    name: {"operationId": name, "parameters": _BY_ID, "description": text}
    for name, text in (
        ("getCheckout", "Resume it"),
        ("updateCheckout", "Save the shopper's details"),
        ("enterCheckoutPayment", "Enter payment"),
        ("completeCheckout", "Payment succeeded"),
        ("cancelCheckout", "Payment failed or the shopper cancelled"),
    )
}
_BY_ORDER = {"orderId": "$response.body#/orderId"}
ORDER_NEXT = {
    name: {"operationId": name, "parameters": _BY_ORDER, "description": text}
    for name, text in (("getOrder", "Read it"), ("fulfilOrder", "Shipped (admin)"), ("cancelOrder", "Cancel it"))
}
_LIVE_HOLD = ("CHECKOUT_NOT_OPEN", "RESERVATION_NOT_ACTIVE")


def _out(view: CheckoutView, status: int = 200) -> Response[CheckoutOut]:
    return Response(status, "application/json", CheckoutOut.of(view, now_ms()))


@router.post(
    "/checkouts",
    operation_id="createCheckout",
    summary="Start checkout: hold every line on the checkout deadline, or none (resumes an open one)",
    description="Starting again with the same lines (and customer) resumes the cart's open checkout (200); "
    "other lines swap its hold atomically (201). Each SKU at most once per request (a duplicate is 400: a "
    "rule the schema cannot express).",
    tags=["checkout"],
    responses=answers(
        {
            201: "A checkout holding every line, status checkout; warnings for low-stock lines",
            200: "The cart's open checkout, resumed: nothing new held",
        },
        404,
        503,
        conflicts=("INSUFFICIENT_STOCK", "PURCHASE_LIMIT_REACHED"),
        links=NEXT,
    ),
)
def start_checkout(body: Annotated[CheckoutIn, Body()]) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    view = services().checkouts.start(
        who.store_id,
        cart_id=body.cart_id,
        customer_id=body.customer_id,
        lines=[Line(sku=x.sku, quantity=x.quantity) for x in body.items],
        idempotency_key=idempotency_key(router.current_event.raw_event),
        rules=body.rules(),
    )
    return _out(view, 200 if view.resumed else 201)


@router.get(
    "/checkouts/<checkoutId>",
    operation_id="getCheckout",
    summary="A checkout (resume); an expired one reads abandoned",
    tags=["checkout"],
    responses=answers({200: "The checkout"}, 404, links=NEXT),
)
def get_checkout(checkoutId: CheckoutId) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    return _out(services().checkouts.get(who.store_id, checkoutId))


@router.patch(
    "/checkouts/<checkoutId>",
    operation_id="updateCheckout",
    summary="Save the shopper's details; extends the hold when little time is left",
    tags=["checkout"],
    responses=answers({200: "The checkout, saved"}, 404, 410, 503, conflicts=_LIVE_HOLD, links=NEXT),
)
def update_checkout(checkoutId: CheckoutId, body: Annotated[CheckoutUpdateIn, Body()]) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    key = request_key(router.current_event.raw_event, who.store_id)
    return _out(services().checkouts.update(who.store_id, checkoutId, body.changes(), key))


@router.post(
    "/checkouts/<checkoutId>/payment",
    operation_id="enterCheckoutPayment",
    summary="Entering payment: re-checks the hold and extends it to the payment window",
    tags=["checkout"],
    responses=answers(
        {200: "The checkout, its hold in the payment window"}, 404, 410, 503, conflicts=_LIVE_HOLD, links=NEXT
    ),
)
def checkout_payment(checkoutId: CheckoutId, body: Annotated[EmptyIn | None, Body()] = None) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    key = request_key(router.current_event.raw_event, who.store_id)
    return _out(services().checkouts.payment(who.store_id, checkoutId, key))


@router.post(
    "/checkouts/<checkoutId>/complete",
    operation_id="completeCheckout",
    summary="Payment succeeded: the order, and the hold confirmed, in one step",
    description="Exactly one order per checkout: a retry answers the same order.",
    tags=["checkout"],
    responses=answers(
        {201: "The order; the checkout is completed, its reservation CONFIRMED"},
        404,
        410,
        503,
        conflicts=(*_LIVE_HOLD, "STOCK_CONFLICT"),
        links=ORDER_NEXT,
    ),
)
def complete_checkout(checkoutId: CheckoutId, body: Annotated[CompleteIn, Body()]) -> Response[OrderOut]:
    who = caller(router.current_event)
    order = services().checkouts.complete(who.store_id, checkoutId, body.payment_reference)
    return Response(201, "application/json", OrderOut.of(order))


@router.post(
    "/checkouts/<checkoutId>/cancel",
    operation_id="cancelCheckout",
    summary="Payment failed (back to active) or cancelled (abandoned); the hold is released at once",
    tags=["checkout"],
    responses=answers(
        {200: "The checkout: active after payment_failed, abandoned after cancelled"},
        404,
        410,
        503,
        conflicts=(*_LIVE_HOLD, "STOCK_CONFLICT"),
        links=NEXT,
    ),
)
def cancel_checkout(checkoutId: CheckoutId, body: Annotated[CheckoutCancelIn, Body()]) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    key = request_key(router.current_event.raw_event, who.store_id)
    return _out(services().checkouts.cancel(who.store_id, checkoutId, body.reason, key))
