"""Section 'flash': a flash sale on DynamoDB Local - one hot SKU, holds spread over many, and the model at scale.

In the bench process, through the domain services (``stockhold.wiring.services()``, as tests/integration wires
them) on a DynamoDB Local of its own with fresh tables from template.yaml; every DynamoDB call counted with
botocore hooks on the services' client (``ReturnConsumedCapacity=INDEXES`` injected). Two runs:

* burst: BURST_ATTEMPTS one-unit holds (a fresh cart each, no customer) from BURST_THREADS threads on one SKU with
  BURST_UNITS units - winners (no oversell), refusals that cost a write and refusals that cost nothing (the
  container's sold-out memory, SOLD_OUT_CACHE_SECONDS), requests by operation, WCU per partition key;
* spread: SPREAD_HOLDS hold cycles (made, then released) over SPREAD_SKUS SKUs with plenty of stock - writes per
  table partition key and per Sweep index partition key, per hold cycle.

Then the model at HOT_RATE attempts/s on one SKU and SERVICE_RATE holds/s service-wide (spread over CATALOG SKUs
through the real key functions), each figure printed with its formula and a verdict computed from it: partition
WCU/s, Sweep index partition WCU/s and RCU/s (the slot surveys), Step Functions StartExecution/s, StopExecution/s and
state transitions/s (slot timers: per second of deadlines, not per hold).
Notes: docs/bench.md, "flash".
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bench import harness
from bench.ddb import KB, item_size
from bench.harness import ROOT, SectionFailed, per, say, table, verdict

TITLE = "a flash sale (one hot SKU, holds spread over many SKUs, the model at scale)"
STORE = "demo"
BURST_ATTEMPTS, BURST_THREADS, BURST_UNITS, BURST_SKU = 2000, 16, 50, "FLASH-HOT"
SPREAD_HOLDS, SPREAD_THREADS, SPREAD_SKUS, SPREAD_ON_HAND = 2000, 16, 200, 1_000_000
HOT_RATE, SERVICE_RATE = 10_000, 20_000  # attempts/s on one SKU; holds/s service-wide
CATALOG = 10_000  # SKUs the service-wide holds spread over, uniformly (the model)
HANDLER_S = 0.010  # a reserve's handler time: containers busy at once = rate x this (Little's law)
PARTITION_WCU = 1000  # one DynamoDB partition's write limit, WCU/s (table and index alike)
SFN_START_RATE, SFN_STOP_RATE, SFN_TRANSITION_RATE = 150, 25, 500  # Step Functions Standard, smallest regions: /s
HEADROOM = 0.5  # PASS: at most this share of the limit
SLOT_KINDS = 2  # an expire and a warn slot timer per second of deadlines (stockhold.data.hold_timer), whatever H
PARTITION_RCU = 3000  # one DynamoDB partition's read limit, RCU/s
QUERY_RCU = 0.5  # an eventually consistent Query that finds little: one 4 KB read unit, halved
# A slot that fans out: WaitForSlot, Survey, WhatNext, EndInParallel, one EndGroup per group, Again, Survey,
# WhatNext, Done (statemachine/hold_timer.asl.json; checked below).
TIMER_PATH = ("WaitForSlot", "Survey", "WhatNext", "EndInParallel", "Again", "Survey", "WhatNext", "Done")
WRITES = frozenset({"TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"})


@dataclass
class Sent:
    op: str
    params: dict[str, Any]
    ok: bool = True  # the answer was not an error (a cancelled transaction writes nothing)


class Tally:
    """Hooks on one client, safe across threads: every call kept with its parameters and outcome; per thread, the
    calls and writes since :meth:`begin` (the services' own thread pools, e.g. the Sweep queries, are not
    attributed to an attempt, only kept)."""

    def __init__(self, client: Any) -> None:
        self.sent: list[Sent] = []
        self.reported: defaultdict[str, float] = defaultdict(
            float
        )  # WCU as DynamoDB Local reported them: "table", "index"
        self._lock, self._local = threading.Lock(), threading.local()
        self._events = client.meta.events
        self._hooks = [
            ("before-parameter-build.dynamodb.*", self._on_params),
            ("before-call.dynamodb.*", self._on_call),
            ("after-call.dynamodb.*", self._on_answer),
        ]
        for event, handler in self._hooks:
            self._events.register(event, handler, unique_id=f"bench-flash-{id(self)}-{event}")

    def close(self) -> None:
        for event, _ in self._hooks:
            self._events.unregister(event, unique_id=f"bench-flash-{id(self)}-{event}")

    def take(self) -> tuple[list[Sent], defaultdict[str, float]]:
        with self._lock:
            out, self.sent, reported, self.reported = self.sent, [], self.reported, defaultdict(float)
        return out, reported

    def begin(self) -> None:
        self._local.calls, self._local.writes = 0, 0

    def mine(self) -> tuple[int, int]:
        return getattr(self._local, "calls", 0), getattr(self._local, "writes", 0)

    def _on_params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params["ReturnConsumedCapacity"] = "INDEXES"
        self._local.pending = copy.deepcopy(params)

    def _on_call(self, model: Any, **_: Any) -> None:
        sent = Sent(model.name, getattr(self._local, "pending", {}))
        self._local.pending, self._local.last = {}, sent
        self._local.calls = getattr(self._local, "calls", 0) + 1
        self._local.writes = getattr(self._local, "writes", 0) + (model.name in WRITES)
        with self._lock:
            self.sent.append(sent)

    def _on_answer(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        sent = getattr(self._local, "last", None)
        if sent is None:
            return
        sent.ok = "Error" not in parsed
        consumed = parsed.get("ConsumedCapacity")
        entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
        with self._lock:
            for entry in entries:
                table_part = entry.get("Table") or {}
                self.reported["table"] += float(table_part.get("WriteCapacityUnits", 0) if model.name in WRITES else 0)
                for index in (entry.get("GlobalSecondaryIndexes") or {}).values():
                    self.reported["index"] += float(index.get("WriteCapacityUnits", 0) if model.name in WRITES else 0)


@dataclass
class Keys:
    """Writes per partition key by AWS's rules, from the requests (items up to ``largest`` bytes)."""

    table: Counter[str] = field(default_factory=Counter)  # WCU per table partition key (pk)
    index: Counter[str] = field(default_factory=Counter)  # WCU per Sweep index partition key (sweepPk)
    table_wcu: float = 0.0
    index_wcu: float = 0.0


