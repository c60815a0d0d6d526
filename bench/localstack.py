"""Section 'local-stack': ``make run``'s start-up time, and POST /reservations over its HTTP path against in-process.

Measured first, so that its cold start is the bench's first start. Notes [5]-[6]: docs/bench.md.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from http.client import HTTPConnection, HTTPException
from typing import Any

from bench import harness, procs
from bench.harness import ROOT, STORE, STOREFRONT_KEY, Load, SectionFailed, median_ms, p95_ms, say, table

TITLE = "the local stack (make run)"
CLIENTS = 8  # STOCKHOLD_CONCURRENCY of the throughput stack, and its HTTP clients
WARMUP, IN_PROCESS_WARMUP, JVM_WARMUP = 80, 40, 400  # JVM: bare transactions on a fresh DynamoDB Local first
ON_HAND = 1_000_000
START_TIMEOUT, STOP_TIMEOUT, POLL_SECONDS = 180.0, 30.0, 0.01
SETTLE_CPUS, SETTLE_WINDOW, SETTLE_MAX = 0.25, 0.5, 10.0  # quiet: under 0.25 CPUs over 0.5 s, waited at most 10 s
_BANNER = re.compile(r"stockhold is running at (\S+)\s+\(ready in ([\d.]+) s\)")
_DDB = re.compile(r"DynamoDB Local:\s+(\S+)")
_INSTALL_WORDS = ("download", "installing", "apt-get", "creating", "verified")


@dataclass
class Start:
    first_s: float = 0.0  # Popen to the first 200 of GET /openapi.json
    banner_s: float = 0.0  # Popen to the "stockhold is running" line
    ready_in_s: float = 0.0  # the stack's own figure
    stop_s: float = 0.0  # SIGTERM to exit
    killed: bool = False  # no exit within STOP_TIMEOUT: every process of the stack SIGKILLed


@dataclass
class Results:
    setup: list[tuple[float, float]] = field(default_factory=list)  # (bootstrap, install) s
    printed: set[str] = field(default_factory=set)  # what the setup step printed
    starts: list[Start] = field(default_factory=list)  # cold, warm..., the throughput stack's
    loads: dict[str, Load] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    left_behind: list[int] = field(default_factory=list)


class StackProcess:
    """``python -m tools.local`` on a free port in its own session, its output drained (the tail kept)."""

    def __init__(self, env: Mapping[str, str], concurrency: int | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.env = {**env, "STOCKHOLD_PORT": str(self.port)}
        self.env |= {"STOCKHOLD_CONCURRENCY": str(concurrency)} if concurrency else {}
        self.url, self.ddb_endpoint, self.times = f"http://127.0.0.1:{self.port}", "", Start()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tail: deque[str] = deque(maxlen=30)
        self.banner: tuple[float, float] | None = None  # (perf_counter, ready in s)

    def _read(self, stream: Any) -> None:
        for line in (raw.decode(errors="replace").rstrip() for raw in iter(stream.readline, b"")):
            self.tail.append(line)
            if self.banner is None and (found := _BANNER.search(line)):
                self.banner = time.perf_counter(), float(found.group(2))
            elif not self.ddb_endpoint and (found := _DDB.search(line)):  # the banner's next line
                self.ddb_endpoint = found.group(1)

    def start(self, what: str) -> Start:
        started = time.perf_counter()
        cmd, pipe, out = [sys.executable, "-m", "tools.local"], subprocess.PIPE, subprocess.STDOUT
        # its own session: Ctrl-C in the terminal reaches the bench only, and the bench stops the stack
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=pipe, stderr=out, start_new_session=True
        )
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        while not self._answers():
            self._alive(started)
        self.times.first_s = time.perf_counter() - started
        while self.banner is None or not self.ddb_endpoint:  # "stockhold is running", then "DynamoDB Local:"
            self._alive(started)
        self.times.banner_s, self.times.ready_in_s = self.banner[0] - started, self.banner[1]
        say(f"{what}: first answer after {self.times.first_s:.2f} s")
        return self.times

    def _alive(self, started: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None or time.perf_counter() > started + START_TIMEOUT:
            tail = "\n".join(f"    {x}" for x in self.tail)
            raise SectionFailed(
                f"python -m tools.local did not start (exit {self.proc.returncode}); its output:\n{tail}"
            )
        time.sleep(POLL_SECONDS)

    def _answers(self) -> bool:
        conn = HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/openapi.json")
            with conn.getresponse() as resp:
                return resp.read() is not None and resp.status == 200
        except (OSError, HTTPException):
            return False
        finally:
            conn.close()

    def settle(self) -> None:
        """Until the stack's processes (with DynamoDB Local) go quiet: the hold timers earlier requests started."""
        assert self.proc is not None
        root, began = self.proc.pid, time.perf_counter()

        def cpu() -> float:
            return sum(map(procs.cpu_seconds, procs.family(root)))

        while time.perf_counter() - began < SETTLE_MAX:
            before = cpu()
            time.sleep(SETTLE_WINDOW)
            if (cpu() - before) / SETTLE_WINDOW < SETTLE_CPUS:
                return

    def stop(self, left_behind: list[int]) -> None:
        """SIGTERM, wait, then every process the stack had started must be gone (any left: killed, listed)."""
        if self.proc is not None:
            self.times.stop_s, self.times.killed, left = procs.stop_tree(self.proc, STOP_TIMEOUT)
            self.proc = None
            left_behind.extend(left)


