"""Build the API Gateway REST proxy events a deployed function receives.

Used by tests and by the local stack, so both hand handlers the same event shape.
Routes come from template.yaml.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from tools import template


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # template path, e.g. /stock/{sku}
    function: str
    needs_auth: bool
    pattern: re.Pattern[str]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        # The whole path, as API Gateway matches it: ``$`` alone would also match before a final newline.
        m = self.pattern.fullmatch(path)
        return {k: unquote(v) for k, v in m.groupdict().items()} if m else None


def routes() -> list[Route]:
    out = []
    for method, resource, function, auth in template.api_routes():
        regex = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(resource))
        out.append(Route(method, resource, function, auth, re.compile(f"^{regex}$")))
    # Literal segments win over parameters, as in API Gateway (/stock/validate before /stock/{sku}).
    out.sort(key=lambda r: r.resource.count("{"))
    return out


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in routes():
        params = route.match(method, path)
        if params is not None:
            return route, params
    return None


def build_event(
    route: Route,
    path_params: dict[str, str],
    *,
    path: str,
    headers: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    body: bytes | str | None = None,
    authorizer: dict[str, Any] | None = None,
    stage: str = "v1",
) -> dict[str, Any]:
    headers = dict(headers or {})
    is_b64 = False
    text: str | None
    if body is None or body == b"" or body == "":
        text = None
    elif isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
    else:
        text = body
    query = query or {}
    now = time.time()
    return {
        "resource": route.resource,
        "path": path,
        "httpMethod": route.method,
        "headers": headers or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": dict(query) or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.resource,
            "httpMethod": route.method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(now * 1000),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "accountId": "123456789012",
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent")},
            "authorizer": authorizer,
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }
