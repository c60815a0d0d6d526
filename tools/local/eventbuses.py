"""EventBridge, locally: every AWS::Events::EventBus of the template, created in the
stack's moto server. A catch-all rule on each bus targets an SQS queue of the same
server; a thread drains it, prints each event as one ``[event] ...`` line, keeps it
(``LocalStack.events()``) and appends it to a JSONL file when one is configured."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools import template
from tools.local.motoserver import ARN_ACCOUNT, REGION, MotoServer

CATCH_ALL = json.dumps({"source": [{"prefix": ""}]})


def _summary(event: dict[str, Any]) -> str:
    try:
        from stockhold.data.events import summary

        return summary(event)
    except ImportError:  # a bus carrying something else: type and detail as they are
        return f"{event.get('detail-type')} {json.dumps(event.get('detail'))}"


class EventBuses:
    def __init__(self, server: MotoServer, *, suffix: str = "", log_path: Path | None = None) -> None:
        self._server = server
        self._suffix = suffix
        self._log_path = log_path
        self._taps: list[tuple[str, str, str]] = []  # (bus name, rule name, queue url)
        self._created: list[str] = []
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sqs: Any = None
        self._planned: dict[str, str] = {}
        self.names: dict[str, str] = {}  # logical id -> bus name

    def plan(self, refs: dict[str, str]) -> dict[str, str]:
        """The refs start() will add, before any bus exists (only the server's endpoint is picked):
        the functions' environments can be made meanwhile. start() then checks it made these."""
        buses = template.resources("AWS::Events::EventBus")
        if not buses:
            return {}
        self._server.reserve()
        out: dict[str, str] = {}
        for logical, res in buses.items():
            name = str(template.resolve(res["Properties"]["Name"], refs)) + self._suffix
            self.names[logical] = name
            arn = f"arn:aws:events:{REGION}:{ARN_ACCOUNT}:event-bus/{name}"
            out.update({logical: name, f"{logical}.Arn": arn, f"{logical}.Name": name})
        self._planned = out
        return dict(out)

    def start(self, refs: dict[str, str]) -> dict[str, str]:
        """Create every bus and its tap; returns the refs they add ({id: name, id.Arn: arn, id.Name: name})."""
        buses = template.resources("AWS::Events::EventBus")
        if not buses:
            return {}
        events, self._sqs = self._server.client("events"), self._server.client("sqs")
        out: dict[str, str] = {}
        tap = uuid.uuid4().hex[:8]
        for logical, res in buses.items():
            name = str(template.resolve(res["Properties"]["Name"], refs)) + self._suffix
            try:
                arn = events.create_event_bus(Name=name)["EventBusArn"]
                self._created.append(name)
            except events.exceptions.ResourceAlreadyExistsException:
                arn = events.describe_event_bus(Name=name)["Arn"]
            queue = self._sqs.create_queue(QueueName=f"{name}-tap-{tap}")["QueueUrl"]
            queue_arn = self._sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            rule = f"local-tap-{tap}"
            events.put_rule(Name=rule, EventBusName=name, EventPattern=CATCH_ALL, State="ENABLED")
            events.put_targets(Rule=rule, EventBusName=name, Targets=[{"Id": "tap", "Arn": queue_arn}])
            self._taps.append((name, rule, queue))
            self.names[logical] = name
            out.update({logical: name, f"{logical}.Arn": arn, f"{logical}.Name": name})
        if self._planned and out != self._planned:
            raise RuntimeError(f"event buses: made {out}, not the planned {self._planned}")
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_path.write_text("")  # this run's events only
        self._thread = threading.Thread(target=self._drain, name="event-bus-tap", daemon=True)
        self._thread.start()
        return out

    def events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """Every event published so far (EventBridge's envelope: source, detail-type, detail, time...)."""
        with self._lock:
            return [e for e in self._events if detail_type is None or e.get("detail-type") == detail_type]

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """The published events ``match`` accepts, once there are ``count`` of them (or the timeout)."""
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [e for e in self._events if match(e)]
                left = end - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._lock.wait(left)

    def _drain(self) -> None:
        while not self._stop.is_set():
            for _bus, _rule, queue in self._taps:
                try:
                    got = self._sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                except Exception as exc:
                    if not self._stop.is_set():
                        sys.stderr.write(f"[event bus] tap failed: {exc}\n")
                        self._stop.wait(1)
                    continue
                messages = got.get("Messages", [])
                for message in messages:
                    self._record(json.loads(message["Body"]))
                if messages:
                    self._sqs.delete_message_batch(
                        QueueUrl=queue,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                    )

    def _record(self, event: dict[str, Any]) -> None:
        sys.stderr.write(f"[event] {_summary(event)}\n")
        if self._log_path is not None:
            with self._log_path.open("a") as f:
                f.write(json.dumps(event) + "\n")
        with self._lock:
            self._events.append(event)
            self._lock.notify_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if not self._server.running:
            return
        events = self._server.client("events")
        for bus, rule, queue in self._taps:
            try:
                events.remove_targets(Rule=rule, EventBusName=bus, Ids=["tap"])
                events.delete_rule(Name=rule, EventBusName=bus)
                self._sqs.delete_queue(QueueUrl=queue)
            except Exception:
                pass
        for bus in self._created:
            try:
                events.delete_event_bus(Name=bus)
            except Exception:
                pass
        self._taps.clear()
        self._created.clear()
