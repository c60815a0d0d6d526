"""Checkout routes (cart as quote): start or resume, update, payment, complete, cancel."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from http_common import ERRORS, caller, idempotency_key
from request_key import request_key

from stockhold.api_models import (
    CheckoutCancelIn,
    CheckoutIn,
    CheckoutOut,
    CheckoutUpdateIn,
    CompleteIn,
    EmptyIn,
    OrderOut,
)
from stockhold.checkout import CheckoutView
from stockhold.models import Line
from stockhold.runtime import services
from stockhold.service import now_ms

router = APIGatewayRouter()
CheckoutId = Annotated[str, Path(min_length=1, max_length=64, description="The checkout id")]


def _out(view: CheckoutView, status: int = 200) -> Response[CheckoutOut]:
    return Response(status, "application/json", CheckoutOut.of(view, now_ms()))


@router.post(
    "/checkouts",
    summary="Start checkout: hold every line on the checkout deadline, or none (resumes an open one)",
    tags=["checkout"],
    responses={**ERRORS, 200: {"description": "The cart's open checkout, resumed: nothing new held"}},
)
def start_checkout(body: Annotated[CheckoutIn, Body()]) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    view = services().checkouts.start(
        who.store_id,
        cart_id=body.cart_id,
        customer_id=body.customer_id,
        lines=[Line(sku=x.sku, quantity=x.quantity) for x in body.items],
        idempotency_key=idempotency_key(router.current_event.raw_event),
    )
    return _out(view, 200 if view.resumed else 201)


@router.get("/checkouts/<checkoutId>", summary="A checkout (resume)", tags=["checkout"], responses=ERRORS)
def get_checkout(checkoutId: CheckoutId) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    return _out(services().checkouts.get(who.store_id, checkoutId))


@router.patch(
    "/checkouts/<checkoutId>",
    summary="Save the shopper's details; extends the hold when little time is left",
    tags=["checkout"],
    responses=ERRORS,
)
def update_checkout(checkoutId: CheckoutId, body: Annotated[CheckoutUpdateIn, Body()]) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    key = request_key(router.current_event.raw_event, who.store_id)
    return _out(services().checkouts.update(who.store_id, checkoutId, body.changes(), key))


@router.post(
    "/checkouts/<checkoutId>/payment",
    summary="Entering payment: re-checks the hold and extends it to the payment window",
    tags=["checkout"],
    responses=ERRORS,
)
def checkout_payment(checkoutId: CheckoutId, body: Annotated[EmptyIn | None, Body()] = None) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    key = request_key(router.current_event.raw_event, who.store_id)
    return _out(services().checkouts.payment(who.store_id, checkoutId, key))


@router.post(
    "/checkouts/<checkoutId>/complete",
    summary="Payment succeeded: the order, and the hold confirmed, in one step",
    tags=["checkout"],
    responses=ERRORS,
)
def complete_checkout(checkoutId: CheckoutId, body: Annotated[CompleteIn, Body()]) -> Response[OrderOut]:
    who = caller(router.current_event)
    order = services().checkouts.complete(who.store_id, checkoutId, body.payment_reference)
    return Response(201, "application/json", OrderOut.of(order))


@router.post(
    "/checkouts/<checkoutId>/cancel",
    summary="Payment failed (back to active) or cancelled (abandoned); the hold is released at once",
    tags=["checkout"],
    responses=ERRORS,
)
def cancel_checkout(checkoutId: CheckoutId, body: Annotated[CheckoutCancelIn, Body()]) -> Response[CheckoutOut]:
    who = caller(router.current_event)
    key = request_key(router.current_event.raw_event, who.store_id)
    return _out(services().checkouts.cancel(who.store_id, checkoutId, body.reason, key))
