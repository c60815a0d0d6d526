"""Section 'operations': DynamoDB requests, capacity and latency of each API operation, and the cold start.

On its own DynamoDB Local, each operation through the API handler in this process (requests counted with hooks on
the handler's own client), and bare: the very DynamoDB requests the handler sent, replayed with a plain boto3 client
with fresh ids. Notes [1]-[4]: docs/bench.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench import harness
from bench.ddb import Call, Recorder, item_size
from bench.harness import ROOT, STORE, median_ms, p95_ms, span, table, verdict

TITLE = "DynamoDB requests, capacity and latency per API operation"
RATIO_TARGET = 1.3
SKUS = tuple(f"BENCH-{n:02d}" for n in range(10))
ON_HAND = 1_000_000
EXTEND_TO_SECONDS = 1800  # > the default 900 s hold, so every extend moves the deadline
# Powertools reads these when imported: tracing off, logs at WARNING, metrics on (as deployed; their EMF lines
# to stdout are discarded. POWERTOOLS_METRICS_DISABLED=true is not enough in Powertools 3.37: flush_metrics then
# skips printing but also clearing, and add_metric prints the set anyway at 100 values).
HANDLER_ENV = {"POWERTOOLS_SERVICE_NAME": "stockhold", "POWERTOOLS_METRICS_NAMESPACE": "Stockhold"}
HANDLER_ENV |= {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}


@dataclass(frozen=True)
class Op:
    key: str
    label: str
    target: tuple[str, int] | None  # requests: ("=", 1) or ("<=", 2); None: shown against reserve 1 line
    ratio_target: bool
    after_reserve: bool = False  # acts on a fresh 1-line reservation


OPS = (
    Op("get", "get stock", ("=", 1), True),
    Op("reserve1", "reserve 1 line", ("=", 1), True),
    Op("reserve10", "reserve 10 lines", ("=", 1), True),
    Op("extend", "extend", ("<=", 2), True, True),
    Op("confirm", "confirm", ("<=", 2), True, True),
    Op("release", "release", ("<=", 2), True, True),
    Op("idem", "reserve 1 line + Idempotency-Key", None, False),
)


def _met(target: tuple[str, int], n: int) -> bool:
    return n == target[1] if target[0] == "=" else n <= target[1]


@dataclass
class Template:
    """The DynamoDB calls of one handler request, and the ids in them that must be fresh in each replay."""

    calls: list[tuple[str, dict[str, Any]]]
    tokens: dict[str, str]  # role (cart, rid, order, token, idem) -> the id in the captured calls

    def render(self, fresh: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
        text = json.dumps(self.calls)
        for role, old in self.tokens.items():
            text = text.replace(old, fresh[role]) if role in fresh else text
        return [(op, params) for op, params in json.loads(text)]


@dataclass
class Measured:
    accounting: dict[str, list[list[Call]]] = field(default_factory=dict)
    handler_ns: dict[str, list[int]] = field(default_factory=dict)
    bare_ns: dict[str, list[int]] = field(default_factory=dict)
    requests: dict[str, list[int]] = field(default_factory=dict)  # per timed request
    retries: int = 0
    templates: dict[str, Template] = field(default_factory=dict)
    largest_item: int = 0
    cold: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # handler / baseline -> samples


class Workload:
    def __init__(self, tables: dict[str, str]) -> None:
        import boto3
        from botocore import xform_name

        from bench.internals import handler_dynamodb_client

        self.tables = tables
        self.recorder = Recorder(handler_dynamodb_client())
        self.bare = boto3.client("dynamodb")
        self._method: Callable[[str], Callable[..., Any]] = lambda op: getattr(self.bare, xform_name(op))
        self.api = harness.LambdaApi(STORE, "storefront")
        self._seq = iter(range(10**8))
        self.out = Measured()

    def _id(self, kind: str) -> str:
        return f"bench-{kind}-{next(self._seq):08d}"

    def seed(self) -> None:
        admin = harness.LambdaApi(STORE, "admin")
        for sku in SKUS:
            status, body = admin.call("PUT", f"/stock/{sku}", {"onHand": ON_HAND})
            if status != 200:
                raise harness.SectionFailed(f"seeding {sku} failed: {status} {body}")
        # The container's first read of the store's locations, outside any counted request.
        status, body = harness.LambdaApi(STORE, "storefront").call("GET", "/locations", None)
        if status != 200:
            raise harness.SectionFailed(f"listing locations failed: {status} {body}")

    def _request(self, op: Op) -> tuple[str, str, Any, dict[str, str], dict[str, str], int]:
        """(method, path, body, headers, ids by role, expected status); a reservation made first if need be."""
        if op.key == "get":
            return "GET", f"/stock/{SKUS[0]}", None, {}, {}, 200
        cart = self._id("cart")
        if not op.after_reserve:
            body = {
                "cartId": cart,
                "items": [{"sku": s, "quantity": 1} for s in SKUS[: 10 if op.key == "reserve10" else 1]],
            }
            headers = {"Idempotency-Key": f"bench-key-{uuid.uuid4()}"} if op.key == "idem" else {}
            return "POST", "/reservations", body, headers, {"cart": cart}, 201
        rid = self._call("POST", "/reservations", {"cartId": cart, "items": [{"sku": SKUS[0], "quantity": 1}]}, {}, 201)
        tokens = {"rid": rid["reservationId"], "cart": cart}
        action: dict[str, Any] = {"holdSeconds": EXTEND_TO_SECONDS} if op.key == "extend" else {"reason": "cancelled"}
        if op.key == "confirm":
            tokens["order"] = self._id("order")
            action = {"orderId": tokens["order"]}
        return "POST", f"/reservations/{tokens['rid']}/{op.key}", action, {}, tokens, 200

    def _call(self, method: str, path: str, body: Any, headers: dict[str, str], expect: int) -> Any:
        status, answer = self.api.call(method, path, body, headers)
        if status != expect:
            raise harness.SectionFailed(f"{method} {path} answered {status}, expected {expect}: {answer}")
        return answer

    def handler_once(self, op: Op) -> tuple[int, list[Call], Any, dict[str, str]]:
        """One timed handler call: (ns, its DynamoDB calls, the answer, ids by role)."""
        method, path, body, headers, tokens, expect = self._request(op)
        self.recorder.reset()
        answer = self._call(method, path, body, headers, expect)
        self.out.retries += self.recorder.attempts - len(self.recorder.calls)
        return self.api.last_ns, list(self.recorder.calls), answer, tokens

    def account(self, op: Op, runs: int) -> None:
        """``runs`` handler calls with capacity on; the first one's calls kept as the bare replay's template."""
        self.recorder.capacity = True
        try:
            self.out.accounting[op.key] = []
            for i in range(runs):
                _, calls, answer, tokens = self.handler_once(op)
                self.out.accounting[op.key].append(calls)
                if i == 0:
                    self.out.templates[op.key] = _template(calls, answer, tokens)
        finally:
            self.recorder.capacity = False

    def _fresh(self, role: str, old: str) -> str:
        from bench.internals import new_reservation_id

        fresh = {"rid": new_reservation_id, "cart": lambda: self._id("cart"), "order": lambda: self._id("order")}
        if role == "idem":
            return old.rsplit("#", 1)[0] + "#" + uuid.uuid4().hex
        return fresh[role]() if role in fresh else uuid.uuid4().hex  # token: a ClientRequestToken

    def bare_prepare(self, op: Op) -> list[tuple[Callable[..., Any], dict[str, Any]]]:
        template = self.out.templates[op.key]
        fresh: dict[str, str] = {}
        if op.after_reserve:  # a fresh reservation, made bare with the captured reserve transaction (untimed)
            reserve = self.out.templates["reserve1"]
            held = {r: self._fresh(r, old) for r, old in reserve.tokens.items()}
            for name, params in reserve.render(held):
                self._method(name)(**params)
            fresh = {"rid": held["rid"], "cart": held["cart"]}
        fresh |= {r: self._fresh(r, old) for r, old in template.tokens.items() if r not in fresh}
        return [(self._method(name), params) for name, params in template.render(fresh)]

    @staticmethod
    def bare_once(calls: list[tuple[Callable[..., Any], dict[str, Any]]]) -> int:
        start = time.perf_counter_ns()
        for method, params in calls:
            method(**params)
        return time.perf_counter_ns() - start

    def time_op(self, op: Op, warmup: int, iterations: int) -> None:
        out = self.out
        out.handler_ns[op.key], out.bare_ns[op.key], out.requests[op.key] = [], [], []
        retries = out.retries
        for i in range(warmup + iterations):  # even: handler first, odd: bare first
            if i == warmup:
                out.retries = retries  # retries are counted in the timed requests only
            if i % 2 == 0:
                h, b = self.handler_once(op), self.bare_once(self.bare_prepare(op))
            else:
                b = self.bare_once(self.bare_prepare(op))
                h = self.handler_once(op)
            if i >= warmup:
                out.handler_ns[op.key].append(h[0])
                out.requests[op.key].append(len(h[1]))
                out.bare_ns[op.key].append(b)

    def largest_item(self) -> int:
        """Size in bytes of the largest item now in the stockhold and idempotency tables."""
        pages = (p for t in self.tables.values() for p in self.bare.get_paginator("scan").paginate(TableName=t))
        return max((item_size(item) for page in pages for item in page["Items"]), default=0)


def _template(calls: list[Call], answer: Any, tokens: dict[str, str]) -> Template:
    tokens = dict(tokens)
    if isinstance(answer, dict) and "reservationId" in answer:
        tokens["rid"] = answer["reservationId"]
    for call in calls:
        if "ClientRequestToken" in call.params:
            tokens["token"] = call.params["ClientRequestToken"]
        if call.op == "PutItem" and "#" in call.params.get("Item", {}).get("id", {}).get("S", ""):
            tokens["idem"] = call.params["Item"]["id"]["S"]  # the Powertools idempotency record
    return Template([(c.op, c.params) for c in calls], tokens)


# --- cold start: fresh processes, times taken inside them --------------------------------------

_COLD = """
import json, os, sys, time, types
t0 = time.perf_counter()
if sys.argv[1] == "handler":
    import app
    t1 = time.perf_counter()
    context = types.SimpleNamespace(
        function_name="stockhold-bench", memory_limit_in_mb=1024, log_group_name="/aws/lambda/stockhold-bench",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:stockhold-bench",
        aws_request_id="00000000-0000-0000-0000-00000000c01d", log_stream_name="bench",
        get_remaining_time_in_millis=lambda: 10_000,
    )
    ok = app.lambda_handler(json.loads(os.environ["BENCH_COLD_EVENT"]), context)["statusCode"] == 200
