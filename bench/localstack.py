"""The local stack (``make run`` = ``python -m tools.local``): start-up time and the runner's overhead.

* setup: ``make run``'s own setup step (scripts/bootstrap-python.sh, then
  ``python -m tools.ddblocal install``) with everything installed already;
* start-up: ``python -m tools.local`` as a child process, timed to the first 200 of
  ``GET /openapi.json``; the first start of the bench is "cold", then N "warm" ones;
* throughput: one more stack, STOCKHOLD_CONCURRENCY=8, driven with ``POST
  /reservations`` over HTTP by 8 client threads, next to the same operation in-process
  (bench.inprocess, a child with the ApiFunction workers' environment on the same
  DynamoDB Local).

Every stack runs in its own session; it is stopped with SIGTERM (as Ctrl-C does in
``make run``) and then every process it had started must be gone (bench.procs).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from typing import Any

from bench import inprocess, procs
from bench.env import ROOT, pythonpath
from bench.stats import median_ms, p95_ms, table

STORE = "demo"  # seeded by the local stack, with these keys
ADMIN_KEY, STOREFRONT_KEY = "local-admin", "local-storefront"
LOAD_CONCURRENCY = 8  # STOCKHOLD_CONCURRENCY of the throughput stack, and client threads
WARMUP_PER_CLIENT = 10
IN_PROCESS_WARMUP = 40
JVM_WARMUP = 400  # bare transactions on a fresh DynamoDB Local before anything is timed
ON_HAND = 1_000_000
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
SETTLE_CPUS, SETTLE_WINDOW, SETTLE_MAX = 0.25, 0.5, 10.0
POLL_SECONDS = 0.01
_BANNER = re.compile(r"stockhold is running at (\S+)\s+\(ready in ([\d.]+) s\)")
_DDB = re.compile(r"DynamoDB Local:\s+(\S+)")
_INSTALL_WORDS = ("download", "installing", "apt-get", "creating", "verified")


class StackFailed(RuntimeError):
    pass


@dataclass
class Start:
    first_s: float  # Popen to the first 200 of GET /openapi.json
    banner_s: float  # Popen to the "stockhold is running" line
    ready_in_s: float  # the stack's own figure
    stop_s: float = 0.0  # SIGTERM to exit
    killed: bool = False  # no exit within STOP_TIMEOUT of SIGTERM: SIGKILLed (the whole tree)


@dataclass
class Load:
    latencies_ns: list[int]
    wall_s: float
    statuses: Counter[int] = field(default_factory=Counter)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the run, by process kind

    @property
    def rate(self) -> float:
        return len(self.latencies_ns) / self.wall_s


@dataclass
class SetupRun:
    bootstrap_s: float
    install_s: float
    output: list[str]


@dataclass
class StackResults:
    setup: list[SetupRun]
    cold: Start
    warm: list[Start]
    load_start: Start
    workers_after_start: int
    workers_after_warmup: int
    workers_after_load: int
    warmup: Load
    http8: Load
    http1: Load
    http1_new: Load
    api: Load
    service1: Load
    service8: Load
    busy_after: float  # CPUs the stack used in the second after the 8-client run
    settled: list[float]  # seconds waited for the stack to go quiet before each HTTP run
    stops: int = 0
    left_behind: list[int] = field(default_factory=list)
    seconds: float = 0.0


# --- environments ----------------------------------------------------------------------


def launch_env(base: Mapping[str, str]) -> dict[str, str]:
    """What ``make run`` gives ``python -m tools.local``: the caller's environment plus the Makefile's exports,
    without STOCKHOLD_* settings (in memory, default keys and concurrency)."""
    out = {k: v for k, v in base.items() if not k.startswith("STOCKHOLD_")}
    out["PYTHONPATH"] = "layers/stockhold:functions/api:."
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _venv_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# --- one stack -------------------------------------------------------------------------


class StackProcess:
    """``python -m tools.local`` on a free port, its output drained (and the tail kept) by a thread."""

    def __init__(self, env: Mapping[str, str], concurrency: int | None = None) -> None:
        self.port = _free_port()
        self.env = {**env, "STOCKHOLD_PORT": str(self.port)}
        if concurrency is not None:
            self.env["STOCKHOLD_CONCURRENCY"] = str(concurrency)
        self.proc: subprocess.Popen[bytes] | None = None
        self.tail: deque[str] = deque(maxlen=30)
        self.ddb_endpoint = ""
        self.ready_in: float | None = None
        self.banner_at: float | None = None
        self.left_behind: list[int] = []
        self.killed = False
        self._banner = threading.Event()
        self._endpoint = threading.Event()
        self._reader: threading.Thread | None = None

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            if not self._banner.is_set() and (found := _BANNER.search(line)):
                self.banner_at = time.perf_counter()
                self.ready_in = float(found.group(2))
                self._banner.set()
            elif not self._endpoint.is_set() and (found := _DDB.search(line)):  # the banner's next line
                self.ddb_endpoint = found.group(1)
                self._endpoint.set()

    def _failed(self, why: str) -> StackFailed:
        tail = "\n".join(f"    {x}" for x in self.tail)
        return StackFailed(f"python -m tools.local: {why}; its last output:\n{tail}")

    def start(self) -> Start:
        started = time.perf_counter()
        deadline = started + START_TIMEOUT
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.local"],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches the bench only; the bench stops the stack
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), name="stack-output", daemon=True)
        self._reader.start()
        first = self._first_answer(deadline) - started
        for seen, what in ((self._banner, "'stockhold is running'"), (self._endpoint, "'DynamoDB Local:'")):
            while not seen.wait(0.05):
                if self.proc.poll() is not None:
                    raise self._failed(f"exited with {self.proc.returncode} after answering")
                if time.perf_counter() > deadline:
                    raise self._failed(f"no {what} line")
        assert self.banner_at is not None and self.ready_in is not None
        return Start(first, self.banner_at - started, self.ready_in)

    def _first_answer(self, deadline: float) -> float:
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise self._failed(f"exited with {self.proc.returncode}")
            conn = HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/openapi.json")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return time.perf_counter()
            except (OSError, HTTPException):
                pass
            finally:
                conn.close()
            if time.perf_counter() > deadline:
                raise self._failed(f"no answer on port {self.port} within {START_TIMEOUT:.0f} s")
            time.sleep(POLL_SECONDS)

    def workers(self) -> int:
        """Worker processes (multiprocessing children) the stack has now."""
        if self.proc is None:
            return 0
        return sum(1 for pid in procs.family(self.proc.pid) if "spawn_main" in procs.cmdline(pid))

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the stack's processes, by kind, and of this (the client) process."""
        out = {"clients": procs.cpu_seconds(os.getpid()), "stack": 0.0, "workers": 0.0, "ddb": 0.0}
        if self.proc is None:
            return out
        for pid in procs.family(self.proc.pid):
            line = procs.cmdline(pid)
            kind = "ddb" if "DynamoDBLocal" in line else "stack" if pid == self.proc.pid else "workers"
            out[kind] += procs.cpu_seconds(pid)
        return out

    def stop(self) -> float:
        """SIGTERM, wait, then make sure every process the stack had started is gone. Seconds to exit."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0.0
        with procs.shielded():
            tree = procs.family(proc.pid)
            started = time.perf_counter()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.killed = True
                    tree.update(procs.family(proc.pid))
                    procs.kill(tree)
                    proc.wait()
            took = time.perf_counter() - started
            rest = {pid: start for pid, start in tree.items() if pid != proc.pid}
            left = procs.wait_gone(rest, 5.0)
            if left:
                self.left_behind = sorted(left)
                procs.kill(left)
                procs.wait_gone(left, 5.0)
            if self._reader is not None:
                self._reader.join(timeout=5.0)
            if proc.stdout is not None:
                proc.stdout.close()
        return took


# --- HTTP clients ----------------------------------------------------------------------


class _Client:
    """One keep-alive connection (per thread), reopened after an error; or a new connection per request."""

    def __init__(self, port: int, key: str, keep_alive: bool = True) -> None:
        self.port, self.key, self.keep_alive = port, key, keep_alive
        self.conn: HTTPConnection | None = None

    def call(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        try:
            self.conn.request(method, path, body=json.dumps(body), headers=headers)
            resp = self.conn.getresponse()
            out = resp.status, resp.read()
        except (OSError, HTTPException):
            self.close()
            return 0, b""
        if not self.keep_alive:
            self.close()
        return out

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _http_load(port: int, sku: str, clients: int, per_client: int, tag: str, keep_alive: bool = True) -> Load:
    local = threading.local()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    seq = iter(range(10**9))
    run = uuid.uuid4().hex[:6]
    opened: list[_Client] = []

    def once() -> None:
        client: _Client | None = getattr(local, "client", None)
        if client is None:
            client = local.client = _Client(port, STOREFRONT_KEY, keep_alive)
            with lock:
                opened.append(client)
        with lock:
            n = next(seq)
        body = {"cartId": f"bench-http-{tag}-{run}-{n:06d}", "items": [{"sku": sku, "quantity": 1}]}
        status, _ = client.call("POST", "/reservations", body)
        with lock:
            statuses[status] += 1

    try:
        latencies, wall = inprocess.run_threads(clients, per_client, once)
    finally:
        for c in opened:
            c.close()
    return Load(latencies, wall, statuses)


# --- the measurements ------------------------------------------------------------------


def time_setup(runs: int, env: Mapping[str, str]) -> list[SetupRun]:
    out = []
    for _ in range(runs):
        lines: list[str] = []
        took = []
        for cmd in (["scripts/bootstrap-python.sh"], [_venv_python(), "-m", "tools.ddblocal", "install"]):
            started = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, env=dict(env), capture_output=True, text=True, check=False)
            took.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise StackFailed(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
            lines += [x.strip() for x in (done.stdout + done.stderr).splitlines() if x.strip()]
        out.append(SetupRun(took[0], took[1], lines))
    return out


def _started(stack: StackProcess, progress: Callable[[str], None], what: str) -> Start:
    start = stack.start()
    progress(f"{what}: first answer after {start.first_s:.2f} s")
    return start


def _with_cpu(stack: StackProcess, run: Callable[[], Load]) -> Load:
    """``run()``, with the CPU time the stack's processes and this one used meanwhile."""
    before = stack.cpu()
    load = run()
    load.cpu_s = {k: v - before[k] for k, v in stack.cpu().items()}
    return load


