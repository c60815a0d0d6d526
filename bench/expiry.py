"""Holds that end by themselves (docs/expiry.md): how late after its deadline a hold's units are back.

Runs, each on its own local stack (tools.local.stack) with its own DynamoDB Local, 200
holds each, made over HTTP (POST /reservations, 1 unit of one of 4 fresh SKUs with plenty
of stock, a fresh cart each, holdSeconds 2, 3, 4, 5 in turn) and then left alone:

* timer: the whole stack with MIN_HOLD_SECONDS=1 - the table's stream starts one hold-timer
  execution per hold (moto's Step Functions interpreter), which calls the expire function.
  Once with the holds made at an even 5 per second, once (``burst``) as fast as 8 clients go;
* TTL only: MIN_HOLD_SECONDS=1, TTL_GRACE_SECONDS=0 and HOLD_TIMER_ARN="" (the hold stream
  then starts no timers), so no timer ever runs: DynamoDB Local's TTL job deletes each
  hold once its deadline has passed and the TTL backstop (HoldStreamFunction) puts it back
  as EXPIRED with its units returned.

The lag of a hold is ``endedAt - expiresAt`` of its reservation item (epoch ms: the deadline
the reserve wrote, and the moment of the transaction that returned the units), read straight
from DynamoDB Local. Reconciliation is scheduled once an hour instead of every minute, so it
never ends a hold here; stock is never short, so no request meets a due hold; after being
made, a hold is only read.

Each run is a child process, ``python -m bench.expiry run NAME TIMEOUT``, in its own session:
a Ctrl-C in the terminal reaches the bench alone, which stops the children (SIGTERM), each
stopping its stack in order - the function workers never get the signal. The TTL run takes
minutes (DynamoDB Local's TTL job, see the report), so it starts first and the timer runs
follow, one after the other, once it has made its holds (it then only waits for its TTL job).
A run's output (its workers' logs and EMF metrics, one line per HTTP request) goes to
.local/bench-expiry-NAME.log.

Counted in the timer runs: every DynamoDB request of the stack, through a counting proxy in
its own process (bench.ddbproxy); every Lambda invocation of the expire and hold-stream functions,
with its handler time measured inside the worker; every state entered, from each execution's
history in moto.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import IO, Any, Protocol

from bench import procs
from bench.ddbproxy import ProxyProcess, Request
from bench.env import ROOT, pythonpath
from bench.stats import table

HOLDS = 200
HOLD_SECONDS = (2, 3, 4, 5)
SKUS = 4
ON_HAND = 1000
CONCURRENCY = 8  # workers per function (StackConfig.concurrency, i.e. STOCKHOLD_CONCURRENCY)
CLIENTS = 8  # HTTP client threads making the holds
PACED_RATE = 5.0  # holds per second in the paced timer run
POLL_SECONDS = 0.5
TIMER_TIMEOUT = 60.0  # give up this long after the last deadline
TTL_TIMEOUT = 200.0  # the default of --expiry-ttl-timeout
SCHEDULE_SECONDS = 3600.0  # reconciliation once an hour: never within a run
TIMER_TARGET_MS = 2000
COUNTED = ("ExpireFunction", "HoldStreamFunction")
STORE = "demo"  # seeded by the local stack
LOG_DIR = ROOT / ".local"
CHILD_MARK = "BENCH_EXPIRY "

# List prices (us-east-1).
SFN_PER_TRANSITION = 0.025 / 1000  # Step Functions Standard
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_PER_GB_S = 0.0000133334  # arm64
LAMBDA_GB = 1.0  # MemorySize: 1024 (template.yaml Globals)
DDB_PER_WRU = 0.625 / 1_000_000  # on-demand
DDB_PER_RRU = 0.125 / 1_000_000


class ExpiryFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Plan:
    name: str
    label: str
    overrides: dict[str, str]
    rate: float  # holds per second; 0: as fast as the clients go
    warm: dict[str, int]  # workers started before the holds are made (one is for the others)
    timer: bool  # False: HOLD_TIMER_ARN="" (in overrides): the hold stream starts no timers


TIMER_WARM = {"ApiFunction": CONCURRENCY, "ExpireFunction": CONCURRENCY}
PLANS = {
    "timer": Plan(
        "timer", f"timer, holds made {PACED_RATE:g}/s", {"MIN_HOLD_SECONDS": "1"}, PACED_RATE, TIMER_WARM, True
    ),
    "burst": Plan("burst", "timer, holds made in a burst", {"MIN_HOLD_SECONDS": "1"}, 0.0, TIMER_WARM, True),
    "ttl": Plan(
        "ttl",
        "TTL only (no timer) [3]",
        {"MIN_HOLD_SECONDS": "1", "TTL_GRACE_SECONDS": "0", "HOLD_TIMER_ARN": ""},
        0.0,
        {"ApiFunction": CONCURRENCY},
        False,
    ),
}


# --- data ------------------------------------------------------------------------------


@dataclass
class Hold:
    reservation_id: str
    hold_seconds: int
    expires_at_ms: int  # from the POST answer
    created_at_ms: int | None = None  # the rest from the item
    item_expires_at_ms: int | None = None
    ended_at_ms: int | None = None
    status: str = "ACTIVE"
    expired_by: str | None = None

    @property
    def deadline_ms(self) -> int:
        return self.item_expires_at_ms if self.item_expires_at_ms is not None else self.expires_at_ms

    @property
    def lag_ms(self) -> int | None:
        return None if self.ended_at_ms is None else self.ended_at_ms - self.deadline_ms


@dataclass
class Invocations:
    handler_s: list[float] = field(default_factory=list)  # inside the worker: what Lambda bills
    wall_s: list[float] = field(default_factory=list)  # submit to answer, as the caller waits
    failed: int = 0
    records: list[int] = field(default_factory=list)  # stream records in each invocation's event (0: none)
    event_names: list[str] = field(default_factory=list)  # each invocation's stream eventNames, e.g. "INSERT,MODIFY"


@dataclass
class Execution:
    name: str
    status: str
    started: float  # epoch s
    states: list[str]  # entered, in order
    tasks: int  # Lambda invocations scheduled (retries included)
    outcomes: list[str]  # the expire function's answers
    woke: float | None  # epoch s WaitForDeadline was first left
    last_task: float | None  # epoch s the last ExpireIfDue invocation was scheduled


@dataclass
class Run:
    name: str
    holds: list[Hold] = field(default_factory=list)
    start_s: float = 0.0  # stack start-up, workers warmed
    make_s: float = 0.0
    make_statuses: dict[str, int] = field(default_factory=dict)
    waited_s: float = 0.0  # last deadline to the last hold seen ended (or to giving up)
    timeout_s: float = 0.0
    made_from: float = 0.0  # epoch s of the first POST
    requests: list[Request] = field(default_factory=list)
    invocations: dict[str, Invocations] = field(default_factory=dict)
    stream_invocations: dict[str, int] = field(default_factory=dict)
    schedule_fired: int = 0
    discarded: int = 0
    executions: list[Execution] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # from the first POST to the last hold ended
    busy_s: float = 0.0  # that window's length
    seconds: float = 0.0

    @property
    def lags(self) -> list[int]:
        return sorted(h.lag_ms for h in self.holds if h.lag_ms is not None)

    @property
    def pending(self) -> list[Hold]:
        return [h for h in self.holds if h.ended_at_ms is None]

    @property
    def plan(self) -> Plan:
        return PLANS[self.name]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Run:
        raw = json.loads(text)
        raw["holds"] = [Hold(**h) for h in raw["holds"]]
        raw["requests"] = [Request(**r) for r in raw["requests"]]
        raw["invocations"] = {k: Invocations(**v) for k, v in raw["invocations"].items()}
        raw["executions"] = [Execution(**e) for e in raw["executions"]]
        return cls(**raw)


# --- DynamoDB requests, classified ------------------------------------------------------------


def _kind(key: dict[str, Any]) -> str:
    pk = str(key.get("pk", {}).get("S", ""))
    for mark, kind in (("#RES#", "reservation"), ("#CART#", "cart slot"), ("#SKU#", "stock")):
        if mark in pk:
            return kind
    return pk.split("#")[0].lower() or "?"


@dataclass(frozen=True)
class Classified:
    what: str  # expire | end | ttl-restore | reserve | read | write | streams | other
    label: str  # e.g. "TransactWriteItems: Update reservation, Delete cart slot, Update stock"
    items: int = 0  # items written (a transaction: its actions)
    transactional: bool = False


def classify(req: Request) -> Classified:
    op = req.target.split(".")[-1]
    if req.target.startswith("DynamoDBStreams"):
        return Classified("streams", f"Streams {op}")
    try:
        body = json.loads(req.body or "{}")
    except ValueError:
        body = {}
    if op == "TransactWriteItems":
        actions = [(name, spec) for a in body.get("TransactItems", []) for name, spec in a.items()]
        kinds = [(name, _kind(spec.get("Key") or spec.get("Item") or {})) for name, spec in actions]
        label = f"{op}: " + ", ".join(f"{n} {k}" for n, k in kinds)
        what = "other"
        if actions and kinds[0][1] == "reservation":
            name, spec = actions[0]
            if name == "Update" and "endReason" in spec.get("UpdateExpression", ""):
                what = "expire" if '"expired"' in json.dumps(spec.get("ExpressionAttributeValues", {})) else "end"
            elif name == "Put":
                status = spec.get("Item", {}).get("status", {}).get("S")
                what = {"EXPIRED": "ttl-restore", "ACTIVE": "reserve"}.get(status, "other")
        return Classified(what, label, len(actions), True)
    if op in ("GetItem", "DeleteItem", "PutItem", "UpdateItem"):
        kind = _kind(body.get("Key") or body.get("Item") or {})
        if op == "GetItem":
            return Classified("read", f"{op}: {kind}" + (" (consistent)" if body.get("ConsistentRead") else ""))
        return Classified("write", f"{op}: {kind}", 1)
    return Classified("other", op)


# --- Lambda invocations, counted and timed ------------------------------------------------------


def _timed_invoke(event: Any, timeout: float) -> tuple[dict[str, Any], float]:
    """Runs in a function worker: tools.local.functions' own invoke, timed there."""
    from tools.local import functions

    started = time.perf_counter()
    out = functions._invoke(event, timeout)
    return out, time.perf_counter() - started


