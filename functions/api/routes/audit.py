"""The audit trail (admin): who changed a reservation, SKU, order or checkout, and how."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from http_common import answers, caller

from stockhold.api_models import SKU_PATTERN
from stockhold.api_outputs import AuditEntityOut, AuditEntryOut, AuditPageOut
from stockhold.domain.errors import ValidationFailed
from stockhold.domain.models import rfc3339
from stockhold.wiring import services

if TYPE_CHECKING:
    from stockhold.data.audit import AuditEntry, Trail

router = APIGatewayRouter()
# The query parameters that name a trail; the audit rules are imported by the first GET /audit.
_BY = ("reservationId", "sku", "orderId", "checkoutId")
_KNOWN = {*_BY, "limit", "nextToken"}
_IDENT = r"^[\x21-\x7e]+$"


@cache
def trails() -> dict[str, Trail]:
    """Query parameter -> the trail it lists."""
    from stockhold.data.audit import Trail

    return dict(zip(_BY, (Trail.RESERVATION, Trail.SKU, Trail.ORDER, Trail.CHECKOUT), strict=True))


def _out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        at=rfc3339(entry.at),
        action=entry.action,
        entity=AuditEntityOut(type=entry.entity.type, id=entry.entity.id),
        ref=entry.ref,
        before=entry.before,
        after=entry.after,
        actor=entry.actor,
        reason=entry.reason,
    )


@router.get(
    "/audit",
    operation_id="getAuditTrail",
    summary="The audit trail of one reservation, SKU, order or checkout, newest first (admin)",
    description="Give exactly one of reservationId, sku, orderId and checkoutId (none, or more than one, is "
    "400: a rule the schema cannot express). Any other query parameter is 400. Pages of `limit` entries; "
    "pass `nextToken` from the previous page for the next.",
    tags=["audit"],
    responses=answers({200: "One page of the trail, newest first"}),
)
def get_audit(
    reservation_id: Annotated[
        str | None, Query(alias="reservationId", min_length=1, max_length=64, pattern=_IDENT)
    ] = None,
    sku: Annotated[str | None, Query(pattern=SKU_PATTERN)] = None,
    order_id: Annotated[str | None, Query(alias="orderId", min_length=1, max_length=128, pattern=_IDENT)] = None,
    checkout_id: Annotated[str | None, Query(alias="checkoutId", min_length=1, max_length=64, pattern=_IDENT)] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Entries per page")] = 50,
    next_token: Annotated[str | None, Query(alias="nextToken", description="From the previous page")] = None,
) -> Response[AuditPageOut]:
    who = caller(router.current_event, admin=True)
    unknown = sorted(set(router.current_event.query_string_parameters or {}) - _KNOWN)
    if unknown:
        raise ValidationFailed(
            f"unknown query parameter: {', '.join(unknown)}", {"fields": [{"field": f"query.{n}"} for n in unknown]}
        )
    asked = {"reservationId": reservation_id, "sku": sku, "orderId": order_id, "checkoutId": checkout_id}
    given = {name: value for name, value in asked.items() if value is not None}
    if len(given) != 1:
        names = sorted(given) if given else sorted(_BY)
        raise ValidationFailed(
            "give exactly one of reservationId, sku, orderId, checkoutId"
            + (f" (got {', '.join(names)})" if given else ""),
            {"fields": [{"field": f"query.{n}"} for n in names]},
        )
    ((name, value),) = given.items()
    page = services().audit.trail(who.store_id, trails()[name], value, limit=limit, next_token=next_token)
    return Response(
        200, "application/json", AuditPageOut(items=[_out(x) for x in page.items], next_token=page.next_token)
    )
