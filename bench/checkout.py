"""A full checkout (docs/checkout.md) through the local HTTP stack: its DynamoDB requests, latency and AWS cost.

One run on a fresh local stack (tools.local.stack) with its own DynamoDB Local behind the
counting proxy (bench.ddbproxy), so every DynamoDB request of the whole stack is counted:
the API and its authorizer, the table stream's two readers (the hold stream and the
change feed) and the expire function the hold timer calls. Each function's clients carry its
name in their User-Agent (botocore's AWS_SDK_UA_APP_ID), so the proxy knows who asked.

A checkout, as a storefront (``local-storefront``) over HTTP: POST /checkouts (3 lines),
PATCH (shippingAddress), PATCH (step, paymentMethod), POST /checkouts/{id}/payment,
POST /checkouts/{id}/complete with an Idempotency-Key. First ACCOUNTING checkouts one
after the other (each step's DynamoDB requests are then those of the API function within
its round trip), then a warm-up and the N measured ones with CLIENTS threads. Every count
is over all of them, from the first checkout until the last hold timer has ended and the
stream consumers have gone quiet; latency is over the measured ones.

The checkout's hold settings are scaled 10x down (hold 30 s, payment window 90 s,
extension threshold 12 s, expiring notice 6 s) so that each hold timer (one Step
Functions execution per hold) ends within the run; a checkout takes well under the 18 s
after which a PATCH would extend its hold, so the requests are those of the defaults.

The run is a child process, ``python -m bench.checkout run checkout TIMEOUT N``, in its own
session (bench.expiry's machinery: a Ctrl-C reaches the bench alone, which stops the child,
which stops its stack in order). Its output (the workers' logs, one line per HTTP request)
goes to .local/bench-checkout.log.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.ddbhooks import item_size
from bench.ddbproxy import ProxyProcess, Request
from bench.env import ROOT
from bench.expiry import (
    DDB_PER_RRU,
    DDB_PER_WRU,
    LAMBDA_PER_GB_S,
    LAMBDA_PER_REQUEST,
    LOG_DIR,
    SFN_PER_TRANSITION,
    Execution,
    ExpiryFailed,
    Invocations,
    _Child,
    _Client,
    _count_invocations,
    _dollars,
    _epoch_ms,
    _executions,
    _no_leftovers,
    _run_child,
    _stop_abruptly,
    _stop_in_order,
    _warm,
)
from bench.stats import median_ms, p95_ms, table

CHECKOUTS = 100  # the default of --checkouts
CLIENTS = 4  # HTTP client threads
CONCURRENCY = 4  # workers per function (StackConfig.concurrency): make run's default
ACCOUNTING = 5  # checkouts one after the other first
WARMUP_PER_CLIENT = 2
LINES = 3
SKUS = 24  # checkout n holds SKUs 3n, 3n+1, 3n+2 (mod 24): concurrent checkouts seldom share one
ON_HAND = 1_000_000  # never low: no StockLow / StockOut events
TIMEOUT = 90.0  # give up waiting for the hold timers this long after the last deadline (a timer not stopped)
SCHEDULE_SECONDS = 3600.0  # reconciliation once an hour: never within the run
QUIET_SECONDS = 3.0
STORE = "demo"  # seeded by the local stack, with the keys below
ADMIN_KEY, STOREFRONT_KEY = "local-admin", "local-storefront"
OVERRIDES = {  # docs/checkout.md's defaults / 10 (300, 900, 120, 60 s)
    "MIN_HOLD_SECONDS": "1",
    "CHECKOUT_HOLD_SECONDS": "30",
    "PAYMENT_HOLD_SECONDS": "90",
    "EXTEND_THRESHOLD_SECONDS": "12",
    "EXPIRING_NOTICE_SECONDS": "6",
}
ADDRESS = {
    "firstName": "Ada",
    "lastName": "Lovelace",
    "line1": "1 Main St",
    "city": "Berlin",
    "postalCode": "10115",
    "country": "DE",
}
STEPS = (
    ("start", "POST /checkouts (3 lines)", 201),
    ("shipping", "PATCH /checkouts/{id} shippingAddress", 200),
    ("details", "PATCH /checkouts/{id} step, paymentMethod", 200),
    ("payment", "POST /checkouts/{id}/payment", 200),
    ("complete", "POST /checkouts/{id}/complete + Idempotency-Key", 201),
)

# List prices, us-east-1 (the rest are bench.expiry's: Lambda, DynamoDB on-demand, Step Functions Standard).
APIGW_PER_REQUEST = 3.50 / 1_000_000  # REST API, first 333 million a month
EVENTS_PER_EVENT = 1.00 / 1_000_000  # EventBridge custom events (per 64 KB entry)
LOGS_PER_GB = 0.50  # CloudWatch Logs ingestion (standard), for scale only: not in the total
KB = 1024


class CheckoutFailed(RuntimeError):
    pass


# --- data --------------------------------------------------------------------------------


@dataclass
class Step:
    sent: float  # epoch s, just before sending
    answered: float  # epoch s, answer read
    ns: int  # round trip (perf_counter_ns)
    status: int


@dataclass
class Checkout:
    phase: str  # accounting | warmup | measured
    steps: list[Step] = field(default_factory=list)
    total_ns: int = 0  # first byte sent to the last answer read
    checkout_id: str = ""
    reservation_id: str = ""
    deadline_ms: int = 0  # the hold's first deadline (the one its timer waits for)
    order_id: str = ""
    extended: int = 0  # PATCHes that used an extension
    error: str = ""

    @property
    def completed(self) -> bool:
        return bool(self.order_id) and not self.error


@dataclass
class CheckoutRun:
    checkouts: list[Checkout] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)  # DynamoDB requests in the window (no stream reads)
    stream_reads: int = 0  # DynamoDB Streams requests of the pollers in the window
    invocations: dict[str, Invocations] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)  # published in the window, by detail-type
    tables: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    sizes: dict[str, int] = field(default_factory=dict)  # item key -> its size at the end (bytes)
    largest: dict[str, int] = field(default_factory=dict)  # item type -> largest size at the end
    log_bytes: int = 0  # function log lines (JSON) written in the window
    log_lines: int = 0
    discarded: int = 0  # stream records sent to OnFailure
    schedule_fired: int = 0
    start_s: float = 0.0
    measured_s: float = 0.0  # wall time of the measured checkouts
    window_s: float = 0.0  # first checkout to the end of counting
    waited_s: float = 0.0  # last checkout done to the last timer ended (stopped, or ended at its deadline)
    timers_running: int = 0  # executions still running when the bench gave up
    load: list[str] = field(default_factory=list)  # load average when counting started, and when it ended
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CheckoutRun:
        raw = json.loads(text)
        raw["checkouts"] = [Checkout(**{**c, "steps": [Step(**s) for s in c["steps"]]}) for c in raw["checkouts"]]
        raw["requests"] = [Request(**r) for r in raw["requests"]]
        raw["invocations"] = {k: Invocations(**v) for k, v in raw["invocations"].items()}
        raw["executions"] = [Execution(**e) for e in raw["executions"]]
        return cls(**raw)


# --- the storefront ----------------------------------------------------------------------


def _lines(n: int, skus: Sequence[str]) -> list[dict[str, Any]]:
    return [{"sku": skus[(n * LINES + i) % len(skus)], "quantity": 1 + i % 2} for i in range(LINES)]


def _one_checkout(client: _Client, n: int, tag: str, skus: Sequence[str], phase: str) -> Checkout:
    chk = Checkout(phase)
    cart = f"bench-chk-{tag}-{n:05d}"
    pay = f"pay-{tag}-{n:05d}"
    began = time.perf_counter_ns()
    extensions_left: int | None = None
    for i, (_, _, expected) in enumerate(STEPS):
        path = f"/checkouts/{chk.checkout_id}"
        headers = None
        method, body = "PATCH", dict[str, Any]()
        if i == 0:
            method, path, body = (
                "POST",
                "/checkouts",
                {"cartId": cart, "customerId": f"u-{n}", "items": _lines(n, skus)},
            )
        elif i == 1:
            body = {"shippingAddress": ADDRESS}
        elif i == 2:
            body = {"step": "review", "paymentMethod": "card"}
        elif i == 3:
            method, path = "POST", path + "/payment"
        else:
            method, path, body = "POST", path + "/complete", {"paymentReference": pay}
            headers = {"Idempotency-Key": pay}
        sent, t0 = time.time(), time.perf_counter_ns()
        status, answer = client.call(method, path, body, headers)
        t1 = time.perf_counter_ns()
        chk.steps.append(Step(sent, time.time(), t1 - t0, status))
        if status != expected or not isinstance(answer, dict):
            chk.error = f"{method} {path}: {status} {json.dumps(answer)[:300]}"
            return chk
        if i == 0:
            chk.checkout_id = answer["checkoutId"]
            chk.reservation_id = answer["reservation"]["reservationId"]
            chk.deadline_ms = _epoch_ms(answer["reservation"]["expiresAt"])
        if i in (0, 1, 2):
            left = answer["reservation"]["extensionsLeft"]
            chk.extended += extensions_left is not None and left < extensions_left
            extensions_left = left
        if i == 4:
            chk.order_id = answer["orderId"]
    chk.total_ns = time.perf_counter_ns() - began
    return chk


def _drive(url: str, skus: Sequence[str], tag: str, first: int, count: int, clients: int, phase: str) -> list[Checkout]:
    """Checkouts first..first+count-1, each by whichever of ``clients`` threads is free."""
    todo = iter(range(first, first + count))
    lock = threading.Lock()
    done: list[Checkout] = []
    stop = threading.Event()

    def worker() -> None:
        client = _Client(url, STOREFRONT_KEY)
        try:
            while not stop.is_set():
                with lock:
                    n = next(todo, None)
                if n is None:
                    return
                chk = _one_checkout(client, n, tag, skus, phase)
                with lock:
                    done.append(chk)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, name=f"checkout-client-{i}", daemon=True) for i in range(clients)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)  # (short joins: a Ctrl-C is taken between two)
    finally:
        stop.set()
    failed = [c.error for c in done if c.error]
    if failed:
        raise CheckoutFailed(f"{len(failed)} of {len(done)} {phase} checkouts failed, e.g. {failed[0]}")
    return done


# --- the run (in the child) ----------------------------------------------------------------


def _stack_class() -> Any:
    from tools.local.stack import LocalStack
    from tools.template import FunctionSpec

    class AppIdStack(LocalStack):
        """The local stack, each function's AWS clients naming it in their User-Agent (app/<logical id>)."""

        def function_env(self, spec: FunctionSpec) -> dict[str, str]:
            return {**super().function_env(spec), "AWS_SDK_UA_APP_ID": spec.logical_id}

    return AppIdStack


