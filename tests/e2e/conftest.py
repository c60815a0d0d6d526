"""End-to-end: the local stack (make run's code) on a free port, driven over HTTP as a storefront would."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

import pytest

from tools.admin import main as admin_main
from tools.local.stack import LocalStack, StackConfig

pytestmark = pytest.mark.e2e
# Short deadlines, through the same environment overrides an operator uses with `make run`.
E2E_OVERRIDES = {
    "MIN_HOLD_SECONDS": "1",
    "CHECKOUT_HOLD_SECONDS": "30",
    "EXTEND_THRESHOLD_SECONDS": "10",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def error_code(self) -> str | None:
        return self.body.get("error", {}).get("code") if isinstance(self.body, dict) else None


class Http:
    """A tiny HTTP client bound to one API key (one connection per request: safe across threads)."""

    def __init__(self, base_url: str, key: str | None) -> None:
        self.base_url, self.key = base_url, key
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80

    def with_key(self, key: str | None) -> Http:
        return Http(self.base_url, key)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpReply:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if self.key is not None:
            hdrs.setdefault("Authorization", f"Bearer {self.key}")
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn = HTTPConnection(self._host, self._port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read()
            reply_headers = {k: v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode(errors="replace")
        return HttpReply(resp.status, reply_headers, parsed)

    def get(self, path: str, **kw: Any) -> HttpReply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> HttpReply:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> HttpReply:
        return self.request("PUT", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> HttpReply:
        return self.request("PATCH", path, body, **kw)


@dataclass
class Stack:
    stack: LocalStack
    url: str
    admin: Http
    storefront: Http
    anonymous: Http

    def new_store(self) -> tuple[Http, Http]:
        """A second store, made with the operator command; returns (admin, storefront) clients."""
        store_id = f"s{uuid.uuid4().hex[:10]}"
        admin_key, front_key = f"adm-{store_id}", f"front-{store_id}"
        admin_main(
            [
                "create-store",
                store_id,
                "--table",
                self.stack.tables["StockholdTable"],
                "--endpoint-url",
                self.stack.endpoint,
                "--admin-key",
                admin_key,
                "--storefront-key",
                front_key,
                "--region",
                "us-east-1",
            ]
        )
        return self.admin.with_key(admin_key), self.admin.with_key(front_key)

    def unique_sku(self, on_hand: int, **extra: Any) -> str:
        sku = f"E2E-{uuid.uuid4().hex[:10]}"
        assert self.admin.put(f"/stock/{sku}", {"onHand": on_hand, **extra}).status == 200
        return sku


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    config = StackConfig(port=0, concurrency=4, overrides=E2E_OVERRIDES)
    local = LocalStack(config).start()
    url = local.url
    try:
        yield Stack(
            stack=local,
            url=url,
            admin=Http(url, config.admin_key),
            storefront=Http(url, config.storefront_key),
            anonymous=Http(url, None),
        )
    finally:
        local.stop()


def trail(stack: Stack, query: str, want: list[str], timeout: float = 20) -> list[dict[str, Any]]:
    """The audit trail once it holds ``want``'s actions, oldest first (the stream is asynchronous).
    Entries of one transaction share their time: those compare in alphabetical order."""
    deadline = time.monotonic() + timeout
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        reply = stack.admin.get(f"/audit?{query}&limit=100")
        assert reply.status == 200, reply.body
        entries = reply.body["items"]
        if [action for _, action in sorted((e["at"], e["action"]) for e in entries)] == want:
            return entries
        time.sleep(0.25)
    pytest.fail(f"audit {query}: {[e['action'] for e in reversed(entries)]} != {want}")
