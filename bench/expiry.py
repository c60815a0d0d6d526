"""Section 'expiry': holds that end by themselves (docs/expiry.md) - how late after its deadline a hold's units are back.

Runs, each a child process with its own stack (bench.stack), holds over HTTP (1 unit of one of 4 fresh SKUs, a fresh
cart each, holdSeconds in turn), then left alone: "timer" (MIN_HOLD_SECONDS=1: the slot timers, 200 holds of 2-5 s
made 5/s), "burst" (1,000 holds made as fast as the clients go, 10-13 s each: issue 13's burst, many holds per slot)
and "TTL only" (no timers: DynamoDB Local's TTL job and the TTL backstop; it takes minutes, so it starts first and
the timer runs follow once it has made its holds). A hold's lag is
``endedAt - expiresAt`` of its item, read straight from DynamoDB Local. Notes [1]-[5]: docs/bench.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench import harness, procs
from bench.ddb import Priced, Pricer
from bench.harness import STORE, STOREFRONT_KEY, SectionFailed, pct, say, table, verdict
from bench.stack import Execution, Invocations, Stack, task_states, transitions

TITLE = "holds that end by themselves"
HOLDS, HOLD_SECONDS, SKUS, ON_HAND = 200, (2, 3, 4, 5), 4, 1000
BURST_HOLDS, BURST_SECONDS = 1000, (10, 11, 12, 13)  # long enough that the burst is made before its first deadline
CONCURRENCY = CLIENTS = 8  # workers per function; HTTP client threads making the holds
PACED_RATE, POLL_SECONDS = 5.0, 0.5  # holds per second in the paced run; reading the items
TIMER_TIMEOUT, TTL_TIMEOUT = 60.0, 200.0  # give up this long after the last deadline
TIMER_TARGET_MS = 2000
NO_LOOP = 4  # transitions of a slot that does not wake early: WaitForSlot, Survey, WhatNext, Done
TIMER = {"MIN_HOLD_SECONDS": "1"}
PLANS = {  # label, overrides, holds per second (0: as fast as the clients go), holds, their holdSeconds
    "timer": (f"timer, holds made {PACED_RATE:g}/s", TIMER, PACED_RATE, HOLDS, HOLD_SECONDS),
    "burst": (f"timer, a burst of {BURST_HOLDS:,} holds", TIMER, 0.0, BURST_HOLDS, BURST_SECONDS),
    "ttl": (
        "TTL only (no timer) [3]",
        {**TIMER, "TTL_GRACE_SECONDS": "0", "HOLD_TIMER_ARN": ""},
        0.0,
        HOLDS,
        HOLD_SECONDS,
    ),
}
STEP_LABELS = {
    "start": "hold made -> its slot's execution started (first hold of the slot)",
    "wake": "deadline -> its slot's WaitForSlot left (< 0: woke early)",
    "task": "WaitForSlot left -> endedAt (survey, or a Map group)",
    "expire": "expire function: handler time in the worker",
    "expire_wall": "expire function: submit -> answer (+ queue, IPC)",
    "starter": "hold-stream batch: handler time in the worker",
}


@dataclass
class Hold:
    reservation_id: str
    expires_at_ms: int  # from the POST answer; the rest from the item
    created_at_ms: int = 0
    item_expires_at_ms: int | None = None
    ended_at_ms: int | None = None
    expired_by: str | None = None

    @property
    def deadline_ms(self) -> int:
        return self.expires_at_ms if self.item_expires_at_ms is None else self.item_expires_at_ms

    @property
    def lag_ms(self) -> int | None:
        return None if self.ended_at_ms is None else self.ended_at_ms - self.deadline_ms


def _poll_until_ended(stack: Stack, holds: list[Hold], give_up: float, name: str) -> float:
    """Read the holds' items straight from DynamoDB Local (strongly consistent, not through the proxy) until each has
    ended, or until epoch s ``give_up``; returns when it stopped."""
    from bench.internals import reservation_key

    table_name, by_id, next_say = stack.tables["StockholdTable"], {h.reservation_id: h for h in holds}, time.time() + 30
    spec = {
        "ConsistentRead": True,
        "ProjectionExpression": "reservationId, #s, createdAt, expiresAt, endedAt, expiredBy",
    }
    spec["ExpressionAttributeNames"] = {"#s": "status"}
    while True:
        pending = [h for h in holds if h.ended_at_ms is None]
        for start in range(0, len(pending), 100):
            keys = [reservation_key(STORE, h.reservation_id) for h in pending[start : start + 100]]
            request: dict[str, Any] = {
                table_name: {**spec, "Keys": [{k: {"S": v} for k, v in key.items()} for key in keys]}
            }
            while request:
                page = stack.direct.batch_get_item(RequestItems=request)
                for item in page.get("Responses", {}).get(table_name, []):
                    hold, at = by_id[item["reservationId"]["S"]], {k: int(v["N"]) for k, v in item.items() if "N" in v}
                    hold.created_at_ms, hold.item_expires_at_ms = at.get("createdAt", 0), at.get("expiresAt")
                    if item["status"]["S"] != "ACTIVE" and "endedAt" in at:
                        hold.ended_at_ms, hold.expired_by = at["endedAt"], item.get("expiredBy", {}).get("S")
                request = page.get("UnprocessedKeys") or {}
        now, ended = time.time(), sum(h.ended_at_ms is not None for h in holds)
        if ended == len(holds) or now > give_up:
            return now
        if now > next_say:
            say(f"{name}: {ended}/{len(holds)} holds ended so far")
            next_say = now + 30
        time.sleep(POLL_SECONDS)


def _hold(skus: list[str], tag: str, seconds: tuple[int, ...], client: harness.Http, n: int) -> tuple[int, Any]:
    body = {"cartId": f"bench-expiry-{tag}-{n:04d}", "items": [{"sku": skus[n % SKUS], "quantity": 1}]}
    return client.call("POST", "/reservations", {**body, "holdSeconds": seconds[n % len(seconds)]})


def one_run(name: str, timeout_s: float) -> dict[str, Any]:
    """In the child: a stack, the holds made, wait for them to end; what the report prints of this run."""
    (label, overrides, rate, n_holds, seconds), started, timer = PLANS[name], time.monotonic(), name != "ttl"
    with Stack(CONCURRENCY, overrides, timers=timer) as stack:
        stack.warm({"ApiFunction": CONCURRENCY, **({"ExpireFunction": CONCURRENCY} if timer else {})})
        stack.reset_counts()
        say(f"{name}: stack ready in {time.monotonic() - started:.1f} s")
        skus = [f"BENCH-EXP-{uuid.uuid4().hex[:6]}-{i}" for i in range(SKUS)]
        stack.seed(skus, ON_HAND)
        made_from = time.time()
        job = partial(_hold, skus, f"{name}-{uuid.uuid4().hex[:6]}", seconds)
        load = harness.fan_out(CLIENTS, n_holds, job, partial(harness.Http, stack.url, STOREFRONT_KEY), rate=rate)
        holds = [Hold(a["reservationId"], harness.epoch_ms(a["expiresAt"])) for s, a in load.results if s == 201]
        if len(holds) < n_holds:
            raise SectionFailed(f"{name}: POST /reservations failed: {[r for r in load.results if r[0] != 201][:3]}")
        last = max(h.expires_at_ms for h in holds) / 1000
        say(
            f"{name}: {len(holds)} holds made in {load.wall_s:.1f} s; the last deadline is in {last - time.time():.1f} s"
        )
        say("", "made")
        waited = _poll_until_ended(stack, holds, last + timeout_s, name) - last
        executions = stack.timers(made_from, last, time.time() + 15, 0.5) if timer else []  # each ends after its slot
        time.sleep(1.0)  # a late stream delivery or hold-stream batch is counted too
        pricer = Pricer(stack.tables)
        calls = [pricer(c) for c in stack.calls(since=made_from) if not c.streams]
        run: dict[str, Any] = {"name": name, **stack.counters()}
        invocations = stack.invocations
    statuses = dict(Counter(str(s) for s, _ in load.results))
    run["row"] = _lag_row(label, timer, holds, load.wall_s, waited)
    run["note"] = f"  {name}: ended by {_ended_by(holds)}"
    tail = f"reconciliation ran {run['schedule_fired']}x; stream records sent to OnFailure {run['discarded']}; POST answers {statuses}"
    run["requests"] = "; ".join(f"{v}x {k}" for k, v in Counter(c.label for c in calls).most_common())
    run["seconds"] = time.monotonic() - started
    if timer:
        return run | _timer_figures(run, invocations, holds, executions, calls, tail)
    starter, early = invocations["HoldStreamFunction"], [h.lag_ms or 0 for h in holds if (h.lag_ms or 0) < 0]
    run["note"] += f"; {tail}"
    run["ttl"] = (
        f"  TTL-only run: HoldStreamFunction {len(starter.handler_s)} invocations, "
        f"{sum('REMOVE' in k for k in starter.event_names)} of them with the TTL job's deletes (the others: the holds' "
        f"INSERTs, timers off); every DynamoDB request from the first POST on: {run['requests']}. Per hold that is 4 WRU "
        "(a 2-item transaction) + 1 WRU (the cart slot) and the TTL delete (free)."
    )
    if early:
        run["ttl"] += (
            f" {len(early)} hold(s) ended BEFORE the deadline (lag < 0, up to {-min(early):,} ms): purgeAt is the "
            "deadline rounded DOWN to the second (+ TTL_GRACE_SECONDS, 0 here) and the backstop does not check it [3]."
        )
    return run


def _lag_row(label: str, timer: bool, holds: list[Hold], make_s: float, waited_s: float) -> list[str]:
    """run, made at, ended, p50 p95 p99 max (nearest rank over all holds; one not ended counts as later than the wait),
    min, target."""
    lags, n = sorted(h.lag_ms for h in holds if h.lag_ms is not None), len(holds)
    ranks = [max(0, math.ceil(q * n) - 1) for q in (0.5, 0.95, 0.99, 1.0)]
    cells = [f"{lags[r]:,}" if r < len(lags) else f">{waited_s * 1000:,.0f}" for r in ranks]
    target = f"p99 <= {TIMER_TARGET_MS:,} {verdict(ranks[2] < len(lags) and lags[ranks[2]] <= TIMER_TARGET_MS)}"
    made = f"{n / make_s:.0f}/s" if make_s else "-"
    return [
        label,
        made,
        f"{len(lags)}/{n}",
        *cells,
        f"{lags[0]:,}" if lags else "-",
        target if timer else "- (no target)",
    ]


def _ended_by(holds: list[Hold]) -> str:
    by: Counter[str] = Counter()
    for h in (h for h in holds if h.ended_at_ms is not None):
        by[{"ttl": "TTL backstop", "timer": "timer"}.get(h.expired_by or "", f"{h.expired_by or 'unknown'} path")] += 1
    return ", ".join(f"{k} {v}" for k, v in by.most_common()) or "none"


def _timer_figures(
    run: dict[str, Any],
    invocations: dict[str, Invocations],
    holds: list[Hold],
    execs: list[Execution],
    calls: list[Priced],
    tail: str,
) -> dict[str, Any]:
    expire, starter = invocations["ExpireFunction"], invocations["HoldStreamFunction"]
    by_slot = {int(e.name.split("-")[1]): e for e in execs if e.name.startswith("expire-")}

    def slot_of(h: Hold) -> Execution | None:  # its slot: the first whole second at its deadline (or the next)
        return by_slot.get(-(-h.deadline_ms // 1000)) or by_slot.get(-(-h.deadline_ms // 1000) + 1)

    ended = [(e, h) for h in holds if h.ended_at_ms is not None and (e := slot_of(h)) is not None]
    loops = sum("WaitASecond" in e.states for e in execs)
    fanned, late = (
        sum("EndInParallel" in e.states for e in execs),
        sum(e.started * 1000 > h.deadline_ms for e, h in ended),
    )
    per_record = sum(starter.handler_s) * 1000 / max(1, len(holds))
    run["note"] += (
        f"; {len(execs)} slot executions for {len(holds)} holds ({dict(Counter(e.status for e in execs))}, "
        f"{len(holds) / max(1, len(execs)):.1f} holds per slot), {loops} woke before their holds were due and looked "
        f"again 1 s later, {fanned} fanned out over a Map, {late} holds' slots started after the deadline; hold stream: "
        f"{len(starter.handler_s)} batches, {per_record:.1f} ms of handler time per record; {tail}"
    )
    samples = {
        "start": [e.started * 1000 - h.created_at_ms for e, h in ended],
        "wake": [e.woke * 1000 - h.deadline_ms for e, h in ended if e.woke is not None],
        "task": [(h.ended_at_ms or 0) - e.woke * 1000 for e, h in ended if e.woke is not None],
        "expire": [s * 1000 for s in expire.handler_s],
        "expire_wall": [s * 1000 for s in expire.wall_s],
        "starter": [s * 1000 for s in starter.handler_s],
    }
    steps = {
        k: [f"{x:,.0f}" for x in (statistics.median(v), pct(v, 0.95), max(v))] if v else [""] * 3
        for k, v in samples.items()
    }
    n, count, mine = (
        len(holds),
        sum(transitions(e, task_states()) for e in execs),
        [c for c in calls if c.who == "ExpireFunction"],
    )
    lambdas = (len(expire.handler_s) + len(starter.handler_s)) / n
    gb_s = harness.billed_gb_s(expire.handler_s + starter.handler_s, 1024) / n  # MemorySize 1024 (Globals)
    items = [
        ("Step Functions state transitions", count / n, "$0.025 per 1,000", harness.SFN_PER_TRANSITION),
        ("Lambda requests (expire + hold stream)", lambdas, "$0.20 per 1M", harness.LAMBDA_PER_REQUEST),
        ("Lambda GB-s (1 GB x handler time)", gb_s, "$0.0000133334 per GB-s", harness.LAMBDA_PER_GB_S),
        ("DynamoDB write request units", sum(c.wru for c in mine) / n, "$0.625 per 1M", harness.DDB_PER_WRU),
        ("DynamoDB read request units", sum(c.rru for c in mine) / n, "$0.125 per 1M", harness.DDB_PER_RRU),
    ]
    cost, total = harness.cost_table(items, "hold")
    sfn, ideal = items[0][1] * 1000 * harness.SFN_PER_TRANSITION, NO_LOOP * 1000 * harness.SFN_PER_TRANSITION
    cost_notes = [
        f"  Step Functions is {sfn / total * 100:.0f} % of it. Transitions: {count} in {len(execs)} slot executions: "
        f"{NO_LOOP} per slot (WaitForSlot, Survey, WhatNext, Done) + 4 for each of the {loops} that looked again, + 2 "
        f"and 2 per group for each of the {fanned} that fanned out. Per hold that is {count / n:.2f}: a slot's cost "
        f"is shared by every hold due in its second, so it falls as the hold rate grows (at {NO_LOOP} per slot and one "
        f"slot per hold, a quiet store: {harness.dollars(ideal)} per 1,000 holds for Step Functions).",
        f"  Lambda: {len(expire.handler_s)} expire invocations (surveys and Map groups) + {len(starter.handler_s)} hold-stream "
        f"batches ({n / max(1, len(starter.handler_s)):.1f} records each; their handler times: the timer path above). "
        "DynamoDB requests of the expire function (2 WRU per transaction item, 1 RRU per strongly consistent read): "
        + "; ".join(f"{v}x {k}" for k, v in Counter(c.label for c in mine).most_common())
        + f". Each survey Queries the hold shards of the Sweep index its slot's mark lists: "
        f"{sum(c.rru for c in mine) / max(1, len(execs)):.0f} RRU per slot, shared by its holds.",
    ]
    return {"steps": steps, "cost": cost, "cost_notes": cost_notes}


# --- the section ----------------------------------------------------------------------------------


def arguments(parser: argparse.ArgumentParser) -> None:
    help = f"expiry: seconds after the last deadline to wait for the TTL backstop (default {TTL_TIMEOUT:g})"
    parser.add_argument("--expiry-ttl-timeout", type=float, default=TTL_TIMEOUT, help=help)
    help = f"expiry: skip the timer run with a burst of {BURST_HOLDS:,} holds"
    parser.add_argument("--no-expiry-burst", action="store_true", help=help)


def header(args: argparse.Namespace) -> str:
    return (
        f"  expiry     : holds on fresh local stacks: slot timers with {HOLDS} holds made {PACED_RATE:g}/s"
        + ("" if args.no_expiry_burst else f", and a burst of {BURST_HOLDS:,}")
        + f"; TTL backstop alone (a child process, giving up {args.expiry_ttl_timeout:g} s after the last deadline)"
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every run in a child: the TTL-only one first, then the timer runs one after the other while it waits."""
    say("expiry: the TTL-only run first, then the timer runs (each run's stack logs to .local/bench-expiry-<run>.log)")
    results, ttl = {}, procs.Child("bench.expiry", "ttl", str(args.expiry_ttl_timeout))
    children = [ttl]
    try:
        while not ttl.made.wait(0.5):
            pass
        if ttl.done.is_set():
            ttl.wait()  # raises: it failed before making its holds
        for name in ("timer",) if args.no_expiry_burst else ("timer", "burst"):
            say(f"expiry: {PLANS[name][0]}")
            children.append(procs.Child("bench.expiry", name, str(TIMER_TIMEOUT)))
            results[name] = children[-1].wait()
        say("expiry: waiting for the TTL-only run")
        results["ttl"] = ttl.wait()
    finally:
        for child in children:
            child.stop()
    return results


