"""API Gateway (REST, Lambda proxy), locally: routes, authorizer and gateway responses
read from template.yaml."""

from __future__ import annotations

import base64
import fnmatch
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tools import apigw, template
from tools.local.functions import FunctionPool


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class AuthorizerConfig:
    function: str
    header: str
    ttl: int


def default_authorizer() -> AuthorizerConfig | None:
    """The template's default authorizer of the API (None: no authorizer)."""
    for api in template.resources("AWS::Serverless::Api").values():
        auth = api["Properties"].get("Auth", {})
        name = auth.get("DefaultAuthorizer")
        if not name:
            continue
        cfg = auth["Authorizers"][name]
        arn = cfg["FunctionArn"]
        function = arn["Fn::GetAtt"][0] if isinstance(arn["Fn::GetAtt"], list) else arn["Fn::GetAtt"].split(".")[0]
        identity = cfg.get("Identity", {})
        return AuthorizerConfig(
            function, identity.get("Header", "Authorization"), int(identity.get("ReauthorizeEvery", 300))
        )
    return None


def _gateway_responses() -> dict[str, tuple[int | None, str]]:
    out: dict[str, tuple[int | None, str]] = {}
    for res in template.resources("AWS::ApiGateway::GatewayResponse").values():
        props = res["Properties"]
        body = props.get("ResponseTemplates", {}).get("application/json", "")
        status = props.get("StatusCode")
        out[props["ResponseType"]] = (int(status) if status is not None else None, body)
    return out


# The error codes of the API.md shape for a gateway answer the template does not customise.
_CODES = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 413: "PAYLOAD_TOO_LARGE", 429: "THROTTLED"}


def _error_body(status: int, message: str) -> str:
    code = _CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return json.dumps({"error": {"code": code, "message": message, "details": {}}})


class Gateway:
    def __init__(self, pools: dict[str, FunctionPool], stage: str = "v1") -> None:
        self._pools = pools
        self._stage = stage
        self._routes = apigw.routes()
        self._auth = default_authorizer()
        self._responses = _gateway_responses()
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _gateway_reply(self, kind: str, default_status: int, default_message: str, error_type: str = "") -> Reply:
        """API Gateway's own answer of type ``kind``: the template's response of that type, else its
        DEFAULT_4XX / DEFAULT_5XX (with the type's status), else the API.md error shape (API
        Gateway's built-in ``{"message": ...}`` is not stockhold's contract; template.yaml should
        declare DEFAULT_4XX / DEFAULT_5XX so that AWS answers the same)."""
        status, body = (None, "") if kind.startswith("DEFAULT_") else self._responses.get(kind, (None, ""))
        if not body:
            status = status or default_status
            family = "DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX"
            body = self._responses.get(family, (None, ""))[1] or _error_body(status, default_message)
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type or kind)]
        return Reply(status or default_status, headers, body.encode())

    def function_failed(self) -> Reply:
        """A function error, an environment that died, or a malformed proxy answer: API Gateway's 502
        (no response type of its own: only DEFAULT_5XX customises it)."""
        return self._gateway_reply("DEFAULT_5XX", 502, "Internal server error", "InternalServerErrorException")

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Reply:
        url = urlsplit(target)
        path = unquote(url.path) or "/"
        found = apigw.find_route(method.upper(), path) if self._routes else None
        if found is None:
            # API Gateway answers an unknown route as MISSING_AUTHENTICATION_TOKEN.
            return self._gateway_reply("MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token")
        route, params = found
        header_map: dict[str, str] = {}
        for k, v in headers:
            header_map[k] = v
        authorizer: dict[str, Any] | None = None
        if route.needs_auth and self._auth is not None:
            outcome = self._authorize(header_map, route, path)
            if isinstance(outcome, Reply):
                return outcome
            authorizer = outcome
        query = {k: v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        event = apigw.build_event(
            route,
            params,
            path=path,
            headers=header_map,
            query=query,
            body=body or None,
            authorizer=authorizer,
            stage=self._stage,
        )
        result = self._pools[route.function].invoke(event)
        if result.failed or not isinstance(result.payload, dict) or "statusCode" not in result.payload:
            return self.function_failed()
        return _to_reply(result.payload)

    def _authorize(self, headers: dict[str, str], route: apigw.Route, path: str) -> dict[str, Any] | Reply:
        assert self._auth is not None
        token = next((v for k, v in headers.items() if k.lower() == self._auth.header.lower()), None)
        if not token:
            return self._gateway_reply("UNAUTHORIZED", 401, "Unauthorized")
        method_arn = f"arn:aws:execute-api:us-east-1:000000000000:local/{self._stage}/{route.method}{path}"
        with self._lock:
            cached = self._cache.get(token)
        if cached is None or cached[0] < time.monotonic():
            result = self._pools[self._auth.function].invoke(
                {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}
            )
            if result.failed:
                if result.error_message == "Unauthorized":
                    return self._gateway_reply("UNAUTHORIZED", 401, "Unauthorized")
                return self._gateway_reply("AUTHORIZER_FAILURE", 500, "AuthorizerConfigurationException")
            cached = (time.monotonic() + self._auth.ttl, result.payload)
            with self._lock:
                self._cache[token] = cached
        policy = cached[1]
        if not _allows(policy.get("policyDocument", {}), method_arn):
            return self._gateway_reply("ACCESS_DENIED", 403, "User is not authorized to access this resource")
        return {**(policy.get("context") or {}), "principalId": policy.get("principalId")}


def _allows(document: dict[str, Any], method_arn: str) -> bool:
    allowed = False
    for statement in document.get("Statement", []):
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if any(fnmatch.fnmatchcase(method_arn, r) for r in resources):
            if statement.get("Effect") == "Deny":
                return False
            allowed = True
    return allowed


def _to_reply(payload: dict[str, Any]) -> Reply:
    headers: list[tuple[str, str]] = []
    for k, v in (payload.get("headers") or {}).items():
        headers.append((k, str(v)))
    for k, values in (payload.get("multiValueHeaders") or {}).items():
        if k not in (payload.get("headers") or {}):
            headers.extend((k, str(v)) for v in values)
    body = payload.get("body") or ""
    raw = base64.b64decode(body) if payload.get("isBase64Encoded") else str(body).encode()
    return Reply(int(payload["statusCode"]), headers, raw)
