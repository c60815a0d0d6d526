"""The OpenAPI document of the API function: Powertools generates it from the routes and models;
this module adds what Powertools cannot know, each item taken from the code that enforces it.

- A mutating request (http_common.MUTATING) takes an ``Idempotency-Key`` header (at most
  http_common.MAX_IDEMPOTENCY_KEY_LENGTH characters), may answer 409 IDEMPOTENCY_KEY_REUSED or
  IDEMPOTENCY_KEY_IN_USE, and a replay carries ``Idempotent-Replayed: true`` (http_common.idempotent_resolve).
- A path with a control character in a parameter matches no route: 404 (http_common.precheck).
- A route whose handler calls ``caller(..., admin=True)`` answers 403 to a storefront key (RouteAccess).
- ``holdSeconds`` is bounded by the settings MIN_HOLD_SECONDS..MAX_HOLD_SECONDS (service._hold_seconds).
- A body must be a JSON object when sent (http_common.precheck): never ``null``.
- Powertools' 422 ``HTTPValidationError`` is never sent: a validation error is a 400 (app.invalid_request).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from http_common import ERRORS, IDEMPOTENCY_CONFLICTS, MAX_IDEMPOTENCY_KEY_LENGTH, MUTATING, conflict

from stockhold.settings import Settings

ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key and body answers the first response (with "
    "`Idempotent-Replayed: true`) and changes nothing more; the same key with another request is 409 "
    "IDEMPOTENCY_KEY_REUSED. Keys are kept per store for the idempotency TTL (default 24 h).",
    "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
}
REPLAYED = {
    "description": "`true` when this is the stored answer of an earlier request with the same Idempotency-Key",
    "schema": {"type": "string", "enum": ["true"]},
}
# Where the API is. API Gateway serves it under /{stage}; the local stack (make run) at the root.
# The first, relative, entry is right wherever this document is fetched from (GET /openapi.json
# of either); the others are for a copy read from a file (docs/openapi.json).
SERVERS: list[dict[str, Any]] = [
    {
        "url": ".",
        "description": "Where this document is served from (GET /openapi.json): on AWS "
        "https://<api id>.execute-api.<region>.amazonaws.com/<stage>/, with make run http://127.0.0.1:3000/",
    },
    {
        "url": "https://{apiId}.execute-api.{region}.amazonaws.com/{stage}",
        "description": "API Gateway: the deployed stage (stack Output ApiUrl)",
        "variables": {
            "apiId": {"default": "api-id", "description": "The REST API id (sam deploy prints it)"},
            "region": {"default": "us-east-1"},
            "stage": {"default": "v1", "description": "template.yaml Parameter StageName"},
        },
    },
    {"url": "http://127.0.0.1:3000", "description": "make run: the local stack, served at the root"},
]


def finish(doc: dict[str, Any], *, settings: Settings, admin_operations: Iterable[str]) -> dict[str, Any]:
    """Complete Powertools' document in place (see the module docstring) and return it."""
    admin = set(admin_operations)
    for operations in doc.get("paths", {}).values():
        for method, op in operations.items():
            responses: dict[str, Any] = op["responses"]
            responses.pop("422", None)
            if any(p.get("in") == "path" for p in op.get("parameters", [])):
                # A path parameter with a control character matches no route (precheck): 404.
                responses.setdefault("404", {"description": ERRORS[404]["description"], "content": ERROR_CONTENT})
            if op.get("operationId") in admin:
                responses["403"] = {"description": ERRORS[403]["description"], "content": ERROR_CONTENT}
            if method.upper() in MUTATING:
                _idempotent(op, responses)
            _body_is_an_object(op)
            op["responses"] = dict(sorted(responses.items()))
    schemas: dict[str, Any] = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)  # Powertools' own error shapes, which this API never sends
    for schema in schemas.values():
        hold = schema.get("properties", {}).get("holdSeconds")
        if hold is not None:
            _bound(hold, settings.MIN_HOLD_SECONDS, settings.MAX_HOLD_SECONDS)
    doc["servers"] = SERVERS
    _whole_bounds(doc)
    return doc


def _idempotent(op: dict[str, Any], responses: dict[str, Any]) -> None:
    op["parameters"] = [*op.get("parameters", []), IDEMPOTENCY_KEY]
    for status, answer in responses.items():
        if status.startswith("2"):
            answer["headers"] = {"Idempotent-Replayed": REPLAYED}
    added = conflict(IDEMPOTENCY_CONFLICTS)["description"]
    current = responses.get("409")
    if current is None:
        responses["409"] = {"description": added, "content": ERROR_CONTENT}
    else:
        codes = added.split("\n", 1)[1]
        responses["409"] = {**current, "description": f"{current['description']}\n{codes}"}


def _body_is_an_object(op: dict[str, Any]) -> None:
    """An optional body is ``X | None`` in the handler: left out, not ``null`` (precheck refuses that)."""
    for media in op.get("requestBody", {}).get("content", {}).values():
        schema = media.get("schema", {})
        branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
        if len(branches) == 1 and len(schema["anyOf"]) == 2:
            media["schema"] = branches[0]


def _bound(prop: dict[str, Any], low: int, high: int) -> None:
    for branch in [prop, *prop.get("anyOf", [])]:
        if branch.get("type") == "integer":
            branch["minimum"], branch["maximum"] = low, high


def _whole_bounds(node: Any) -> None:
    """Powertools' models hold numeric bounds as floats: write whole ones as integers (1000, not 1000.0)."""
    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                value = item.get(key)
                if isinstance(value, float) and value.is_integer():
                    item[key] = int(value)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