def _count_invocations(pools: dict[str, Any], names: Sequence[str]) -> dict[str, Invocations]:
    """Replace each named FunctionPool's ``invoke`` (what the state machine and the stream sources
    call) by the same, with the handler's time measured in the worker."""
    from tools.local.functions import Invocation

    out: dict[str, Invocations] = {}
    lock = threading.Lock()
    for name in names:
        pool = pools[name]
        seen = out[name] = Invocations()

        def invoke(event: Any, _pool: Any = pool, _seen: Invocations = seen) -> Invocation:
            started = time.perf_counter()
            answer, handler_s = _pool._pool.submit(_timed_invoke, event, _pool.timeout).result()
            with lock:
                _seen.handler_s.append(handler_s)
                _seen.wall_s.append(time.perf_counter() - started)
                _seen.failed += "errorType" in answer
                records = (event.get("Records") or []) if isinstance(event, dict) else []
                _seen.records.append(len(records))
                _seen.event_names.append(",".join(sorted({str(r.get("eventName")) for r in records})))
            if "errorType" in answer:
                sys.stderr.write(f"[{_pool.name}] {answer['errorType']}: {answer['errorMessage']}\n")
                return Invocation(error_type=answer["errorType"], error_message=answer["errorMessage"])
            return Invocation(payload=answer["payload"])

        pool.invoke = invoke
    return out


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _warm(pools: dict[str, Any], warm: dict[str, int]) -> None:
    """Start the workers now (each imports its handler: a cold start), not while measuring: rounds
    of N overlapping 0.2 s tasks until N different workers took one round."""
    for name, n in warm.items():
        executor = pools[name]._pool  # the FunctionPool's ProcessPoolExecutor
        for _ in range(30):
            if len({f.result() for f in [executor.submit(_pid_after, 0.2) for _ in range(n)]}) == n:
                break
        else:
            raise ExpiryFailed(f"{name}: {n} workers did not start")