def _item_id(attrs: dict[str, Any]) -> str:
    return f"{(attrs.get('pk') or {}).get('S', '')}|{(attrs.get('sk') or {}).get('S', '')}"


def price(sent: Iterable[Sent], largest: int, sweep_of: dict[str, str]) -> Keys:
    """2 WCU per action (Put, Update, Delete, ConditionCheck) of a TransactWriteItems, cancelled or not, x ceil(KB of
    the largest item); 1 per single-item write. The Sweep index (2 WCU per entry written by a transaction, 1 by a
    single-item write; committed writes only): a
    Put of an item with ``sweepPk``, an Update or Delete of an item known to have one (``sweep_of``: item -> sweepPk,
    kept up to date from the Puts seen)."""
    out, units = Keys(), max(1, math.ceil(largest / KB))
    for s in sent:
        if s.op == "TransactWriteItems":
            factor, actions = 2, [(v, spec) for a in s.params.get("TransactItems", []) for v, spec in a.items()]
        elif s.op in ("PutItem", "UpdateItem", "DeleteItem"):
            factor, actions = 1, [(s.op.removesuffix("Item"), s.params)]
        else:
            continue
        for verb, spec in actions:
            attrs = spec.get("Key") or spec.get("Item") or {}
            pk = (attrs.get("pk") or {}).get("S", "?")
            out.table[pk] += factor * units
            out.table_wcu += factor * units
            if not s.ok or verb == "ConditionCheck":
                continue
            ident = _item_id(attrs)
            if verb == "Put":
                sweep = (spec.get("Item", {}).get("sweepPk") or {}).get("S")
                if sweep is None:
                    sweep_of.pop(ident, None)
                    continue
                sweep_of[ident] = sweep
            elif ident not in sweep_of:
                continue
            leaves = verb == "Delete" or "sweepPk" in str(spec.get("UpdateExpression", "")).partition("REMOVE")[2]
            sweep = sweep_of.pop(ident) if leaves else sweep_of[ident]
            out.index[sweep] += factor  # 2 inside a transaction, as DynamoDB Local reports (docs/bench.md [4])
            out.index_wcu += factor
    return out