def _reserve(sku: str, tag: str, statuses: Counter[int], client: Any, n: int) -> None:
    """POST /reservations, 1 unit of ``sku`` for a fresh cart (client: harness.Http or harness.LambdaApi)."""
    status, _ = client.call(
        "POST", "/reservations", {"cartId": f"bench-{tag}-{n:06d}", "items": [{"sku": sku, "quantity": 1}]}
    )
    statuses[status] += 1


def _warm_jvm(endpoint: str, table_name: str) -> None:
    """Warm a fresh DynamoDB Local's JIT: bare 3-action TransactWriteItems on a table without a stream."""
    import boto3

    from tools.ddblocal import client_kwargs

    if not endpoint.startswith("http://127.0.0.1:"):  # never let boto3 fall back to AWS
        raise SectionFailed(f"not a local DynamoDB endpoint: {endpoint!r}")
    client = boto3.client("dynamodb", **client_kwargs(endpoint))
    add = {
        "UpdateExpression": "SET n = if_not_exists(n, :z) + :one",
        "ExpressionAttributeValues": {":z": {"N": "0"}, ":one": {"N": "1"}},
    }

    def once(_: Any, n: int) -> None:
        a, b, c = ({"id": {"S": f"bench-jit#{uuid.uuid4().hex}"}} for _ in range(3))
        put = {
            "TableName": table_name,
            "Item": {**a, "n": {"N": "1"}},
            "ConditionExpression": "attribute_not_exists(id)",
        }
        items = [
            {"Put": put},
            {"Put": {"TableName": table_name, "Item": b}},
            {"Update": {"TableName": table_name, "Key": c, **add}},
        ]
        client.transact_write_items(TransactItems=items)

    harness.fan_out(CLIENTS, JVM_WARMUP, once)


def _in_process(env: Mapping[str, str], sku: str, serial: int) -> Load:
    """POST /reservations through the handler in a child (``python -m bench.localstack child``) with the environment
    the stack gives ApiFunction (LocalStack.function_env), on a DynamoDB Local of its own: no stream poller runs."""
    import boto3

    from tools import apigw, template
    from tools.ddblocal import DynamoDBLocal
    from tools.local.stack import LocalStack, StackConfig

    found = apigw.find_route("POST", "/reservations")
    assert found is not None, "no POST /reservations in template.yaml"
    server = DynamoDBLocal()
    try:
        server.start(shared_db=True)
        tables = template.create_tables(boto3.client("dynamodb", **server.client_kwargs()))
        _warm_jvm(server.endpoint_url, tables["IdempotencyTable"])
        local = LocalStack(StackConfig(overrides=dict(env)))
        local.endpoint, local.tables = server.endpoint_url, tables
        child = procs.Child(
            "bench.localstack",
            "inprocess",
            sku,
            str(serial),
            env=local.function_env(template.functions()[found[0].function]),
        )
        try:
            samples, wall = child.wait()
        finally:
            child.stop()
    finally:
        server.stop()
    return Load(samples, wall)


def _in_process_child(sku: str, serial: int) -> tuple[list[int], float]:
    status, body = harness.LambdaApi(STORE, "admin").call("PUT", f"/stock/{sku}", {"onHand": ON_HAND})
    if status != 200:
        raise RuntimeError(f"PUT /stock/{sku} answered {status}: {body}")
    api, tag, statuses = harness.LambdaApi(STORE, "storefront"), f"inproc-{uuid.uuid4().hex[:6]}", Counter[int]()
    # 1 thread: the Powertools resolver keeps the current event in module state; timed whole (event, handler, answer)
    harness.fan_out(1, IN_PROCESS_WARMUP, lambda _, n: _reserve(sku, tag + "w", statuses, api, n))
    load = harness.fan_out(1, serial, lambda _, n: _reserve(sku, tag, statuses, api, n))
    if set(statuses) != {201}:
        raise RuntimeError(f"POST /reservations answered {dict(statuses)}")
    return load.latencies_ns, load.wall_s


