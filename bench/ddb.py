"""DynamoDB requests: counted in one process (botocore hooks) or for a whole stack (a counting proxy), and
described one way - what each was, and what AWS would bill for it, per call and per partition key.

* :class:`Recorder`: hooks on one client. ``before-call`` fires once per API call (HTTP retries are
  counted apart, with ``before-send``); with ``capacity`` on, ``ReturnConsumedCapacity=TOTAL`` is
  added to each request and the answer's ConsumedCapacity kept (DynamoDB Local's own figure).
* :class:`Proxy`: ``python -m bench.ddb proxy UPSTREAM``, its own process in front of DynamoDB Local
  (so it takes nothing from the GIL of what it counts). Every request is passed on byte for byte and
  kept with its time and the client's app id (``app/...`` in its User-Agent: botocore's
  AWS_SDK_UA_APP_ID, which bench.stack gives each function).
* :class:`Pricer`: a call's label ("TransactWriteItems (3 items): Put reservation, ...") and its
  request units by AWS's rules, with the Sweep index's writes estimated and each write's partition key.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from http.client import HTTPConnection, HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.request import urlopen

from bench.harness import ROOT, pythonpath

KB = 1024
_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
_APP_ID = re.compile(r"(?:^|\s)app/(\S+)")


@dataclass
class Call:
    op: str  # e.g. TransactWriteItems; DynamoDB Streams calls are "Streams GetRecords", ...
    params: dict[str, Any]  # as the caller sent them ({} from a Recorder with capacity off)
    who: str = ""  # the caller's app id (proxy), e.g. ApiFunction
    at: float = 0.0  # epoch s the proxy received it
    rcu: float = 0.0  # ConsumedCapacity as DynamoDB Local reported it (Recorder with capacity on)
    wcu: float = 0.0
    reported: bool = False

    @property
    def streams(self) -> bool:
        return self.op.startswith("Streams ")

    @property
    def actions(self) -> int:
        """Items in a transaction or batch request (1 for single-item calls)."""
        if "TransactItems" in self.params:
            return len(self.params["TransactItems"])
        if "RequestItems" in self.params:
            return sum(
                len(v.get("Keys", v) if isinstance(v, dict) else v) for v in self.params["RequestItems"].values()
            )
        return 1


class Recorder:
    """Hooks on one client; ``calls`` holds the API calls since the last :meth:`reset`, ``attempts`` the HTTP sends."""

    def __init__(self, client: Any) -> None:
        self.capacity = False  # inject ReturnConsumedCapacity and keep a copy of each request's parameters
        self.calls: list[Call] = []
        self.attempts = 0
        self._pending: dict[str, Any] = {}
        self._events = client.meta.events
        self._hooks = [
            ("before-parameter-build.dynamodb.*", self._on_params),
            ("before-call.dynamodb.*", self._on_call),
            ("before-send.dynamodb.*", self._on_send),
            ("after-call.dynamodb.*", self._on_answer),
        ]
        for event, handler in self._hooks:
            self._events.register(event, handler, unique_id=f"bench-{id(self)}-{event}")

    def close(self) -> None:
        for event, _ in self._hooks:
            self._events.unregister(event, unique_id=f"bench-{id(self)}-{event}")

    def reset(self) -> None:
        self.calls, self.attempts = [], 0

    def _on_params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.capacity:  # while timing: count only, no copying
            self._pending = copy.deepcopy(params)
            if "ReturnConsumedCapacity" in model.input_shape.members:
                params["ReturnConsumedCapacity"] = "TOTAL"

    def _on_call(self, model: Any, **_: Any) -> None:
        self.calls.append(Call(model.name, self._pending))
        self._pending = {}

    def _on_send(self, **_: Any) -> None:
        self.attempts += 1

    def _on_answer(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity")
        if not self.calls or consumed is None:
            return
        call = self.calls[-1]
        call.reported = True
        for entry in consumed if isinstance(consumed, list) else [consumed]:
            if "ReadCapacityUnits" in entry or "WriteCapacityUnits" in entry:
                call.rcu += float(entry.get("ReadCapacityUnits", 0))
                call.wcu += float(entry.get("WriteCapacityUnits", 0))
            elif model.name in _READS:
                call.rcu += float(entry.get("CapacityUnits", 0))
            else:
                call.wcu += float(entry.get("CapacityUnits", 0))


# --- the counting proxy ------------------------------------------------------------------------


def serve(upstream: str) -> None:
    """The proxy process: prints ``PORT <n>``; GET answers what it kept; SIGTERM or stdin closing stops it."""
    host, port = upstream.removeprefix("http://").rstrip("/").split(":")
    kept: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        upstream_conn: HTTPConnection | None = None

        def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response_only(status)
            for k, v in headers:
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with lock:
                data = json.dumps(kept).encode()
            self._answer(200, [("Content-Type", "application/json")], data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            app = _APP_ID.search(self.headers.get("User-Agent", ""))
            record = {"target": self.headers.get("X-Amz-Target", ""), "body": body.decode(), "at": time.time()}
            with lock:
                kept.append({**record, "who": app.group(1) if app else ""})
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            for attempt in (1, 2):  # once more on a fresh connection if the kept one was closed
                if self.upstream_conn is None:
                    self.upstream_conn = HTTPConnection(host, int(port), timeout=60)
                try:
                    self.upstream_conn.request("POST", self.path, body=body, headers=headers)
                    resp = self.upstream_conn.getresponse()
                    answer = resp.status, resp.getheaders(), resp.read()
                    break
                except (OSError, HTTPException):
                    self.upstream_conn.close()
                    self.upstream_conn = None
                    if attempt == 2:
                        raise
            self._answer(*answer)

        def finish(self) -> None:
            super().finish()
            if self.upstream_conn is not None:
                self.upstream_conn.close()

        def log_message(self, format: str, *args: Any) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it

    def until_stdin_closes() -> None:  # the parent died without stopping it
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    stop.wait()
    server.shutdown()


class Proxy:
    """The counting proxy as a child process: ``url`` for clients, :meth:`calls` what it saw."""

    def __init__(self, upstream: str) -> None:
        env = {**os.environ, "PYTHONPATH": pythonpath(), "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ddb", "proxy", upstream],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the bench only; the bench stops it
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"bench.ddb proxy did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def calls(self, since: float = 0.0) -> list[Call]:
        with urlopen(self.url, timeout=30) as resp:
            kept = json.loads(resp.read())
        out = []
        for r in kept:
            service, _, op = r["target"].partition(".")
            params = json.loads(r["body"] or "{}")
            op = f"Streams {op}" if service.startswith("DynamoDBStreams") else op
            if r["at"] >= since:
                out.append(Call(op, params, who=r["who"], at=r["at"]))
        return out

    def stop(self) -> None:
        from bench.procs import stop_tree

        stop_tree(self.proc, 10.0)


# --- what a call was, and what AWS would bill ----------------------------------------------------


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size in bytes of an item in wire (AttributeValue) form."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        return (len(Decimal(str(raw)).normalize().as_tuple().digits) + 1) // 2 + 1
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in raw.items())
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: v}) for v in raw)
    raise ValueError(f"unknown attribute type {kind}")


@dataclass(frozen=True)
class Priced:
    who: str  # the function, or "local stack"
    label: str  # e.g. "TransactWriteItems (3 items): Put reservation, Put cart hold, Update stock"
    wru: float  # AWS's rules, on the table
    rru: float
    gsi_wru: int  # writes to the Sweep index (estimated)
    writes: tuple[tuple[str, float], ...] = ()  # (partition key, WRU) of each item written


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    out: list[str] = []
    depth, cur = 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out, cur = [*out, cur], ""
        else:
            cur += ch
    return [x.strip() for x in [*out, cur] if x.strip()]


def _update_targets(spec: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Attribute names an UpdateExpression SETs (or ADDs) and REMOVEs."""
    names = spec.get("ExpressionAttributeNames") or {}
    parts = re.split(r"\b(SET|REMOVE|ADD|DELETE)\b", spec.get("UpdateExpression", ""), flags=re.IGNORECASE)
    sets: set[str] = set()
    removes: set[str] = set()
    for verb, clause in zip(parts[1::2], parts[2::2], strict=True):
        for item in _split_top(clause):
            if verb.upper() == "REMOVE":
                removes.add(names.get(item, item))
            else:
                target = item.split("=")[0].split()[0].strip()
                sets.add(names.get(target, target))
    return sets, removes


