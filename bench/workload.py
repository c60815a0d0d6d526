"""The measured operations: each through the real API handler, and bare with boto3.

Import this module only once the environment is set (bench.env.apply): stockhold's
Powertools objects read it at import time.

How an operation is measured:

* handler: tests.helpers.ApiClient builds the API Gateway event and calls
  ``functions/api/app.lambda_handler``; only the handler call is timed (building the
  event and parsing the answer are not). Anything the operation needs first (a fresh
  reservation to extend, confirm or release) is made before the timed call.
* requests/capacity: hooks on ``stockhold.runtime.dynamodb_client()`` (the client the
  store and the Powertools idempotency layer share), reset just before the timed call.
* bare: the very requests the handler sent (captured in the accounting pass), replayed
  with a plain boto3 client, the reservation/cart/order/idempotency ids swapped for
  fresh ones so each replay does the same work (a new hold, an extension, ...).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore import xform_name

from bench.ddbhooks import CallRecord, DynamoRecorder, item_size
from stockhold import runtime
from stockhold.service import new_id
from tests.helpers import ApiClient, ApiResponse

STORE = "demo"
SKUS = tuple(f"BENCH-{n:02d}" for n in range(10))
ON_HAND = 1_000_000
EXTEND_TO_SECONDS = 1800  # > the default 900 s hold, so every extend moves the deadline


@dataclass(frozen=True)
class Target:
    op: str  # "==" or "<="
    value: int

    def met(self, n: int) -> bool:
        return n == self.value if self.op == "==" else n <= self.value

    def __str__(self) -> str:
        return f"{'=' if self.op == '==' else '<='}{self.value}"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: dict[str, Any] | None
    expect: int
    headers: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # role -> id used in this request


@dataclass(frozen=True)
class Template:
    """Captured DynamoDB calls of one handler request, and the ids in them that must be fresh per replay."""

    calls: tuple[tuple[str, dict[str, Any]], ...]
    tokens: dict[str, str]

    def render(self, fresh: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
        text = json.dumps(self.calls)
        for role, old in self.tokens.items():
            if role in fresh:
                text = text.replace(old, fresh[role])
        return [(op, params) for op, params in json.loads(text)]


@dataclass(frozen=True)
class Op:
    key: str
    label: str
    requests_target: Target | None
    ratio_target: bool
    prepare: Callable[[], Request]
    bare: str  # "same" (replay fresh) or "after-reserve" (replay on a fresh bare reservation)


@dataclass
class Accounting:
    runs: list[list[CallRecord]]

    @property
    def operations(self) -> list[str]:
        return [c.operation + (f"({c.actions})" if c.actions > 1 else "") for c in self.runs[0]]

    def capacity(self, kind: str) -> tuple[float, float] | None:
        """(min, max) per request of summed RCU or WCU; None if some call reported none."""
        totals = []
        for run in self.runs:
            if any(not c.capacity_reported for c in run):
                return None
            totals.append(sum(c.rcu if kind == "rcu" else c.wcu for c in run))
        return min(totals), max(totals)

    def unreported(self) -> list[str]:
        return sorted({c.operation for run in self.runs for c in run if not c.capacity_reported})

    def aws_wcu(self) -> float | None:
        """WCU by AWS's rules, for small items (< 1 KB): 2 per transaction action, else as reported."""
        total = 0.0
        for call in self.runs[0]:
            if call.operation == "TransactWriteItems":
                total += 2 * call.actions
            elif not call.capacity_reported:
                return None
            else:
                total += call.wcu
        return total


@dataclass
class Timing:
    handler_ns: list[int] = field(default_factory=list)
    bare_ns: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)


