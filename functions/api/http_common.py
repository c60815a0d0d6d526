"""Shared HTTP plumbing of the API function: the caller's identity, the error shape,
request pre-checks (path, role, size, encoding, JSON) and Idempotency-Key handling."""

from __future__ import annotations

import ast
import base64
import binascii
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Route
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from stockhold.api_outputs import ErrorOut
from stockhold.domain.errors import Forbidden, StockholdError, Unauthorized
from stockhold.domain.models import Role
from stockhold.observability import logger
from stockhold.usecases.tenancy import Principal
from stockhold.wiring import dynamodb_client, services

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

MAX_BODY_BYTES = 64 * 1024

_ERROR = {"application/json": {"model": ErrorOut}}
# The error answers of the API, for the OpenAPI document (shape: API.md "Errors"). A route
# declares its own with ``answers()``; openapi_doc.finish adds what follows from its method and role.
ERRORS: dict[int, dict[str, Any]] = {
    400: {
        "description": "VALIDATION_ERROR: the request is malformed (body, path, query or header); "
        "details.fields names each bad field",
        "content": _ERROR,
    },
    401: {"description": "UNAUTHORIZED: missing or unknown API key", "content": _ERROR},
    403: {"description": "FORBIDDEN: this route needs an admin key", "content": _ERROR},
    404: {
        "description": "NOT_FOUND: no such resource in this store (or another store's), or no such route "
        "(a path with a control character)",
        "content": _ERROR,
    },
    409: {"description": "The request conflicts with the resource's state; error.code says how", "content": _ERROR},
    410: {
        "description": "RESERVATION_EXPIRED: the hold's deadline passed (whether or not the release has run yet)",
        "content": _ERROR,
    },
    413: {"description": "PAYLOAD_TOO_LARGE: the body is over 64 KiB", "content": _ERROR},
    415: {
        "description": "UNSUPPORTED_MEDIA_TYPE: the body has a Content-Encoding other than identity",
        "content": _ERROR,
    },
    429: {"description": "THROTTLED: API Gateway's rate limit; retry with backoff", "content": _ERROR},
    503: {
        "description": "TOO_BUSY: contention did not clear within bounded retries; nothing changed, retry",
        "content": _ERROR,
    },
}
# What every route may answer, whatever it does: a malformed request, no key, a body too large
# or compressed (checked before routing), and API Gateway's throttling.
COMMON_ERRORS = (400, 401, 413, 415, 429)
# The 409 codes of API.md "Errors", each with when it is given.
CONFLICTS: dict[str, str] = {
    "INSUFFICIENT_STOCK": "some line cannot be held; details.items lists every short line with requested and "
    "available (0 for an unknown SKU)",
    "PURCHASE_LIMIT_REACHED": "a line exceeds the SKU's maxPerCart, or the customer's units would exceed "
    "maxPerCustomer; details.items: {sku, requested, limit, used}",
    "CART_ALREADY_RESERVED": "the cart has an active reservation and replace was not set; details.reservationId",
    "RESERVATION_NOT_ACTIVE": "the reservation already ended (confirmed or released); details.status",
    "RESERVATION_HELD_BY_CHECKOUT": "the reservation belongs to a checkout: use the checkout's routes; "
    "details.checkoutId",
    "CHECKOUT_NOT_OPEN": "the checkout is past the state this step needs; details.status",
    "ORDER_NOT_OPEN": "the order is past the state this step needs; details.status",
    "ORDER_ID_TAKEN": "another reservation already confirmed with this orderId",
    "EXTENSION_LIMIT_REACHED": "no extensions left",
    "STOCK_CONFLICT": "the change would take a stock counter below its floor",
    "IDEMPOTENCY_KEY_REUSED": "this Idempotency-Key was used with a different request",
    "IDEMPOTENCY_KEY_IN_USE": "a request with this Idempotency-Key is still running; retry shortly",
}
IDEMPOTENCY_CONFLICTS = ("IDEMPOTENCY_KEY_REUSED", "IDEMPOTENCY_KEY_IN_USE")
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def conflict(codes: Sequence[str]) -> dict[str, Any]:
    """The 409 answer of an operation that gives these codes (API.md "Errors")."""
    lines = "\n".join(f"- `{code}`: {CONFLICTS[code]}" for code in codes)
    return {"description": f"Conflict; error.code is one of:\n{lines}", "content": _ERROR}