# --- output ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[IO[str]]:
    """File descriptors 1 and 2 to ``path`` (the stack's function workers inherit them); yields a
    stream on the former stderr."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    term = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    try:
        yield term
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, old in zip((1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)
        term.close()


# --- one run ------------------------------------------------------------------------------------


class _Client:
    """One keep-alive HTTP connection, reopened after an error."""

    def __init__(self, base: str, key: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port, self.key = host, int(port), key
        self.conn: HTTPConnection | None = None

    def call(self, method: str, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        if self.conn is None:
            self.conn = HTTPConnection(self.host, self.port, timeout=60)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json", **(headers or {})}
        try:
            self.conn.request(method, path, body=json.dumps(body), headers=headers)
            resp = self.conn.getresponse()
            status, data = resp.status, resp.read()
        except (OSError, HTTPException):
            self.close()
            return 0, None
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _epoch_ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def _make_holds(url: str, key: str, skus: list[str], run: Run) -> None:
    """HOLDS x POST /reservations from CLIENTS threads, the n-th sent at n / rate s (or at once)."""
    tag = uuid.uuid4().hex[:6]
    lock = threading.Lock()
    todo = iter(range(HOLDS))
    errors: list[str] = []
    statuses: Counter[int] = Counter()
    rate = run.plan.rate
    begin = time.monotonic()
    stop = threading.Event()  # set when the bench is interrupted

    def worker() -> None:
        client = _Client(url, key)
        try:
            while not stop.is_set():
                with lock:
                    n = next(todo, None)
                if n is None:
                    return
                if rate and stop.wait(max(0.0, begin + n / rate - time.monotonic())):
                    return
                seconds = HOLD_SECONDS[n % len(HOLD_SECONDS)]
                body = {
                    "cartId": f"bench-expiry-{run.name}-{tag}-{n:04d}",
                    "items": [{"sku": skus[n % len(skus)], "quantity": 1}],
                    "holdSeconds": seconds,
                }
                status, answer = client.call("POST", "/reservations", body)
                with lock:
                    statuses[status] += 1
                    if status == 201 and isinstance(answer, dict):
                        run.holds.append(Hold(answer["reservationId"], seconds, _epoch_ms(answer["expiresAt"])))
                    elif len(errors) < 3:
                        errors.append(f"{status} {answer}")
        finally:
            client.close()

    threads = [threading.Thread(target=worker, name=f"expiry-client-{i}", daemon=True) for i in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop.set()
    run.make_statuses = {str(k): v for k, v in sorted(statuses.items())}
    if errors:
        raise ExpiryFailed(f"{run.name}: POST /reservations failed: {'; '.join(errors)}")


def _poll_until_ended(ddb: Any, table_name: str, run: Run, timeout_s: float, say: Callable[[str], None]) -> None:
    """Read the holds' items straight from DynamoDB Local (strongly consistent, not through the proxy)
    until every one has ended, or ``timeout_s`` after the last deadline. An item the TTL job has just
    deleted (and the backstop not yet put back) is simply not there yet."""
    from stockhold.store import from_av, reservation_key, to_av

    last_deadline = max(h.expires_at_ms for h in run.holds) / 1000
    give_up = last_deadline + timeout_s
    by_id = {h.reservation_id: h for h in run.holds}
    next_say = time.time() + 30
    while True:
        pending = run.pending
        for start in range(0, len(pending), 100):
            request: dict[str, Any] = {
                table_name: {
                    "Keys": [to_av(reservation_key(STORE, h.reservation_id)) for h in pending[start : start + 100]],
                    "ConsistentRead": True,
                    "ProjectionExpression": "reservationId, #s, createdAt, expiresAt, endedAt, expiredBy",
                    "ExpressionAttributeNames": {"#s": "status"},
                }
            }
            while request:
                page = ddb.batch_get_item(RequestItems=request)
                for raw in page.get("Responses", {}).get(table_name, []):
                    item = from_av(raw)
                    hold = by_id[item["reservationId"]]
                    hold.created_at_ms = item.get("createdAt")
                    hold.item_expires_at_ms = item.get("expiresAt")
                    hold.status = item["status"]
                    if item["status"] != "ACTIVE" and item.get("endedAt") is not None:
                        hold.ended_at_ms = item["endedAt"]
                        hold.expired_by = item.get("expiredBy")
                request = page.get("UnprocessedKeys") or {}
        now = time.time()
        if not run.pending or now > give_up:
            break
        if now > next_say:
            say(f"{run.name}: {len(run.holds) - len(run.pending)}/{len(run.holds)} holds ended so far")
            next_say = now + 30
        time.sleep(POLL_SECONDS)
    run.waited_s = now - last_deadline
    run.timeout_s = timeout_s


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _executions(endpoint: str, arns: dict[str, str], names: set[str]) -> list[Execution]:
    """The executions named ``names``, from their histories in moto. (moto's backends are global to the
    process, so its server also knows the executions of an earlier stack in this process.)"""
    import boto3

    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    out: list[Execution] = []
    for arn in arns.values():
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            for listed in page["executions"]:
                if listed["name"] not in names:
                    continue
                events: list[dict[str, Any]] = []
                kwargs: dict[str, Any] = {"executionArn": listed["executionArn"], "maxResults": 1000}
                while True:
                    history = sfn.get_execution_history(**kwargs)
                    events.extend(history["events"])
                    if not history.get("nextToken"):
                        break
                    kwargs["nextToken"] = history["nextToken"]
                states, outcomes, tasks = [], [], 0
                woke = last_task = None
                for e in events:
                    if e["type"].endswith("StateEntered"):
                        states.append(e["stateEnteredEventDetails"]["name"])
                    elif e["type"].endswith("StateExited") and woke is None:
                        if e["stateExitedEventDetails"]["name"] == "WaitForDeadline":
                            woke = _ts(e["timestamp"])
                    elif e["type"] in ("TaskScheduled", "LambdaFunctionScheduled"):
                        tasks += 1
                        last_task = _ts(e["timestamp"])
                    details = e.get("taskSucceededEventDetails") or e.get("lambdaFunctionSucceededEventDetails")
                    if details and details.get("output"):
                        payload = json.loads(details["output"])
                        payload = payload.get("Payload", payload) if isinstance(payload, dict) else payload
                        outcomes.append(str(payload.get("outcome")) if isinstance(payload, dict) else "?")
                out.append(
                    Execution(
                        name=listed["name"],
                        status=listed["status"],
                        started=_ts(listed["startDate"]),
                        states=states,
                        tasks=tasks,
                        outcomes=outcomes,
                        woke=woke,
                        last_task=last_task,
                    )
                )
    return out


def _cpu_by_kind(ddb_pid: int, proxy_pid: int) -> dict[str, float]:
    """CPU seconds so far: this process, its function workers, DynamoDB Local, the proxy."""
    out = {"bench": procs.cpu_seconds(os.getpid()), "workers": 0.0, "ddb": 0.0, "proxy": 0.0}
    for pid in procs.family(os.getpid()):
        if pid == os.getpid():
            continue
        kind = "ddb" if pid == ddb_pid else "proxy" if pid == proxy_pid else "workers"
        if kind != "workers" or "spawn_main" in procs.cmdline(pid):
            out[kind] += procs.cpu_seconds(pid)
    return out


def _stop_in_order(stack: Any, proxy: Any, ddb_local: Any) -> None:
    """A run's end, whatever happened: the stack (workers, pollers, moto), then the proxy, then DynamoDB Local."""
    with procs.shielded():
        for part in (stack, proxy, ddb_local):
            if part is not None:
                part.stop()


