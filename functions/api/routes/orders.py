"""Order routes: read, fulfil (admin), cancel."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from http_common import answers, caller

from stockhold.api_models import EmptyIn
from stockhold.api_outputs import OrderOut
from stockhold.wiring import services

router = APIGatewayRouter()
OrderId = Annotated[str, Path(min_length=1, max_length=128, description="The order id")]


@router.get(
    "/orders/<orderId>",
    operation_id="getOrder",
    summary="An order",
    tags=["orders"],
    responses=answers({200: "The order"}, 404),
)
def get_order(orderId: OrderId) -> Response[OrderOut]:
    who = caller(router.current_event)
    return Response(200, "application/json", OrderOut.of(services().orders.get(who.store_id, orderId)))


@router.post(
    "/orders/<orderId>/fulfil",
    operation_id="fulfilOrder",
    summary="Shipped (admin): the allocated units leave onHand",
    tags=["orders"],
    responses=answers({200: "The order, FULFILLED"}, 404, 503, conflicts=("ORDER_NOT_OPEN", "STOCK_CONFLICT")),
)
def fulfil_order(orderId: OrderId, body: Annotated[EmptyIn | None, Body()] = None) -> Response[OrderOut]:
    who = caller(router.current_event, admin=True)
    return Response(200, "application/json", OrderOut.of(services().orders.fulfil(who.store_id, orderId)))


@router.post(
    "/orders/<orderId>/cancel",
    operation_id="cancelOrder",
    summary="Cancelled before shipping: the allocated units return to available",
    tags=["orders"],
    responses=answers({200: "The order, CANCELLED"}, 404, 503, conflicts=("ORDER_NOT_OPEN", "STOCK_CONFLICT")),
)
def cancel_order(orderId: OrderId, body: Annotated[EmptyIn | None, Body()] = None) -> Response[OrderOut]:
    who = caller(router.current_event)
    return Response(200, "application/json", OrderOut.of(services().orders.cancel(who.store_id, orderId)))
