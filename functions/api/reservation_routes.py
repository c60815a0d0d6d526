"""Reservation routes (storefront and admin keys alike)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from http_common import ERRORS, caller, idempotency_key
from request_key import request_key

from stockhold.api_models import ConfirmIn, ExtendIn, ReleaseIn, ReservationOut, ReserveIn
from stockhold.models import Line, Reservation
from stockhold.runtime import services
from stockhold.service import now_ms

router = APIGatewayRouter()
ReservationId = Annotated[str, Path(min_length=1, max_length=64, description="The reservation id")]
CartId = Annotated[str, Path(min_length=1, max_length=128, description="The storefront's cart id")]


def _out(res: Reservation, status: int = 200) -> Response[ReservationOut]:
    return Response(status, "application/json", ReservationOut.of(res, now_ms()))


@router.post("/reservations", summary="Hold every line of a cart, or none", tags=["reservations"], responses=ERRORS)
def create_reservation(body: Annotated[ReserveIn, Body()]) -> Response[ReservationOut]:
    who = caller(router.current_event)
    res = services().reservations.reserve(
        who.store_id,
        cart_id=body.cart_id,
        customer_id=body.customer_id,
        lines=[Line(sku=x.sku, quantity=x.quantity) for x in body.items],
        hold_seconds=body.hold_seconds,
        replace=body.replace,
        idempotency_key=idempotency_key(router.current_event.raw_event),
    )
    return _out(res, 201)


@router.get("/reservations/<reservationId>", summary="A reservation", tags=["reservations"], responses=ERRORS)
def get_reservation(reservationId: ReservationId) -> Response[ReservationOut]:
    who = caller(router.current_event)
    return _out(services().reservations.get(who.store_id, reservationId))


@router.get(
    "/carts/<cartId>/reservation", summary="The cart's active reservation", tags=["reservations"], responses=ERRORS
)
def get_cart_reservation(cartId: CartId) -> Response[ReservationOut]:
    who = caller(router.current_event)
    return _out(services().reservations.get_for_cart(who.store_id, cartId))


@router.post(
    "/reservations/<reservationId>/extend", summary="Move the deadline later", tags=["reservations"], responses=ERRORS
)
def extend_reservation(reservationId: ReservationId, body: Annotated[ExtendIn, Body()]) -> Response[ReservationOut]:
    who = caller(router.current_event)
    key = request_key(router.current_event.raw_event, who.store_id)
    return _out(services().reservations.extend(who.store_id, reservationId, body.hold_seconds, key))


@router.post(
    "/reservations/<reservationId>/confirm", summary="Payment succeeded", tags=["reservations"], responses=ERRORS
)
def confirm_reservation(reservationId: ReservationId, body: Annotated[ConfirmIn, Body()]) -> Response[ReservationOut]:
    who = caller(router.current_event)
    return _out(services().reservations.confirm(who.store_id, reservationId, body.order_id))


@router.post(
    "/reservations/<reservationId>/release", summary="Cancel, payment failure or manual", tags=["reservations"]
)
def release_reservation(reservationId: ReservationId, body: Annotated[ReleaseIn, Body()]) -> Response[ReservationOut]:
    who = caller(router.current_event)
    return _out(services().reservations.release(who.store_id, reservationId, body.reason))