class _InFlight:
    """Function invocations under way: each pool's ``invoke`` (as it is now) wrapped with a counter."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def wrap(self, pools: dict[str, Any]) -> None:
        for pool in pools.values():

            def invoke(event: Any, _inner: Callable[[Any], Any] = pool.invoke) -> Any:
                with self._lock:
                    self.n += 1
                try:
                    return _inner(event)
                finally:
                    with self._lock:
                        self.n -= 1

            pool.invoke = invoke


def _quiet(stack: Any, busy: _InFlight, limit: float = 120.0) -> None:
    """Until no function has run, no stream consumer was invoked and no event was published for QUIET_SECONDS
    (at most ``limit`` s)."""
    give_up = time.monotonic() + limit

    def activity() -> tuple[int, int, int]:
        return busy.n, sum(s.invocations for s in stack.streams), len(stack.events())

    seen, since = activity(), time.monotonic()
    while time.monotonic() - since < QUIET_SECONDS and time.monotonic() < give_up:
        time.sleep(0.25)
        now = activity()
        if now != seen or busy.n:
            seen, since = now, time.monotonic()


def _scan_sizes(client: Any, tables: dict[str, str]) -> tuple[dict[str, int], dict[str, int]]:
    """Every item's size now (by key), and the largest of each item type."""
    sizes: dict[str, int] = {}
    largest: dict[str, int] = {}
    keys = _key_attrs(tables)
    for logical, name in tables.items():
        for page in client.get_paginator("scan").paginate(TableName=name):
            for item in page["Items"]:
                size = item_size(item)
                sizes[_key_id(name, item, keys)] = size
                kind = "idempotency record" if logical == "IdempotencyTable" else str(item.get("type", {}).get("S"))
                largest[kind] = max(largest.get(kind, 0), size)
    return sizes, largest


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _function_log(path: Any, start: int) -> tuple[int, int]:
    """Bytes and lines of the functions' JSON log lines (Powertools logs, EMF metrics) written after ``start``."""
    sys.stdout.flush()
    with open(path, "rb") as f:
        f.seek(start)
        lines = [x for x in f.read().splitlines() if x.startswith(b"{")]
    return sum(len(x) + 1 for x in lines), len(lines)