def answers(
    success: dict[int, str],
    *errors: int,
    conflicts: Sequence[str] = (),
    links: dict[str, dict[str, Any]] | None = None,
) -> dict[int, Any]:
    """A route's answers for the OpenAPI document: each success status (its body is the handler's
    return model; ``links`` name the operations that take the resource further), the errors every
    route may give, ``errors`` and a 409 listing ``conflicts``. openapi_doc.finish adds 403 to admin
    routes, 404 to those with a path parameter and the Idempotency-Key codes to mutating ones."""
    out: dict[int, Any] = {
        status: {"description": text, **({"links": links} if links else {})} for status, text in success.items()
    }
    for status in sorted({*COMMON_ERRORS, *errors}):
        out[status] = ERRORS[status]
    if conflicts:
        out[409] = conflict(conflicts)
    return out


MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def caller(event: APIGatewayProxyEvent, *, admin: bool = False) -> Principal:
    """The store and role the authorizer put on the request; never read from the body."""
    ctx: dict[str, Any] = dict(event.request_context.authorizer.raw_event or {})
    store_id, role = ctx.get("storeId"), ctx.get("role")
    if not store_id or role not in (Role.ADMIN.value, Role.STOREFRONT.value):
        raise Unauthorized("missing or unknown API key")
    principal = Principal(store_id=str(store_id), role=Role(role))
    if admin and principal.role is not Role.ADMIN:
        raise Forbidden("this route needs an admin key")
    return principal


def idempotency_key(app_or_event: dict[str, Any]) -> str | None:
    headers = {k.lower(): v for k, v in (app_or_event.get("headers") or {}).items()}
    key = headers.get("idempotency-key")
    return key.strip() if key and key.strip() else None


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps({"error": {"code": code, "message": message, "details": details or {}}}),
    )


def _raw_error(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps({"error": {"code": code, "message": message, "details": details or {}}}),
        "isBase64Encoded": False,
    }


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Powertools/pydantic errors as ``[{"field": "items[0].quantity", "message": ..., "type": ...}]``."""
    out = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p not in ("body",)]
        if err.get("type") == "json_invalid":
            loc = []  # the location is a character offset, not a field
        field = ""
        for part in loc:
            if isinstance(part, int):
                field += f"[{part}]"
            else:
                field += ("." if field else "") + str(part)
        out.append(
            {"field": field or "body", "message": str(err.get("msg", "invalid")), "type": err.get("type", "invalid")}
        )
    return out


# C0 controls, DEL and C1 controls (Unicode category Cc). No route takes one in its path.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _has_control_character(event: dict[str, Any]) -> bool:
    """The path, as API Gateway gave it and once more percent-decoded, or a path parameter
    holds a control character. Python's ``$`` matches before a final newline, so Powertools'
    route regexes would otherwise take ``/stock/MUG\n`` for ``/stock/MUG``."""
    path = str(event.get("path") or "")
    values = [path, unquote(path), *(str(v) for v in (event.get("pathParameters") or {}).values())]
    return any(_CONTROL.search(v) for v in values)


def _calls_caller_as_admin(func: Callable[..., Any]) -> bool:
    """The handler calls ``caller(..., admin=True)``: the one place a route says it is admin-only."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name == caller.__name__ and any(
            kw.arg == "admin" and isinstance(kw.value, ast.Constant) and kw.value.value is True for kw in node.keywords
        ):
            return True
    return False


class RouteAccess:
    """Which routes need an admin key, read once from the handlers' own ``caller(..., admin=True)``,
    so a storefront key is refused (403) before request validation runs: validation would answer
    a bad body with 400 first, and show the admin route's rules to a storefront key."""

    def __init__(self, app: APIGatewayRestResolver) -> None:
        # Powertools' own order of resolution: static routes, then dynamic ones; first match wins.
        self._routes: list[Route] = [*app._static_routes, *app._dynamic_routes]

    @property
    def admin_routes(self) -> tuple[Route, ...]:
        """Every admin-only route (the OpenAPI document and the tests ask; a request asks ``is_admin``)."""
        return tuple(r for r in self._routes if self.is_admin(r))

    @staticmethod
    @cache
    def is_admin(route: Route) -> bool:
        """Read from the handler's source once per route and container, when a request first needs it:
        parsing every handler at import took a cold start's time for routes it never called."""
        return _calls_caller_as_admin(route.func)

    def route(self, method: str, path: str) -> Route | None:
        """The route Powertools would run for this method and path."""
        return next((r for r in self._routes if r.method == method and r.rule.match(path)), None)

    def refused(self, event: dict[str, Any]) -> dict[str, Any] | None:
        route = self.route(str(event.get("httpMethod", "")).upper(), str(event.get("path") or ""))
        if route is None or not self.is_admin(route):
            return None
        try:
            caller(APIGatewayProxyEvent(event), admin=True)
        except StockholdError as exc:
            return _raw_error(exc.status, exc.code, exc.message, exc.details)
        return None


