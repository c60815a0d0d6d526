"""The stockhold HTTP API (API Gateway REST proxy -> Powertools resolver).

Routes live in stock_routes.py and reservation_routes.py; this file wires them,
maps domain errors to the API.md error shape in one place, and wraps mutating
requests that carry an ``Idempotency-Key`` in Powertools idempotency.
"""

from __future__ import annotations

from typing import Any

import audit_routes
import checkout_routes
import order_routes
import reservation_routes
import stock_routes
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError, ValidationException
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from http_common import RouteAccess, error_response, idempotent_resolve, precheck, validation_details

from stockhold import actor
from stockhold.errors import StockholdError
from stockhold.observability import logger, metrics, tracer

app = APIGatewayRestResolver(enable_validation=True)
app.include_router(stock_routes.router)
app.include_router(reservation_routes.router)
app.include_router(checkout_routes.router)
app.include_router(order_routes.router)
app.include_router(audit_routes.router)
# Which routes need an admin key, from the handlers themselves: refused before validation.
ACCESS = RouteAccess(app)


def openapi_json() -> str:
    """The OpenAPI document, generated from the routes and models (also written to docs/openapi.json)."""
    return app.get_openapi_json_schema(
        title="stockhold",
        version="1.0.0",
        description="Stock reservations for online stores. See API.md for the contract.",
        security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer <API key>")},
        security=[{"apiKey": []}],
    )


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[Any]:
    return Response(status_code=200, content_type="application/json", body=openapi_json())


@app.exception_handler(StockholdError)
def domain_error(exc: StockholdError) -> Response[Any]:
    if exc.status >= 500:
        logger.warning("request failed", code=exc.code, error=exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.details)


@app.exception_handler([RequestValidationError, ValidationException])
def invalid_request(exc: ValidationException) -> Response[Any]:
    fields = validation_details(exc.errors())
    names = ", ".join(f["field"] for f in fields)
    return error_response(400, "VALIDATION_ERROR", f"invalid request: {names}", {"fields": fields})


@app.not_found
def no_route(_: Exception) -> Response[Any]:
    return error_response(404, "NOT_FOUND", "no such route")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rejected = precheck(event, ACCESS)
    if rejected is not None:
        return rejected
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    with actor.acting_as(actor.api_caller(str(authorizer.get("role", "unknown")), authorizer.get("keyId"))):
        return idempotent_resolve(app, event, context)