def _warm_jvm(endpoint: str, table: str, calls: int) -> None:
    """Warm a fresh DynamoDB Local's JIT with ``calls`` bare 3-action TransactWriteItems on ``table`` (keyed by
    ``id``, without a stream: nothing reacts to these writes), from 8 threads."""
    import boto3

    from tools.ddblocal import client_kwargs

    if not endpoint.startswith("http://127.0.0.1:"):  # never let boto3 fall back to AWS
        raise StackFailed(f"not a local DynamoDB endpoint: {endpoint!r}")
    client = boto3.client("dynamodb", **client_kwargs(endpoint))

    def once() -> None:
        a, b, c = (f"bench-jit#{uuid.uuid4().hex}" for _ in range(3))
        one = {":z": {"N": "0"}, ":one": {"N": "1"}}
        client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"id": {"S": a}, "n": {"N": "1"}},
                        "ConditionExpression": "attribute_not_exists(id)",
                    }
                },
                {"Put": {"TableName": table, "Item": {"id": {"S": b}, "n": {"N": "1"}}}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"id": {"S": c}},
                        "UpdateExpression": "SET n = if_not_exists(n, :z) + :one",
                        "ExpressionAttributeValues": one,
                    }
                },
            ]
        )

    inprocess.run_threads(LOAD_CONCURRENCY, max(1, calls // LOAD_CONCURRENCY), once)


def _ddb_pid(port: int) -> int:
    """The DynamoDB Local this process started on ``port``."""
    found = [
        pid
        for pid in procs.family(os.getpid())
        if "DynamoDBLocal" in (line := procs.cmdline(pid)) and f"-port {port} " in line + " "
    ]
    if len(found) != 1:
        raise StackFailed(f"{len(found)} DynamoDB Local processes on port {port} among the bench's")
    return found[0]


def _in_process(env: Mapping[str, str], sku: str, serial: int, total: int) -> dict[str, Load]:
    """bench.inprocess on a DynamoDB Local of its own (no stack polling its stream), in a child with the
    environment the stack gives its ApiFunction workers (the same code: tools.local.stack.LocalStack)."""
    import boto3

    from tools import apigw, template
    from tools.ddblocal import DynamoDBLocal
    from tools.local.stack import LocalStack, StackConfig

    found = apigw.find_route("POST", "/reservations")
    assert found is not None, "no POST /reservations in template.yaml"
    spec = template.functions()[found[0].function]
    server = DynamoDBLocal()
    try:
        server.start(shared_db=True)
        tables = template.create_tables(boto3.client("dynamodb", **server.client_kwargs()))
        _warm_jvm(server.endpoint_url, tables["IdempotencyTable"], JVM_WARMUP)
        local = LocalStack(StackConfig(overrides=dict(env)))
        local.endpoint, local.tables = server.endpoint_url, tables
        child_env = local.function_env(spec)
        child_env["PYTHONPATH"] = pythonpath()
        config = {"store": STORE, "sku": sku, "on_hand": ON_HAND, "threads": LOAD_CONCURRENCY, "serial": serial}
        config |= {"total": total, "warmup": IN_PROCESS_WARMUP, "ddb_pid": _ddb_pid(server.port)}
        child_env[inprocess.CONFIG_VAR] = json.dumps(config)
        done = subprocess.run(
            [sys.executable, "-m", "bench.inprocess"],
            cwd=ROOT,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        server.stop()
    marks = [x for x in done.stdout.splitlines() if x.startswith(inprocess.MARK)]
    if done.returncode != 0 or not marks:
        last = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise StackFailed(f"bench.inprocess failed ({done.returncode}):\n{last}")
    got = json.loads(marks[-1][len(inprocess.MARK) :])
    cpu = got.pop("cpu_s")
    return {k: Load(samples, wall, cpu_s=cpu[k]) for k, (samples, wall) in got.items()}


def _settle(stack: StackProcess) -> float:
    """Wait (at most SETTLE_MAX s) until the stack's processes use under SETTLE_CPUS over SETTLE_WINDOW s: the
    hold timers earlier requests started from the stream are running. Seconds waited."""
    started = time.perf_counter()
    while _busy(stack, SETTLE_WINDOW) >= SETTLE_CPUS and time.perf_counter() - started < SETTLE_MAX:
        pass
    return time.perf_counter() - started


def _busy(stack: StackProcess, seconds: float) -> float:
    """CPUs the stack's processes (with DynamoDB Local) use over the next ``seconds``."""
    before = stack.cpu()
    time.sleep(seconds)
    after = stack.cpu()
    return sum(after[k] - before[k] for k in ("stack", "workers", "ddb")) / seconds


def measure(
    base_env: Mapping[str, str], starts: int, requests: int, serial: int, progress: Callable[[str], None]
) -> StackResults:
    began = time.perf_counter()
    env = launch_env(base_env)
    left: list[int] = []
    stops = 0

    progress("local stack: make run's setup step, 3 times (everything installed)")
    setup = time_setup(3, env)

    plain = max(0, starts - 1)  # the throughput stack's start is the last warm one
    progress(f"local stack: 1 cold + {plain} warm starts of python -m tools.local (+1 with the throughput stack)")
    times: list[Start] = []
    for i in range(1 + plain):
        stack = StackProcess(env)
        try:
            times.append(_started(stack, progress, "cold start" if i == 0 else f"warm start {i}"))
        finally:
            stop_s = stack.stop()
            stops += 1
            left.extend(stack.left_behind)
        times[-1].stop_s, times[-1].killed = stop_s, stack.killed

    sku = f"BENCH-HTTP-{uuid.uuid4().hex[:6].upper()}"
    per_client = max(1, requests // LOAD_CONCURRENCY)
    progress("local stack: POST /reservations in-process, on a DynamoDB Local of its own")
    inproc = _in_process(env, sku, serial, per_client * LOAD_CONCURRENCY)

    progress(f"local stack: STOCKHOLD_CONCURRENCY={LOAD_CONCURRENCY}, POST /reservations over HTTP")
    stack = StackProcess(env, concurrency=LOAD_CONCURRENCY)
    try:
        load_start = _started(stack, progress, f"warm start {plain + 1} (STOCKHOLD_CONCURRENCY={LOAD_CONCURRENCY})")
        workers_after_start = stack.workers()
        status, body = _Client(stack.port, ADMIN_KEY).call("PUT", f"/stock/{sku}", {"onHand": ON_HAND})
        if status != 200:
            raise StackFailed(f"PUT /stock/{sku} answered {status}: {body[:300]!r}")
        _warm_jvm(stack.ddb_endpoint, "IdempotencyTable", JVM_WARMUP)  # the stack names tables by logical id
        warmup = _http_load(stack.port, sku, LOAD_CONCURRENCY, WARMUP_PER_CLIENT, "warm")
        workers_after_warmup = stack.workers()
        settled = [_settle(stack)]
        http1_new = _with_cpu(stack, lambda: _http_load(stack.port, sku, 1, serial, "n1", keep_alive=False))
        settled.append(_settle(stack))
        # 1 client keep-alive: half as many, as each waits ~40 ms (see the report)
        http1 = _with_cpu(stack, lambda: _http_load(stack.port, sku, 1, max(1, serial // 2), "c1"))
        settled.append(_settle(stack))
        http8 = _with_cpu(stack, lambda: _http_load(stack.port, sku, LOAD_CONCURRENCY, per_client, "c8"))
        busy_after = _busy(stack, 1.0)
        workers_after_load = stack.workers()
        progress(f"local stack: {http8.rate:.0f} requests/s with {LOAD_CONCURRENCY} clients")
    finally:
        stop_s = stack.stop()
        stops += 1
        left.extend(stack.left_behind)
    load_start.stop_s, load_start.killed = stop_s, stack.killed
    return StackResults(
        setup=setup,
        cold=times[0],
        warm=times[1:],
        load_start=load_start,
        workers_after_start=workers_after_start,
        workers_after_warmup=workers_after_warmup,
        workers_after_load=workers_after_load,
        warmup=warmup,
        http8=http8,
        http1=http1,
        http1_new=http1_new,
        api=inproc["api"],
        service1=inproc["service1"],
        service8=inproc["service8"],
        busy_after=busy_after,
        settled=settled,
        stops=stops,
        left_behind=left,
        seconds=time.perf_counter() - began,
    )


# --- the report ------------------------------------------------------------------------


def _stops(starts: list[Start]) -> str:
    killed = sum(s.killed for s in starts)
    return _med([s.stop_s for s in starts]) + (f" ({killed} killed)" if killed else "")


def _med(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _reservations(res: StackResults) -> int:
    return sum(len(x.latencies_ns) for x in (res.warmup, res.http1_new, res.http1, res.http8))


def _answers(load: Load) -> str:
    if not load.statuses:
        return "ok"
    return ", ".join(f"{'error' if s == 0 else s} x{n}" for s, n in sorted(load.statuses.items()))


def report(res: StackResults, nproc: int) -> str:
    out: list[str] = []
    boot = [r.bootstrap_s for r in res.setup]
    inst = [r.install_s for r in res.setup]
    total = [r.bootstrap_s + r.install_s for r in res.setup]
    printed = sorted({line for r in res.setup for line in r.output})
    installs = [x for x in printed if any(w in x.lower() for w in _INSTALL_WORDS)]
    warm = [*res.warm, res.load_start]
    rows = [
        ["make run's setup step, all installed (median of 3)", _med(total), "", "", ""],
        ["  scripts/bootstrap-python.sh", _med(boot), "", "", ""],
        ["  python -m tools.ddblocal install", _med(inst), "", "", ""],
        [
            "python -m tools.local, cold (1st start of the bench)",
            _med([res.cold.first_s]),
            _med([res.cold.banner_s]),
            f"{res.cold.ready_in_s:.1f}",
            _stops([res.cold]),
        ],
        [
            f"python -m tools.local, warm (median of {len(warm)} [a])",
            _med([s.first_s for s in warm]),
            _med([s.banner_s for s in warm]),
            f"{statistics.median(s.ready_in_s for s in warm):.1f}",
            _stops(res.warm) if res.warm else "-",
        ],
        [
            f"  the throughput stack: stop after {_reservations(res)} reservations",
            "",
            "",
            "",
            _stops([res.load_start]),
        ],
        [
            "make run to first answer, warm (setup + start medians)",
            f"{statistics.median(total) + statistics.median(s.first_s for s in warm):.2f}",
            "",
            "",
            "",
        ],
    ]
    out.append("Local stack (make run): seconds to the first answered request [5]")
    out.append(
        table(
            ["step", "first answer", "banner", "stack's 'ready in'", "stop (SIGTERM)"],
            rows,
            [False, True, True, True, True],
        )
    )
    verdict = "yes" if not installs else "NO: " + "; ".join(installs)
    shown = "; ".join(printed) if printed else "nothing"
    out.append(f"  setup step installed nothing: {verdict} (it printed: {shown})")
    out.append(
        f"  [a] the last warm start is the throughput stack's (STOCKHOLD_CONCURRENCY={LOAD_CONCURRENCY}): start-up "
        f"work is the same, one worker per function ({res.workers_after_start} worker processes after start); "
        "its stop is shown apart"
    )
    out.append("")

    ref = median_ms(res.api.latencies_ns)

    def row(label: str, threads: int, load: Load, answers: str, ratio: bool = True) -> list[str]:
        p50 = median_ms(load.latencies_ns)
        return [
            label,
            str(threads),
            str(len(load.latencies_ns)),
            answers,
            f"{load.rate:.0f}",
            f"{p50:.2f}",
            f"{p95_ms(load.latencies_ns):.2f}",
            f"{p50 / ref:.2f}x" if ratio else "-",
        ]

    c = LOAD_CONCURRENCY
    rows = [
        row(f"HTTP, local stack (CONCURRENCY={c}), keep-alive", c, res.http8, _answers(res.http8)),
        row("HTTP, local stack, keep-alive", 1, res.http1, _answers(res.http1)),
        row("HTTP, local stack, new connection per request", 1, res.http1_new, _answers(res.http1_new)),
        row("HTTP, first requests after start (warm-up)", c, res.warmup, _answers(res.warmup), ratio=False),
        row("in-process: ApiClient -> app.lambda_handler [b]", 1, res.api, "201 (all)"),
        row("in-process: services().reservations.reserve", 1, res.service1, "ok (all)"),
        row("in-process: services().reservations.reserve", c, res.service8, "ok (all)"),
    ]
    out.append("POST /reservations, 1 line, fresh cart each, one SKU: local HTTP path vs in-process [6]")
    out.append(
        table(
            ["path", "threads", "requests", "answers", "req/s", "p50 ms", "p95 ms", "p50 / in-process"],
            rows,
            [False, True, True, False, True, True, True, True],
        )
    )
    h8 = median_ms(res.http8.latencies_ns)
    h1, h1n = median_ms(res.http1.latencies_ns), median_ms(res.http1_new.latencies_ns)
    out.append(
        f"  runner overhead, HTTP p50 / in-process ApiClient p50: {h8 / ref:.2f}x with {c} clients "
        f"({res.http8.rate:.0f} req/s; the service layer alone: {res.service8.rate:.0f} req/s with {c} threads); "
        f"with 1 client {h1 / ref:.2f}x (+{h1 - ref:.2f} ms) keep-alive, {h1n / ref:.2f}x (+{h1n - ref:.2f} ms) "
        "new connection per request"
    )
    if h1 - h1n > 20:
        out.append(
            f"  keep-alive costs {h1 - h1n:.0f} ms more per request than a new connection: the signature of TCP "
            "delayed ACK meeting Nagle's algorithm (the stack's HTTP handler writes headers and body separately, "
            "without TCP_NODELAY)"
        )
    out.append(
        f"  worker processes of the stack (all functions): {res.workers_after_start} after start, "
        f"{res.workers_after_warmup} after the warm-up, {res.workers_after_load} after the {c}-client run; "
        f"in the second after that run the stack still used {res.busy_after:.2f} CPUs (of {nproc}); before the "
        f"1-client, 1-client and {c}-client runs it took {', '.join(f'{x:.1f}' for x in res.settled)} s to go "
        f"quiet (< {SETTLE_CPUS:g} CPUs over {SETTLE_WINDOW:g} s; at most {SETTLE_MAX:.0f} s)"
    )
    out.append("  [b] in-process rows: on a DynamoDB Local of their own, which no stack is polling (see [6])")
    out.append("")

    def cpu_row(label: str, load: Load) -> list[str]:
        n = len(load.latencies_ns)
        per = {k: v * 1000 / n for k, v in load.cpu_s.items()}
        if "python" in per:  # in-process: the child's own CPU, and DynamoDB Local's
            cells = ["-", "-", f"{per['python']:.1f}", f"{per['ddb']:.1f}"]
            total_ms = sum(per.values())
        else:
            cells = [f"{per[k]:.1f}" for k in ("clients", "stack", "workers", "ddb")]
            total_ms = sum(per.values())
        return [label, *cells, f"{total_ms:.1f}", f"{nproc * 1000 / total_ms:.0f}"]

    out.append("CPU ms per request (utime + stime from /proc) [7]")
    out.append(
        table(
            ["run", "HTTP clients", "stack process", "Python handler", "DynamoDB Local", "total", "CPU-bound req/s"],
            [
                cpu_row(f"HTTP, {c} clients, keep-alive", res.http8),
                cpu_row("HTTP, 1 client, keep-alive", res.http1),
                cpu_row("HTTP, 1 client, new connection per request", res.http1_new),
                cpu_row("in-process: ApiClient, 1 thread", res.api),
                cpu_row("in-process: service layer, 1 thread", res.service1),
                cpu_row(f"in-process: service layer, {c} threads", res.service8),
            ],
            [False, True, True, True, True, True, True],
        )
    )
    out.append("")
    left = (
        "none"
        if not res.left_behind
        else f"{len(res.left_behind)} (pids {', '.join(map(str, res.left_behind))}, killed by the bench)"
    )
    out.append(
        "[5] `python -m tools.local` started as `make run` starts it (repository root, PYTHONPATH=layers/stockhold:"
        "functions/api:., PYTHONDONTWRITEBYTECODE=1, STOCKHOLD_* unset but STOCKHOLD_PORT = a free port, so data "
        "in memory and 4 workers per function), in its own session. 'first answer': from Popen to the first 200 of "
        f"GET /openapi.json (no key), polled every {POLL_SECONDS * 1000:.0f} ms; 'banner': to the 'stockhold is "
        "running' line; 'ready in': the stack's own figure (from its main(), without interpreter start-up); "
        f"'stop': SIGTERM (what Ctrl-C sends it) to exit; 'killed': no exit within {STOP_TIMEOUT:.0f} s, so the bench "
        "sent SIGKILL to every process of the stack. Cold = the first start in this bench, run before the other "
        "sections, after `make bench`'s setup step: installing is excluded and the OS file cache may be warm. "
        "Medians with (min-max). After each of the "
        f"{res.stops} stops, every process the stack had started (found in /proc before stopping: function "
        f"workers, DynamoDB Local) was checked gone; left behind: {left}. Setup step: the two commands of "
        "`make setup`, timed by the bench (without make itself)."
    )
    out.append(
        f"[6] HTTP: the throughput stack, STOCKHOLD_CONCURRENCY={c} ({c} ApiFunction workers at most); one SKU "
        f"with onHand {ON_HAND:,} set with PUT /stock (admin key); each request holds 1 unit for a new cart "
        "(storefront key; the gateway caches the authorizer's answer per key, as API Gateway does). Clients are "
        "threads in the bench process, each with one keep-alive http.client connection or, where said, a new "
        "connection per request (as tests/e2e does); latency = round trip from sending the request to reading "
        "the answer; req/s = requests / wall time of the run. In-process: a child process with the environment "
        "the stack gives ApiFunction (tools.local.stack.LocalStack.function_env) but a DynamoDB Local of its own "
        "with the template's tables, so the stack's stream pollers and the hold timers they start do not run "
        "during (or after) these calls; ApiClient (tests/helpers.py) timed whole (event building, handler, answer "
        "parsing), 1 thread since the Powertools resolver holds the current event in module state; the service "
        f"layer (stockhold.runtime.services()) with 1 and {c} threads. Each DynamoDB Local is a fresh JVM, "
        f"warmed with {JVM_WARMUP} bare 3-action TransactWriteItems on IdempotencyTable (no stream) first. "
        f"Order: in-process ({IN_PROCESS_WARMUP} untimed ApiClient calls first); then the stack: HTTP warm-up "
        f"({c} clients x {WARMUP_PER_CLIENT}: the stack starts one worker per function, the pool the others on "
        "demand, each importing its handler), then, each once the stack has gone quiet, 1 client new connections, "
        f"1 client keep-alive, {c} clients. All on the same {nproc} CPUs as DynamoDB Local, the stack and its workers: the client "
        "threads compete with them."
    )
    out.append(
        "[7] CPU time used during each run, per request: 'HTTP clients' = the bench process (client threads and "
        "the thread draining the stack's output), 'stack process' = python -m tools.local (HTTP server, gateway, "
        "stream pollers, the state machines' interpreter), 'Python handler' = all function worker processes (HTTP: "
        "the API's and those the streams invoke) or the in-process child (measured by itself), 'DynamoDB Local' = "
        "its JVM. Work the requests cause later (hold timers started from the stream after the run) is not in "
        "the run's figures. 'CPU-bound req/s' = CPUs x 1000 / total."
    )
    out.append(f"    (local-stack section took {res.seconds:.0f} s)")
    return "\n".join(out)
