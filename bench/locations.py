"""Section 'locations': a reserve's DynamoDB requests, capacity and latency with stock in many places (docs/locations.md).

As bench.operations measures, and with its Workload: through the API handler in this process (requests counted with
hooks on the handler's own client), then bare (the same DynamoDB requests replayed with plain boto3, fresh ids). Four
one-line reserves: a store without locations; a SKU split over 3 locations; a SKU with maxPerCustomer (a fresh
customer each time, never at the limit) in a store without locations and in the store with 3. A child process of its
own (the handler's client and the locations cache are made once per process). Notes [1]-[4]: docs/bench.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench import harness, operations, procs
from bench.ddb import Call
from bench.harness import SectionFailed, median_ms, p95_ms, say, span, table, verdict
from bench.operations import RATIO_TARGET, Op, _aws_wcu, _met

TITLE = "a reserve with stock in many places (locations, split, maxPerCustomer)"
PLAIN, PLACES = "bench-plain", "bench-places"  # a store without locations; a store with LOCATIONS
LOCATIONS = (("north", 10, 1), ("middle", 20, 1), ("south", 30, 1_000_000))  # id, priority, onHand of SPLIT_SKU
SPLIT_SKU, SPLIT_QUANTITY = "LOC-SPLIT", 3  # 1 from north + 1 from middle + 1 from south
ONE_CELL_SKU, LIMITED_SKU = "LOC-PLAIN", "LOC-LIMITED"  # onHand ON_HAND at `default` only
ON_HAND, MAX_PER_CUSTOMER = 1_000_000, 1_000_000  # never short, never at the limit
CACHE_SECONDS = 5  # template.yaml's LOCATIONS_CACHE_SECONDS, as deployed
FIRST = 5  # untimed requests per case before the accounting runs (the first after defining locations differs)


@dataclass(frozen=True)
class Case:
    op: Op
    store: str
    sku: str
    quantity: int = 1
    customer: bool = False  # a fresh customerId each request


CASES = (
    Case(Op("plain", "reserve, no locations", ("=", 1), True), PLAIN, ONE_CELL_SKU),
    Case(Op("split", f"reserve, split over {len(LOCATIONS)} locations", None, True), PLACES, SPLIT_SKU, SPLIT_QUANTITY),
    Case(Op("limit", "reserve + maxPerCustomer, no locations", None, True), PLAIN, LIMITED_SKU, customer=True),
    Case(
        Op("limit3", f"reserve + maxPerCustomer, {len(LOCATIONS)} locations", None, True), PLACES, LIMITED_SKU, 1, True
    ),
)
BY_KEY = {c.op.key: c for c in CASES}


class Workload(operations.Workload):
    """bench.operations' Workload with a request per case, two stores, a fresh customer id in each bare replay, and
    the split SKU's units given back (release, untimed) before each of its reserves, so every one splits alike."""

    def __init__(self, tables: dict[str, str]) -> None:
        super().__init__(tables)
        self.apis = {s: harness.LambdaApi(s, "storefront") for s in (PLAIN, PLACES)}
        self.releaser = harness.LambdaApi(PLACES, "storefront")  # its own: last_ns stays the timed call's
        self.names: dict[str, list[tuple[str, ...]]] = {}  # op key -> each handler request's DynamoDB calls
        self.unreleased: list[str] = []  # holds on SPLIT_SKU, handler's and bare's
        self.last_fresh: dict[str, str] = {}

    def seed(self) -> None:
        def put(store: str, path: str, body: dict[str, Any]) -> None:
            status, answer = harness.LambdaApi(store, "admin").call("PUT", path, body)
            if status != 200:
                raise SectionFailed(f"seeding: PUT {path} ({store}) answered {status}: {answer}")

        for store in (PLAIN, PLACES):
            put(store, f"/stock/{ONE_CELL_SKU}", {"onHand": ON_HAND})
            put(store, f"/stock/{LIMITED_SKU}", {"onHand": ON_HAND, "maxPerCustomer": MAX_PER_CUSTOMER})
        for loc, priority, _ in LOCATIONS:
            put(PLACES, f"/locations/{loc}", {"name": f"bench {loc}", "priority": priority, "active": True})
        for loc, _, units in LOCATIONS:
            put(PLACES, f"/stock/{SPLIT_SKU}/locations/{loc}", {"onHand": units})

    def refresh_locations(self, store: str) -> None:
        """This container's copy of the store's locations read now (docs/locations.md: a request naming a location
        the container has not seen re-reads at once; this one answers 404 and holds nothing)."""
        body = {
            "cartId": self._id("cart"),
            "locationIds": ["bench-nowhere"],
            "items": [{"sku": ONE_CELL_SKU, "quantity": 1}],
        }
        status, answer = self.apis[store].call("POST", "/reservations", body)
        if status != 404:
            raise SectionFailed(f"refreshing the locations of {store}: answered {status}, expected 404: {answer}")

    def _give_back(self) -> None:
        while self.unreleased:
            rid = self.unreleased.pop()
            status, answer = self.releaser.call("POST", f"/reservations/{rid}/release", {"reason": "cancelled"})
            if status != 200:
                raise SectionFailed(f"releasing {rid} answered {status}: {answer}")

    def _request(self, op: Op) -> tuple[str, str, Any, dict[str, str], dict[str, str], int]:
        case = BY_KEY[op.key]
        if op.key == "split":
            self._give_back()
        self.api = self.apis[case.store]
        tokens = {"cart": self._id("cart")} | ({"customer": self._id("cust")} if case.customer else {})
        body: dict[str, Any] = {"cartId": tokens["cart"], "items": [{"sku": case.sku, "quantity": case.quantity}]}
        if case.customer:
            body["customerId"] = tokens["customer"]
        return "POST", "/reservations", body, {}, tokens, 201

    def handler_once(self, op: Op) -> tuple[int, list[Call], Any, dict[str, str]]:
        ns, calls, answer, tokens = super().handler_once(op)
        self.names.setdefault(op.key, []).append(tuple(c.op for c in calls))
        if op.key == "split":
            self.unreleased.append(answer["reservationId"])
            parts = [(a["locationId"], a["quantity"]) for a in answer["items"][0].get("allocations", [])]
            if parts != [(loc, 1) for loc, _, _ in LOCATIONS]:
                raise SectionFailed(f"the split reserve was not split over {len(LOCATIONS)} locations: {parts}")
        return ns, calls, answer, tokens

    def _fresh(self, role: str, old: str) -> str:
        fresh = self._id("cust") if role == "customer" else super()._fresh(role, old)
        self.last_fresh[role] = fresh
        return fresh

    def bare_prepare(self, op: Op) -> list[tuple[Callable[..., Any], dict[str, Any]]]:
        if op.key == "split":
            self._give_back()
        calls = super().bare_prepare(op)
        if op.key == "split":
            self.unreleased.append(self.last_fresh["rid"])
        # A TransactWriteItems before the request's last was refused when captured (the use case tries again only
        # after a refusal): the replay expects the same refusal.
        template = self.out.templates[op.key].calls
        last = max(i for i, (name, _) in enumerate(template) if name == "TransactWriteItems")
        return [
            (_refused(m) if n == "TransactWriteItems" and i < last else m, p)
            for i, ((m, p), (n, _)) in enumerate(zip(calls, template, strict=True))
        ]