@dataclass
class Run:
    label: str
    attempts: int
    wall_s: float
    outcomes: Counter[str]  # "held", "refused after a write", "refused, no write", "refused, no request", other
    ops: Counter[str]
    keys: Keys
    reported: defaultdict[str, float]
    thread_writes: int  # writes counted on the attempts' own threads
    held_units: int = 0  # the hot SKU's reserved units after the burst (burst only)
    sweep_queries: int = 0  # Queries of the Sweep index (a refusal's look for overdue holds)


def _attempt(svc: Any, tally: Tally, cart: str, sku: str, cycle: bool) -> tuple[str, int]:
    """One hold attempt; with ``cycle``, a hold's whole life: made, then released (steady state: holds end as
    often as they start, and an end writes the same cells and index keys again)."""
    from stockhold.domain.errors import InsufficientStock, StockholdError
    from stockhold.domain.models import Line

    tally.begin()
    try:
        res = svc.reserving.reserve(STORE, cart_id=cart, customer_id=None, lines=[Line(sku=sku, quantity=1)])
        if cycle:
            svc.holds.release(STORE, res.reservation_id, "cancelled")
        outcome = "held"
    except InsufficientStock:
        outcome = "refused"
    except StockholdError as exc:
        outcome = f"failed: {type(exc).__name__}"
    calls, writes = tally.mine()
    if outcome == "refused":
        outcome = "refused after a write" if writes else "refused, no write" if calls else "refused, no request"
    return outcome, writes


def _run(
    svc: Any, tally: Tally, label: str, count: int, threads: int, sku_of: Any, cycle: bool = False
) -> tuple[Run, list[Sent]]:
    tally.take()
    tag = uuid.uuid4().hex[:6]
    load = harness.fan_out(threads, count, lambda _c, n: _attempt(svc, tally, f"{label}-{tag}-{n}", sku_of(n), cycle))
    sent, reported = tally.take()
    outcomes = Counter(o for o, _ in load.results)
    ops = Counter(s.op for s in sent)
    run = Run(label, count, load.wall_s, outcomes, ops, Keys(), reported, sum(w for _, w in load.results))
    run.sweep_queries = sum(1 for x in sent if x.op == "Query" and x.params.get("IndexName") == "Sweep")
    return run, sent


def spread_at_rate(holds: int, catalog: int) -> tuple[int, int, int]:
    """One second of ``holds`` one-line holds, each on a SKU picked uniformly from ``catalog``: the most that land
    on one SKU, on one Sweep HOLD# key and on one Sweep STOCK# key (the real key functions, fresh hold ids)."""
    import random

    from stockhold.data.schema import hold_sweep_keys, stock_sweep_keys
    from stockhold.domain.ids import new_id

    pick = random.Random(7)
    skus = Counter(pick.randrange(catalog) for _ in range(holds))
    holds_at = Counter(hold_sweep_keys(new_id("res_"), 0)["sweepPk"] for _ in range(holds))
    cells_at: Counter[str] = Counter()
    for sku, n in skus.items():
        cells_at[stock_sweep_keys(STORE, f"SKU-{sku}")["sweepPk"]] += n
    return max(skus.values()), max(holds_at.values()), max(cells_at.values())