def one_run(n: int, timeout_s: float, say: Callable[[str], None]) -> CheckoutRun:
    """DynamoDB Local, the proxy and a local stack; the checkouts; wait for their timers and the stream
    consumers; everything stopped again (also on error and Ctrl-C)."""
    import boto3

    from tools.ddblocal import DynamoDBLocal, client_kwargs
    from tools.local.stack import StackConfig

    run = CheckoutRun()
    started = time.monotonic()
    ddb_local: DynamoDBLocal | None = None
    proxy: ProxyProcess | None = None
    stack: Any = None
    log = LOG_DIR / "bench-checkout.log"
    try:
        ddb_local = DynamoDBLocal().start(shared_db=True)
        proxy = ProxyProcess(ddb_local.endpoint_url)
        config = StackConfig(
            port=0,
            concurrency=CONCURRENCY,
            ddb_endpoint=proxy.url,
            schedule_seconds=SCHEDULE_SECONDS,
            overrides=dict(OVERRIDES),
        )
        stack = _stack_class()(config)
        stack.start()
        _warm(stack.pools, {"ApiFunction": CONCURRENCY})
        busy = _InFlight()
        busy.wrap(stack.pools)
        run.tables = dict(stack.tables)
        run.start_s = time.monotonic() - started
        say(f"checkout: stack ready in {run.start_s:.1f} s")

        tag = uuid.uuid4().hex[:6]
        skus = [f"BENCH-CHK-{tag}-{i:02d}" for i in range(SKUS)]
        admin = _Client(stack.url, ADMIN_KEY)
        try:
            for sku in skus:
                status, answer = admin.call("PUT", f"/stock/{sku}", {"onHand": ON_HAND})
                if status != 200:
                    raise CheckoutFailed(f"PUT /stock/{sku} answered {status}: {answer}")
        finally:
            admin.close()
        _quiet(stack, busy)  # the seed's stream records handled: not counted

        events_before = len(stack.events())
        log_start = os.fstat(1).st_size
        run.invocations = _count_invocations(stack.pools, list(stack.pools))  # replaces each pool's invoke:
        busy.wrap(stack.pools)  # count what is under way around it again
        window_from = time.time()
        run.load.append(_loadavg())
        say(f"checkout: {ACCOUNTING} checkouts one after the other, {CLIENTS * WARMUP_PER_CLIENT} to warm up")
        run.checkouts += _drive(stack.url, skus, tag, 0, ACCOUNTING, 1, "accounting")
        run.checkouts += _drive(stack.url, skus, tag, ACCOUNTING, CLIENTS * WARMUP_PER_CLIENT, CLIENTS, "warmup")
        say(f"checkout: {n} checkouts with {CLIENTS} clients")
        began = time.monotonic()
        run.checkouts += _drive(stack.url, skus, tag, ACCOUNTING + CLIENTS * WARMUP_PER_CLIENT, n, CLIENTS, "measured")
        run.measured_s = time.monotonic() - began

        from stockhold.hold_timer import execution_name

        last = max(c.deadline_ms for c in run.checkouts) / 1000
        done = time.time()
        say(
            f"checkout: done in {run.measured_s:.1f} s; waiting for the hold timers (the hold stream stops each "
            f"as its checkout completes; the last deadline is in {max(0.0, last - done):.0f} s)"
        )
        names = {execution_name(STORE, c.reservation_id) for c in run.checkouts}
        while True:
            run.executions = _executions(stack.state_machines.endpoint, stack.state_machines.arns, names)
            running = sum(e.status == "RUNNING" for e in run.executions)
            if (len(run.executions) >= len(names) and not running) or time.time() > last + timeout_s:
                break
            time.sleep(2.0)
        run.timers_running = running + len(names) - len(run.executions)
        run.waited_s = time.time() - done
        _quiet(stack, busy)
        run.window_s = time.time() - window_from
        run.load.append(_loadavg())

        run.events = dict(Counter(str(e.get("detail-type")) for e in stack.events()[events_before:]))
        run.discarded = sum(len(s.discarded) for s in stack.streams)
        run.schedule_fired = sum(s.fired for s in stack.schedules)
        seen = [r for r in proxy.requests() if r.at >= window_from]
        run.stream_reads = sum(r.target.startswith("DynamoDBStreams") for r in seen)
        run.requests = [r for r in seen if not r.target.startswith("DynamoDBStreams")]
        direct = boto3.client("dynamodb", **client_kwargs(ddb_local.endpoint_url))  # not through the proxy
        run.sizes, run.largest = _scan_sizes(direct, run.tables)
        run.log_bytes, run.log_lines = _function_log(log, log_start)
    except BaseException:
        if stack is not None:
            _stop_abruptly(stack)
        raise
    finally:
        _stop_in_order(stack, proxy, ddb_local)
    run.seconds = time.monotonic() - started
    return run


