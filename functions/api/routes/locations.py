"""Location routes: admins write, any role reads ("Stock in many places")."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from http_common import answers, caller

from stockhold.api_models import LOCATION_PATTERN, LocationIn
from stockhold.api_outputs import LocationListOut, LocationOut
from stockhold.domain.models import Location
from stockhold.observability import logger
from stockhold.wiring import services

router = APIGatewayRouter()
LocationPath = Annotated[str, Path(pattern=LOCATION_PATTERN, description="The location", examples=["leeds-dc"])]


@router.put(
    "/locations/<locationId>",
    operation_id="putLocation",
    summary="Define or change a location (admin)",
    description="Lower `priority` allocates first. An inactive location keeps its stock but is never allocated "
    "from. `default` is every store's implicit location: define it to change its priority or deactivate it. "
    "A running API container reserves on its copy of the locations for up to LOCATIONS_CACHE_SECONDS (5 s).",
    tags=["locations"],
    responses=answers({200: "The location"}),
)
def put_location(locationId: LocationPath, body: Annotated[LocationIn, Body()]) -> Response[LocationOut]:
    who = caller(router.current_event, admin=True)
    wanted = Location(location_id=locationId, name=body.name, priority=body.priority, active=body.active)
    loc = services().stock.put_location(who.store_id, wanted)
    logger.info("location set", location=locationId, priority=body.priority, active=body.active)
    return Response(200, "application/json", LocationOut.of(loc))


@router.get(
    "/locations",
    operation_id="listLocations",
    summary="The store's locations, in allocation order",
    tags=["locations"],
    responses=answers({200: "Every location, `default` among them"}),
)
def list_locations() -> Response[LocationListOut]:
    who = caller(router.current_event)
    items = [LocationOut.of(x) for x in services().stock.locations(who.store_id)]
    return Response(200, "application/json", LocationListOut(items=items))
