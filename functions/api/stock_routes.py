"""Stock routes: admins write, any role reads."""

from __future__ import annotations

import re
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from http_common import ERRORS, caller
from request_key import request_key

from stockhold.api_models import (
    SKU_PATTERN,
    AdjustmentIn,
    LineCheckOut,
    StockIn,
    StockListOut,
    StockOut,
    ValidateIn,
    ValidateOut,
)
from stockhold.errors import ValidationFailed
from stockhold.models import Line
from stockhold.observability import logger
from stockhold.runtime import services

router = APIGatewayRouter()
_SKU = re.compile(SKU_PATTERN)
SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="The SKU")]


def _out(level: object) -> StockOut:
    return StockOut.of(level, services().settings.LOW_STOCK_THRESHOLD)  # type: ignore[arg-type]


@router.put("/stock/<sku>", summary="Set a SKU's physical stock (admin)", tags=["stock"], responses=ERRORS)
def put_stock(sku: SkuPath, body: Annotated[StockIn, Body()]) -> Response[StockOut]:
    who = caller(router.current_event, admin=True)
    level = services().stock.set(
        who.store_id,
        sku,
        on_hand=body.on_hand,
        low_stock_threshold=body.low_stock_threshold,
        unlimited=body.unlimited,
        key=request_key(router.current_event.raw_event, who.store_id),
    )
    logger.info("stock set", sku=sku, on_hand=body.on_hand)
    return Response(200, "application/json", _out(level))


@router.post("/stock/<sku>/adjustments", summary="Receive or write off units (admin)", tags=["stock"], responses=ERRORS)
def adjust_stock(sku: SkuPath, body: Annotated[AdjustmentIn, Body()]) -> Response[StockOut]:
    who = caller(router.current_event, admin=True)
    key = request_key(router.current_event.raw_event, who.store_id)
    level = services().stock.adjust(who.store_id, sku, body.delta, key, body.reason)
    logger.info("stock adjusted", sku=sku, delta=body.delta, reason=body.reason)
    return Response(200, "application/json", _out(level))


@router.get("/stock/<sku>", summary="One SKU's stock", tags=["stock"], responses=ERRORS)
def get_stock(sku: SkuPath) -> Response[StockOut]:
    who = caller(router.current_event)
    return Response(200, "application/json", _out(services().stock.get(who.store_id, sku)))


@router.get("/stock", summary="Several SKUs' stock", tags=["stock"], responses=ERRORS)
def list_stock(skus: Annotated[str, Query(description="Comma-separated SKUs, at most 100")]) -> Response[StockListOut]:
    who = caller(router.current_event)
    wanted = [s.strip() for s in skus.split(",") if s.strip()]
    if not 1 <= len(wanted) <= 100:
        raise ValidationFailed("skus lists 1 to 100 SKUs", {"fields": [{"field": "query.skus"}]})
    bad = [s for s in wanted if not _SKU.match(s)]
    if bad:
        raise ValidationFailed(
            f"not a valid SKU: {', '.join(bad)}", {"fields": [{"field": "query.skus", "values": bad}]}
        )
    found, missing = services().stock.get_many(who.store_id, wanted)
    return Response(200, "application/json", StockListOut(items=[_out(x) for x in found], missing=missing))


@router.post(
    "/stock/validate", summary="Could these lines be held now? Holds nothing", tags=["stock"], responses=ERRORS
)
def validate_stock(body: Annotated[ValidateIn, Body()]) -> Response[ValidateOut]:
    who = caller(router.current_event)
    checks = services().stock.validate(who.store_id, [Line(sku=x.sku, quantity=x.quantity) for x in body.items])
    return Response(200, "application/json", ValidateOut(items=[LineCheckOut.of(c) for c in checks]))
