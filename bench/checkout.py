"""Section 'checkout': full checkouts (docs/checkout.md) over the local HTTP stack - DynamoDB requests by function and
step, latency, and the AWS cost per 1,000 completed checkouts.

A child process with its own stack (bench.stack): POST /checkouts (3 lines), PATCH shippingAddress, PATCH step and
paymentMethod, POST .../payment, POST .../complete with an Idempotency-Key. ACCOUNTING checkouts one after the other
first (a step's requests are the API function's within its round trip), then a warm-up and the N measured ones.
Everything is counted until the last slot timer has ended and the stream consumers are quiet. Hold settings / 10,
so each timer ends within the run. The child renders the report. Notes [1]-[5]: docs/bench.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bench import harness, procs
from bench.ddb import KB, Priced, Pricer
from bench.harness import STOREFRONT_KEY, SectionFailed, median_ms, p95_ms, per, say, table
from bench.stack import Execution, Invocations, Stack, memory_mb, task_states, transitions

TITLE = "a full checkout"
CHECKOUTS = 100  # the default of --checkouts
CLIENTS = CONCURRENCY = 4  # HTTP client threads; workers per function (make run's default)
ACCOUNTING, WARMUP, LINES, SKUS = 5, 8, 3, 24  # checkout n holds SKUs 3n, 3n+1, 3n+2 (mod 24)
ON_HAND = 1_000_000  # never low: no StockLow / StockOut events
FLASH_COST_TARGET = 0.05  # $ per 1,000 completed checkouts at flash scale (issue 13)
FLASH_RATE = 1000  # completed checkouts per second at flash scale
FLASH_SLOTS_PER_S = 4  # slots armed each second then: an expire and a warn slot for first and payment deadlines
TIMEOUT = 150.0  # give up waiting for the slot timers this long after the last first deadline (payment: 90 s)
# docs/checkout.md's defaults / 10 (300, 900, 120, 60 s)
PAYMENT_S = 90
OVERRIDES = {"MIN_HOLD_SECONDS": "1", "CHECKOUT_HOLD_SECONDS": "30", "PAYMENT_HOLD_SECONDS": str(PAYMENT_S)}
OVERRIDES |= {"EXTEND_THRESHOLD_SECONDS": "12", "EXPIRING_NOTICE_SECONDS": "6"}
ADDRESS = dict(firstName="Ada", lastName="Lovelace", line1="1 Main St", city="Berlin", postalCode="10115", country="DE")
STEPS = (
    ("POST /checkouts (3 lines)", 201),
    ("PATCH /checkouts/{id} shippingAddress", 200),
    ("PATCH /checkouts/{id} step, paymentMethod", 200),
    ("POST /checkouts/{id}/payment", 200),
    ("POST /checkouts/{id}/complete + Idempotency-Key", 201),
)
SHORT = {"ApiFunction": "API", "AuthorizerFunction": "authorizer", "HoldStreamFunction": "hold stream"}
SHORT |= {
    "ExpireFunction": "expire (hold timer)",
    "ChangeFeedFunction": "change feed",
    "ReconcileFunction": "reconcile",
}


@dataclass
class Checkout:
    phase: str  # accounting | warmup | measured
    steps: list[tuple[float, float, int, int]] = field(default_factory=list)  # sent, answered (epoch s), ns, status
    total_ns: int = 0
    reservation_id: str = ""
    deadline_ms: int = 0  # the hold's first deadline (the one its timer waits for)
    order_id: str = ""
    extended: int = 0  # PATCHes that used an extension
    error: str = ""


def _checkout(client: harness.Http, n: int, first: int, tag: str, skus: list[str], phase: str) -> Checkout:
    n += first
    chk, began, left, path, pay = Checkout(phase), time.perf_counter_ns(), None, "/checkouts", f"pay-{tag}-{n:05d}"
    lines = [{"sku": skus[(n * LINES + i) % len(skus)], "quantity": 1 + i % 2} for i in range(LINES)]
    requests: list[tuple[str, str, Any, dict[str, str] | None]] = [
        ("POST", "", {"cartId": f"bench-chk-{tag}-{n:05d}", "customerId": f"u-{n}", "items": lines}, None),
        ("PATCH", "", {"shippingAddress": ADDRESS}, None),
        ("PATCH", "", {"step": "review", "paymentMethod": "card"}, None),
        ("POST", "/payment", {}, None),
        ("POST", "/complete", {"paymentReference": pay}, {"Idempotency-Key": pay}),
    ]
    for i, ((method, suffix, body, headers), (_, expected)) in enumerate(zip(requests, STEPS, strict=True)):
        sent, t0 = time.time(), time.perf_counter_ns()
        status, answer = client.call(method, path + suffix, body, headers)
        chk.steps.append((sent, time.time(), time.perf_counter_ns() - t0, status))
        if status != expected or not isinstance(answer, dict):
            chk.error = f"{method} {path + suffix}: {status} {str(answer)[:300]}"
            return chk
        if i == 0:
            path, hold = f"/checkouts/{answer['checkoutId']}", answer["reservation"]
            chk.reservation_id, chk.deadline_ms = hold["reservationId"], harness.epoch_ms(hold["expiresAt"])
        if i < 3:
            now = answer["reservation"]["extensionsLeft"]
            chk.extended, left = chk.extended + (left is not None and now < left), now
    chk.order_id, chk.total_ns = answer["orderId"], time.perf_counter_ns() - began
    return chk


def one_run(n: int) -> str:
    """In the child: the stack, the checkouts, wait for their timers and the stream consumers; the report."""
    started, tag, checkouts = time.monotonic(), uuid.uuid4().hex[:6], list[Checkout]()
    with Stack(CONCURRENCY, OVERRIDES) as stack:
        stack.warm({"ApiFunction": CONCURRENCY})
        start_s = time.monotonic() - started
        say(f"checkout: stack ready in {start_s:.1f} s")
        skus = [f"BENCH-CHK-{tag}-{i:02d}" for i in range(SKUS)]
        stack.seed(skus, ON_HAND)
        stack.quiet()  # the seed's stream records handled: not counted
        stack.reset_counts()
        events_before, window_from, load = len(stack.events()), time.time(), [harness.loadavg()]
        say(f"checkout: {ACCOUNTING} checkouts one after the other, {WARMUP} to warm up")
        for phase, clients, count in (
            ("accounting", 1, ACCOUNTING),
            ("warmup", CLIENTS, WARMUP),
            ("measured", CLIENTS, n),
        ):
            if phase == "measured":
                say(f"checkout: {n} checkouts with {CLIENTS} clients")
            job = partial(_checkout, first=len(checkouts), tag=tag, skus=skus, phase=phase)
            done = harness.fan_out(clients, count, job, partial(harness.Http, stack.url, STOREFRONT_KEY))
            if failed := [c.error for c in done.results if c.error]:
                raise SectionFailed(f"{len(failed)} of {count} {phase} checkouts failed, e.g. {failed[0]}")
            checkouts += done.results
        last, done_at = max(c.deadline_ms for c in checkouts) / 1000, time.time()
        say(
            f"checkout: done in {done.wall_s:.1f} s; waiting for the slot timers (the last deadline is in "
            f"{last - done_at:.0f} s; the payment step's extended ones, {PAYMENT_S} s after each payment, run longer)"
        )
        executions = stack.timers(window_from, last, last + TIMEOUT, 2.0)
        waited_s = time.time() - done_at
        stack.quiet()
        window_s, seen = time.time() - window_from, stack.calls(since=window_from)
        load.append(harness.loadavg())
        calls = [c for c in seen if not c.streams]
        pricer = Pricer(stack.tables, calls=calls)
        run = {
            "invocations": stack.invocations,
            "executions": executions,
            "running": sum(e.status == "RUNNING" for e in executions),
            "events": Counter(str(e.get("detail-type")) for e in stack.events()[events_before:]),
            "streams": f"{len(seen) - len(calls)} DynamoDB Streams requests of the stream pollers in {window_s:.0f} s",
            "largest": pricer.scan(stack.direct),
            **stack.counters(),
        }
    timing = f"stack start-up {start_s:.0f} s, load average {' -> '.join(load)} from the first checkout to the end of "
    timing += f"counting, the timers ended {waited_s:.0f} s after the last checkout"
    priced = [(c.at, pricer(c)) for c in calls]
    return "\n".join([*report_run(checkouts, priced, done.wall_s, run), f"  [1]-[5]: docs/bench.md; {timing}"])


def report_run(
    every: list[Checkout], priced: list[tuple[float, Priced]], measured_s: float, run: dict[str, Any]
) -> list[str]:
    n_all, measured = len(every), [c for c in every if c.phase == "measured"]

    def ms(ns: list[int]) -> list[str]:
        return [f"{median_ms(ns):.1f}", f"{p95_ms(ns):.1f}", f"{max(ns) / 1e6:.1f}"] if ns else ["-"] * 3

    rows = []
    for i, (label, _) in enumerate(STEPS):
        answers = Counter(c.steps[i][3] for c in measured if len(c.steps) > i)
        shown = ", ".join(f"{s} x{k}" for s, k in sorted(answers.items())) or "-"
        rows.append([label, shown, *ms([c.steps[i][2] for c in measured if len(c.steps) > i])])
    totals = [c.total_ns for c in measured if c.order_id]
    rows.append([f"end to end ({len(totals)} completed)", "", *ms(totals)])
    out = [
        f"Checkout (docs/checkout.md): {len(measured)} full checkouts over HTTP with {CLIENTS} clients (+{ACCOUNTING} "
        f"one at a time and {WARMUP} warm-up first), {LINES} lines each [1]",
        f"Latency in ms, the {len(measured)} measured checkouts ({len(measured) / measured_s:.1f} checkouts/s) [2]",
        table(["step", "answers", "p50", "p95", "max"], rows),
        f"  {sum(bool(c.order_id) for c in every)}/{n_all} checkouts completed with an order; PATCHes that extended the "
        f"hold: {sum(c.extended for c in every)} (0: the requests are those of a checkout within its first hold)",
        "",
    ]

    def units(ps: list[Priced], k: float) -> list[str]:
        return [per(sum(p.wru for p in ps) / k), per(sum(p.gsi_wru for p in ps) / k), per(sum(p.rru for p in ps) / k)]

    api = [(at, p) for at, p in priced if p.who == "ApiFunction"]
    accounting, rows = [c for c in every if c.phase == "accounting" and c.order_id], []
    for i, (label, _) in enumerate(STEPS):
        steps = [[p for at, p in api if c.steps[i][0] <= at <= c.steps[i][1]] for c in accounting]
        k, labels = max(1, len(steps)), Counter(p.label for x in steps for p in x)
        calls = "; ".join(f"{per(v / k)}x {lab}" for lab, v in labels.items())
        rows.append(
            [label, harness.span([len(x) for x in steps] or [0]), *units([p for x in steps for p in x], k), calls]
        )
    out += [
        f"DynamoDB requests of the API function per step (the {len(accounting)} checkouts made one at a time; requests "
        "within each round trip) [3]",
        table(["step", "requests", "WRU", "GSI WRU", "RRU", "calls"], rows),
        "",
    ]

    by: dict[tuple[str, str], list[Priced]] = {}
    for _, p in priced:
        by.setdefault((p.who, p.label), []).append(p)
    order, rows = list(SHORT), []
    for (who, label), ps in sorted(
        by.items(), key=lambda x: (order.index(x[0][0]) if x[0][0] in order else 99, -len(x[1]))
    ):
        rows.append([SHORT.get(who, who), label, per(len(ps) / n_all), *units(ps, n_all)])
    everything = [p for _, p in priced]
    rows.append(["total", "", per(len(everything) / n_all), *units(everything, n_all)])
    by_who = Counter(p.who for p in sorted(everything, key=lambda p: order.index(p.who) if p.who in order else 99))
    big = [k for k, v in run["largest"].items() if v >= KB]
    out += [
        f"Every DynamoDB request of the stack, per checkout (all {n_all} checkouts, through the proxy) [3]",
        table(["function", "call", "per checkout", "WRU", "GSI WRU", "RRU"], rows),
        "  by function: "
        + ", ".join(f"{SHORT.get(w, w)} {per(v / n_all)}" for w, v in by_who.items())
        + f"; plus {run['streams']} (by time, not by checkout: free for Lambda triggers)",
        "  largest item at the end, by kind (bytes): "
        + ", ".join(f"{k} {v}" for k, v in sorted(run["largest"].items(), key=lambda x: -x[1]))
        + (f" - over 1 KB: {', '.join(big)} (each such write is 2+ WRU, as counted)" if big else " (all under 1 KB)"),
        "",
    ]
    return out + _lambda_and_cost(every, everything, run)


def _lambda_and_cost(every: list[Checkout], everything: list[Priced], run: dict[str, Any]) -> list[str]:
    n_all, memory, invocations = len(every), memory_mb(), run["invocations"]
    rows, calls, gb_s, one_each = [], 0, 0.0, 0  # one_each: invocations if every stream record came alone
    for name in (x for x in SHORT if x in invocations):
        inv: Invocations = invocations[name]
        count, records, billed = len(inv.handler_s), sum(inv.records), harness.billed_gb_s(inv.handler_s, memory[name])
        calls, gb_s, one_each = calls + count, gb_s + billed, one_each + (records or count)
        handler = (
            [f"{statistics.median(inv.handler_s) * 1000:.1f}", f"{max(inv.handler_s) * 1000:.1f}"]
            if count
            else ["-"] * 2
        )
        each = f"{records / count:.1f}" if records and count else "-"
        rows.append(
            [SHORT[name], str(memory[name]), str(count), per(count / n_all), each, *handler, f"{billed / n_all:.5f}"]
        )
        rows[-1].append(str(inv.failed or ""))
    execs: list[Execution] = run["executions"]
    tasks, events = task_states(), sum(run["events"].values())
    count = sum(transitions(e, tasks) for e in execs)
    paths = "; ".join(f"{v}x {k}" for k, v in Counter(" > ".join(e.states) for e in execs).most_common(3))
    outcomes = dict(Counter("/".join(e.outcomes) for e in execs))
    auth = len(invocations["AuthorizerFunction"].handler_s)
    heads = [
        "function",
        "MB",
        "invocations",
        "per checkout",
        "records each",
        "handler ms p50",
        "max",
        "GB-s per checkout",
    ]
    out = [
        f"Lambda invocations ({n_all} checkouts) [4]",
        table([*heads, "errors"], rows),
        f"  authorizer: {auth} invocation(s) for {n_all} checkouts with one storefront key (the gateway caches its answer "
        "per key, as API Gateway does: ~0 per checkout, see [4])",
        f"  Step Functions: {len(execs)} slot-timer executions for {n_all} checkouts "
        f"({dict(Counter(e.status for e in execs))}), {count} state transitions ({per(count / n_all)} per checkout); "
        f"{paths}; expire answers {outcomes}"
        + (f"; {run['running']} still running when the bench gave up" if run["running"] else ""),
        f"  EventBridge: {events} events reached the bus ({per(events / n_all)} per checkout; the local stack's catch-all "
        "tap): "
        + (", ".join(f"{k} {v}" for k, v in sorted(run["events"].items())) or "none")
        + f"; stream records sent to OnFailure: {run['discarded']}; reconciliation ran {run['schedule_fired']}x",
        "",
    ]
    wru, gsi, rru = (sum(getattr(p, u) for p in everything) / n_all for u in ("wru", "gsi_wru", "rru"))
    items = [
        (
            "API Gateway REST requests",
            sum(len(c.steps) for c in every) / n_all,
            "$3.50 per million",
            harness.APIGW_PER_REQUEST,
        ),
        ("Lambda requests (all functions)", calls / n_all, "$0.20 per million", harness.LAMBDA_PER_REQUEST),
        (
            "Lambda GB-s (MemorySize x handler time)",
            gb_s / n_all,
            "$0.0000133334 per GB-s (arm64)",
            harness.LAMBDA_PER_GB_S,
        ),
        ("DynamoDB write request units (table)", wru, "$0.625 per million WRU", harness.DDB_PER_WRU),
        ("DynamoDB write request units (Sweep GSI, est.)", gsi, "$0.625 per million WRU", harness.DDB_PER_WRU),
        ("DynamoDB read request units", rru, "$0.125 per million RRU", harness.DDB_PER_RRU),
        ("Step Functions Standard state transitions", count / n_all, "$0.025 per 1,000", harness.SFN_PER_TRANSITION),
        (
            "EventBridge custom events (PutEvents entries)",
            events / n_all,
            "$1.00 per million",
            harness.EVENTS_PER_EVENT,
        ),
        ("DynamoDB Streams reads by Lambda", 0.0, "free", 0.0),
    ]
    cost, total = harness.cost_table(items, "checkout")
    shares = sorted(((x[1] * 1000 * x[3], x[0]) for x in items), reverse=True)[:3]
    quiet = (one_each - calls) / n_all * 1000 * harness.LAMBDA_PER_REQUEST
    # The slot timers' share (per slot, not per checkout): their transitions, the expire function's requests, GB-s and
    # reads (each survey reads its mark and Queries the hold shards it lists).
    expire = invocations.get("ExpireFunction")
    expire_n = len(expire.handler_s) if expire else 0
    expire_gb = harness.billed_gb_s(expire.handler_s, memory["ExpireFunction"]) if expire else 0.0
    expire_rru = sum(p.rru for p in everything if p.who == "ExpireFunction")
    timers_total = (
        count * harness.SFN_PER_TRANSITION
        + expire_n * harness.LAMBDA_PER_REQUEST
        + expire_gb * harness.LAMBDA_PER_GB_S
        + expire_rru * harness.DDB_PER_RRU
    )
    slots = max(1, len(execs))
    per_slot, rest = timers_total / slots, total - timers_total / n_all * 1000
    deadlines = 1 + sum(c.extended for c in every) / n_all + 1  # the first, the payment step's, and the extensions
    quiet_slots = 2 * deadlines  # at 1 checkout/s no two share a slot: an expire and a warn slot per deadline
    quiet_total = rest + quiet + quiet_slots * per_slot * 1000
    flash_total = rest + FLASH_SLOTS_PER_S * per_slot / FLASH_RATE * 1000
    out += [
        "Cost per 1,000 completed checkouts on AWS, us-east-1 list prices, from the counts above [5]",
        cost,
        "  largest items: "
        + ", ".join(f"{label} {d / total * 100:.0f} %" for d, label in shares if total)
        + ". Stream "
        f"consumers were invoked with batches; one record per invocation (a quiet store) gives {one_each / n_all:.1f} "
        f"Lambda requests per checkout instead of {calls / n_all:.1f}: +{harness.dollars(quiet)} per 1,000 (and more GB-s).",
        f"  slot timers: {len(execs)} executions for {n_all} checkouts ({n_all / slots:.1f} checkouts per slot here), "
        f"{harness.dollars(per_slot * 1000)} per 1,000 slots (transitions, expire invocations and GB-s, the surveys' "
        f"{expire_rru / slots:.0f} RRU each); everything else: {harness.dollars(rest)} per 1,000 checkouts.",
        f"  at 1 checkout/s (a quiet store: every stream record alone, no slot shared): rest + quiet streams + "
        f"{quiet_slots:.1f} slots x per slot = {harness.dollars(rest)} + {harness.dollars(quiet)} + "
        f"{harness.dollars(quiet_slots * per_slot * 1000)} = {harness.dollars(quiet_total)} per 1,000 (+ GB-s).",
        f"  at flash scale ({FLASH_RATE:,} completed checkouts/s, stream records batched as here): rest + "
        f"{FLASH_SLOTS_PER_S} slots/s x per slot / {FLASH_RATE:,}/s = {harness.dollars(flash_total)} per 1,000; the "
        f"timers amortize, the rest is per request. Target <= {harness.dollars(FLASH_COST_TARGET)} per 1,000 "
        f"(issue 13): {harness.verdict(flash_total <= FLASH_COST_TARGET)}",
    ]
    if idle := sum(1 for e in execs if e.handled == 0):
        out.append(
            f"  {idle} of {len(execs)} slots woke to find nothing to do (their checkouts had completed, or the payment "
            "step had moved their holds to a later slot): no StopExecution is ever made."
        )
    return out


# --- the section ----------------------------------------------------------------------------------


def arguments(parser: argparse.ArgumentParser) -> None:
    help = f"checkout: full checkouts measured with {CLIENTS} clients (default {CHECKOUTS})"
    parser.add_argument("--checkouts", type=int, default=CHECKOUTS, help=help)


def header(args: argparse.Namespace) -> str:
    return (
        f"  checkout   : {args.checkouts} checkouts with {CLIENTS} HTTP clients after {ACCOUNTING} one at a time and "
        f"{WARMUP} to warm up, on a fresh local stack (a child process; STOCKHOLD_CONCURRENCY={CONCURRENCY}) behind "
        "the counting proxy; hold settings / 10 so every hold timer ends within the run"
    )


def measure(args: argparse.Namespace) -> str:
    say(f"checkout: {args.checkouts} checkouts on a fresh local stack (it logs to .local/bench-checkout.log)")
    child = procs.Child("bench.checkout", "checkout", str(args.checkouts))
    try:
        return str(child.wait())
    finally:
        child.stop()


def report(res: str, args: argparse.Namespace) -> str:
    return res


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1:3] == ["child", "checkout"]:
        sys.exit(procs.child_main(harness.LOG_DIR / "bench-checkout.log", partial(one_run, int(sys.argv[3]))))
    sys.exit("usage: python -m bench.checkout child checkout N   (started by python -m bench.run)")