# --- the section (in the bench) --------------------------------------------------------------


@dataclass
class CheckoutResults:
    run: CheckoutRun | None = None
    left_behind: list[int] = field(default_factory=list)
    seconds: float = 0.0


def measure(checkouts: int, progress: Callable[[str], None]) -> CheckoutResults:
    """The run in a child process (bench.expiry's _Child), stopped with everything it started."""
    results = CheckoutResults()
    started = time.monotonic()
    progress(
        f"checkout: {checkouts} checkouts on a fresh local stack (it logs to {os.path.relpath(LOG_DIR)}/"
        "bench-checkout.log)"
    )
    child: _Child | None = None
    with _no_leftovers(results):
        try:
            child = _Child(
                "checkout",
                TIMEOUT,
                progress,
                module="bench.checkout",
                extra=[str(checkouts)],
                parse=CheckoutRun.from_json,
            )
            results.run = child.wait()
        except ExpiryFailed as exc:
            raise CheckoutFailed(str(exc).replace("the checkout run failed: ", "")) from None
        finally:
            if child is not None:
                child.stop()
    results.seconds = time.monotonic() - started
    return results


# --- DynamoDB requests: who, what, and what AWS would bill --------------------------------------


def _key_attrs(tables: dict[str, str]) -> dict[str, list[str]]:
    """Table name -> its key attribute names (template.yaml)."""
    from tools import template

    out = {}
    for req in template.create_table_requests(tables):
        out[req["TableName"]] = [k["AttributeName"] for k in req["KeySchema"]]
    return out


def _key_id(table: str, attrs: dict[str, Any], keys: dict[str, list[str]]) -> str:
    values = [str(next(iter((attrs.get(name) or {"S": ""}).values()))) for name in keys.get(table, ["pk", "sk"])]
    return "|".join([table, *values])


def _kind(table: str, attrs: dict[str, Any], tables: dict[str, str]) -> str:
    if table == tables.get("IdempotencyTable"):
        return "idempotency record"
    pk = str((attrs.get("pk") or {}).get("S", ""))
    sk = str((attrs.get("sk") or {}).get("S", ""))
    for mark, kind in (
        ("#AUDIT#", "audit entry"),
        ("#SKU#", "stock"),
        ("#RES#", "reservation"),
        ("#CHK#", "checkout"),
        ("#ORD#", "order"),
    ):
        if mark in pk:
            return kind
    if "#CART#" in pk:
        return {"HOLD": "cart hold", "CHECKOUT": "cart checkout"}.get(sk, "cart ?")
    if pk.startswith("EVENT#"):
        return "event marker"
    if pk.startswith("APIKEY#"):
        return "api key"
    if pk.startswith("STORE#"):
        return "store"
    return "?"


def _sweep() -> tuple[set[str], set[str]]:
    """The Sweep index's key attributes and projected non-key attributes (template.yaml)."""
    from tools import template

    props = template.resources("AWS::DynamoDB::Table")["StockholdTable"]["Properties"]
    for index in props.get("GlobalSecondaryIndexes", []):
        keys = {k["AttributeName"] for k in index["KeySchema"]}
        return keys, set(index.get("Projection", {}).get("NonKeyAttributes", []))
    return set(), set()


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [x.strip() for x in [*out, cur] if x.strip()]


