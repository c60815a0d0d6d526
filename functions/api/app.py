"""The stockhold HTTP API (API Gateway REST proxy -> Powertools resolver).

Routes live in routes/ (one module per resource); this file wires them,
maps domain errors to the API.md error shape in one place, and wraps mutating
requests that carry an ``Idempotency-Key`` in Powertools idempotency.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError, ValidationException
from aws_lambda_powertools.logging import correlation_paths
from http_common import RouteAccess, error_response, idempotent_resolve, precheck, validation_details
from routes import audit, checkouts, locations, orders, reservations, stock

from stockhold import actor
from stockhold.domain.errors import StockholdError
from stockhold.observability import logger, metrics, tracer
from stockhold.settings import Settings, get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = APIGatewayRestResolver(enable_validation=True)
app.include_router(stock.router)
app.include_router(locations.router)
app.include_router(reservations.router)
app.include_router(checkouts.router)
app.include_router(orders.router)
app.include_router(audit.router)
# Which routes need an admin key, from the handlers themselves: refused before validation.
ACCESS = RouteAccess(app)


DESCRIPTION = """Stock reservations for online stores. See API.md for the contract.

Every error has one shape, `{"error": {"code", "message", "details"}}`, and changes nothing.
Rules JSON Schema cannot express are in the operations' descriptions, and one holds for every
integer field: it is written as a JSON integer. `2.0` is refused (400) like `"2"` and `true`,
although JSON Schema's `integer` admits it.
Configured limits (`holdSeconds`) are the deployment's settings in the document served at
GET /openapi.json, and the template's Parameter defaults in the checked-in docs/openapi.json
(generated at build time by `make openapi`)."""


def openapi_json(settings: Settings | None = None) -> str:
    """The OpenAPI document, generated from the routes and models. Configured bounds come from
    ``settings``: the template's defaults (``Settings()``) unless given; docs/openapi.json is this.
    Generated when asked, never at import: the OpenAPI models (Powertools builds them as they are
    imported) and the schema generation are no part of a cold start."""
    import openapi_doc
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    generated = app.get_openapi_json_schema(
        title="stockhold",
        version="1.0.0",
        description=DESCRIPTION,
        security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer <API key>")},
        security=[{"apiKey": []}],
    )
    doc = openapi_doc.finish(
        json.loads(generated),
        settings=settings or Settings(),
        admin_operations=[route.operation_id for route in ACCESS.admin_routes],
    )
    return json.dumps(doc, indent=2, sort_keys=True)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[Any]:
    """This deployment's document: its own settings' bounds."""
    return Response(status_code=200, content_type="application/json", body=openapi_json(get_settings()))


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
