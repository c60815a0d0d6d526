"""What the bench sections share: progress, percentiles, the table printer, prices, one HTTP client, the load driver.

A section is a module with ``TITLE``, ``arguments(parser)``, ``header(args)``, ``measure(args)`` and
``report(result, args)`` (bench.run calls them); it raises :class:`SectionFailed` when it has no figures.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / ".local"
IMPORT_PATHS = (ROOT / "layers" / "stockhold", ROOT / "functions" / "api", ROOT)  # as Lambda and pytest have them
MARK = "BENCH "  # a child's protocol lines (bench.procs)
STORE, ADMIN_KEY, STOREFRONT_KEY = "demo", "local-admin", "local-storefront"  # the local stack seeds them

# List prices, us-east-1.
APIGW_PER_REQUEST = 3.50 / 1_000_000  # REST API, first 333 million a month
LAMBDA_PER_REQUEST, LAMBDA_PER_GB_S = 0.20 / 1_000_000, 0.0000133334  # arm64
DDB_PER_WRU, DDB_PER_RRU = 0.625 / 1_000_000, 0.125 / 1_000_000  # on-demand
SFN_PER_TRANSITION = 0.025 / 1000  # Step Functions Standard
EVENTS_PER_EVENT = 1.00 / 1_000_000  # EventBridge custom events


class SectionFailed(RuntimeError):
    pass


_pipe: IO[str] | None = None  # in a child (procs.child_main): progress goes to the bench


def say(message: str, kind: str = "say") -> None:
    """A progress line on stderr; from a child, a protocol line (say, made, result, failed) for the bench."""
    if _pipe is not None:
        _pipe.write(f"{MARK}{kind} {message.replace(chr(10), ' | ')}\n")
    elif kind == "say":
        print(f"bench: {message}", file=sys.stderr, flush=True)


def pythonpath() -> str:
    return os.pathsep.join(str(p) for p in IMPORT_PATHS)


def add_import_paths() -> None:
    for path in reversed(IMPORT_PATHS):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


@contextmanager
def environ(changes: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (and no AWS profile or session token) for a while."""
    saved = dict(os.environ)
    os.environ.update(changes)
    for stray in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(stray, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def epoch_ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


# --- figures and the printer --------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    return sorted(values)[max(0, math.ceil(q * len(values)) - 1)]


def median_ms(ns: Sequence[int]) -> float:
    return statistics.median(ns) / 1e6


def p95_ms(ns: Sequence[int]) -> float:
    return pct(ns, 0.95) / 1e6


def span(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def per(x: float) -> str:
    """A count per unit of work, without trailing zeros."""
    return f"{x:.3f}".rstrip("0").rstrip(".") if x else "0"


def dollars(x: float) -> str:
    return f"${x:.4f}" if x >= 0.0001 else f"${x:.6f}"


def _numeric(cell: str) -> bool:
    head = cell.split(" (")[0].lstrip("$>+-")
    return bool(head) and head[0].isdigit() and " " not in head


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; a column of numbers (and blanks) is right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    right = [i > 0 and all(_numeric(r[i]) or r[i] in ("", "-", "n/a") for r in rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a else c.ljust(w) for c, w, a in zip(cells, widths, right, strict=True)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def cost_table(items: Sequence[tuple[str, float, str, float]], unit: str) -> tuple[str, float]:
    """(item, count per unit, list price as printed, $ each) -> the table of $ per 1,000 units, and the total."""
    rows = [[name, f"{n:,.3f}", f"{n * 1000:,.0f}", price, dollars(n * 1000 * each)] for name, n, price, each in items]
    total = sum(n * 1000 * each for _, n, _, each in items)
    heads = ["item", f"per {unit}", f"per 1,000 {unit}s", "list price", f"$ per 1,000 {unit}s"]
    return table(heads, [*rows, ["total", "", "", "", dollars(total)]]), total


def billed_gb_s(handler_s: Sequence[float], memory_mb: int) -> float:
    """Lambda GB-s: each invocation rounded up to 1 ms."""
    return sum(math.ceil(s * 1000) / 1000 for s in handler_s) * memory_mb / 1024


# --- clients and the load driver -------------------------------------------------------------


class Http:
    """One keep-alive connection (reopened after an error), or a new connection per request; Bearer ``key``."""

    def __init__(self, url: str, key: str, keep_alive: bool = True) -> None:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        self.host, self.port, self.key, self.keep_alive = host, int(port), key, keep_alive
        self.conn: HTTPConnection | None = None

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, the answer's JSON or None); status 0 when the connection failed."""
        self.conn = self.conn or HTTPConnection(self.host, self.port, timeout=60)
        sent = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json", **(headers or {})}
        try:
            self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
            resp = self.conn.getresponse()
            status, data = resp.status, resp.read()
        except (OSError, HTTPException):
            self.close()
            return 0, None
        if not self.keep_alive:
            self.close()
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class LambdaApi:
    """The API function's handler in this process, given the event API Gateway would send; ``last_ns``: the
    last handler call alone. Create it only once the handler's environment is set."""

    def __init__(self, store: str = STORE, role: str = "storefront") -> None:
        import app  # functions/api (add_import_paths)

        self.handler, self.authorizer, self.last_ns = app.lambda_handler, {"storeId": store, "role": role}, 0
        self.authorizer["principalId"] = store

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        from tools import apigw

        found = apigw.find_route(method, path)
        assert found, f"no route {method} {path} in template.yaml"
        headers = {"Content-Type": "application/json", **(headers or {})}
        payload = None if body is None else json.dumps(body)
        event = apigw.build_event(*found, path=path, headers=headers, body=payload, authorizer=self.authorizer)
        start = time.perf_counter_ns()
        out = self.handler(event, lambda_context())
        self.last_ns = time.perf_counter_ns() - start
        return out["statusCode"], json.loads(out["body"]) if out.get("body") else None

    def close(self) -> None:
        pass


def lambda_context() -> Any:
    return types.SimpleNamespace(
        function_name="stockhold-bench",
        memory_limit_in_mb=1024,
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:stockhold-bench",
        aws_request_id=os.urandom(16).hex(),
        log_group_name="/aws/lambda/stockhold-bench",
        log_stream_name="bench",
        get_remaining_time_in_millis=lambda: 10_000,
    )


@dataclass
class Load:
    latencies_ns: list[int] = field(default_factory=list)  # each job's duration
    wall_s: float = 0.0
    results: list[Any] = field(default_factory=list)  # what the jobs returned

    @property
    def rate(self) -> float:
        return len(self.latencies_ns) / self.wall_s if self.wall_s else 0.0


def fan_out(
    threads: int,
    count: int,
    job: Callable[[Any, int], Any],
    client: Callable[[], Any] = lambda: None,
    rate: float = 0.0,
) -> Load:
    """Jobs 0..count-1 on ``threads`` threads started together, each taking the next job when free; job n starts no
    earlier than n / ``rate`` s (0: at once). Each thread has its own ``client()`` (closed after, if not None)."""
    load, lock, todo, errors = Load(), threading.Lock(), iter(range(count)), list[BaseException]()
    barrier, abort, begin = threading.Barrier(threads + 1), threading.Event(), [0.0]

    def worker() -> None:
        own = client()
        try:
            barrier.wait()
            while not abort.is_set():
                with lock:
                    n = next(todo, None)
                if n is None or (rate and abort.wait(max(0.0, begin[0] + n / rate - time.monotonic()))):
                    return
                start = time.perf_counter_ns()
                out = job(own, n)
                with lock:
                    load.latencies_ns.append(time.perf_counter_ns() - start)
                    load.results.append(out)
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)
            abort.set()
        finally:
            if own is not None:
                own.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    try:
        begin[0], started = time.monotonic(), time.perf_counter()
        barrier.wait()
        for t in pool:
            while t.is_alive():
                t.join(0.5)  # short joins: a Ctrl-C is taken between two
    except BaseException:
        abort.set()
        barrier.abort()
        raise
    load.wall_s = time.perf_counter() - started
    if errors:
        raise errors[0]
    return load