def _refused(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, expected to be refused (TransactionCanceledException) as the handler's call was."""

    def call(**params: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            method(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return
            raise
        raise SectionFailed("a replayed TransactWriteItems committed where the handler's was refused")

    return call


# --- the figures ------------------------------------------------------------------------------------


def _reported(runs: list[list[Call]], kind: str) -> str:
    """RCU or WCU summed per request as DynamoDB Local reported them; * when it reported nothing for some call."""
    shown = span([sum(c.rcu if kind == "rcu" else c.wcu for c in run if c.reported) for run in runs])
    return shown + ("*" if any(not c.reported for run in runs for c in run) else "")


def _wcu_formula(calls: list[Call]) -> str:
    """WCU by AWS's rules, items <= 1 KB: 2 x the items of each TransactWriteItems (the Puts of the hold and the
    cart's slot, an Update per stock cell taken from, the rest: customer allowances); a refused one costs the same."""
    from bench.internals import item_kind

    writes = [c for c in calls if c.op == "TransactWriteItems"]
    parts = []
    for n, call in enumerate(writes):
        actions = [next(iter(a.items())) for a in call.params["TransactItems"]]
        puts = sum(name == "Put" for name, _ in actions)
        keys = [spec["Key"] for name, spec in actions if name != "Put"]
        cells = sum(item_kind(k["pk"]["S"], k["sk"]["S"]) == "stock" for k in keys)
        others = len(keys) - cells
        terms = [str(puts), str(cells), *([f"{others} allowance"] if others else [])]
        parts.append(f"2 x ({' + '.join(terms)}){' refused' if n < len(writes) - 1 else ''}")
    return " + ".join(parts) or "-"


def _rcu_formula(calls: list[Call]) -> tuple[float, str]:
    """RCU by AWS's rules, strongly consistent reads of items <= 4 KB: 1 per item read."""
    reads = [c.actions for c in calls if c.op in ("GetItem", "BatchGetItem")]
    return float(sum(reads)), " + ".join(map(str, reads)) or "0"


def report_text(work: Workload, args: argparse.Namespace) -> str:
    res, out, requests, capacity = work.out, [], [], []
    for case in CASES:
        op, runs = case.op, res.accounting[case.op.key]
        names = [tuple(c.op for c in run) for run in runs] + work.names[op.key][-args.iterations :]
        steady = [len(n) - n.count("Query") for n in names]  # without the locations cache refresh
        target = (
            f"{op.target[0]}{op.target[1]} {verdict(all(_met(op.target, n) for n in steady))}" if op.target else "-"
        )
        calls = ", ".join(c.op + (f"({c.actions})" if c.actions > 1 else "") for c in runs[0])
        refreshed = sum("Query" in n for n in names)
        requests.append([op.label, span(steady), target, calls, f"{refreshed} of {len(names)}"])
        rcu, rcu_terms = _rcu_formula(runs[0])
        wcu = _aws_wcu(runs[0], res.largest_item)
        capacity.append(
            [
                op.label,
                _reported(runs, "rcu"),
                f"{rcu:g} = {rcu_terms}" if rcu_terms != "0" else "0",
                _reported(runs, "wcu"),
                f"{wcu} = {_wcu_formula(runs[0])}",
            ]
        )
    out.append(f"DynamoDB requests per reserve (one line, through the handler, after {FIRST} warm-up requests) [1]")
    out.append(table(["reserve", "requests", "target", "calls (actions)", "+ locations Query [2]"], requests))
    out.append(
        f"  [2] a container re-reads the store's locations (1 Query) when its copy is {CACHE_SECONDS} s old "
        "(LOCATIONS_CACHE_SECONDS), a store without locations too: requests that did so, of accounting + timed; "
        "'requests' and its target leave that Query out"
    )
    if sum(c.op == "TransactWriteItems" for c in res.accounting["limit"][0]) > 1:
        out.append(
            "  reserve + maxPerCustomer, no locations: the first TransactWriteItems is the one-request path, refused "
            "by the SKU's condition attribute_not_exists(maxPerCustomer); then it reads the SKU and plans, every request"
        )
    out.append(
        f"  split: all {len(work.names['split'])} handler answers allocated north 1, middle 1, south 1 (priorities "
        f"{', '.join(str(p) for _, p, _ in LOCATIONS)}; {SPLIT_QUANTITY} units wanted, 1 available at north and middle)"
    )
    out.append("")
    out.append(f"Capacity per reserve, {args.accounting} accounting runs each [3]")
    heads = ["reserve", "RCU", "RCU AWS rules = items read", "WCU", "WCU AWS rules = 2 x (puts + cells [+ allowances])"]
    out.append(table(heads, capacity))
    out.append(
        f"  RCU, WCU: as DynamoDB Local reports them (* none reported for a refused TransactWriteItems); AWS rules: "
        f"items <= 4 KB read strongly consistent, <= 1 KB written (largest in the tables: {res.largest_item} bytes)"
    )
    if res.retries:
        out.append(f"  {res.retries} HTTP retries in the timed requests")
    out.append("")

    rows = []
    for case in CASES:
        key = case.op.key
        h, b = res.handler_ns[key], res.bare_ns[key]
        ratio = median_ms(h) / median_ms(b)
        bare_calls = " + ".join(name for name, _ in res.templates[key].calls)
        cells = [median_ms(h), p95_ms(h), median_ms(b), p95_ms(b)]
        shown = f"<={RATIO_TARGET:g}x {verdict(ratio <= RATIO_TARGET)}"
        rows.append(
            [
                case.op.label,
                *(f"{x:.2f}" for x in cells),
                f"{cells[0] - cells[2]:+.2f}",
                f"{ratio:.2f}x",
                shown,
                bare_calls,
            ]
        )
    out.append(f"Latency in ms, {args.iterations} requests each (handler = app.lambda_handler; bare = boto3 [4])")
    heads = ["reserve", "handler p50", "p95", "bare p50", "p95", "p50 diff", "handler/bare", "target", "bare calls"]
    out.append(table(heads, rows))
    out.append("  [1]-[4]: docs/bench.md, section locations")
    return "\n".join(out)


def one_run(iterations: int, warmup: int, accounting: int) -> str:
    """The child's work: its own DynamoDB Local, the cases measured, the report rendered."""
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)  # as bench.run does
    args = argparse.Namespace(iterations=iterations, warmup=warmup, accounting=accounting)
    with operations.handler_on_dynamodb_local("locations") as tables:
        work = Workload(tables)
        try:
            work.seed()
            say(f"locations: warm-up, {FIRST} requests per reserve before accounting")
            for case in CASES:
                for _ in range(FIRST):
                    work.handler_once(case.op)
            say(f"locations: accounting, {accounting} runs per reserve, ReturnConsumedCapacity=TOTAL")
            for case in CASES:
                work.refresh_locations(case.store)
                work.account(case.op, accounting)
                if "Query" in (name for name, _ in work.out.templates[case.op.key].calls):
                    raise SectionFailed(f"{case.op.label}: the locations cache expired during its accounting runs")
            work.out.largest_item = work.largest_item()
            work.out.retries = 0
            for case in CASES:
                say(f"locations: timing {case.op.label}: {warmup} warm-up + {iterations}")
                work.time_op(case.op, warmup, iterations)
            return report_text(work, args)
        finally:
            work.recorder.close()


# --- the section --------------------------------------------------------------------------------------


def arguments(parser: argparse.ArgumentParser) -> None:
    pass  # --iterations, --warmup and --accounting: bench.operations'


def header(args: argparse.Namespace) -> str:
    return (
        f"  locations  : {len(CASES)} one-line reserves, {args.iterations} timed each after {args.warmup} warm-up, "
        f"handler and bare interleaved; {args.accounting} accounting runs each; in a child process with its own "
        f"DynamoDB Local, handler env as operations; LOCATIONS_CACHE_SECONDS={CACHE_SECONDS}"
    )


def measure(args: argparse.Namespace) -> str:
    say("locations: a child process with its own DynamoDB Local (it logs to .local/bench-locations.log)")
    child = procs.Child("bench.locations", "locations", str(args.iterations), str(args.warmup), str(args.accounting))
    try:
        return str(child.wait())
    finally:
        child.stop()


def report(res: str, args: argparse.Namespace) -> str:
    return res


def _main(argv: Sequence[str]) -> int:
    if len(argv) == 5 and argv[:2] == ["child", "locations"]:
        work = partial(one_run, *(int(x) for x in argv[2:]))
        return procs.child_main(harness.LOG_DIR / "bench-locations.log", work)
    sys.exit("usage: python -m bench.locations child locations ITERATIONS WARMUP ACCOUNTING   (started by bench.run)")


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
