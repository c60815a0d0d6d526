"""Reservation routes (storefront and admin keys alike)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from http_common import answers, caller, idempotency_key
from request_key import request_key

from stockhold.api_models import ConfirmIn, ExtendIn, ReleaseIn, ReserveIn
from stockhold.api_outputs import ReservationOut
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Line, Reservation
from stockhold.wiring import services

router = APIGatewayRouter()
ReservationId = Annotated[str, Path(min_length=1, max_length=64, description="The reservation id")]
CartId = Annotated[str, Path(min_length=1, max_length=128, description="The storefront's cart id")]
_BY_ID = {"reservationId": "$response.body#/reservationId"}
# Where a reservation goes from here (OpenAPI links on the answers that return one).
NEXT = {
    "getReservation": {"operationId": "getReservation", "parameters": _BY_ID, "description": "Read it again"},
    "extendReservation": {"operationId": "extendReservation", "parameters": _BY_ID, "description": "Hold longer"},
    "confirmReservation": {"operationId": "confirmReservation", "parameters": _BY_ID, "description": "Payment ok"},
    "releaseReservation": {"operationId": "releaseReservation", "parameters": _BY_ID, "description": "Let it go"},
    "getCartReservation": {
        "operationId": "getCartReservation",
        "parameters": {"cartId": "$response.body#/cartId"},
        "description": "The cart's active one",
    },
}
_ENDING = ("RESERVATION_NOT_ACTIVE", "RESERVATION_HELD_BY_CHECKOUT")


def _out(res: Reservation, status: int = 200) -> Response[ReservationOut]:
    return Response(status, "application/json", ReservationOut.of(res, now_ms()))


@router.post(
    "/reservations",
    operation_id="createReservation",
    summary="Hold every line of a cart, or none",
    description="All lines or none, in one atomic step. With `replace: true` the cart's active reservation "
    "is released and the new one made in the same step. Each line is allocated across the store's locations "
    "(by priority, or `locationIds` in order; `split: false` keeps each line whole); an unknown location is 404. "
    "Rules the schema cannot express: each SKU at most "
    "once per request (a duplicate is 400); `holdSeconds` within the store's configured range (the bounds "
    "shown are the deployment's settings; docs/openapi.json shows the template's defaults).",
    tags=["reservations"],
    responses=answers(
        {201: "The reservation, ACTIVE until expiresAt"},
        404,
        503,
        conflicts=(
            "INSUFFICIENT_STOCK",
            "PURCHASE_LIMIT_REACHED",
            "CART_ALREADY_RESERVED",
            "RESERVATION_HELD_BY_CHECKOUT",
        ),
        links=NEXT,
    ),
)
def create_reservation(body: Annotated[ReserveIn, Body()]) -> Response[ReservationOut]:
    who = caller(router.current_event)
    res = services().reserving.reserve(
        who.store_id,
        cart_id=body.cart_id,
        customer_id=body.customer_id,
        lines=[Line(sku=x.sku, quantity=x.quantity) for x in body.items],
        hold_seconds=body.hold_seconds,
        replace=body.replace,
        idempotency_key=idempotency_key(router.current_event.raw_event),
        rules=body.rules(),
    )
    return _out(res, 201)


@router.get(
    "/reservations/<reservationId>",
    operation_id="getReservation",
    summary="A reservation",
    description="A reservation past its deadline reads EXPIRED from that moment, even before its stock is back.",
    tags=["reservations"],
    responses=answers({200: "The reservation"}, 404, links=NEXT),
)
def get_reservation(reservationId: ReservationId) -> Response[ReservationOut]:
    who = caller(router.current_event)
    return _out(services().holds.get(who.store_id, reservationId))


@router.get(
    "/carts/<cartId>/reservation",
    operation_id="getCartReservation",
    summary="The cart's active reservation",
    tags=["reservations"],
    responses=answers({200: "The cart's active reservation"}, 404, links=NEXT),
)
def get_cart_reservation(cartId: CartId) -> Response[ReservationOut]:
    who = caller(router.current_event)
    return _out(services().holds.get_for_cart(who.store_id, cartId))


@router.post(
    "/reservations/<reservationId>/extend",
    operation_id="extendReservation",
    summary="Move the deadline later",
    description="The new deadline is now + holdSeconds (the store default when left out), never earlier than "
    "the current one; asking for an earlier one changes nothing and uses no extension.",
    tags=["reservations"],
    responses=answers(
        {200: "The reservation with its new deadline"},
        404,
        410,
        503,
        conflicts=("RESERVATION_NOT_ACTIVE", "EXTENSION_LIMIT_REACHED"),
        links=NEXT,
    ),
)
def extend_reservation(reservationId: ReservationId, body: Annotated[ExtendIn, Body()]) -> Response[ReservationOut]:
    who = caller(router.current_event)
    key = request_key(router.current_event.raw_event, who.store_id)
    return _out(services().holds.extend(who.store_id, reservationId, body.hold_seconds, key))


@router.post(
    "/reservations/<reservationId>/confirm",
    operation_id="confirmReservation",
    summary="Payment succeeded: the hold becomes order orderId",
    description="Confirming again with the same orderId answers 200 with the same body.",
    tags=["reservations"],
    responses=answers(
        {200: "The reservation, CONFIRMED; the order orderId exists"},
        404,
        410,
        503,
        conflicts=(*_ENDING, "ORDER_ID_TAKEN", "STOCK_CONFLICT"),
        links={
            "getOrder": {
                "operationId": "getOrder",
                "parameters": {"orderId": "$response.body#/orderId"},
                "description": "The order it made",
            }
        },
    ),
)
def confirm_reservation(reservationId: ReservationId, body: Annotated[ConfirmIn, Body()]) -> Response[ReservationOut]:
    who = caller(router.current_event)
    return _out(services().holds.confirm(who.store_id, reservationId, body.order_id))


@router.post(
    "/reservations/<reservationId>/release",
    operation_id="releaseReservation",
    summary="Cancel, payment failure or manual: the held units go back",
    description="Releasing a released reservation answers 200 unchanged; a confirmed one 409.",
    tags=["reservations"],
    responses=answers(
        {200: "The reservation, RELEASED"},
        404,
        410,
        503,
        conflicts=("RESERVATION_NOT_ACTIVE", "STOCK_CONFLICT"),
    ),
)
def release_reservation(reservationId: ReservationId, body: Annotated[ReleaseIn, Body()]) -> Response[ReservationOut]:
    who = caller(router.current_event)
    return _out(services().holds.release(who.store_id, reservationId, body.reason))