def _largest_item(client: Any, table_name: str) -> int:
    largest = 0
    for page in client.get_paginator("scan").paginate(TableName=table_name):
        largest = max([largest, *(item_size(i) for i in page["Items"])])
    return largest


def timer_transitions() -> int:
    """State transitions of a slot that fans out, but for its groups' own: TIMER_PATH, checked step by step against
    the state machine."""
    states = json.loads((ROOT / "statemachine" / "hold_timer.asl.json").read_text())
    assert states["StartAt"] == TIMER_PATH[0], "TIMER_PATH does not start where the state machine does"
    for here, there in itertools.pairwise(TIMER_PATH):
        state = states["States"][here]
        nexts = {state.get("Next"), state.get("Default"), *(c.get("Next") for c in state.get("Choices", []))}
        assert there in nexts, f"hold_timer.asl.json: {here} does not lead to {there}"
    assert states["States"][TIMER_PATH[-1]]["Type"] in ("Succeed", "Fail") or states["States"][TIMER_PATH[-1]].get(
        "End"
    ), "TIMER_PATH does not end the execution"
    return len(TIMER_PATH)


HOLD_REF_BYTES = 100  # a hold as the Sweep index projects it (keys, storeId, reservationId): about
STREAM_BATCH = 100  # the hold stream's BatchSize: a batch writes a slot's mark at most once (upper bound)
MARK_WCU = 2  # a mark with up to 256 shard numbers is over 1 KB
SLOT_READS = 3  # Queries of each hold shard per slot that fans out: the survey, its group's, the survey after
LAMBDA_CONCURRENCY = 1000  # Lambda's default concurrent executions per account and region


def _timer_shape() -> tuple[int, int, int]:
    """The Sweep index's hold shards, SLOT_GROUP_HOLDS, and the Map's MaxConcurrency, from the code and the ASL."""
    from stockhold.data.schema import HOLD_SHARDS
    from stockhold.settings import Settings

    states = json.loads((ROOT / "statemachine" / "hold_timer.asl.json").read_text())["States"]
    return HOLD_SHARDS, Settings.model_fields["SLOT_GROUP_HOLDS"].default, states["EndInParallel"]["MaxConcurrency"]


@dataclass
class Measured:
    burst: Run
    spread: Run
    largest_item: int
    sold_out_seconds: float
    transitions: int
    hot_pk: str


def arguments(parser: argparse.ArgumentParser) -> None:
    pass


def header(args: argparse.Namespace) -> str:
    return (
        f"  flash      : in the bench process, through the domain services on a DynamoDB Local of its own; burst "
        f"{BURST_ATTEMPTS:,} one-unit holds from {BURST_THREADS} threads on 1 SKU with {BURST_UNITS} units; spread "
        f"{SPREAD_HOLDS:,} hold cycles from {SPREAD_THREADS} threads over {SPREAD_SKUS} SKUs; the model at "
        f"{HOT_RATE:,} attempts/s on one SKU and {SERVICE_RATE:,} holds/s service-wide"
    )