class Workload:
    def __init__(self) -> None:
        runtime.reset()
        self.table = runtime.services().settings.TABLE_NAME
        self.idempotency_table = runtime.services().settings.IDEMPOTENCY_TABLE_NAME
        self.recorder = DynamoRecorder(runtime.dynamodb_client())
        self.bare_client: Any = boto3.client("dynamodb")
        self.api = ApiClient(STORE, "storefront")
        self._handler = self.api.handler
        self._last_ns = 0
        self.api.handler = self._timed_handler
        self._seq = iter(range(10**8))
        self.templates: dict[str, Template] = {}
        self.ops = [
            Op("get", "get stock", Target("==", 1), True, self._get, "same"),
            Op("reserve1", "reserve 1 line", Target("==", 1), True, lambda: self._reserve(1), "same"),
            Op("reserve10", "reserve 10 lines", Target("==", 1), True, lambda: self._reserve(10), "same"),
            Op("extend", "extend", Target("<=", 2), True, self._extend, "after-reserve"),
            Op("confirm", "confirm", Target("<=", 2), True, self._confirm, "after-reserve"),
            Op("release", "release", Target("<=", 2), True, self._release, "after-reserve"),
            Op("idem", "reserve 1 line + Idempotency-Key", None, False, self._reserve_idempotent, "same"),
        ]

    def close(self) -> None:
        self.recorder.close()

    # ----- the handler side

    def _timed_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        start = time.perf_counter_ns()
        out: dict[str, Any] = self._handler(event, context)
        self._last_ns = time.perf_counter_ns() - start
        return out

    def call(self, req: Request) -> ApiResponse:
        resp = self.api.call(req.method, req.path, req.body, headers=req.headers)
        if resp.status != req.expect:
            raise RuntimeError(f"{req.method} {req.path} answered {resp.status}, expected {req.expect}: {resp.body}")
        return resp

    def seed(self) -> None:
        admin = ApiClient(STORE, "admin")
        for sku in SKUS:
            resp = admin.put(f"/stock/{sku}", {"onHand": ON_HAND})
            if resp.status != 200:
                raise RuntimeError(f"seeding {sku} failed: {resp.status} {resp.body}")

    def _n(self) -> int:
        return next(self._seq)

    def _cart(self) -> str:
        return f"bench-cart-{self._n():08d}"

    def _order(self) -> str:
        return f"bench-order-{self._n():08d}"

    def _reserve_body(self, lines: int, cart: str) -> dict[str, Any]:
        return {"cartId": cart, "items": [{"sku": sku, "quantity": 1} for sku in SKUS[:lines]]}

    def _get(self) -> Request:
        return Request("GET", f"/stock/{SKUS[0]}", None, 200)

    def _reserve(self, lines: int) -> Request:
        cart = self._cart()
        return Request("POST", "/reservations", self._reserve_body(lines, cart), 201, tokens={"cart": cart})

    def _reserve_idempotent(self) -> Request:
        cart = self._cart()
        key = f"bench-key-{uuid.uuid4()}"
        body = self._reserve_body(1, cart)
        return Request("POST", "/reservations", body, 201, {"Idempotency-Key": key}, {"cart": cart})

    def _held(self) -> tuple[str, str]:
        """A fresh 1-line reservation made through the handler (outside the timed call)."""
        req = self._reserve(1)
        return self.call(req).body["reservationId"], req.tokens["cart"]

    def _extend(self) -> Request:
        rid, cart = self._held()
        body = {"holdSeconds": EXTEND_TO_SECONDS}
        return Request("POST", f"/reservations/{rid}/extend", body, 200, tokens={"rid": rid, "cart": cart})

    def _confirm(self) -> Request:
        rid, cart = self._held()
        order = self._order()
        tokens = {"rid": rid, "cart": cart, "order": order}
        return Request("POST", f"/reservations/{rid}/confirm", {"orderId": order}, 200, tokens=tokens)

    def _release(self) -> Request:
        rid, cart = self._held()
        body = {"reason": "cancelled"}
        return Request("POST", f"/reservations/{rid}/release", body, 200, tokens={"rid": rid, "cart": cart})

    def handler_once(self, op: Op) -> tuple[int, list[CallRecord], int, ApiResponse, Request]:
        """Prepare, then one timed handler call: (ns, DynamoDB calls, HTTP attempts, answer, request)."""
        req = op.prepare()
        self.recorder.reset()
        resp = self.call(req)
        return self._last_ns, list(self.recorder.calls), self.recorder.attempts, resp, req

    # ----- accounting (capacity on) and templates for the bare replay

    def account(self, op: Op, runs: int) -> Accounting:
        self.recorder.capacity = True
        try:
            out = []
            for i in range(runs):
                _, calls, _, resp, req = self.handler_once(op)
                if i == 0:
                    self.templates[op.key] = self._template(calls, resp, req)
                out.append(calls)
        finally:
            self.recorder.capacity = False
        return Accounting(out)

    @staticmethod
    def _template(calls: list[CallRecord], resp: ApiResponse, req: Request) -> Template:
        tokens = dict(req.tokens)
        if isinstance(resp.body, dict) and "reservationId" in resp.body:
            tokens["rid"] = resp.body["reservationId"]
        for call in calls:
            if "ClientRequestToken" in call.params:
                tokens["token"] = call.params["ClientRequestToken"]
            if call.operation == "PutItem" and "#" in call.params.get("Item", {}).get("id", {}).get("S", ""):
                tokens["idem"] = call.params["Item"]["id"]["S"]  # the Powertools idempotency record
        return Template(tuple((c.operation, c.params) for c in calls), tokens)

    def largest_item(self) -> int:
        """Size in bytes of the largest item now in the stockhold and idempotency tables."""
        biggest = 0
        for table in (self.table, self.idempotency_table):
            for page in self.bare_client.get_paginator("scan").paginate(TableName=table):
                biggest = max([biggest, *(item_size(item) for item in page["Items"])])
        return biggest

    # ----- the bare side

    def _fresh(self, role: str, old: str) -> str:
        if role == "rid":
            return new_id("res_")
        if role == "cart":
            return self._cart()
        if role == "order":
            return self._order()
        if role == "idem":
            return old.rsplit("#", 1)[0] + "#" + uuid.uuid4().hex
        if role == "token":
            return uuid.uuid4().hex
        raise ValueError(role)

    def _fresh_tokens(self, template: Template) -> dict[str, str]:
        return {role: self._fresh(role, old) for role, old in template.tokens.items()}

    def _bound(self, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[Callable[..., Any], dict[str, Any]]]:
        return [(getattr(self.bare_client, xform_name(op)), params) for op, params in calls]

    def bare_prepare(self, op: Op) -> list[tuple[Callable[..., Any], dict[str, Any]]]:
        template = self.templates[op.key]
        if op.bare == "same":
            return self._bound(template.render(self._fresh_tokens(template)))
        # A fresh reservation, made bare with the captured reserve transaction (untimed).
        reserve = self.templates["reserve1"]
        held = self._fresh_tokens(reserve)
        for method, params in self._bound(reserve.render(held)):
            method(**params)
        fresh = {"rid": held["rid"], "cart": held["cart"]}
        fresh.update({r: self._fresh(r, old) for r, old in template.tokens.items() if r not in fresh})
        return self._bound(template.render(fresh))

    @staticmethod
    def bare_once(calls: list[tuple[Callable[..., Any], dict[str, Any]]]) -> int:
        start = time.perf_counter_ns()
        for method, params in calls:
            method(**params)
        return time.perf_counter_ns() - start

    # ----- timing

    def time_op(self, op: Op, warmup: int, iterations: int) -> Timing:
        timing = Timing()
        for i in range(warmup + iterations):  # even: handler first, odd: bare first
            record = i >= warmup
            if i % 2 == 0:
                h = self.handler_once(op)
                b = self.bare_once(self.bare_prepare(op))
            else:
                b = self.bare_once(self.bare_prepare(op))
                h = self.handler_once(op)
            if record:
                timing.handler_ns.append(h[0])
                timing.requests.append(len(h[1]))
                timing.attempts.append(h[2])
                timing.bare_ns.append(b)
        return timing