else:
    import boto3
    client = boto3.client("dynamodb")
    t1 = time.perf_counter()
    key = json.loads(os.environ["BENCH_COLD_KEY"])
    ok = "Item" in client.get_item(TableName=os.environ["TABLE_NAME"], Key=key, ConsistentRead=True)
t2 = time.perf_counter()
print("BENCH_COLD " + json.dumps({"import": t1 - t0, "first": t2 - t1}) if ok else "BENCH_COLD failed")
"""


def cold_start(runs: int, key: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """``runs`` x (handler, baseline) in fresh processes, alternating so drift hits both alike; times inside them."""
    from tools import apigw

    path = f"/stock/{SKUS[0]}"
    found = apigw.find_route("GET", path)
    assert found is not None
    authorizer = {"storeId": STORE, "role": "storefront", "principalId": STORE}
    event = apigw.build_event(*found, path=path, headers={"Content-Type": "application/json"}, authorizer=authorizer)
    env = {**os.environ, "PYTHONPATH": harness.pythonpath(), "BENCH_COLD_EVENT": json.dumps(event)}
    env["BENCH_COLD_KEY"] = json.dumps(key)
    out: dict[str, list[dict[str, float]]] = {"handler": [], "baseline": []}
    for _ in range(runs):
        for kind, samples in out.items():
            start = time.perf_counter()
            cmd = [sys.executable, "-c", _COLD, kind]
            done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
            lines = [x for x in done.stdout.splitlines() if x.startswith("BENCH_COLD {")]
            if done.returncode != 0 or not lines:
                raise harness.SectionFailed(f"cold start ({kind}) failed:\n{done.stdout}\n{done.stderr}")
            samples.append({**json.loads(lines[-1].split(" ", 1)[1]), "wall": time.perf_counter() - start})
    return out


# --- the section ----------------------------------------------------------------------------------


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=200, help="timed requests per operation (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per operation first (default 20)")
    parser.add_argument("--accounting", type=int, default=5, help="capacity runs per operation (default 5)")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh processes per cold measurement (default 5)")


def header(args: argparse.Namespace) -> str:
    return (
        f"  iterations : {args.iterations} timed per operation after {args.warmup} warm-up, handler and bare "
        f"interleaved; {args.accounting} accounting runs per operation (capacity on); cold start: median of "
        f"{args.cold_runs} fresh processes\n"
        "  handler env: POWERTOOLS_TRACE_DISABLED=true, POWERTOOLS_LOG_LEVEL=WARNING, metrics on (as deployed) "
        "with the EMF lines they print to stdout discarded; LOCATIONS_CACHE_SECONDS=300, so the store's locations "
        "are read once, not inside a counted request (their 5 s refresh, one Query per container: section locations)"
    )


@contextlib.contextmanager
def handler_on_dynamodb_local(section: str = "operations") -> Iterator[dict[str, str]]:
    """A DynamoDB Local of its own (in memory, -sharedDb) with fresh tables from template.yaml, and the API
    handler's environment pointing at them (HANDLER_ENV; stdout, where the EMF lines go, discarded) for a while;
    yields the tables (logical id -> name). The handler makes its client once per process (stockhold's wiring),
    so a process uses one of these at most."""
    import boto3

    from tools.ddblocal import DynamoDBLocal
    from tools.template import create_tables

    server = DynamoDBLocal()
    harness.say(f"{section}: starting DynamoDB Local")
    server.start(shared_db=True)
    try:
        kw = server.client_kwargs()
        suffix = uuid.uuid4().hex[:8]
        names = {"StockholdTable": f"stockhold-bench-{suffix}", "IdempotencyTable": f"stockhold-bench-idem-{suffix}"}
        tables = create_tables(boto3.client("dynamodb", **kw), names)
        env = {"AWS_ENDPOINT_URL_DYNAMODB": kw["endpoint_url"], "AWS_ACCESS_KEY_ID": kw["aws_access_key_id"]}
        env |= {"AWS_SECRET_ACCESS_KEY": kw["aws_secret_access_key"], "AWS_DEFAULT_REGION": kw["region_name"]}
        env |= {"AWS_REGION": kw["region_name"], "TABLE_NAME": tables["StockholdTable"], **HANDLER_ENV}
        env["IDEMPOTENCY_TABLE_NAME"] = tables["IdempotencyTable"]
        with harness.environ(env), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield tables
    finally:
        server.stop()


def measure(args: argparse.Namespace) -> Measured:
    with handler_on_dynamodb_local() as tables, harness.environ({"LOCATIONS_CACHE_SECONDS": "300"}):
        work = Workload(tables)
        try:
            work.seed()
            harness.say(f"accounting: {args.accounting} runs per operation, ReturnConsumedCapacity=TOTAL")
            for op in OPS:
                work.account(op, args.accounting)
            work.out.largest_item = work.largest_item()
            work.out.retries = 0
            for op in OPS:
                harness.say(f"timing {op.label}: {args.warmup} warm-up + {args.iterations}")
                work.time_op(op, args.warmup, args.iterations)
            harness.say(f"cold start: {args.cold_runs} x (handler, baseline) in fresh processes")
            work.out.cold = cold_start(args.cold_runs, work.out.templates["get"].calls[0][1]["Key"])
        finally:
            work.recorder.close()
    return work.out


def _capacity(runs: list[list[Call]], kind: str) -> str:
    """Summed RCU or WCU per request as DynamoDB Local reported them (n/a: some call reported none)."""
    if any(not c.reported for run in runs for c in run):
        return "n/a"
    return span([sum(c.rcu if kind == "rcu" else c.wcu for c in run) for run in runs])


def _aws_wcu(calls: list[Call], largest: int) -> str:
    """WCU by AWS's rules for items < 1 KB: 2 per transaction action, else as reported."""
    if largest >= 1024 or any(not c.reported and c.op != "TransactWriteItems" for c in calls):
        return "n/a"
    return f"{sum(2 * c.actions if c.op == 'TransactWriteItems' else c.wcu for c in calls):g}"


def report(res: Measured, args: argparse.Namespace) -> str:
    from tools.ddblocal import DDB_LOCAL_VERSION

    out, rows, base = [], [], len(res.accounting["reserve1"][0])
    for op in OPS:
        runs = res.accounting[op.key]
        counts = [len(r) for r in runs] + res.requests[op.key]
        shown, target = span(counts), "-"
        if op.target is None:
            extra = max(counts) - base
            shown += f" (+{extra})"
            note = f"  {op.label}: {extra} more request(s) than without the header (the Powertools idempotency record: written before, completed after)."
        else:
            target = f"{op.target[0]}{op.target[1]} {verdict(all(_met(op.target, n) for n in counts))}"
        actions = ", ".join(c.op + (f"({c.actions})" if c.actions > 1 else "") for c in runs[0])
        rows.append(
            [
                op.label,
                shown,
                target,
                actions,
                _capacity(runs, "wcu"),
                _capacity(runs, "rcu"),
                _aws_wcu(runs[0], res.largest_item),
            ]
        )
    out.append("DynamoDB requests per operation (one API request through the handler, no Idempotency-Key unless named)")
    out.append(
        table(["operation", "requests", "target", "calls (actions)", "WCU [1]", "RCU [1]", "WCU AWS rules [2]"], rows)
    )
    retries = f"; {res.retries} HTTP retries in the timed requests" if res.retries else ""
    out += [note, f"  largest item in the tables: {res.largest_item} bytes{retries}", ""]

    rows = []
    for op in OPS:
        h, b = res.handler_ns[op.key], res.bare_ns[op.key]
        ratio = median_ms(h) / median_ms(b)
        shown = f"<={RATIO_TARGET:g}x {verdict(ratio <= RATIO_TARGET)}" if op.ratio_target else "(info)"
        bare_calls = " + ".join(name for name, _ in res.templates[op.key].calls)
        cells = [median_ms(h), p95_ms(h), median_ms(b), p95_ms(b)]
        rows.append(
            [op.label, *(f"{x:.2f}" for x in cells), f"{cells[0] - cells[2]:+.2f}", f"{ratio:.2f}x", shown, bare_calls]
        )
    out.append(f"Latency in ms, {args.iterations} requests each (handler = app.lambda_handler; bare = boto3 [3])")
    heads = ["operation", "handler p50", "p95", "bare p50", "p95", "p50 diff", "handler/bare", "target", "bare calls"]
    out += [table(heads, rows), ""]

    def medians(samples: list[dict[str, float]]) -> list[float]:
        return [
            statistics.median(s[k] if k != "both" else s["import"] + s["first"] for s in samples) * 1e3
            for k in ("import", "first", "both", "wall")
        ]

    cold_h, cold_b = medians(res.cold["handler"]), medians(res.cold["baseline"])
    out.append(f"Cold start in ms, median of {args.cold_runs} fresh processes [4]")
    rows = [
        ["API handler (import app; GET /stock/{sku})", *(f"{x:.0f}" for x in cold_h)],
        ["baseline (import boto3 + client; get_item)", *(f"{x:.0f}" for x in cold_b)],
        ["handler / baseline", *(f"{x / y:.2f}x" for x, y in zip(cold_h, cold_b, strict=True))],
    ]
    out.append(table(["", "import", "first request", "import + first", "process wall"], rows))
    out.append(
        f"  [1]-[4]: docs/bench.md (DynamoDB Local {DDB_LOCAL_VERSION}'s transaction WCU; bare replay; cold start; "
        f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')})"
    )
    return "\n".join(out)