def measure(args: argparse.Namespace) -> Measured:
    from bench.operations import handler_on_dynamodb_local

    with handler_on_dynamodb_local("flash") as tables:
        from stockhold import wiring
        from stockhold.data.schema import stock_pk

        wiring.reset()  # a client and settings of this environment (another section may have made them)
        try:
            client, svc = wiring.dynamodb_client(), wiring.services()
            tally, sweep_of = Tally(client), dict[str, str]()
            try:
                say(f"flash: seeding {SPREAD_SKUS + 1} SKUs")
                svc.stock.set(STORE, BURST_SKU, on_hand=BURST_UNITS, low_stock_threshold=None, unlimited=False)
                for i in range(SPREAD_SKUS):
                    svc.stock.set(STORE, f"FLASH-{i:03d}", on_hand=SPREAD_ON_HAND, low_stock_threshold=None)
                seeded, _ = tally.take()
                price(seeded, 0, sweep_of)  # the stock items' Sweep keys
                say(f"flash: burst, {BURST_ATTEMPTS:,} attempts on {BURST_SKU} from {BURST_THREADS} threads")
                burst, burst_sent = _run(svc, tally, "burst", BURST_ATTEMPTS, BURST_THREADS, lambda n: BURST_SKU)
                burst.held_units = svc.stock.get(STORE, BURST_SKU).reserved
                say(
                    f"flash: spread, {SPREAD_HOLDS:,} hold cycles over {SPREAD_SKUS} SKUs from {SPREAD_THREADS} threads"
                )
                spread, spread_sent = _run(
                    svc, tally, "spread", SPREAD_HOLDS, SPREAD_THREADS, lambda n: f"FLASH-{n % SPREAD_SKUS:03d}", True
                )
            finally:
                tally.close()
            largest = _largest_item(client, tables["StockholdTable"])
            burst.keys, spread.keys = price(burst_sent, largest, sweep_of), price(spread_sent, largest, sweep_of)
            window = svc.settings.SOLD_OUT_CACHE_SECONDS
        except Exception as exc:
            raise SectionFailed(f"flash: {type(exc).__name__}: {exc}") from exc
        finally:
            wiring.reset()
    return Measured(burst, spread, largest, window, timer_transitions(), stock_pk(STORE, BURST_SKU))


# --- the printout ---------------------------------------------------------------------------


def _busiest(counts: Counter[str]) -> tuple[str, float]:
    return counts.most_common(1)[0] if counts else ("-", 0.0)


def _model_row(figure: str, formula: str, value: float, limit: float, unit: str) -> list[str]:
    share = value / limit
    return [figure, formula, f"{value:,.0f} {unit}", f"{limit:,.0f}", f"{share:.0%}", verdict(share <= HEADROOM)]