class _BodyFault(Exception):
    def __init__(self, fields: list[dict[str, str]]) -> None:
        self.fields = fields


def _field_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out or "body"


class _WithDuplicates(dict[str, Any]):
    """A JSON object that named some key more than once (the last value kept, as json.loads does)."""

    duplicates: list[str]


def _parse_json_object(text: str) -> Any:
    """``json.loads``, refusing what it would silently misread or crash on: a duplicate key (the
    last would win) and an integer literal past Python's int-parsing limit (a ValueError that is
    not a JSONDecodeError, so it escaped as a 502). Both raise ``_BodyFault`` naming each field."""
    limit = sys.get_int_max_str_digits()
    too_long = object()
    suspect: list[bool] = []

    def parse_int(literal: str) -> Any:
        if limit and len(literal.lstrip("-")) > limit:
            suspect.append(True)
            return too_long
        return int(literal)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        suspect.append(True)
        seen: set[str] = set()
        dup = _WithDuplicates(obj)
        dup.duplicates = []
        for key, _ in items:
            if key in seen and key not in dup.duplicates:
                dup.duplicates.append(key)
            seen.add(key)
        return dup

    parsed = json.loads(text, parse_int=parse_int, object_pairs_hook=pairs)
    if not suspect:
        return parsed
    faults: list[dict[str, str]] = []
    todo: list[tuple[Any, tuple[str | int, ...]]] = [(parsed, ())]
    while todo:  # iterative: the body may be nested deep
        value, at = todo.pop()
        if value is too_long:
            faults.append({"field": _field_path(at), "message": f"integer of more than {limit} digits"})
        elif isinstance(value, dict):
            for key in getattr(value, "duplicates", ()):
                faults.append({"field": _field_path((*at, key)), "message": f"duplicate key {key!r}"})
            todo.extend((v, (*at, k)) for k, v in value.items())
        elif isinstance(value, list):
            todo.extend((v, (*at, i)) for i, v in enumerate(value))
    raise _BodyFault(sorted(faults, key=lambda f: f["field"]))


def _unsupported_encoding(headers: dict[str, Any]) -> str | None:
    """The request's Content-Encoding when it is anything but absent or ``identity``."""
    value = str(headers.get("content-encoding") or "")
    codings = [c.strip().lower() for c in value.split(",") if c.strip()]
    return value.strip() if any(c != "identity" for c in codings) else None