class Pricer:
    """Labels and request units for the tables of one stack (``tables``: logical id -> name).

    Writes 1 WRU per KB (TransactWriteItems 2 per item and KB, ConditionCheck included); strongly consistent
    reads 1 RRU per 4 KB, eventually consistent 0.5, an absent item still 1 / 0.5. An item's size is the
    largest known: ``sizes`` (by key, e.g. from :meth:`scan`) or any Put of it among ``calls``. The Sweep index
    (sparse: stock items and ACTIVE holds) gets 1 write for an entry added or removed, 2 for one moved, 1 for
    a projected attribute changed.
    """

    def __init__(self, tables: dict[str, str], sizes: dict[str, int] | None = None, calls: Iterable[Call] = ()):
        from tools import template

        self.tables = tables
        self.keys = {
            r["TableName"]: [k["AttributeName"] for k in r["KeySchema"]] for r in template.create_table_requests(tables)
        }
        props = template.resources("AWS::DynamoDB::Table")["StockholdTable"]["Properties"]
        index = (props.get("GlobalSecondaryIndexes") or [{"KeySchema": [], "Projection": {}}])[0]
        self.gsi_keys = {k["AttributeName"] for k in index["KeySchema"]}
        self.gsi_projected = set(index["Projection"].get("NonKeyAttributes", []))
        self.sizes = dict(sizes or {})
        for call in calls:
            puts = [a["Put"] for a in call.params.get("TransactItems", []) if "Put" in a]
            for put in [call.params] if call.op == "PutItem" else puts:
                key = self.key_id(put.get("TableName", ""), put.get("Item", {}))
                self.sizes[key] = max(self.sizes.get(key, 0), item_size(put.get("Item", {})))

    def key_id(self, table: str, attrs: dict[str, Any]) -> str:
        values = [str(next(iter((attrs.get(k) or {"S": ""}).values()))) for k in self.keys.get(table, ["pk", "sk"])]
        return "|".join([table, *values])

    def kind(self, table: str, attrs: dict[str, Any]) -> str:
        from bench.internals import item_kind

        if table == self.tables.get("IdempotencyTable"):
            return "idempotency record"
        return item_kind(str((attrs.get("pk") or {}).get("S", "")), str((attrs.get("sk") or {}).get("S", "")))

    def scan(self, client: Any) -> dict[str, int]:
        """The largest item of each kind now in the tables (bytes); every item's size kept for pricing."""
        largest: dict[str, int] = {}
        for name in self.tables.values():
            for page in client.get_paginator("scan").paginate(TableName=name):
                for item in page["Items"]:
                    key, size = self.key_id(name, item), item_size(item)
                    self.sizes[key] = max(self.sizes.get(key, 0), size)
                    kind = self.kind(name, item)
                    largest[kind] = max(largest.get(kind, 0), size)
        return largest

    def _gsi(self, op: str, spec: dict[str, Any], kind: str) -> int:
        if op == "Put":
            return 1 if self.gsi_keys & set(spec.get("Item", {})) else 0
        if op != "Update":
            return 0
        sets, removes = _update_targets(spec)
        if self.gsi_keys & removes:
            return 1
        if self.gsi_keys & sets:
            return 2
        return 1 if kind in ("stock", "reservation") and self.gsi_projected & sets else 0

    def _write(self, op: str, spec: dict[str, Any], factor: int) -> tuple[str, float, int, tuple[str, float]]:
        table, attrs = spec.get("TableName", ""), spec.get("Key") or spec.get("Item") or {}
        kind, wru = self.kind(table, attrs), float(factor * _units(self.sizes.get(self.key_id(table, attrs), 0), KB))
        return kind, wru, self._gsi(op, spec, kind), (self.key_id(table, attrs).split("|")[1], wru)

    def _read(self, table: str, attrs: dict[str, Any], strong: bool) -> float:
        return _units(self.sizes.get(self.key_id(table, attrs), 0), 4 * KB) * (1.0 if strong else 0.5)

    def __call__(self, call: Call) -> Priced:
        op, body, who = call.op, call.params, call.who or "local stack"
        strong = " (consistent)" if body.get("ConsistentRead") else ""
        if op == "TransactWriteItems":
            parts: Counter[str] = Counter()
            wru, gsi, writes = 0.0, 0, []
            for name, spec in (x for action in body.get("TransactItems", []) for x in action.items()):
                kind, units, index, write = self._write(name, spec, 2)
                parts[f"{name} {kind}"] += 1
                wru, gsi = wru + units, gsi + index
                writes.append(write)
            shown = ", ".join(p + (f" x{c}" if c > 1 else "") for p, c in parts.items())
            return Priced(who, f"{op} ({sum(parts.values())} items): {shown}", wru, 0.0, gsi, tuple(writes))
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            kind, wru, gsi, write = self._write(op.removesuffix("Item"), body, 1)
            return Priced(who, f"{op} {kind}", wru, 0.0, gsi, (write,))
        if op == "GetItem":
            table, key = body.get("TableName", ""), body.get("Key") or {}
            return Priced(who, f"{op} {self.kind(table, key)}{strong}", 0.0, self._read(table, key, bool(strong)), 0)
        if op == "BatchGetItem":
            got, rru = Counter[str](), 0.0
            for table, spec in body.get("RequestItems", {}).items():
                for key in spec.get("Keys", []):
                    got[self.kind(table, key) + (" (consistent)" if spec.get("ConsistentRead") else "")] += 1
                    rru += self._read(table, key, bool(spec.get("ConsistentRead")))
            return Priced(who, f"{op}: " + ", ".join(f"{p} x{c}" for p, c in got.items()), 0.0, rru, 0)
        if op in ("Query", "Scan"):  # not priced from the request: at least one unit
            where = body.get("IndexName") or body.get("TableName", "")
            return Priced(who, f"{op} {where} [at least]", 0.0, 1.0 if strong else 0.5, 0)
        return Priced(who, op, 0.0, 0.0, 0)


def wru_by_partition(priced: Iterable[Priced]) -> dict[str, float]:
    """WRU written per partition key (a hot item shows here first)."""
    out: dict[str, float] = {}
    for p in priced:
        for pk, wru in p.writes:
            out[pk] = out.get(pk, 0.0) + wru
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "proxy":
        serve(sys.argv[2])
    else:
        sys.exit("usage: python -m bench.ddb proxy UPSTREAM   (started by the bench)")
