"""Test helpers: a Lambda context, function loading and API calls through the real handler."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tools import apigw
from tools.local.context import LambdaContext
from tools.template import ROOT


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/app.py as its own module, its folder first on sys.path (as in Lambda)."""
    folder = ROOT / "functions" / name
    module_name = f"stockhold_fn_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(module_name, folder / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def error_code(self) -> str | None:
        return self.body.get("error", {}).get("code") if isinstance(self.body, dict) else None


class ApiClient:
    """Calls the API function's handler with the event API Gateway would send."""

    def __init__(self, store: str = "demo", role: str = "storefront") -> None:
        self.store, self.role = store, role
        self.handler = load_function("api").lambda_handler

    def as_(self, store: str | None = None, role: str | None = None) -> ApiClient:
        return ApiClient(store or self.store, role or self.role)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> ApiResponse:
        found = apigw.find_route(method, path)
        assert found, f"no route {method} {path} in template.yaml"
        route, params = found
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        event = apigw.build_event(
            route,
            params,
            path=path,
            headers=hdrs,
            query={k: [v] for k, v in (query or {}).items()},
            body=payload,
            authorizer={"storeId": self.store, "role": self.role, "principalId": self.store},
        )
        out = self.handler(event, LambdaContext())
        text = out.get("body")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return ApiResponse(out["statusCode"], out.get("headers") or {}, parsed)

    def get(self, path: str, **kw: Any) -> ApiResponse:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> ApiResponse:
        return self.call("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> ApiResponse:
        return self.call("PUT", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> ApiResponse:
        return self.call("PATCH", path, body, **kw)


# --- checks shared by the API tests -------------------------------------------------------


def assert_error(resp: ApiResponse, status: int, code: str) -> dict[str, Any]:
    """The API.md error shape, exactly: {"error": {"code", "message", "details"}}."""
    assert resp.status == status, (resp.status, resp.body)
    assert isinstance(resp.body, dict) and set(resp.body) == {"error"}, resp.body
    err = resp.body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["details"], dict), err
    return err


def field_names(err: dict[str, Any]) -> list[str]:
    return [f.get("field") for f in err["details"].get("fields", [])]


def names_field(err: dict[str, Any], name: str) -> bool:
    """details.fields names ``name`` (path and query parameters may carry a ``path.``/``query.`` prefix)."""
    names = field_names(err)
    return name in names or any(n in (f"path.{name}", f"query.{name}") for n in names)


def stock_view(client: ApiClient, skus: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """The whole Stock body of each SKU, minus updatedAt (None when the SKU has no record)."""
    out: dict[str, Any] = {}
    for sku in skus:
        resp = client.get(f"/stock/{sku}")
        if resp.status == 404:
            out[sku] = None
            continue
        assert resp.status == 200, resp.body
        out[sku] = {k: v for k, v in resp.body.items() if k != "updatedAt"}
    return out


def assert_invariant(view: dict[str, dict[str, Any] | None]) -> None:
    for sku, s in view.items():
        if s is None:
            continue
        assert min(s["onHand"], s["reserved"], s["allocated"], s["available"]) >= 0, (sku, s)
        assert s["available"] + s["reserved"] + s["allocated"] == s["onHand"], (sku, s)