def _update_targets(spec: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Attribute names an UpdateExpression SETs and REMOVEs."""
    import re

    names = spec.get("ExpressionAttributeNames") or {}
    parts = re.split(r"\b(SET|REMOVE|ADD|DELETE)\b", spec.get("UpdateExpression", ""), flags=re.IGNORECASE)
    sets: set[str] = set()
    removes: set[str] = set()
    for verb, clause in zip(parts[1::2], parts[2::2], strict=True):
        for item in _split_top(clause):
            target = item.split("=")[0].split()[0].strip() if verb.upper() != "REMOVE" else item
            target = names.get(target, target)
            (removes if verb.upper() == "REMOVE" else sets).add(target)
    return sets, removes


def _index_writes(op: str, spec: dict[str, Any], kind: str, sweep: tuple[set[str], set[str]]) -> int:
    """Writes this action makes to the Sweep index (est.): a new entry 1, a removed one 1, a moved one 2
    (delete + put), a projected attribute changed on an entry 1. Only stock items and ACTIVE holds are in it."""
    keys, projected = sweep
    if op == "Put":
        return 1 if keys & set(spec.get("Item", {})) else 0
    if op != "Update":
        return 0
    sets, removes = _update_targets(spec)
    if keys & removes:
        return 1
    if keys & sets:
        return 2
    if kind in ("stock", "reservation") and projected & sets:
        return 1
    return 0


@dataclass(frozen=True)
class Call:
    who: str  # the function (AWS_SDK_UA_APP_ID), or "local stack"
    label: str  # e.g. "TransactWriteItems: Put reservation, Update stock x3, ..."
    wru: float  # AWS's rules, on the table
    rru: float
    gsi_wru: int  # Sweep index writes (est.)


def _with_put_sizes(run: CheckoutRun, keys: dict[str, list[str]]) -> dict[str, int]:
    """Each item's largest known size: at the end, or as any Put wrote it (items deleted since: cart holds)."""
    sizes = dict(run.sizes)
    for req in run.requests:
        op = req.target.split(".")[-1]
        if op not in ("PutItem", "TransactWriteItems"):
            continue
        body = json.loads(req.body or "{}")
        puts = [body] if op == "PutItem" else [a["Put"] for a in body.get("TransactItems", []) if "Put" in a]
        for put in puts:
            key = _key_id(put.get("TableName", ""), put.get("Item", {}), keys)
            sizes[key] = max(sizes.get(key, 0), item_size(put.get("Item", {})))
    return sizes


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


def describe(
    req: Request,
    run: CheckoutRun,
    sizes: dict[str, int],
    keys: dict[str, list[str]],
    sweep: tuple[set[str], set[str]],
) -> Call:
    """What the request was and what AWS would bill for it: writes 1 WRU per KB (TransactWriteItems 2 per item
    and KB, ConditionCheck included), strongly consistent reads 1 RRU per 4 KB (eventually consistent 0.5; an
    absent item still 1 / 0.5). An item's size is the largest it had (its Puts, its size at the end)."""
    op = req.target.split(".")[-1]
    who = req.app or "local stack"
    try:
        body: dict[str, Any] = json.loads(req.body or "{}")
    except ValueError:
        body = {}

    def size(table: str, attrs: dict[str, Any]) -> int:
        return sizes.get(_key_id(table, attrs, keys), 0)

    def kind(table: str, attrs: dict[str, Any]) -> str:
        return _kind(table, attrs, run.tables)

    if op == "TransactWriteItems":
        parts: Counter[str] = Counter()
        wru, gsi = 0.0, 0
        for action in body.get("TransactItems", []):
            for name, spec in action.items():
                attrs = spec.get("Key") or spec.get("Item") or {}
                k = kind(spec["TableName"], attrs)
                parts[f"{name} {k}"] += 1
                wru += 2 * _units(size(spec["TableName"], attrs), KB)
                gsi += _index_writes(name, spec, k, sweep)
        shown = ", ".join(f"{p}" + (f" x{c}" if c > 1 else "") for p, c in parts.items())
        return Call(who, f"{op} ({sum(parts.values())} items): {shown}", wru, 0.0, gsi)
    if op in ("PutItem", "UpdateItem", "DeleteItem"):
        table = body.get("TableName", "")
        attrs = body.get("Key") or body.get("Item") or {}
        k = kind(table, attrs)
        gsi = _index_writes(op.removesuffix("Item"), body, k, sweep)
        return Call(who, f"{op} {k}", float(_units(size(table, attrs), KB)), 0.0, gsi)
    if op == "GetItem":
        table = body.get("TableName", "")
        attrs = body.get("Key") or {}
        strong = bool(body.get("ConsistentRead"))
        rru = _units(size(table, attrs), 4 * KB) * (1.0 if strong else 0.5)
        return Call(who, f"{op} {kind(table, attrs)}" + (" (consistent)" if strong else ""), 0.0, rru, 0)
    if op == "BatchGetItem":
        parts, rru = Counter(), 0.0
        for table, spec in body.get("RequestItems", {}).items():
            strong = bool(spec.get("ConsistentRead"))
            for attrs in spec.get("Keys", []):
                parts[kind(table, attrs) + (" (consistent)" if strong else "")] += 1
                rru += _units(size(table, attrs), 4 * KB) * (1.0 if strong else 0.5)
        shown = ", ".join(f"{p} x{c}" for p, c in parts.items())
        return Call(who, f"{op}: {shown}", 0.0, rru, 0)
    if op in ("Query", "Scan"):  # not priced from the request: at least one unit (marked in the report)
        where = body.get("IndexName") or body.get("TableName", "")
        return Call(who, f"{op} {where} [at least]", 0.0, 0.5 if not body.get("ConsistentRead") else 1.0, 0)
    return Call(who, op, 0.0, 0.0, 0)


# --- the report ----------------------------------------------------------------------------------


def _memory_mb() -> dict[str, int]:
    """MemorySize of each function (its own, else Globals; Lambda's default 128)."""
    from tools import template

    tpl = template.load()
    default = int(tpl.get("Globals", {}).get("Function", {}).get("MemorySize", 128))
    return {
        name: int(res["Properties"].get("MemorySize", default))
        for name, res in template.resources("AWS::Serverless::Function").items()
    }


def _task_states() -> set[str]:
    from tools import template

    out: set[str] = set()
    for res in template.resources("AWS::Serverless::StateMachine").values():
        definition = json.loads((ROOT / res["Properties"]["DefinitionUri"]).read_text())
        out |= {name for name, state in definition["States"].items() if state.get("Type") == "Task"}
    return out


def _transitions(e: Execution, tasks: set[str]) -> int:
    """States entered, plus each retried task once more (a retry is a transition too)."""
    return len(e.states) + max(0, e.tasks - sum(s in tasks for s in e.states))


def _billed_gb_s(inv: Invocations, memory_mb: int) -> float:
    return sum(math.ceil(s * 1000) / 1000 for s in inv.handler_s) * memory_mb / 1024


def _ms(ns: Sequence[int], q: str) -> str:
    if not ns:
        return "-"
    if q == "p50":
        return f"{median_ms(ns):.1f}"
    if q == "p95":
        return f"{p95_ms(ns):.1f}"
    return f"{max(ns) / 1e6:.1f}"


def _per(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") if x else "0"


SHORT = {
    "ApiFunction": "API",
    "AuthorizerFunction": "authorizer",
    "HoldStreamFunction": "hold stream",
    "ExpireFunction": "expire (hold timer)",
    "ChangeFeedFunction": "change feed",
    "ReconcileFunction": "reconcile",
}


def report(res: CheckoutResults) -> str:
    run = res.run
    assert run is not None
    out: list[str] = []
    every = run.checkouts
    n_all = len(every)
    measured = [c for c in every if c.phase == "measured"]
    completed = sum(c.completed for c in every)
    keys, sweep = _key_attrs(run.tables), _sweep()
    sizes = _with_put_sizes(run, keys)
    calls = [(r, describe(r, run, sizes, keys, sweep)) for r in run.requests]
    memory = _memory_mb()

    out.append(
        f"Checkout (docs/checkout.md): {len(measured)} full checkouts over HTTP with {CLIENTS} clients "
        f"(+{ACCOUNTING} one at a time and {CLIENTS * WARMUP_PER_CLIENT} warm-up first), {LINES} lines each [1]"
    )
    # 1. latency
    rows = []
    for i, (_, label, _expected) in enumerate(STEPS):
        ns = [c.steps[i].ns for c in measured if len(c.steps) > i]
        answers = Counter(c.steps[i].status for c in measured if len(c.steps) > i)
        shown = ", ".join(f"{s} x{k}" for s, k in sorted(answers.items()))
        rows.append([label, shown or "-", _ms(ns, "p50"), _ms(ns, "p95"), _ms(ns, "max")])
    totals = [c.total_ns for c in measured if c.completed]
    rows.append(
        [f"end to end ({len(totals)} completed)", "", _ms(totals, "p50"), _ms(totals, "p95"), _ms(totals, "max")]
    )
    rate = len(measured) / run.measured_s if run.measured_s else 0.0
    out.append(f"Latency in ms, the {len(measured)} measured checkouts ({rate:.1f} checkouts/s) [2]")
    out.append(table(["step", "answers", "p50", "p95", "max"], rows, [False, False, True, True, True]))
    extended = sum(c.extended for c in every)
    out.append(
        f"  {completed}/{n_all} checkouts completed with an order; PATCHes that extended the hold: {extended} "
        "(0: the requests are those of a checkout within its first hold)"
    )
    out.append("")

    # 2. DynamoDB requests of each step, from the checkouts made one at a time
    accounting = [c for c in every if c.phase == "accounting" and c.completed]
    api_calls = [(r, c) for r, c in calls if c.who == "ApiFunction"]
    rows = []
    for i, (_, label, _) in enumerate(STEPS):
        per: list[list[Call]] = []
        for chk in accounting:
            step = chk.steps[i]
            per.append([c for r, c in api_calls if step.sent <= r.at <= step.answered])
        counts = [len(x) for x in per] or [0]
        labels: Counter[str] = Counter(c.label for x in per for c in x)
        k = max(1, len(per))
        shown = "; ".join(f"{_per(v / k)}x {lab}" for lab, v in labels.items())
        wru = sum(c.wru for x in per for c in x) / k
        rru = sum(c.rru for x in per for c in x) / k
        gsi = sum(c.gsi_wru for x in per for c in x) / k
        span = str(counts[0]) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
        rows.append([label, span, _per(wru), _per(gsi), _per(rru), shown])
    out.append(
        f"DynamoDB requests of the API function per step (the {len(accounting)} checkouts made one at a time; "
        "requests within each round trip) [3]"
    )
    out.append(
        table(["step", "requests", "WRU", "GSI WRU", "RRU", "calls"], rows, [False, True, True, True, True, False])
    )
    out.append("")

    # 3. every DynamoDB request of the stack, by function and call
    by: dict[tuple[str, str], list[Call]] = {}
    for _, c in calls:
        by.setdefault((c.who, c.label), []).append(c)
    rows = []
    totals_by_who: Counter[str] = Counter()
    for (who, label), cs in sorted(
        by.items(), key=lambda x: (list(SHORT).index(x[0][0]) if x[0][0] in SHORT else 99, -len(x[1]))
    ):
        totals_by_who[who] += len(cs)
        rows.append(
            [
                SHORT.get(who, who),
                label,
                _per(len(cs) / n_all),
                _per(sum(c.wru for c in cs) / n_all),
                _per(sum(c.gsi_wru for c in cs) / n_all),
                _per(sum(c.rru for c in cs) / n_all),
            ]
        )
    wru = sum(c.wru for _, c in calls) / n_all
    gsi_wru = sum(c.gsi_wru for _, c in calls) / n_all
    rru = sum(c.rru for _, c in calls) / n_all
    rows.append(["total", "", _per(len(calls) / n_all), _per(wru), _per(gsi_wru), _per(rru)])
    out.append(f"Every DynamoDB request of the stack, per checkout (all {n_all} checkouts, through the proxy) [3]")
    out.append(
        table(
            ["function", "call", "per checkout", "WRU", "GSI WRU", "RRU"],
            rows,
            [False, False, True, True, True, True],
        )
    )
    out.append(
        "  by function: "
        + ", ".join(f"{SHORT.get(w, w)} {_per(v / n_all)}" for w, v in totals_by_who.items())
        + f"; plus {run.stream_reads} DynamoDB Streams requests of the stream pollers in {run.window_s:.0f} s "
        f"(by time, not by checkout: free for Lambda triggers)"
    )
    big = {k: v for k, v in run.largest.items() if v >= KB}
    out.append(
        "  largest item at the end, by type (bytes): "
        + ", ".join(f"{k} {v}" for k, v in sorted(run.largest.items(), key=lambda x: -x[1]))
        + (f" - over 1 KB: {', '.join(big)} (each such write is 2+ WRU, as counted)" if big else " (all under 1 KB)")
    )
    out.append("")

    # 4. Lambda, Step Functions, EventBridge
    rows = []
    lambda_calls = 0
    gb_s = 0.0
    one_each = 0  # invocations if every stream record came alone (a quiet store)
    for name in SHORT:
        inv = run.invocations.get(name)
        if inv is None:
            continue
        count = len(inv.handler_s)
        lambda_calls += count
        billed = _billed_gb_s(inv, memory.get(name, 1024))
        gb_s += billed
        records = sum(inv.records)
        one_each += records if records else count
        rows.append(
            [
                SHORT[name],
                str(memory.get(name, "?")),
                str(count),
                _per(count / n_all),
                f"{records / count:.1f}" if records and count else "-",
                f"{statistics.median(inv.handler_s) * 1000:.1f}" if inv.handler_s else "-",
                f"{max(inv.handler_s) * 1000:.1f}" if inv.handler_s else "-",
                f"{billed / n_all:.5f}",
                str(inv.failed) if inv.failed else "",
            ]
        )
    out.append(f"Lambda invocations ({n_all} checkouts) [4]")
    out.append(
        table(
            [
                "function",
                "MB",
                "invocations",
                "per checkout",
                "records each",
                "handler ms p50",
                "max",
                "GB-s per checkout",
                "errors",
            ],
            rows,
            [False, True, True, True, True, True, True, True, True],
        )
    )
    auth = len(run.invocations.get("AuthorizerFunction", Invocations()).handler_s)
    out.append(
        f"  authorizer: {auth} invocation(s) for {n_all} checkouts with one storefront key - the gateway caches its "
        "answer per token for ReauthorizeEvery = 300 s, as API Gateway does, so with traffic it tends to 1 per key "
        "per 5 minutes, ~0 per checkout."
    )
    tasks = _task_states()
    transitions = sum(_transitions(e, tasks) for e in run.executions)
    paths = Counter(" > ".join(e.states) for e in run.executions)
    outcomes = Counter("/".join(e.outcomes) for e in run.executions)
    out.append(
        f"  Step Functions: {len(run.executions)} hold-timer executions for {n_all} checkouts "
        f"({dict(Counter(e.status for e in run.executions))}), {transitions} state transitions "
        f"({_per(transitions / n_all)} per checkout); "
        + "; ".join(f"{v}x {k}" for k, v in paths.most_common(3))
        + f"; expire answers {dict(outcomes)}"
        + (f"; {run.timers_running} still running when the bench gave up" if run.timers_running else "")
    )
    events = sum(run.events.values())
    out.append(
        f"  EventBridge: {events} events reached the bus ({_per(events / n_all)} per checkout; the local stack's "
        "catch-all tap, tools/local/eventbuses.py): "
        + (", ".join(f"{k} {v}" for k, v in sorted(run.events.items())) or "none")
        + f"; stream records sent to OnFailure: {run.discarded}; reconciliation ran {run.schedule_fired}x"
    )
    out.append("")

    # 5. cost
    http = sum(len(c.steps) for c in every)
    items = [
        ("API Gateway REST requests", http / n_all, "$3.50 per million", APIGW_PER_REQUEST),
        ("Lambda requests (all functions)", lambda_calls / n_all, "$0.20 per million", LAMBDA_PER_REQUEST),
        ("Lambda GB-s (MemorySize x handler time)", gb_s / n_all, "$0.0000133334 per GB-s (arm64)", LAMBDA_PER_GB_S),
        ("DynamoDB write request units (table)", wru, "$0.625 per million WRU", DDB_PER_WRU),
        ("DynamoDB write request units (Sweep GSI, est.)", gsi_wru, "$0.625 per million WRU", DDB_PER_WRU),
        ("DynamoDB read request units", rru, "$0.125 per million RRU", DDB_PER_RRU),
        ("Step Functions Standard state transitions", transitions / n_all, "$0.025 per 1,000", SFN_PER_TRANSITION),
        ("EventBridge custom events (PutEvents entries)", events / n_all, "$1.00 per million", EVENTS_PER_EVENT),
        ("DynamoDB Streams reads by Lambda", 0.0, "free", 0.0),
    ]
    rows = []
    total = 0.0
    for label, per_checkout, price, unit in items:
        dollars = per_checkout * 1000 * unit
        total += dollars
        rows.append([label, f"{per_checkout:,.3f}", f"{per_checkout * 1000:,.0f}", price, _dollars(dollars)])
    rows.append(["total", "", "", "", _dollars(total)])
    out.append("Cost per 1,000 completed checkouts on AWS, us-east-1 list prices, from the counts above [5]")
    out.append(
        table(
            ["item", "per checkout", "per 1,000", "list price", "$ per 1,000 checkouts"],
            rows,
            [False, True, True, False, True],
        )
    )
    shares = sorted(((x[1] * 1000 * x[3], x[0]) for x in items), reverse=True)[:3]
    quiet_extra = (one_each - lambda_calls) / n_all * 1000 * LAMBDA_PER_REQUEST
    out.append(
        "  largest items: " + ", ".join(f"{label} {d / total * 100:.0f} %" for d, label in shares if total) + ". "
        f"Stream consumers were invoked with batches (the local poller every 0.25 s); one record per invocation "
        f"(a quiet store) gives {one_each / n_all:.1f} Lambda requests per checkout instead of "
        f"{lambda_calls / n_all:.1f}: +{_dollars(quiet_extra)} per 1,000 (and more GB-s)."
    )
    stopped = [e for e in run.executions if e.status == "ABORTED"]
    if stopped:
        out.append(
            f"  {len(stopped)} of {len(run.executions)} hold timers were stopped by the hold stream when their "
            f"checkout completed (StopExecution: ABORTED, not failed), "
            f"{_per(sum(_transitions(e, tasks) for e in stopped) / len(stopped))} state transitions and "
            f"{_per(sum(e.tasks for e in stopped) / len(stopped))} expire calls each."
        )
    idle = sum(1 for e in run.executions if e.outcomes and all(o == "already_ended" for o in e.outcomes))
    if idle:
        out.append(
            f"  {idle} of {len(run.executions)} hold timers ran their whole course after the checkout had completed: "
            f"every expire call (warn, then expire) answered already_ended. That is "
            f"{_dollars(transitions / n_all * 1000 * SFN_PER_TRANSITION)} of Step Functions per 1,000 checkouts, plus "
            f"{_per(len(run.invocations.get('ExpireFunction', Invocations()).handler_s) / n_all)} expire invocations "
            "and their reads per checkout."
        )
    per_logs = run.log_bytes / n_all
    out.append(
        f"  Not in the total, for scale: the functions wrote {per_logs / KB:.1f} KB of log lines per checkout "
        f"({run.log_lines / n_all:.0f} JSON lines: Powertools logs at LogLevel INFO and EMF metrics) - "
        f"{_dollars(per_logs * 1000 / KB**3 * LOGS_PER_GB)} per 1,000 at CloudWatch Logs' $0.50 per GB ingested, "
        "before Lambda's own START/END/REPORT lines."
    )
    out.append("")

    left = ", ".join(map(str, res.left_behind)) or "none"
    notes = [
        f"[1] A fresh local stack (tools.local.stack, StackConfig(port=0, concurrency={CONCURRENCY}, schedule_seconds="
        f"{SCHEDULE_SECONDS:.0f}): reconciliation never runs) on its own DynamoDB Local (in memory) behind the "
        f"counting proxy (bench.ddbproxy, its own process); {CONCURRENCY} ApiFunction workers started first. "
        f"{SKUS} fresh SKUs with onHand {ON_HAND:,} (PUT /stock, admin key), their stream records handled before "
        f"counting starts. Checkout n: cart bench-chk-<run>-n, lines SKU 3n, 3n+1, 3n+2 (mod {SKUS}) x 1, 2, 1; "
        "PATCH 1 {shippingAddress: 6 fields}, PATCH 2 {step: review, paymentMethod: card}, payment {}, complete "
        "{paymentReference} with the same value as Idempotency-Key; storefront key (the gateway caches the "
        "authorizer's answer per key for ReauthorizeEvery = 300 s, as API Gateway does). Hold settings / 10: "
        + ", ".join(f"{k}={v}" for k, v in OVERRIDES.items())
        + " (the requests of a checkout are the same as with the defaults as long as no PATCH extends the hold).",
        "[2] Round trip in the client thread (http.client, one keep-alive connection per thread), from sending the "
        "request to the parsed answer; end to end = the five steps back to back, no think time. Nearest-rank p95. "
        "Everything (clients, stack, function workers, DynamoDB Local, proxy) shares this machine's CPUs.",
        "[3] Every DynamoDB request the proxy saw from the first checkout until the last hold timer had ended and "
        f"no function had run for {QUIET_SECONDS:g} s (the stream consumers done), each attributed to its function by the "
        "app id in its User-Agent, divided by the number of checkouts. WRU/RRU by AWS's rules, derived from the "
        "requests (DynamoDB Local reports transaction capacity wrongly: see the operations section): 1 WRU per KB "
        "written, TransactWriteItems 2 WRU per item and KB (ConditionCheck included), a strongly consistent read "
        "1 RRU per 4 KB, eventually consistent 0.5, an absent item still 1 / 0.5; an item's size is the largest it "
        "had (its Puts, its size at the end), so an Update is never under-counted. GSI WRU: writes to the sparse "
        "Sweep index (ACTIVE holds and stock items; projected: reserved, lines, ...), estimated from each write's "
        "expression: an entry added or removed 1, moved (sweepSk changed) 2, a projected attribute changed 1. "
        "Per step: the API function's requests received within the step's round trip.",
        "[4] Invocations counted where tools.local calls a function (gateway, stream pollers, the state machine's "
        "Lambda task); handler time measured inside the worker process, on this machine against DynamoDB Local and "
        "moto (AWS is faster). 'records each': stream records per invocation (the local poller reads every 0.25 s, "
        "up to the event source's BatchSize). Transitions from moto's execution histories: states entered plus "
        "task retries.",
        "[5] API Gateway REST $3.50 per million requests (first 333 million a month); Lambda $0.20 per million "
        "requests + $0.0000133334 per GB-s (arm64) at each function's MemorySize in template.yaml (Globals 1024 MB "
        "unless the function sets its own), the handler times measured here, each rounded up to 1 ms; DynamoDB "
        "on-demand $0.625 per million WRU, $0.125 per million RRU; Step Functions Standard $0.025 per 1,000 state "
        "transitions; EventBridge $1.00 per million custom events; DynamoDB Streams reads by Lambda triggers free. "
        "Not counted: CloudWatch (Logs ingestion and storage, custom metrics from EMF, alarms), X-Ray (Tracing is "
        "Active on the functions, API and state machine), data transfer, KMS requests for the tables' SSE, "
        "storage and point-in-time recovery, Lambda INIT (cold starts), the reconciliation schedule (a fixed cost "
        "per minute, not per checkout), free tiers.",
        f"    (checkout section took {res.seconds:.0f} s: stack start-up {run.start_s:.0f} s, load average "
        f"{' -> '.join(run.load)} from the first checkout to the end of counting, the timers ended "
        f"{run.waited_s:.0f} s after the last checkout; the stack, proxy, DynamoDB Local and the child process were "
        f"stopped; processes left behind: {left})",
    ]
    out.extend(notes)
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "run" and sys.argv[2] == "checkout":
        count, timeout = int(sys.argv[4]), float(sys.argv[3])
        sys.exit(_run_child(LOG_DIR / "bench-checkout.log", lambda say, made: one_run(count, timeout, say).to_json()))
    print("usage: python -m bench.checkout run checkout TIMEOUT N   (started by python -m bench.run)")
    sys.exit(2)