def precheck(event: dict[str, Any], access: RouteAccess) -> dict[str, Any] | None:
    """Refuse, before any work, in this order: a path with a control character (404, as no route
    matches it), a storefront key on an admin route (403, whatever the body), a body with a
    Content-Encoding other than identity (415), not JSON (400), over 64 KiB (413), not UTF-8 (400),
    with a duplicate key or an over-long integer (400), or not a JSON object (400)."""
    if _has_control_character(event):
        return _raw_error(404, "NOT_FOUND", "no such route")
    refused = access.refused(event)
    if refused is not None:
        return refused
    body = event.get("body")
    if body is None:
        return None
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    encoding = _unsupported_encoding(headers)
    if encoding is not None:
        return _raw_error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Encoding {encoding} is not supported; send the body uncompressed",
            {"fields": [{"field": "Content-Encoding"}]},
            headers={"Accept-Encoding": "identity"},
        )
    content_type = str(headers.get("content-type", "application/json")).split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        return _raw_error(
            400,
            "VALIDATION_ERROR",
            f"send JSON with Content-Type: application/json (got {content_type or 'none'})",
            {"fields": [{"field": "Content-Type"}]},
        )
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return _raw_error(400, "VALIDATION_ERROR", "body is not valid base64", {"fields": [{"field": "body"}]})
    else:
        raw = body.encode("utf-8", errors="surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        return _raw_error(
            413,
            "PAYLOAD_TOO_LARGE",
            f"body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}",
            {"limit": MAX_BODY_BYTES},
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _raw_error(400, "VALIDATION_ERROR", "body must be UTF-8 JSON", {"fields": [{"field": "body"}]})
    try:
        parsed = _parse_json_object(text) if text.strip() else {}
    except RecursionError:
        return _raw_error(400, "VALIDATION_ERROR", "body is nested too deeply", {"fields": [{"field": "body"}]})
    except _BodyFault as fault:
        names = ", ".join(f"{f['field']} ({f['message']})" for f in fault.fields)
        return _raw_error(400, "VALIDATION_ERROR", f"invalid request: {names}", {"fields": fault.fields})
    except json.JSONDecodeError:
        return None  # the resolver reports malformed JSON with its position
    except ValueError as exc:  # any other refusal of the parser: never let it reach the resolver as a 502
        return _raw_error(400, "VALIDATION_ERROR", f"body is not valid JSON: {exc}", {"fields": [{"field": "body"}]})
    if not isinstance(parsed, dict):
        # Powertools would otherwise take the first element of a JSON array as the body.
        return _raw_error(400, "VALIDATION_ERROR", "body must be a JSON object", {"fields": [{"field": "body"}]})
    return None


class _ServerError(Exception):
    """A 5xx answer: raised through the idempotency wrapper so the key is not spent on it."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response


def _mark_replayed(response: Any, _record: DataRecord) -> Any:
    if isinstance(response, dict):
        response.setdefault("headers", {})["Idempotent-Replayed"] = "true"
    return response


_RUNNER: dict[str, Any] = {}
# The live objects of the request being made idempotent. Kept out of the hashed payload,
# which Powertools deep-copies.
_LIVE: ContextVar[tuple[APIGatewayRestResolver, dict[str, Any], LambdaContext]] = ContextVar("stockhold_live")


def _idempotent_runner() -> Any:
    """Built once per container (per Services: tests swap them) around the Powertools persistence layer,
    on the first keyed request: Powertools' idempotency package is imported then, not at cold start."""
    current = services()
    cached = _RUNNER.get("for")
    if cached is current:
        return _RUNNER["runner"]
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    settings = current.settings
    config = IdempotencyConfig(
        event_key_jmespath="[storeId, role, key]",
        payload_validation_jmespath="[method, path, body]",
        expires_after_seconds=settings.IDEMPOTENCY_TTL_SECONDS,
        raise_on_no_idempotency_key=True,
        response_hook=_mark_replayed,  # type: ignore[arg-type]  # Powertools types it as a Protocol
    )
    layer = DynamoDBPersistenceLayer(table_name=settings.IDEMPOTENCY_TABLE_NAME, boto3_client=dynamodb_client())

    @idempotent_function(data_keyword_argument="request", persistence_store=layer, config=config)
    def run(request: dict[str, Any]) -> dict[str, Any]:
        app, event, context = _LIVE.get()
        response: dict[str, Any] = app.resolve(event, context)
        if response["statusCode"] >= 500:
            raise _ServerError(response)
        return response

    _RUNNER.update({"for": current, "runner": (config, run)})
    return config, run


def idempotent_resolve(app: APIGatewayRestResolver, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Resolve the request; a mutating one with an Idempotency-Key runs at most once per store and key."""
    key = idempotency_key(event)
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    store_id = authorizer.get("storeId")
    if key is None or not store_id or event.get("httpMethod") not in MUTATING:
        result: dict[str, Any] = app.resolve(event, context)
        return result
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        return _raw_error(
            400,
            "VALIDATION_ERROR",
            f"Idempotency-Key is at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
            {"fields": [{"field": "Idempotency-Key"}]},
        )
    body: Any = event.get("body")
    try:
        body = json.loads(body) if body else None
    except ValueError:
        pass  # compared as text; the resolver answers 400 for it
    config, run = _idempotent_runner()
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    config.register_lambda_context(context)
    request = {
        "storeId": store_id,
        "role": authorizer.get("role"),  # a key replays only to the role that made it (403s differ)
        "key": key,
        "method": event.get("httpMethod"),
        "path": event.get("path"),
        "body": body,
    }
    token = _LIVE.set((app, event, context))
    try:
        response: dict[str, Any] = run(request=request)
        return response
    except _ServerError as failed:
        return failed.response
    except IdempotencyValidationError:
        return _raw_error(409, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with a different request")
    except IdempotencyAlreadyInProgressError:
        logger.info("idempotency key in use", key=key)
        return _raw_error(
            409, "IDEMPOTENCY_KEY_IN_USE", "a request with this Idempotency-Key is still running; retry shortly"
        )
    finally:
        _LIVE.reset(token)
