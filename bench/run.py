"""``make bench``: DynamoDB requests, capacity and latency of each API operation on DynamoDB Local.

python -m bench.run [--only operations|local-stack|expiry|checkout] [--iterations N] [--warmup N] [--accounting N]
                   [--cold-runs N] [--stack-starts N] [--stack-requests N] [--stack-serial N] [--checkouts N]

operations: starts its own DynamoDB Local (in memory, -sharedDb), creates fresh tables
from template.yaml, seeds a store's stock and prints three tables: requests and
capacity per operation, latency through the Lambda handler against the same DynamoDB
calls made bare, and the cold import + first request.

local-stack (bench.localstack): ``make run``'s start-up time and the throughput and
latency of POST /reservations through its HTTP path against the same in-process. It
is measured first (so its cold start comes first) and printed last.

expiry (bench.expiry): holds that end by themselves - the lag from a hold's deadline to
its units being available again through the hold timer and through the TTL backstop
alone, and the timer path's cost per 1,000 holds from what it counted. Measured last
(after the operations section's DynamoDB Local is stopped), printed last.

checkout (bench.checkout): full checkouts (start, two updates, payment, complete) over HTTP
on a fresh local stack - DynamoDB requests per checkout by function and step, latency per
step and end to end, and the AWS cost per 1,000 completed checkouts at list prices.
Measured and printed after the expiry section.

Targets are printed as PASS/MISS; they never change the exit code. Every server and
process the bench starts is stopped at the end, on error and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from bench import checkout, coldstart, env, expiry, localstack
from bench.stats import median_ms, p95_ms, table
from tools.ddblocal import DDB_LOCAL_VERSION, NPM_SPEC, DynamoDBLocal

if TYPE_CHECKING:
    from bench.workload import Accounting, Timing, Workload

RATIO_TARGET = 1.3
SECTIONS = ("operations", "local-stack", "expiry", "checkout")


@dataclass
class Results:
    accounting: dict[str, Accounting]
    timing: dict[str, Timing]
    largest_item: int
    cold_handler: coldstart.ColdSamples
    cold_baseline: coldstart.ColdSamples


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _java_version() -> str:
    java = shutil.which("java")
    if java is None:
        return "java: not found"
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    lines = (out.stderr or out.stdout).splitlines()
    return lines[0].strip() if lines else "java: unknown version"


def _command() -> str:
    here = f"{os.path.relpath(sys.executable)} -m bench.run {' '.join(sys.argv[1:])}".rstrip()
    return f"make bench  ->  {here}" if os.environ.get("MAKELEVEL") else here


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _header(server: DynamoDBLocal | None, args: argparse.Namespace, load_at_start: str) -> str:
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("boto3", "aws-lambda-powertools", "pydantic"))
    title = ["DynamoDB requests, capacity and latency per API operation"] if server else []
    if "local-stack" in _sections(args):
        title.append("the local stack (make run)")
    if "expiry" in _sections(args):
        title.append("holds that end by themselves")
    if "checkout" in _sections(args):
        title.append("a full checkout")
    lines = [
        f"stockhold bench: {'; '.join(title)}",
        f"  machine    : {_nproc()} CPUs (nproc), {platform.system()} {platform.release()} {platform.machine()}; "
        f"load average at start {load_at_start}",
        f"  python     : {platform.python_version()} ({sys.executable}); {versions}",
        f"  DynamoDB   : DynamoDB Local {DDB_LOCAL_VERSION} from npm {NPM_SPEC}, in memory, -sharedDb"
        + (f", {server.endpoint_url}" if server else "")
        + f"; {_java_version()}",
        f"  command    : {_command()}",
    ]
    if server:
        lines += [
            f"  iterations : {args.iterations} timed per operation after {args.warmup} warm-up, handler and bare "
            f"interleaved; {args.accounting} accounting runs per operation (capacity on); "
            f"cold start: median of {args.cold_runs} fresh processes",
            "  handler env: POWERTOOLS_TRACE_DISABLED=true, POWERTOOLS_LOG_LEVEL=WARNING, metrics on (as deployed) "
            "with the EMF lines they print to stdout discarded",
        ]
    if "local-stack" in _sections(args):
        lines.append(
            f"  local stack: 1 cold + {args.stack_starts} warm starts (the last the throughput stack's); POST "
            f"/reservations x{args.stack_requests} over HTTP with {localstack.LOAD_CONCURRENCY} clients "
            f"(STOCKHOLD_CONCURRENCY={localstack.LOAD_CONCURRENCY}), x{args.stack_serial} with 1 client (half that "
            "keep-alive) and in-process; the functions log as template.yaml says (LogLevel)"
        )
    if "expiry" in _sections(args):
        lines.append(
            f"  expiry     : {expiry.HOLDS} holds per run on fresh local stacks: hold timer with holds made "
            f"{expiry.PACED_RATE:g}/s" + (", and in a burst" if not args.no_expiry_burst else "") + "; TTL backstop "
            f"alone (a child process, giving up {args.expiry_ttl_timeout:g} s after the last deadline)"
        )
    if "checkout" in _sections(args):
        lines.append(
            f"  checkout   : {args.checkouts} checkouts with {checkout.CLIENTS} HTTP clients after "
            f"{checkout.ACCOUNTING} one at a time and {checkout.CLIENTS * checkout.WARMUP_PER_CLIENT} to warm up, on "
            f"a fresh local stack (a child process; STOCKHOLD_CONCURRENCY={checkout.CONCURRENCY}) behind the counting "
            "proxy; hold settings / 10 so every hold timer ends within the run"
        )
    return "\n".join(lines)


def _sections(args: argparse.Namespace) -> tuple[str, ...]:
    return (args.only,) if args.only else SECTIONS


# --- the run ---------------------------------------------------------------------------


def _measure(server: DynamoDBLocal, args: argparse.Namespace) -> tuple[Workload, Results]:
    import boto3

    from tools.template import create_tables

    admin_client = boto3.client("dynamodb", **server.client_kwargs())
    suffix = uuid.uuid4().hex[:8]
    tables = create_tables(
        admin_client,
        {"StockholdTable": f"stockhold-bench-{suffix}", "IdempotencyTable": f"stockhold-bench-idem-{suffix}"},
    )
    env.apply(env.bench_env(server.client_kwargs(), tables))

    # Only now: stockhold's Powertools objects read the environment when imported.
    from bench.workload import SKUS, STORE, Workload
    from tools import apigw

    work = Workload()  # calls stockhold.runtime.reset()
    work.seed()
    _progress(f"accounting: {args.accounting} runs per operation, ReturnConsumedCapacity=TOTAL")
    accounting = {op.key: work.account(op, args.accounting) for op in work.ops}
    largest = work.largest_item()
    timing = {}
    for op in work.ops:
        _progress(f"timing {op.label}: {args.warmup} warm-up + {args.iterations}")
        timing[op.key] = work.time_op(op, args.warmup, args.iterations)

    _progress(f"cold start: {args.cold_runs} x (handler, baseline) in fresh processes")
    path = f"/stock/{SKUS[0]}"
    found = apigw.find_route("GET", path)
    assert found is not None
    route, params = found
    event = apigw.build_event(
        route,
        params,
        path=path,
        headers={"Content-Type": "application/json"},
        authorizer={"storeId": STORE, "role": "storefront", "principalId": STORE},
    )
    key = work.templates["get"].calls[0][1]["Key"]
    cold_handler, cold_baseline = coldstart.measure(event, key, args.cold_runs)
    return work, Results(accounting, timing, largest, cold_handler, cold_baseline)


# --- the report ------------------------------------------------------------------------


def _span(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _report(work: Workload, res: Results, args: argparse.Namespace) -> str:
    out: list[str] = []
    base_requests = res.accounting["reserve1"].runs[0]
    extra_note = ""

    # 1. requests and capacity
    rows: list[list[str]] = []
    retries = 0
    for op in work.ops:
        acc, tim = res.accounting[op.key], res.timing[op.key]
        counts = [len(r) for r in acc.runs] + tim.requests
        retries += sum(tim.attempts) - sum(tim.requests)
        shown = _span(counts)
        if op.requests_target is None:
            extra = max(counts) - len(base_requests)
            shown += f" (+{extra})"
            target = "-"
            extra_note = f"{op.label}: {extra} more request(s) than without the header"
        else:
            target = f"{op.requests_target} {_verdict(all(op.requests_target.met(n) for n in counts))}"
        wcu, rcu = acc.capacity("wcu"), acc.capacity("rcu")
        aws = acc.aws_wcu() if res.largest_item < 1024 else None
        rows.append(
            [
                op.label,
                shown,
                target,
                ", ".join(acc.operations),
                _span(wcu) if wcu else "n/a",
                _span(rcu) if rcu else "n/a",
                f"{aws:g}" if aws is not None else "n/a",
            ]
        )
    out.append("DynamoDB requests per operation (one API request through the handler, no Idempotency-Key unless named)")
    out.append(
        table(
            ["operation", "requests", "target", "calls (actions)", "WCU [1]", "RCU [1]", "WCU AWS rules [2]"],
            rows,
            [False, True, False, False, True, True, True],
        )
    )
    if extra_note:
        out.append(f"  {extra_note} (the Powertools idempotency record: written before, completed after).")
    out.append("")

    # 2. latency
    rows = []
    for op in work.ops:
        tim = res.timing[op.key]
        h50, b50 = median_ms(tim.handler_ns), median_ms(tim.bare_ns)
        ratio = h50 / b50
        verdict = f"<={RATIO_TARGET:g}x {_verdict(ratio <= RATIO_TARGET)}" if op.ratio_target else "(info)"
        bare_calls = " + ".join(op_name for op_name, _ in work.templates[op.key].calls)
        rows.append(
            [
                op.label,
                f"{h50:.2f}",
                f"{p95_ms(tim.handler_ns):.2f}",
                f"{b50:.2f}",
                f"{p95_ms(tim.bare_ns):.2f}",
                f"{h50 - b50:+.2f}",
                f"{ratio:.2f}x",
                verdict,
                bare_calls,
            ]
        )
    out.append(f"Latency in ms, {args.iterations} requests each (handler = app.lambda_handler; bare = boto3 [3])")
    out.append(
        table(
            ["operation", "handler p50", "p95", "bare p50", "p95", "p50 diff", "handler/bare", "target", "bare calls"],
            rows,
            [False, True, True, True, True, True, True, False, False],
        )
    )
    out.append("")

    # 3. cold start
    h, b = res.cold_handler.medians_ms(), res.cold_baseline.medians_ms()
    out.append(f"Cold start in ms, median of {args.cold_runs} fresh processes [4]")
    out.append(
        table(
            ["", "import", "first request", "import + first", "process wall"],
            [
                ["API handler (import app; GET /stock/{sku})", *(f"{x:.0f}" for x in h)],
                ["baseline (import boto3 + client; get_item)", *(f"{x:.0f}" for x in b)],
                ["handler / baseline", *(f"{x / y:.2f}x" for x, y in zip(h, b, strict=True))],
            ],
            [False, True, True, True, True],
        )
    )
    out.append("")

    # footnotes
    unreported = sorted({o for acc in res.accounting.values() for o in acc.unreported()})
    notes = [
        "Requests: API calls counted with a before-call hook on stockhold.runtime.dynamodb_client() (shared by the "
        "store and the Powertools idempotency layer), in the accounting runs and in every timed request; a range "
        "means the count varied."
        + (f" {retries} HTTP retr{'y' if retries == 1 else 'ies'} seen in timed requests." if retries else ""),
        "[1] ConsumedCapacity as DynamoDB Local reports it, per request, with ReturnConsumedCapacity=TOTAL injected "
        "by a before-parameter-build hook (accounting runs only, not while timing). Single-item calls follow AWS's "
        "rules (1 WCU per KB written, 1 RCU per 4 KB strongly consistent read). TransactWriteItems does NOT: DynamoDB "
        f"Local {DDB_LOCAL_VERSION} reports 4 WCU x ceil(largest item KB) per table, however many items the "
        "transaction writes (compare reserve 1 line and reserve 10 lines)."
        + (f" n/a: no ConsumedCapacity in the answer to {', '.join(unreported)}." if unreported else ""),
        "[2] What AWS would bill, derived from the requests rather than reported: 2 WCU per action of each "
        "TransactWriteItems (item < 1 KB) plus the reported WCU of the other calls; "
        + (
            f"valid here as the largest item in the tables is {res.largest_item} bytes."
            if res.largest_item < 1024
            else f"not derived (n/a) since an item reached {res.largest_item} bytes."
        ),
        "[3] bare = the DynamoDB requests the handler sent (captured in the accounting run), replayed with a plain "
        "boto3 client with fresh reservation/cart/order/idempotency ids; extend/confirm/release act on a fresh "
        "1-line reservation made before the timed call (through the handler, resp. bare). Only the handler call is "
        "timed, not ApiClient's event building or answer parsing.",
        "[4] Times inside the child process (perf_counter): 'import' is `import app` for the handler and "
        "`import boto3` + boto3.client('dynamodb') for the baseline; the handler creates its client lazily, inside "
        "its first request. 'process wall' adds interpreter start-up. PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')}.",
    ]
    out.extend(notes)
    return "\n".join(out)


class _Discard:
    """A stdout that drops what it is given: the handler's EMF metric lines."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--only", choices=SECTIONS, help="run one section (default: all)")
    parser.add_argument("--iterations", type=int, default=200, help="timed requests per operation (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per operation first (default 20)")
    parser.add_argument("--accounting", type=int, default=5, help="capacity runs per operation (default 5)")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh processes per cold measurement (default 5)")
    parser.add_argument("--stack-starts", type=int, default=3, help="warm starts of the local stack (default 3)")
    parser.add_argument(
        "--stack-requests", type=int, default=800, help="POST /reservations with 8 HTTP clients (default 800)"
    )
    parser.add_argument(
        "--stack-serial", type=int, default=150, help="the same with 1 client, and in-process (default 150)"
    )
    parser.add_argument(
        "--expiry-ttl-timeout",
        type=float,
        default=expiry.TTL_TIMEOUT,
        help=f"expiry: seconds after the last deadline to wait for the TTL backstop (default {expiry.TTL_TIMEOUT:g})",
    )
    parser.add_argument(
        "--no-expiry-burst", action="store_true", help="expiry: skip the timer run with the holds made in a burst"
    )
    parser.add_argument(
        "--checkouts",
        type=int,
        default=checkout.CHECKOUTS,
        help=f"checkout: full checkouts measured with {checkout.CLIENTS} clients (default {checkout.CHECKOUTS})",
    )
    args = parser.parse_args(argv)
    sections = _sections(args)
    launch_env = dict(os.environ)  # before env.apply(): what `make run` would get
    signal.signal(signal.SIGTERM, _raise_interrupt)
    env.add_import_paths()
    # Each GET (no metric added) would warn once; tests silence the same warning in pyproject.
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    started, load_at_start = time.monotonic(), _loadavg()
    server: DynamoDBLocal | None = None
    stack: localstack.StackResults | None = None
    measured: tuple[Workload, Results] | None = None
    stack_error = ""
    expired: expiry.ExpiryResults | None = None
    expiry_error = ""
    checked_out: checkout.CheckoutResults | None = None
    checkout_error = ""
    try:
        if "local-stack" in sections:  # first: its cold start is the bench's first start
            try:
                stack = localstack.measure(
                    launch_env, args.stack_starts, args.stack_requests, args.stack_serial, _progress
                )
            except localstack.StackFailed as exc:
                stack_error = str(exc)
                _progress("the local stack failed (reported at the end); going on")
        if "operations" in sections:
            server = DynamoDBLocal()
            _progress("starting DynamoDB Local")
            server.start(shared_db=True)
            with contextlib.redirect_stdout(_Discard()):
                measured = _measure(server, args)
            measured[0].close()
            server.stop()  # before the expiry section: it starts its own
        if "expiry" in sections:
            try:
                expired = expiry.measure(args.expiry_ttl_timeout, not args.no_expiry_burst, _progress)
            except expiry.ExpiryFailed as exc:
                expiry_error = str(exc)
                _progress("the expiry section failed (reported at the end)")
        if "checkout" in sections:
            try:
                checked_out = checkout.measure(args.checkouts, _progress)
            except checkout.CheckoutFailed as exc:
                checkout_error = str(exc)
                _progress("the checkout section failed (reported at the end)")
        header = _header(server, args, load_at_start)
    except KeyboardInterrupt:
        _progress("interrupted")
        return 130
    finally:
        if server is not None:
            server.stop()
    print(header)
    print()
    if measured is not None:
        print(_report(*measured, args))
    if measured is not None and (stack is not None or stack_error):
        print()
    if stack is not None:
        print(localstack.report(stack, _nproc()))
    if stack_error:
        print(f"Local stack (make run): FAILED, no figures\n  {stack_error}")
    if expired is not None or expiry_error:
        print()
    if expired is not None:
        print(expiry.report(expired))
    if expiry_error:
        print(f"Holds that end by themselves: FAILED, no figures\n  {expiry_error}")
    if (checked_out is not None or checkout_error) and (measured or stack or stack_error or expired or expiry_error):
        print()
    if checked_out is not None:
        print(checkout.report(checked_out))
    if checkout_error:
        print(f"Checkout: FAILED, no figures\n  {checkout_error}")
    on_stacks = any(x in sections for x in ("local-stack", "expiry", "checkout"))
    stopped = [x for x, on in (("DynamoDB Local", server), ("every local stack", on_stacks)) if on]
    print(f"\n(bench took {time.monotonic() - started:.0f} s; {' and '.join(stopped)} stopped)")
    return 1 if stack_error or expiry_error or checkout_error else 0


if __name__ == "__main__":
    sys.exit(main())