def _stop_abruptly(stack: Any) -> None:
    """After an error or an interrupt: stop what invokes functions, then kill the workers (by pid) before
    LocalStack.stop() shuts their pools down. (Should a worker ever get a SIGINT - Ctrl-C signals a whole
    process group - while acquiring its pool's call-queue lock, it dies holding it, and
    ProcessPoolExecutor.shutdown(wait=True) then waits for ever on a worker blocked on that lock.)"""
    with procs.shielded():
        for source in stack.streams:
            source.stop()
        for schedule in stack.schedules:
            schedule.stop()
        stack.state_machines.stop()
        workers = {pid: start for pid, start in procs.family(os.getpid()).items() if "spawn_main" in procs.cmdline(pid)}
        procs.kill(workers)
        procs.wait_gone(workers, 5.0)


def one_run(
    name: str,
    timeout_s: float,
    say: Callable[[str], None],
    made: Callable[[], None] = lambda: None,
) -> Run:
    """DynamoDB Local, the counting proxy and a local stack; the holds made; wait for them to end;
    everything stopped again (also on error and Ctrl-C)."""
    import boto3

    from tools.ddblocal import DynamoDBLocal, client_kwargs
    from tools.local.stack import LocalStack, StackConfig

    plan = PLANS[name]
    run = Run(name)
    started = time.monotonic()
    ddb_local: DynamoDBLocal | None = None
    proxy: ProxyProcess | None = None
    stack: LocalStack | None = None
    try:
        ddb_local = DynamoDBLocal().start(shared_db=True)
        proxy = ProxyProcess(ddb_local.endpoint_url)
        config = StackConfig(
            port=0,
            concurrency=CONCURRENCY,
            ddb_endpoint=proxy.url,
            schedule_seconds=SCHEDULE_SECONDS,
            overrides=dict(plan.overrides),
        )
        stack = LocalStack(config)
        stack.start()
        if not plan.timer:  # HOLD_TIMER_ARN="": nothing starts a timer, so stop moto's Lambda hook too
            stack.state_machines.stop()
        _warm(stack.pools, plan.warm)
        run.invocations = _count_invocations(stack.pools, COUNTED)
        run.start_s = time.monotonic() - started
        say(f"{name}: stack ready in {run.start_s:.1f} s")

        admin = _Client(stack.url, config.admin_key)
        skus = [f"BENCH-EXP-{uuid.uuid4().hex[:6]}-{i}" for i in range(SKUS)]
        try:
            for sku in skus:
                status, answer = admin.call("PUT", f"/stock/{sku}", {"onHand": ON_HAND})
                if status != 200:
                    raise ExpiryFailed(f"{name}: PUT /stock/{sku} answered {status}: {answer}")
        finally:
            admin.close()

        direct = boto3.client("dynamodb", **client_kwargs(ddb_local.endpoint_url))  # not through the proxy
        cpu_before = _cpu_by_kind(ddb_local.pid or 0, proxy.proc.pid)
        busy_from = time.monotonic()
        run.made_from = time.time()
        _make_holds(stack.url, config.storefront_key, skus, run)
        run.make_s = time.monotonic() - busy_from
        last = max(h.expires_at_ms for h in run.holds) / 1000 - time.time()
        say(f"{name}: {len(run.holds)} holds made in {run.make_s:.1f} s; the last deadline is in {last:.1f} s")
        made()
        _poll_until_ended(direct, stack.tables["StockholdTable"], run, timeout_s, say)
        cpu_after = _cpu_by_kind(ddb_local.pid or 0, proxy.proc.pid)
        run.busy_s = time.monotonic() - busy_from
        run.cpu_s = {k: cpu_after[k] - cpu_before[k] for k in cpu_before}

        if plan.timer:
            from stockhold.hold_timer import execution_name

            names = {execution_name(STORE, h.reservation_id) for h in run.holds}
            give_up = time.time() + 15
            while True:  # a hold ends a moment before its execution does
                run.executions = _executions(stack.state_machines.endpoint, stack.state_machines.arns, names)
                if all(e.status != "RUNNING" for e in run.executions) or time.time() > give_up:
                    break
                time.sleep(0.5)
        time.sleep(1.0)  # a late stream delivery or hold-stream batch is counted too
        run.stream_invocations = {s._fn.name: s.invocations for s in stack.streams}
        run.discarded = sum(len(s.discarded) for s in stack.streams)
        run.schedule_fired = sum(s.fired for s in stack.schedules)
        run.requests = [r for r in proxy.requests() if r.at >= run.made_from]
    except BaseException:
        if stack is not None:
            _stop_abruptly(stack)
        raise
    finally:
        _stop_in_order(stack, proxy, ddb_local)
    run.seconds = time.monotonic() - started
    return run


# --- each run in a child process ------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _child_main(name: str, timeout_s: float) -> int:
    """``python -m bench.expiry run NAME TIMEOUT``: one run; protocol lines on stdout, the rest to a log.

    In its own session, so a Ctrl-C in the terminal reaches the bench only (not this process, nor the
    function workers, which would otherwise get it too: same process group); the bench stops it with
    SIGTERM, and it stops its stack in order."""
    return _run_child(
        LOG_DIR / f"bench-expiry-{name}.log",
        lambda say, made: one_run(name, timeout_s, say, made=made).to_json(),
    )


