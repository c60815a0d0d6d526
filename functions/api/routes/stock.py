"""Stock routes: admins write, any role reads."""

from __future__ import annotations

import re
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from http_common import answers, caller
from request_key import request_key

from stockhold.api_models import LOCATION_PATTERN, SKU_PATTERN, AdjustmentIn, StockAtLocationIn, StockIn, ValidateIn
from stockhold.api_outputs import LineCheckOut, StockListOut, StockOut, ValidateOut
from stockhold.domain.errors import ValidationFailed
from stockhold.domain.models import Line
from stockhold.observability import logger
from stockhold.wiring import services

router = APIGatewayRouter()
_SKU = re.compile(SKU_PATTERN)
SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="The SKU", examples=["A-1"])]
LocationPath = Annotated[str, Path(pattern=LOCATION_PATTERN, description="The location", examples=["leeds-dc"])]
# What GET /stock?skus= takes: comma-separated SKUs; spaces and tabs around them, and empty
# entries, are ignored (nothing else: str.strip() would also drop control characters).
_BLANK = " \t"
_SKU_ITEM = SKU_PATTERN.removeprefix("^").removesuffix("$")
SKU_LIST_PATTERN = rf"^[ \t,]*{_SKU_ITEM}(?:[ \t]*,[ \t,]*{_SKU_ITEM})*[ \t,]*$"


def _out(level: object) -> StockOut:
    return StockOut.of(level, services().settings.LOW_STOCK_THRESHOLD)  # type: ignore[arg-type]


@router.put(
    "/stock/<sku>",
    operation_id="putStock",
    summary="Set a SKU's physical stock and settings (admin); creates the SKU",
    description="A field left out keeps its value. `onHand` sets the `default` location: on a SKU stocked in "
    "other locations it is 409 STOCK_CONFLICT (set each with putStockAtLocation). onHand below the units held "
    "or allocated, or a backorderLimit below the units already backordered, is 409 STOCK_CONFLICT.",
    tags=["stock"],
    responses=answers({200: "The SKU's stock"}, 503, conflicts=("STOCK_CONFLICT",)),
)
def put_stock(sku: SkuPath, body: Annotated[StockIn, Body()]) -> Response[StockOut]:
    from stockhold.usecases.stock import StockChange

    who = caller(router.current_event, admin=True)
    level = services().stock.set(
        who.store_id,
        sku,
        StockChange(on_hand=body.on_hand, settings=body.given_settings()),
        key=request_key(router.current_event.raw_event, who.store_id),
    )
    logger.info("stock set", sku=sku, on_hand=body.on_hand)
    return Response(200, "application/json", _out(level))


@router.put(
    "/stock/<sku>/locations/<locationId>",
    operation_id="putStockAtLocation",
    summary="Set a SKU's physical stock at one location (admin)",
    description="Creates the SKU (with no units elsewhere) if it is new. The location must exist (`default` "
    "always does). onHand below the units held or allocated there is 409 STOCK_CONFLICT.",
    tags=["stock"],
    responses=answers({200: "The SKU's stock"}, 404, 503, conflicts=("STOCK_CONFLICT",)),
)
def put_stock_at_location(
    sku: SkuPath, locationId: LocationPath, body: Annotated[StockAtLocationIn, Body()]
) -> Response[StockOut]:
    who = caller(router.current_event, admin=True)
    key = request_key(router.current_event.raw_event, who.store_id)
    level = services().stock.set_at(who.store_id, sku, locationId, body.on_hand, key)
    logger.info("stock set", sku=sku, location=locationId, on_hand=body.on_hand)
    return Response(200, "application/json", _out(level))


@router.post(
    "/stock/<sku>/adjustments",
    operation_id="adjustStock",
    summary="Receive or write off units (admin)",
    tags=["stock"],
    responses=answers({200: "The SKU's stock"}, 404, 503, conflicts=("STOCK_CONFLICT",)),
)
def adjust_stock(sku: SkuPath, body: Annotated[AdjustmentIn, Body()]) -> Response[StockOut]:
    who = caller(router.current_event, admin=True)
    key = request_key(router.current_event.raw_event, who.store_id)
    level = services().stock.adjust(who.store_id, sku, body.delta, key, body.reason, body.location_id)
    logger.info("stock adjusted", sku=sku, delta=body.delta, reason=body.reason, location=body.location_id)
    return Response(200, "application/json", _out(level))


@router.get(
    "/stock/<sku>",
    operation_id="getStock",
    summary="One SKU's stock",
    tags=["stock"],
    responses=answers({200: "The SKU's stock"}, 404),
)
def get_stock(sku: SkuPath) -> Response[StockOut]:
    who = caller(router.current_event)
    return Response(200, "application/json", _out(services().stock.get(who.store_id, sku)))


@router.get(
    "/stock",
    operation_id="listStock",
    summary="Several SKUs' stock",
    description="`skus` lists 1 to 100 SKUs (the count is a rule the schema cannot express); SKUs with no "
    "stock record are listed in `missing`.",
    tags=["stock"],
    responses=answers({200: "The SKUs found, and those not found"}),
)
def list_stock(
    skus: Annotated[
        str,
        Query(
            description="Comma-separated SKUs, 1 to 100",
            json_schema_extra={"minLength": 1, "pattern": SKU_LIST_PATTERN},
        ),
    ],
) -> Response[StockListOut]:
    who = caller(router.current_event)
    wanted = [s.strip(_BLANK) for s in skus.split(",") if s.strip(_BLANK)]
    if not 1 <= len(wanted) <= 100:
        raise ValidationFailed("skus lists 1 to 100 SKUs", {"fields": [{"field": "query.skus"}]})
    bad = [s for s in wanted if not _SKU.fullmatch(s)]  # match(): "$" would accept a final newline
    if bad:
        raise ValidationFailed(
            f"not a valid SKU: {', '.join(bad)}", {"fields": [{"field": "query.skus", "values": bad}]}
        )
    found, missing = services().stock.get_many(who.store_id, wanted)
    return Response(200, "application/json", StockListOut(items=[_out(x) for x in found], missing=missing))


@router.post(
    "/stock/validate",
    operation_id="validateStock",
    summary="Could these lines be held now? Holds nothing",
    description="Each SKU at most once per request (a duplicate is 400: a rule the schema cannot express).",
    tags=["stock"],
    responses=answers({200: "One answer per line"}),
)
def validate_stock(body: Annotated[ValidateIn, Body()]) -> Response[ValidateOut]:
    who = caller(router.current_event)
    checks = services().stock.validate(who.store_id, [Line(sku=x.sku, quantity=x.quantity) for x in body.items])
    return Response(200, "application/json", ValidateOut(items=[LineCheckOut.of(c) for c in checks]))