def report(res: Measured, args: argparse.Namespace) -> str:
    b, s = res.burst, res.spread
    won, refusals = b.outcomes["held"], b.attempts - b.outcomes["held"]
    no_oversell = won == BURST_UNITS and b.held_units == BURST_UNITS
    refused_write = b.outcomes["refused after a write"]
    refused_free = b.outcomes["refused, no write"] + b.outcomes["refused, no request"]
    failed = {k: v for k, v in b.outcomes.items() if k.startswith("failed")}
    lines = [f"{TITLE} [1]"]
    rows = [
        ["attempts (1 unit, a fresh cart each, no customer)", f"{b.attempts:,}", ""],
        [f"holds made (units {BURST_UNITS}; reserved after: {b.held_units})", f"{won:,}", verdict(no_oversell)],
        ["refused after a write (a cancelled transaction) [2]", f"{refused_write:,}", ""],
        ["refused without a write (the sold-out memory) [3]", f"{refused_free:,}", ""],
        ["  of which: no DynamoDB request at all", f"{b.outcomes['refused, no request']:,}", ""],
        *([k, f"{v:,}", ""] for k, v in sorted(failed.items())),
        ["wall time, s", f"{b.wall_s:.1f}", ""],
    ]
    lines += ["", f"burst: {BURST_THREADS} threads, one SKU ('no oversell': holds made = units = reserved)"]
    lines.append(table(["", "count", "no oversell"], rows))
    lines.append(
        f"  refusals: {refusals:,}; in this process all {BURST_THREADS} threads share ONE container's sold-out memory"
        f" (SOLD_OUT_CACHE_SECONDS={res.sold_out_seconds:g}); on Lambda each container has its own (the model's N)"
    )
    lines.append(
        f"  Sweep index Queries (overdue holds, after a refusal that reached the table): {b.sweep_queries:,}"
        f" = {per(b.sweep_queries / max(1, refused_write))} per refusal after a write (reads, on the services' pool)"
    )

    ops = sorted(set(b.ops) | set(s.ops))
    op_rows = [
        [op, f"{b.ops[op]:,}", per(b.ops[op] / b.attempts), f"{s.ops[op]:,}", per(s.ops[op] / s.attempts)] for op in ops
    ]
    op_rows.append(
        [
            "all",
            f"{sum(b.ops.values()):,}",
            per(sum(b.ops.values()) / b.attempts),
            f"{sum(s.ops.values()):,}",
            per(sum(s.ops.values()) / s.attempts),
        ]
    )
    lines += ["", "DynamoDB requests by operation (botocore before-call hooks on the services' client)"]
    lines.append(table(["operation", "burst", "per attempt", "spread", "per hold"], op_rows))

    key_rows = []
    for run, unit in ((b, "attempt"), (s, "hold")):
        tk, tw = _busiest(run.keys.table)
        ik, iw = _busiest(run.keys.index)
        key_rows.append(
            [
                run.label,
                f"{run.keys.table_wcu:,.0f}",
                f"{run.reported['table']:,.0f}",
                f"{len(run.keys.table):,}",
                tk,
                f"{tw:,.0f}",
                f"{per(tw / run.attempts)} / {unit}",
                f"{run.keys.index_wcu:,.0f}",
                f"{run.reported['index']:,.0f}",
                f"{len(run.keys.index):,}",
                ik,
                f"{iw:,.0f}",
                f"{per(iw / run.attempts)} / {unit}",
            ]
        )
    lines += ["", f"writes per partition key, WCU by AWS's rules [4] (largest item {res.largest_item} B)"]
    heads = [
        "run",
        "table WCU",
        "Local said",
        "keys",
        "busiest pk",
        "WCU",
        "per",
        "Sweep WCU",
        "Local said",
        "keys",
        "busiest sweepPk",
        "WCU",
        "per",
    ]
    lines.append(table(heads, key_rows))

    # The model.
    hot = b.keys.table.get(res.hot_pk, 0.0)
    writing = max(1, sum(1 for o in b.outcomes.elements() if o in ("held", "refused after a write")))
    cell_per_write = hot / writing  # WCU on the cell per attempt that reached it (won or cancelled)
    hot_sweep = max((b.keys.index[k] for k in b.keys.index if k.startswith("STOCK#")), default=0.0)
    sweep_per_hold = hot_sweep / max(1, won)  # index WCU at the hot cell's Sweep key per hold made
    containers = HOT_RATE * HANDLER_S
    # Service-wide: WCU per hold cycle (made, then ended) at its keys, measured; the busiest key at H from one
    # second of H holds spread over the real key functions (CATALOG SKUs, picked uniformly).
    cells = sum(v for k, v in s.keys.table.items() if "#SKU#" in k)
    t_per = cells / s.attempts  # on the SKU's cell item, per hold cycle
    h_per = sum(v for k, v in s.keys.index.items() if k.startswith("HOLD#")) / s.attempts
    c_per = sum(v for k, v in s.keys.index.items() if k.startswith("STOCK#")) / s.attempts
    busiest_sku, busiest_hold_key, busiest_cell_key = spread_at_rate(SERVICE_RATE, CATALOG)
    w = res.sold_out_seconds
    hold_shards, group, map_concurrency = _timer_shape()
    groups = math.ceil(SERVICE_RATE / group)
    model = [
        _model_row(
            "hot cell, units left: every attempt writes it",
            f"A x c = {HOT_RATE:,} x {per(cell_per_write)}",
            HOT_RATE * cell_per_write,
            PARTITION_WCU,
            "WCU/s",
        ),
        _model_row(
            "hot cell, sold out: N containers, <= 1 refused write each per window",
            f"N x c / S = {containers:g} x {per(cell_per_write)} / {w:g}",
            containers * cell_per_write / w if w else math.inf,
            PARTITION_WCU,
            "WCU/s",
        ),
        _model_row(
            "hot cell's Sweep key, units left (a hold made per attempt)",
            f"A x i = {HOT_RATE:,} x {per(sweep_per_hold)}",
            HOT_RATE * sweep_per_hold,
            PARTITION_WCU,
            "WCU/s",
        ),
        _model_row(
            "busiest SKU cell (table), spread",
            f"max holds/s on one SKU ({busiest_sku}) x {per(t_per)} per cycle",
            busiest_sku * t_per,
            PARTITION_WCU,
            "WCU/s",
        ),
        _model_row(
            "busiest Sweep HOLD# key, spread",
            f"max holds/s on one key ({busiest_hold_key}) x {per(h_per)} per cycle",
            busiest_hold_key * h_per,
            PARTITION_WCU,
            "WCU/s",
        ),
        _model_row(
            "busiest Sweep STOCK# key, spread",
            f"max holds/s on one key ({busiest_cell_key}) x {per(c_per)} per cycle",
            busiest_cell_key * c_per,
            PARTITION_WCU,
            "WCU/s",
        ),
        _model_row(
            "Sweep HOLD# key reads (the slot surveys)",
            f"K x {SLOT_READS} x ({QUERY_RCU:g} + H / {hold_shards} x {HOLD_REF_BYTES} B / 4 KB / 2) per key",
            SLOT_KINDS * SLOT_READS * (QUERY_RCU + SERVICE_RATE / hold_shards * HOLD_REF_BYTES / (4 * KB) / 2),
            PARTITION_RCU,
            "RCU/s",
        ),
        _model_row(
            "a slot's mark (one item): the hold stream's shard writes",
            f"H / {STREAM_BATCH} records per batch x {MARK_WCU} WCU (<= 256 shards: ~1.3 KB)",
            SERVICE_RATE / STREAM_BATCH * MARK_WCU,
            PARTITION_WCU,
            "WCU/s",
        ),
        _model_row(
            "Step Functions StartExecution (slot timers)",
            f"K = {SLOT_KINDS} slots per second, whatever H",
            SLOT_KINDS,
            SFN_START_RATE,
            "/s",
        ),
        _model_row(
            "Step Functions StopExecution",
            "none: a slot finds ended holds gone from the index",
            0,
            SFN_STOP_RATE,
            "/s",
        ),
        _model_row(
            "Step Functions state transitions",
            f"K x ({res.transitions} + G), G = ceil(H / {group}) = {groups} groups",
            SLOT_KINDS * (res.transitions + groups),
            SFN_TRANSITION_RATE,
            "/s",
        ),
        _model_row(
            "Lambda concurrency of the slot timers",
            f"K x Map MaxConcurrency ({map_concurrency}) + K surveys",
            SLOT_KINDS * (map_concurrency + 1),
            LAMBDA_CONCURRENCY,
            "",
        ),
    ]
    lines += [
        "",
        f"the model [5]: A = {HOT_RATE:,} attempts/s on one SKU, H = {SERVICE_RATE:,} holds/s, "
        f"N = A x {HANDLER_S * 1000:g} ms = {containers:g} containers, S = SOLD_OUT_CACHE_SECONDS = {w:g} s, "
        f"c = {per(cell_per_write)} WCU on the cell per attempt that reached it, i = {per(sweep_per_hold)} Sweep WCU "
        f"per hold at the cell's key; service-wide, H holds spread uniformly over {CATALOG:,} SKUs, each a cycle "
        f"(made, then ended) measured in the spread run; slot timers: K = {SLOT_KINDS} kinds (expire, warn), every "
        f"hold of a second due in one slot (upper bound: all H holds due, none confirmed first), G Map groups of "
        f"SLOT_GROUP_HOLDS = {group}; PASS at <= {HEADROOM:.0%} of the limit",
    ]
    lines.append(table(["figure", "formula", "value", "limit", "of limit", "verdict"], model))
    if b.thread_writes != sum(b.ops[o] for o in WRITES):
        lines.append(
            f"  note: {sum(b.ops[o] for o in WRITES) - b.thread_writes} burst writes ran off the attempts' threads"
        )
    return "\n".join(lines)