def _run_child(log: Path, work: Callable[[Callable[[str], None], Callable[[], None]], str]) -> int:
    """The child side of ``_Child``: ``work(say, made)`` with fds 1 and 2 sent to ``log``; its progress
    (say), the moment it has made its load (made) and the JSON it returns go to the bench as protocol
    lines on the former stdout. Also used by bench.checkout."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    pipe = os.fdopen(os.dup(1), "w", buffering=1)

    def send(kind: str, text: str = "") -> None:
        pipe.write(f"{CHILD_MARK}{kind} {text}\n")

    try:
        with _output_to(log):
            result = work(lambda m: send("say", m), lambda: send("made"))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        send("failed", f"{type(exc).__name__}: {exc}")
        return 1
    send("result", result)
    pipe.close()
    return 0


def _child_env() -> dict[str, str]:
    """The caller's environment without what the operations section put there for its handler."""
    dropped = ("TABLE_NAME", "IDEMPOTENCY_TABLE_NAME", "AWS_ENDPOINT_URL_DYNAMODB")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("POWERTOOLS_")}
    return {**env, "PYTHONPATH": pythonpath(), "PYTHONDONTWRITEBYTECODE": "1"}


class _Child:
    """``python -m bench.expiry run NAME TIMEOUT`` in its own session; its lines read by a thread.
    (bench.checkout: ``module``, ``extra`` arguments after TIMEOUT and ``parse`` for its result.)"""

    def __init__(
        self,
        name: str,
        timeout_s: float,
        say: Callable[[str], None],
        *,
        module: str = "bench.expiry",
        extra: Sequence[str] = (),
        parse: Callable[[str], Any] = Run.from_json,
    ) -> None:
        self.name = name
        self.say = say
        self.made = threading.Event()
        self.done = threading.Event()
        self.result: Any = None
        self.error = ""
        self._parse = parse
        self._cpu: dict[int, float] = {}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "run", name, str(timeout_s), *extra],
            cwd=ROOT,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"expiry-{name}", daemon=True)
        self._reader.start()
        self._sampler = threading.Thread(target=self._sample, name=f"expiry-{name}-cpu", daemon=True)
        self._sampler.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if not line.startswith(CHILD_MARK):
                continue
            kind, _, rest = line[len(CHILD_MARK) :].partition(" ")
            if kind == "made":
                self.made.set()
            elif kind == "say":
                self.say(rest)
            elif kind == "result":
                self.result = self._parse(rest)
            elif kind == "failed":
                self.error = rest
        self.done.set()
        self.made.set()

    def _sample(self) -> None:
        while not self.done.wait(1.0):
            self.cpu()

    def cpu(self) -> float:
        """CPU seconds so far of the child and everything it started (a process gone counts as last seen)."""
        for pid in procs.family(self.proc.pid):
            self._cpu[pid] = max(self._cpu.get(pid, 0.0), procs.cpu_seconds(pid))
        return sum(self._cpu.values())

    def wait(self) -> Any:
        while not self.done.wait(0.5):  # (a short wait: a Ctrl-C is taken between two)
            pass
        self.proc.wait()
        if self.result is None:
            raise ExpiryFailed(f"the {self.name} run failed: {self.error or f'exit status {self.proc.returncode}'}")
        return self.result

    def stop(self) -> None:
        """SIGTERM (the child stops its stack, proxy and DynamoDB Local), then whatever is left is killed."""
        with procs.shielded():
            family = procs.family(self.proc.pid)
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            left = procs.alive({p: s for p, s in family.items() if p != self.proc.pid})
            if left or self.proc.poll() is None:
                procs.kill({**left, **procs.family(self.proc.pid)})
                self.proc.wait()
            self._reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


# --- the section ------------------------------------------------------------------------------------


@dataclass
class ExpiryResults:
    timer: Run | None = None
    burst: Run | None = None
    ttl: Run | None = None
    child_cpu_s: float = 0.0  # the TTL-only stack's CPU while the timer runs ran
    timer_wall_s: float = 0.0
    ttl_timeout_s: float = TTL_TIMEOUT
    left_behind: list[int] = field(default_factory=list)
    seconds: float = 0.0


class _LeftBehind(Protocol):
    left_behind: list[int]