# --- the section ----------------------------------------------------------------------------------


def arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--stack-starts", type=int, default=3, help="warm starts of the local stack (default 3)")
    add("--stack-requests", type=int, default=800, help="POST /reservations with 8 HTTP clients (default 800)")
    add("--stack-serial", type=int, default=150, help="the same with 1 client, and in-process (default 150)")


def header(args: argparse.Namespace) -> str:
    return (
        f"  local stack: 1 cold + {args.stack_starts} warm starts (the last the throughput stack's); POST "
        f"/reservations x{args.stack_requests} over HTTP with {CLIENTS} clients (STOCKHOLD_CONCURRENCY={CLIENTS}), "
        f"x{args.stack_serial} with 1 client (half that keep-alive) and in-process; the functions log as "
        "template.yaml says (LogLevel)"
    )


def measure(args: argparse.Namespace) -> Results:
    # What `make run` gives python -m tools.local: the Makefile's exports, no STOCKHOLD_* (in memory, default keys).
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKHOLD_")}
    env |= {"PYTHONPATH": "layers/stockhold:functions/api:.", "PYTHONDONTWRITEBYTECODE": "1"}
    res, venv = Results(), ROOT / ".venv" / "bin" / "python"
    say("local stack: make run's setup step, 3 times (everything installed)")
    for _ in range(3):
        took = []
        for cmd in (
            ["scripts/bootstrap-python.sh"],
            [str(venv) if venv.exists() else sys.executable, "-m", "tools.ddblocal", "install"],
        ):
            began = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
            took.append(time.perf_counter() - began)
            if done.returncode != 0:
                raise SectionFailed(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
            res.printed |= {x.strip() for x in (done.stdout + done.stderr).splitlines() if x.strip()}
        res.setup.append((took[0], took[1]))

    plain = max(0, args.stack_starts - 1)  # the throughput stack's start is the last warm one
    say(f"local stack: 1 cold + {plain} warm starts of python -m tools.local (+1 with the throughput stack)")
    for i in range(1 + plain):
        stack = StackProcess(env)
        try:
            res.starts.append(stack.start("cold start" if i == 0 else f"warm start {i}"))
        finally:
            stack.stop(res.left_behind)

    sku, per_client = f"BENCH-HTTP-{uuid.uuid4().hex[:6].upper()}", max(1, args.stack_requests // CLIENTS)
    say("local stack: POST /reservations in-process, on a DynamoDB Local of its own")
    res.loads["api"] = _in_process(env, sku, args.stack_serial)
    say(f"local stack: STOCKHOLD_CONCURRENCY={CLIENTS}, POST /reservations over HTTP")
    stack = StackProcess(env, concurrency=CLIENTS)
    try:
        res.starts.append(stack.start(f"warm start {plain + 1} (STOCKHOLD_CONCURRENCY={CLIENTS})"))
        status, body = harness.Http(stack.url, harness.ADMIN_KEY).call("PUT", f"/stock/{sku}", {"onHand": ON_HAND})
        if status != 200:
            raise SectionFailed(f"PUT /stock/{sku} answered {status}: {body}")
        _warm_jvm(stack.ddb_endpoint, "IdempotencyTable")  # the stack names its tables by logical id
        tag = uuid.uuid4().hex[:6]
        # the warm-up, then, each once the stack is quiet: 1 client new connections, 1 keep-alive (half as many), 8
        for name, clients, count, keep_alive in (
            ("warmup", CLIENTS, WARMUP, True),
            ("http1_new", 1, args.stack_serial, False),
            ("http1", 1, max(1, args.stack_serial // 2), True),
            ("http8", CLIENTS, per_client * CLIENTS, True),
        ):
            if name != "warmup":
                stack.settle()
            job = partial(_reserve, sku, f"http-{name}-{tag}", res.statuses.setdefault(name, Counter()))
            res.loads[name] = harness.fan_out(
                clients, count, job, partial(harness.Http, stack.url, STOREFRONT_KEY, keep_alive)
            )
        say(f"local stack: {res.loads['http8'].rate:.0f} requests/s with {CLIENTS} clients")
    finally:
        stack.stop(res.left_behind)
    return res


def _med(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _stops(starts: list[Start]) -> str:
    killed = sum(s.killed for s in starts)
    return (_med([s.stop_s for s in starts]) + (f" ({killed} killed)" if killed else "")) if starts else "-"


def report(res: Results, args: argparse.Namespace) -> str:
    total, (cold, *warm) = [a + b for a, b in res.setup], res.starts
    n = sum(len(res.loads[k].latencies_ns) for k in ("warmup", "http1_new", "http1", "http8"))

    def starts(label: str, some: list[Start], stops: list[Start]) -> list[str]:
        ready = f"{statistics.median(s.ready_in_s for s in some):.1f}"
        return [label, _med([s.first_s for s in some]), _med([s.banner_s for s in some]), ready, _stops(stops)]

    warm_first = statistics.median(total) + statistics.median(s.first_s for s in warm)
    rows = [
        ["make run's setup step, all installed (median of 3)", _med(total), "", "", ""],
        ["  scripts/bootstrap-python.sh", _med([s[0] for s in res.setup]), "", "", ""],
        ["  python -m tools.ddblocal install", _med([s[1] for s in res.setup]), "", "", ""],
        starts("python -m tools.local, cold (1st start of the bench)", [cold], [cold]),
        starts(f"python -m tools.local, warm (median of {len(warm)} [a])", warm, warm[:-1]),
        [f"  the throughput stack: stop after {n} reservations", "", "", "", _stops(warm[-1:])],
        ["make run to first answer, warm (setup + start medians)", f"{warm_first:.2f}", "", "", ""],
    ]
    installs = sorted(x for x in res.printed if any(w in x.lower() for w in _INSTALL_WORDS))
    out = [
        "Local stack (make run): seconds to the first answered request [5]",
        table(["step", "first answer", "banner", "stack's 'ready in'", "stop (SIGTERM)"], rows),
        f"  setup step installed nothing: {'yes' if not installs else 'NO: ' + '; '.join(installs)} (it printed: "
        f"{'; '.join(sorted(res.printed)) or 'nothing'})",
        f"  [a] the last warm start is the throughput stack's (STOCKHOLD_CONCURRENCY={CLIENTS}): start-up work is the "
        f"same; its stop is shown apart. After each of the {len(res.starts)} stops every process the stack had started "
        f"was checked gone; left behind: {', '.join(map(str, res.left_behind)) or 'none'}",
        "",
    ]
    ref, rows = median_ms(res.loads["api"].latencies_ns), []
    for label, threads, key in (
        (f"HTTP, local stack (CONCURRENCY={CLIENTS}), keep-alive", CLIENTS, "http8"),
        ("HTTP, local stack, keep-alive", 1, "http1"),
        ("HTTP, local stack, new connection per request", 1, "http1_new"),
        ("HTTP, first requests after start (warm-up)", CLIENTS, "warmup"),
        ("in-process: ApiClient -> app.lambda_handler [b]", 1, "api"),
    ):
        ns, statuses = res.loads[key].latencies_ns, res.statuses.get(key, Counter[int]())
        answers = ", ".join(f"{'error' if s == 0 else s} x{c}" for s, c in sorted(statuses.items())) or "201 (all)"
        ratio = f"{median_ms(ns) / ref:.2f}x" if key != "warmup" else "-"
        rows.append(
            [
                label,
                str(threads),
                str(len(ns)),
                answers,
                f"{res.loads[key].rate:.0f}",
                f"{median_ms(ns):.2f}",
                f"{p95_ms(ns):.2f}",
                ratio,
            ]
        )
    h8, h1, h1n = (median_ms(res.loads[k].latencies_ns) for k in ("http8", "http1", "http1_new"))
    out += [
        "POST /reservations, 1 line, fresh cart each, one SKU: local HTTP path vs in-process [6]",
        table(["path", "threads", "requests", "answers", "req/s", "p50 ms", "p95 ms", "p50 / in-process"], rows),
        f"  runner overhead, HTTP p50 / in-process ApiClient p50: {h8 / ref:.2f}x with {CLIENTS} clients "
        f"({res.loads['http8'].rate:.0f} req/s); with 1 client {h1 / ref:.2f}x (+{h1 - ref:.2f} ms) keep-alive, "
        f"{h1n / ref:.2f}x (+{h1n - ref:.2f} ms) new connection per request",
        "  [b] in-process: on a DynamoDB Local of its own, which no stack is polling",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1:3] == ["child", "inprocess"]:
        work = partial(_in_process_child, sys.argv[3], int(sys.argv[4]))
        sys.exit(procs.child_main(harness.LOG_DIR / "bench-inprocess.log", work))
    sys.exit("usage: python -m bench.localstack child inprocess SKU N   (started by python -m bench.run)")