def report(res: dict[str, Any], args: argparse.Namespace) -> str:
    runs = [res[k] for k in ("timer", "burst", "ttl") if k in res]
    timers = [r for r in runs if "steps" in r]
    out = [
        f"Holds that end by themselves (docs/expiry.md): {HOLDS} holds per run over HTTP, holdSeconds "
        f"{'/'.join(map(str, HOLD_SECONDS))} in turn (the burst: {BURST_HOLDS:,}, {'/'.join(map(str, BURST_SECONDS))}), "
        "1 unit each, a fresh cart each [1]",
        "Lag in ms from the deadline to the units being available again (endedAt - expiresAt) [2]",
        table(["run", "made at", "ended", "p50", "p95", "p99", "max", "min", "target"], [r["row"] for r in runs]),
        *(r["note"] for r in runs),
        "",
    ]
    if timers:
        headers = ["step (ms) [4]", *(h for r in timers for h in (f"{r['name']} p50", "p95", "max"))]
        rows = [[label, *(x for r in timers for x in r["steps"][key])] for key, label in STEP_LABELS.items()]
        out += ["Timer path: where the time goes (moto's execution history, the items, the workers' clocks)"]
        out += [table(headers, rows), ""]
    if "timer" in res:
        out += [
            "Cost per 1,000 holds on AWS (list prices), from the counts of the 'timer' run [5]",
            res["timer"]["cost"],
        ]
        out += [*res["timer"]["cost_notes"], "  Every DynamoDB request of the stack from the first POST on (proxy): "]
        out[-1] += res["timer"]["requests"]
        out.append("")
    if "ttl" in res:
        out += [res["ttl"]["ttl"], ""]
    took = ", ".join(f"{r['name']} {r['seconds']:.0f} s" for r in runs)
    return "\n".join([*out, f"  [1]-[5]: docs/bench.md; runs took {took}"])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child" and sys.argv[2] in PLANS:
        log, work = (
            harness.LOG_DIR / f"bench-expiry-{sys.argv[2]}.log",
            partial(one_run, sys.argv[2], float(sys.argv[3])),
        )
        sys.exit(procs.child_main(log, work))
    sys.exit(f"usage: python -m bench.expiry child {{{'|'.join(PLANS)}}} TIMEOUT   (started by python -m bench.run)")