@contextlib.contextmanager
def _no_leftovers(results: _LeftBehind) -> Iterator[None]:
    """Every process started meanwhile (function workers, proxies, DynamoDB Local, the child and its
    own) must be gone afterwards; any left is killed (by pid) and reported."""
    before = procs.family(os.getpid())
    seen: dict[int, int] = {}
    stop = threading.Event()

    def look() -> None:
        seen.update({p: s for p, s in procs.family(os.getpid()).items() if p not in before})

    def watch() -> None:
        while not stop.wait(1.0):
            look()

    watcher = threading.Thread(target=watch, name="expiry-procs", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        look()
        # multiprocessing's resource tracker lives as long as this process, by design
        left = {p: s for p, s in procs.wait_gone(seen, 10.0).items() if "resource_tracker" not in procs.cmdline(p)}
        if left:
            results.left_behind = sorted(left)
            procs.kill(left)
            procs.wait_gone(left, 5.0)


def measure(ttl_timeout: float, burst: bool, progress: Callable[[str], None]) -> ExpiryResults:
    """Every run in a child process: the TTL-only one first, then the timer runs one after the other
    while it waits for its TTL job."""
    results = ExpiryResults(ttl_timeout_s=ttl_timeout)
    started = time.monotonic()
    logs = f"{os.path.relpath(LOG_DIR)}/bench-expiry-<run>.log"
    progress(f"expiry: the TTL-only run first, then the timer runs (each run's stack logs to {logs})")
    children: list[_Child] = []
    with _no_leftovers(results):
        try:
            ttl = _Child("ttl", ttl_timeout, progress)
            children.append(ttl)
            while not ttl.made.wait(0.5):
                pass
            if ttl.done.is_set():
                ttl.wait()  # raises: it failed before making its holds
            cpu0, wall0 = ttl.cpu(), time.monotonic()
            for name in ("timer", "burst") if burst else ("timer",):
                progress(f"expiry: {PLANS[name].label}")
                child = _Child(name, TIMER_TIMEOUT, progress)
                children.append(child)
                setattr(results, name, child.wait())
            results.child_cpu_s = ttl.cpu() - cpu0
            results.timer_wall_s = time.monotonic() - wall0
            progress("expiry: waiting for the TTL-only run")
            results.ttl = ttl.wait()
        finally:
            for child in children:
                child.stop()
    results.seconds = time.monotonic() - started
    return results


# --- the report -------------------------------------------------------------------------------------


def _rank(n: int, q: float) -> int:
    return max(0, math.ceil(q * n) - 1)


def _ms(value: float) -> str:
    return f"{value:,.0f}"


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[_rank(len(ordered), q)]


def _p99_ms(run: Run) -> int | None:
    """Nearest-rank p99 over all holds, None when a hold in the top 1 % had not ended."""
    rank = _rank(len(run.holds), 0.99)
    return run.lags[rank] if rank < len(run.lags) else None


def _lag_cells(run: Run) -> list[str]:
    """p50 p95 p99 max (nearest rank over all holds; one not ended counts as later than the wait) and min."""
    lags, n = run.lags, len(run.holds)
    out = []
    for q in (0.5, 0.95, 0.99, 1.0):
        rank = _rank(n, q)
        out.append(_ms(lags[rank]) if rank < len(lags) else f">{_ms(run.waited_s * 1000)}")
    return [*out, _ms(lags[0]) if lags else "-"]


def _dollars(x: float) -> str:
    return f"${x:.4f}" if x >= 0.0001 else f"${x:.6f}"


def _made_rate(run: Run) -> str:
    return f"{len(run.holds) / run.make_s:.0f}/s" if run.make_s else "-"


def _ended_by(run: Run) -> str:
    timer_ended = {e.name.split("--", 1)[-1] for e in run.executions if "expired" in e.outcomes}
    by: Counter[str] = Counter()
    for h in run.holds:
        if h.ended_at_ms is None:
            continue
        if h.expired_by == "ttl":
            by["TTL backstop"] += 1
        elif h.reservation_id in timer_ended:
            by["timer"] += 1
        else:
            by[f"{h.expired_by or 'unknown'} path"] += 1
    return ", ".join(f"{k} {v}" for k, v in by.most_common()) or "none"


def _transitions(run: Run) -> int:
    """States entered, plus each retried task once more (a retry is a transition too)."""
    return sum(len(e.states) + max(0, e.tasks - e.states.count("ExpireIfDue")) for e in run.executions)


def _cost(run: Run, transitions_per_hold: float) -> tuple[list[list[str]], float, float]:
    n = len(run.holds)
    rows: list[list[str]] = []
    expire = run.invocations.get("ExpireFunction", Invocations())
    starter = run.invocations.get("HoldStreamFunction", Invocations())
    calls = len(expire.handler_s) + len(starter.handler_s)
    gb_s = sum(math.ceil(s * 1000) / 1000 for s in expire.handler_s + starter.handler_s) * LAMBDA_GB
    ending = [c for c in map(classify, run.requests) if c.what in ("expire", "end")]
    wru = sum(c.items * (2 if c.transactional else 1) for c in ending)
    rru = sum(1 for c in map(classify, run.requests) if c.label == "GetItem: reservation (consistent)")
    sfn = transitions_per_hold * 1000 * SFN_PER_TRANSITION
    items = [
        ("Step Functions state transitions", transitions_per_hold, "$0.025 per 1,000", sfn),
        ("Lambda requests (expire + hold stream)", calls / n, "$0.20 per 1M", calls / n * 1000 * LAMBDA_PER_REQUEST),
        ("Lambda GB-s (1 GB x handler time)", gb_s / n, "$0.0000133334 per GB-s", gb_s / n * 1000 * LAMBDA_PER_GB_S),
        ("DynamoDB write request units", wru / n, "$0.625 per 1M", wru / n * 1000 * DDB_PER_WRU),
        ("DynamoDB read request units", rru / n, "$0.125 per 1M", rru / n * 1000 * DDB_PER_RRU),
    ]
    total = sum(x[3] for x in items)
    for label, per_hold, price, dollars in items:
        rows.append([label, f"{per_hold:.3f}", f"{per_hold * 1000:,.0f}", price, _dollars(dollars)])
    return rows, total, sfn


def _timer_steps(run: Run) -> dict[str, list[float]]:
    by_id = {h.reservation_id: h for h in run.holds}
    steps: dict[str, list[float]] = {"start": [], "wake": [], "task": []}
    for e in run.executions:
        hold = by_id.get(e.name.split("--", 1)[-1])
        if hold is None or hold.created_at_ms is None or hold.ended_at_ms is None:
            continue
        steps["start"].append(e.started * 1000 - hold.created_at_ms)
        if e.woke is not None:
            steps["wake"].append(e.woke * 1000 - hold.deadline_ms)
        if e.last_task is not None:
            steps["task"].append(hold.ended_at_ms - e.last_task * 1000)
    expire = run.invocations.get("ExpireFunction", Invocations())
    starter = run.invocations.get("HoldStreamFunction", Invocations())
    steps["expire"] = [s * 1000 for s in expire.handler_s]
    steps["expire_wall"] = [s * 1000 for s in expire.wall_s]
    steps["starter"] = [s * 1000 for s in starter.handler_s]
    return steps


STEP_LABELS = {
    "start": "hold made -> its execution started (stream, hold stream)",
    "wake": "deadline -> WaitForDeadline left (< 0: woke early)",
    "task": "last ExpireIfDue scheduled -> endedAt",
    "expire": "expire function: handler time in the worker",
    "expire_wall": "expire function: submit -> answer (+ queue, IPC)",
    "starter": "hold-stream batch: handler time in the worker",
}


def report(res: ExpiryResults) -> str:
    out: list[str] = []
    timers = [r for r in (res.timer, res.burst) if r is not None]
    runs = [*timers, *([res.ttl] if res.ttl is not None else [])]
    out.append(
        f"Holds that end by themselves (docs/expiry.md): {HOLDS} holds per run over HTTP, holdSeconds "
        f"{'/'.join(map(str, HOLD_SECONDS))} in turn, 1 unit each, a fresh cart each [1]"
    )
    out.append("Lag in ms from the deadline to the units being available again (endedAt - expiresAt) [2]")
    rows = []
    for run in runs:
        target = "- (no target)"
        if run.plan.timer:
            p99 = _p99_ms(run)
            target = f"p99 <= {_ms(TIMER_TARGET_MS)} {'PASS' if p99 is not None and p99 <= TIMER_TARGET_MS else 'MISS'}"
        rows.append([run.plan.label, _made_rate(run), f"{len(run.lags)}/{len(run.holds)}", *_lag_cells(run), target])
    out.append(
        table(
            ["run", "made at", "ended", "p50", "p95", "p99", "max", "min", "target"],
            rows,
            [False, True, True, True, True, True, True, True, False],
        )
    )
    for run in runs:
        late = ""
        if run.plan.timer:
            by_id = {h.reservation_id: h for h in run.holds}
            n_late = sum(
                1
                for e in run.executions
                if (h := by_id.get(e.name.split("--", 1)[-1])) is not None and e.started * 1000 > h.deadline_ms
            )
            loops = sum(1 for e in run.executions if "WaitASecond" in e.states)
            starter = run.invocations.get("HoldStreamFunction", Invocations())
            per_start = sum(starter.handler_s) * 1000 / max(1, len(run.executions))
            late = (
                f"; {len(run.executions)} executions ({dict(Counter(e.status for e in run.executions))}), "
                f"{loops} woke before the deadline and looked again 1 s later, {n_late} started after the deadline; "
                f"hold stream: {len(starter.handler_s)} batches, {per_start:.0f} ms of handler time per record "
                "(a StartExecution on moto each)"
            )
        cpu = run.cpu_s
        out.append(
            f"  {run.name}: ended by {_ended_by(run)}{late}; reconciliation ran {run.schedule_fired}x; "
            f"stream records sent to OnFailure {run.discarded}; POST answers {run.make_statuses}; CPU s from the "
            f"first POST to the last hold ended ({run.busy_s:.0f} s): bench process {cpu.get('bench', 0):.1f}, "
            f"function workers {cpu.get('workers', 0):.1f}, DynamoDB Local {cpu.get('ddb', 0):.1f}, proxy "
            f"{cpu.get('proxy', 0):.1f}"
        )
    out.append("")

    if timers and any(r.executions for r in timers):
        steps = {r.name: _timer_steps(r) for r in timers}
        headers = ["step (ms) [4]"]
        for r in timers:
            headers += [f"{r.name} p50", "p95", "max"]
        rows = []
        for key, label in STEP_LABELS.items():
            row = [label]
            for r in timers:
                values = steps[r.name][key]
                row += (
                    [_ms(statistics.median(values)), _ms(_pct(values, 0.95)), _ms(max(values))] if values else [""] * 3
                )
            rows.append(row)
        out.append("Timer path: where the time goes (moto's execution history, the items, the workers' clocks)")
        out.append(table(headers, rows, [False] + [True] * (len(headers) - 1)))
        out.append("")

    if res.timer is not None and res.timer.executions:
        run = res.timer
        n = len(run.holds)
        measured = _transitions(run) / n
        rows, total, sfn = _cost(run, measured)
        loops = sum(1 for e in run.executions if "WaitASecond" in e.states)
        out.append(f"Cost per 1,000 holds on AWS (list prices), from the counts of the '{run.name}' run [5]")
        out.append(
            table(
                ["item", "per hold", "per 1,000 holds", "list price", "$ per 1,000 holds"],
                [*rows, ["total", "", "", "", _dollars(total)]],
                [False, True, True, False, True],
            )
        )
        no_loop = 5.0  # WarnFirst, WaitForDeadline, ExpireIfDue, StillHeld, Ended
        ideal_total = total - sfn + no_loop * 1000 * SFN_PER_TRANSITION
        expire = run.invocations.get("ExpireFunction", Invocations())
        starter = run.invocations.get("HoldStreamFunction", Invocations())
        ending = Counter(c.label for c in map(classify, run.requests) if c.what in ("expire", "end"))
        out.append(
            f"  Step Functions is {sfn / total * 100:.0f} % of it. Transitions: {_transitions(run)} in {n} executions: "
            f"5 per hold (WarnFirst, WaitForDeadline, ExpireIfDue, StillHeld, Ended) + 4 for each of the {loops} that "
            f"woke early (moto's Wait, see [4]). A Wait that never wakes early (as AWS's Timestamp wait should not) gives 5 per "
            f"hold: {_dollars(no_loop * 1000 * SFN_PER_TRANSITION)} for Step Functions, {_dollars(ideal_total)} in all."
        )
        out.append(
            f"  Lambda: {len(expire.handler_s)} expire invocations (1 per ExpireIfDue) + {len(starter.handler_s)} "
            f"hold-stream batches ({n / max(1, len(starter.handler_s)):.1f} records each); handler time medians "
            f"{_ms(statistics.median(expire.handler_s) * 1000) if expire.handler_s else '-'} ms (expire) and "
            f"{_ms(statistics.median(starter.handler_s) * 1000) if starter.handler_s else '-'} ms (hold-stream batch), "
            f"on this machine against DynamoDB Local and moto. DynamoDB: "
            + "; ".join(f"{v}x {k}" for k, v in ending.items())
            + " (2 WRU per item), 1 strongly consistent GetItem of the reservation per expire invocation (1 RRU)."
        )
        labels = Counter(c.label for c in map(classify, run.requests) if c.what != "streams")
        out.append(
            "  Every DynamoDB request of the stack from the first POST on (proxy): "
            + "; ".join(f"{v}x {k}" for k, v in sorted(labels.items(), key=lambda x: -x[1]))
        )
        out.append("")

    if res.ttl is not None:
        ttl = res.ttl
        release = ttl.invocations.get("HoldStreamFunction", Invocations())
        with_removes = sum("REMOVE" in kinds for kinds in release.event_names)
        labels = Counter(c.label for c in map(classify, ttl.requests) if c.what != "streams")
        sweep = (2 * HOLDS + 8) / 20 * 10
        early = [h for h in ttl.holds if h.lag_ms is not None and h.lag_ms < 0]
        out.append(
            f"  TTL-only run: HoldStreamFunction {len(release.handler_s)} invocations, {with_removes} of them with "
            f"the TTL job's deletes (the others: the holds' INSERTs, timers off); every DynamoDB request from the first POST on: "
            + "; ".join(f"{v}x {k}" for k, v in sorted(labels.items(), key=lambda x: -x[1]))
            + ". Per hold that is 4 WRU (a 2-item transaction) + 1 WRU (the cart slot) and the TTL delete (free)."
            + (
                f" {len(early)} hold(s) ended BEFORE the deadline (lag < 0, up to {_ms(-min(h.lag_ms or 0 for h in early))}"
                " ms): purgeAt is the deadline rounded DOWN to the second (+ TTL_GRACE_SECONDS, 0 here) and the "
                "backstop does not check the deadline [3]."
                if early
                else ""
            )
        )
        ended = sorted(h.ended_at_ms for h in ttl.holds if h.ended_at_ms is not None)
        bursts = [t for i, t in enumerate(ended) if i == 0 or t - ended[i - 1] > 3000]
        gaps = [b - a for a, b in itertools.pairwise(bursts)]
        out.append(
            f"  The backstop's restores came in {len(bursts)} bursts"
            + (f", a median {statistics.median(gaps) / 1000:.1f} s apart" if gaps else "")
            + f" (the TTL job's pages); a sweep of this table is ~{(2 * HOLDS + 8) / 20:.0f} pages (~{sweep:.0f} s at "
            f"10 s each), so the lags spread evenly from 0 to one sweep. The TTL-only stack used "
            f"{res.child_cpu_s:.1f} CPU s while the timer runs ran ({res.timer_wall_s:.0f} s)."
        )
        out.append("")

    notes = [
        f"[1] Each run: its own DynamoDB Local (in memory), a counting proxy in front of it (bench.ddbproxy, its own "
        f"process) and a local stack (tools.local.stack, StackConfig(port=0, concurrency={CONCURRENCY}, "
        f"schedule_seconds={SCHEDULE_SECONDS:.0f}): reconciliation never runs), {CONCURRENCY} ApiFunction and (timer "
        f"runs) {CONCURRENCY} ExpireFunction workers started before the holds are made; {SKUS} fresh SKUs with onHand "
        f"{ON_HAND} (PUT /stock, admin key); the holds by {CLIENTS} HTTP client threads (storefront key), paced: the "
        f"n-th sent at n/{PACED_RATE:g} s, burst: each as soon as a client is free. 'made at' = holds / time to make "
        "them. Each run is a child process; the TTL-only one (holds made in a burst) starts first and only waits for "
        "its TTL job while the timer runs run, one after the other, on the same CPUs. Overrides: MIN_HOLD_SECONDS=1; "
        "TTL only: TTL_GRACE_SECONDS=0.",
        "[2] endedAt - expiresAt of the reservation item (epoch ms, both written by the stack on this machine's "
        "clock; endedAt is taken as the ending transaction (units back) is built, a few ms before it commits), read "
        "with strongly consistent BatchGetItem straight from DynamoDB Local (not through the proxy) every "
        f"{POLL_SECONDS:g} s until all have ended. Nearest-rank percentiles over all {HOLDS} holds; a hold not ended "
        "when the bench gave up counts as later than the wait ('>'). 'ended by': 'timer' = its execution's expire "
        "call answered 'expired'; 'TTL backstop' = the item's expiredBy.",
        "[3] No timer: the hold stream runs with HOLD_TIMER_ARN empty, so it starts no timers. DynamoDB Local's TTL job "
        "(1.25.1, see tools/ddblocal.py) scans a table 20 items per page with 10 s between pages and deletes what has "
        "expired; this table holds 2 items per hold (the reservation, and its cart slot which has no TTL) plus a few, "
        "so a sweep takes ~(2 x holds + 8) / 20 x 10 s and each hold waits for the sweep to come round to it. That is "
        "the emulator: AWS deletes expired items 'within a few days' (typically minutes to hours); hence a backstop, "
        "with no target. purgeAt = expiresAt // 1000 + TTL_GRACE_SECONDS, so with a grace of 0 the TTL job may delete a "
        f"hold up to 1 s before its deadline. Gave up {res.ttl_timeout_s:.0f} s after the last deadline.",
        "[4] From moto's execution histories (ExecutionStarted, the first exit of WaitForDeadline, the last "
        "TaskScheduled of ExpireIfDue) against the item's createdAt / expiresAt / endedAt. The hold stream calls "
        "StartExecution once per record, one after the other. The hold timer waits until expiresAt rounded up to the "
        "second (timer_deadline), but moto's Timestamp wait sleeps int(seconds left) (truncated), so it wakes up to "
        "1 s early; the expire function then answers not_due with soon=true and the execution looks again 1 s later "
        "(WaitASecond), so those holds end up to ~2 s late. Handler time: tools.local.functions' invoke timed inside "
        "the worker (what Lambda bills, less its own ~ms); submit -> answer adds waiting for a free worker and pickling.",
        "[5] Step Functions Standard $0.025 per 1,000 state transitions (a state entered; a retried task counts "
        "again; the counts above are exactly what the histories show); Lambda $0.20 per 1M requests + $0.0000133334 "
        "per GB-s (arm64), 1024 MB, the handler times measured here (each rounded up to 1 ms) - DynamoDB Local and "
        "moto on 2 busy CPUs are slower than DynamoDB and Step Functions; DynamoDB on-demand $0.625 per million WRU "
        "(TransactWriteItems: 2 per item up to 1 KB; these items are smaller) and $0.125 per million RRU (strongly "
        "consistent read up to 4 KB: 1). Not counted: the reserve itself, CloudWatch Logs, metrics and X-Ray, free "
        "tiers, stream reads (free for Lambda triggers). Hold-stream batches are as large as the local poller (every "
        "0.25 s, up to 100 records) made them; on AWS, similar at the same rate of new holds.",
        f"    (expiry section took {res.seconds:.0f} s; every stack, proxy, DynamoDB Local and the child process were "
        f"stopped; processes left behind: {', '.join(map(str, res.left_behind)) or 'none'})",
    ]
    out.extend(notes)
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "run" and sys.argv[2] in PLANS:
        sys.exit(_child_main(sys.argv[2], float(sys.argv[3])))
    print(f"usage: python -m bench.expiry run {{{'|'.join(PLANS)}}} TIMEOUT   (started by python -m bench.run)")
    sys.exit(2)
