"""A local stack in this process for a section's run: DynamoDB Local, the counting proxy, tools.local.stack.

The one module of the bench that knows tools.local's insides (its function pools, stream sources,
schedules and moto's state machines). Use it in a child process (bench.procs.Child):

    with Stack(concurrency=4, overrides={...}) as stack:
        stack.warm({"ApiFunction": 4})
        ... HTTP on stack.url; stack.calls(), stack.invocations, stack.executions(since), stack.quiet()

Every function's AWS clients name it in their User-Agent (AWS_SDK_UA_APP_ID = its logical id), so the
proxy knows who asked; every invocation is counted and its handler timed inside the worker. On leaving,
everything stops in order (stack, proxy, DynamoDB Local), also on error and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

from bench import harness, procs
from bench.ddb import Call, Proxy


@dataclass
class Invocations:
    handler_s: list[float] = field(default_factory=list)  # inside the worker: what Lambda bills
    wall_s: list[float] = field(default_factory=list)  # submit to answer, as the caller waits
    failed: int = 0
    records: list[int] = field(default_factory=list)  # stream records in each invocation's event (0: none)
    event_names: list[str] = field(default_factory=list)  # each invocation's stream eventNames, e.g. "INSERT,MODIFY"


@dataclass
class Execution:
    name: str
    status: str
    started: float  # epoch s
    states: list[str]  # entered, in order
    tasks: int  # Lambda invocations scheduled (retries included)
    outcomes: list[str]  # the expire function's answers (a slot's: "handled N")
    woke: float | None  # epoch s WaitForSlot was left
    last_task: float | None  # epoch s the last task was scheduled
    handled: int = 0  # holds the slot's invocations ended (or warned)


def _timed_invoke(event: Any, timeout: float) -> tuple[dict[str, Any], float]:
    """Runs in a function worker: tools.local.functions' own invoke, timed there."""
    from tools.local import functions

    started = time.perf_counter()
    out = functions._invoke(event, timeout)
    return out, time.perf_counter() - started


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


class Stack:
    def __init__(
        self, concurrency: int, overrides: dict[str, str], schedule_seconds: float = 3600.0, timers: bool = True
    ) -> None:
        from tools.local.stack import StackConfig

        self.config = StackConfig(
            port=0, concurrency=concurrency, schedule_seconds=schedule_seconds, overrides=dict(overrides)
        )
        self.with_timers = timers  # False: moto's Lambda hook stopped too (HOLD_TIMER_ARN="" starts no timers)
        self.invocations: dict[str, Invocations] = {}
        self.in_flight = 0
        self._lock = threading.Lock()
        self.ddb_local: Any = None
        self.proxy: Proxy | None = None
        self.local: Any = None

    def __enter__(self) -> Stack:
        import boto3

        from tools.ddblocal import DynamoDBLocal, client_kwargs
        from tools.local.stack import LocalStack

        class AppIdStack(LocalStack):
            def function_env(self, spec: Any) -> dict[str, str]:
                return {**super().function_env(spec), "AWS_SDK_UA_APP_ID": spec.logical_id}

        try:
            self.ddb_local = DynamoDBLocal().start(shared_db=True)
            self.direct = boto3.client("dynamodb", **client_kwargs(self.ddb_local.endpoint_url))  # not proxied
            self.proxy = Proxy(self.ddb_local.endpoint_url)
            self.config.ddb_endpoint = self.proxy.url
            self.local = AppIdStack(self.config)
            self.local.start()
            if not self.with_timers:
                self.local.state_machines.stop()
            for name, pool in self.local.pools.items():
                self._count(name, pool)
            self.reset_counts()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with procs.shielded():
            if exc is not None and self.local is not None:
                self._stop_abruptly()
            for part in (self.local, self.proxy, self.ddb_local):
                if part is not None:
                    part.stop()

    def _stop_abruptly(self) -> None:
        """Stop what invokes functions, then kill the workers (by pid) before LocalStack.stop() shuts their
        pools down: a worker that got a SIGINT while holding its pool's call-queue lock would block that
        shutdown for ever."""
        for source in [*self.local.streams, *self.local.schedules]:
            source.stop()
        self.local.state_machines.stop()
        workers = {p: s for p, s in procs.family().items() if "spawn_main" in procs.cmdline(p)}
        procs.kill(workers)
        procs.wait_gone(workers, 5.0)

    def _count(self, name: str, pool: Any) -> None:
        """Replace the pool's ``invoke`` (what the gateway, stream sources, schedules and the state machine
        call) with the same, its handler timed in the worker, counted, and the calls under way known."""
        from tools.local.functions import Invocation

        def invoke(event: Any) -> Invocation:
            with self._lock:
                self.in_flight += 1
            try:
                started = time.perf_counter()
                answer, handler_s = pool._pool.submit(_timed_invoke, event, pool.timeout).result()
                with self._lock:
                    seen = self.invocations.setdefault(name, Invocations())
                    seen.handler_s.append(handler_s)
                    seen.wall_s.append(time.perf_counter() - started)
                    seen.failed += "errorType" in answer
                    records = (event.get("Records") or []) if isinstance(event, dict) else []
                    seen.records.append(len(records))
                    seen.event_names.append(",".join(sorted({str(r.get("eventName")) for r in records})))
            finally:
                with self._lock:
                    self.in_flight -= 1
            if "errorType" in answer:
                sys.stderr.write(f"[{name}] {answer['errorType']}: {answer['errorMessage']}\n")
                return Invocation(error_type=answer["errorType"], error_message=answer["errorMessage"])
            return Invocation(payload=answer["payload"])

        pool.invoke = invoke

    # --- what a run uses

    @property
    def url(self) -> str:
        return str(self.local.url)

    @property
    def tables(self) -> dict[str, str]:
        return dict(self.local.tables)

    def warm(self, workers: dict[str, int]) -> None:
        """Start the workers now (each imports its handler: a cold start), not while measuring: rounds of N
        overlapping 0.2 s tasks until N different workers took one round."""
        for name, n in workers.items():
            for _ in range(30):
                executor = self.local.pools[name]._pool
                if len({f.result() for f in [executor.submit(_pid_after, 0.2) for _ in range(n)]}) == n:
                    break
            else:
                raise RuntimeError(f"{name}: {n} workers did not start")

    def reset_counts(self) -> None:
        with self._lock:
            self.invocations = {name: Invocations() for name in self.local.pools}

    def seed(self, skus: list[str], on_hand: int) -> None:
        """PUT /stock for each SKU (admin key)."""
        admin = harness.Http(self.url, self.config.admin_key)
        for sku in skus:
            if (answer := admin.call("PUT", f"/stock/{sku}", {"onHand": on_hand}))[0] != 200:
                raise harness.SectionFailed(f"PUT /stock/{sku} answered {answer}")
        admin.close()

    def timers(self, since: float, until: float, give_up: float, every: float) -> list[Execution]:
        """The slot timers' executions started from epoch s ``since``, once it is past ``until`` (the last
        deadline) and none is running (or at epoch s ``give_up``)."""
        while True:
            executions = self.executions(since=since)
            if time.time() > until and all(e.status != "RUNNING" for e in executions):
                return executions
            if time.time() > give_up:
                return executions
            time.sleep(every)

    def calls(self, since: float = 0.0) -> list[Call]:
        """Every DynamoDB request of the stack the proxy saw (from epoch s ``since``), Streams reads included."""
        assert self.proxy is not None
        return self.proxy.calls(since)

    def events(self) -> list[dict[str, Any]]:
        """Every event published on the buses so far."""
        return list(self.local.events())

    def counters(self) -> dict[str, int]:
        """Stream records sent to OnFailure, and how often the schedules fired."""
        return {
            "discarded": sum(len(s.discarded) for s in self.local.streams),
            "schedule_fired": sum(s.fired for s in self.local.schedules),
        }

    def quiet(self, seconds: float = 3.0, limit: float = 120.0) -> None:
        """Until no function has run, no stream consumer was invoked and no event was published for
        ``seconds`` (at most ``limit`` s)."""
        give_up = time.monotonic() + limit

        def activity() -> tuple[int, int, int]:
            return self.in_flight, sum(s.invocations for s in self.local.streams), len(self.local.events())

        seen, since = activity(), time.monotonic()
        while time.monotonic() - since < seconds and time.monotonic() < give_up:
            time.sleep(0.25)
            if (now := activity()) != seen or self.in_flight:
                seen, since = now, time.monotonic()

    def executions(self, since: float) -> list[Execution]:
        """The state machine executions started from epoch s ``since``, from their histories in moto."""
        import boto3

        machines = self.local.state_machines
        sfn = boto3.client(
            "stepfunctions",
            endpoint_url=machines.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        out: list[Execution] = []
        for arn in machines.arns.values():
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
                for listed in (x for x in page["executions"] if _ts(x["startDate"]) >= since):
                    events: list[dict[str, Any]] = []
                    kwargs: dict[str, Any] = {"executionArn": listed["executionArn"], "maxResults": 1000}
                    while True:
                        history = sfn.get_execution_history(**kwargs)
                        events.extend(history["events"])
                        if not history.get("nextToken"):
                            break
                        kwargs["nextToken"] = history["nextToken"]
                    out.append(_execution(listed, events))
        return out


def _execution(listed: dict[str, Any], events: list[dict[str, Any]]) -> Execution:
    run = Execution(listed["name"], listed["status"], _ts(listed["startDate"]), [], 0, [], None, None)
    for e in events:
        if e["type"].endswith("StateEntered"):
            run.states.append(e["stateEnteredEventDetails"]["name"])
        elif e["type"].endswith("StateExited") and run.woke is None:
            if e["stateExitedEventDetails"]["name"] == "WaitForSlot":
                run.woke = _ts(e["timestamp"])
        elif e["type"] in ("TaskScheduled", "LambdaFunctionScheduled"):
            run.tasks += 1
            run.last_task = _ts(e["timestamp"])
        details = e.get("taskSucceededEventDetails") or e.get("lambdaFunctionSucceededEventDetails")
        if details and details.get("output"):
            payload = json.loads(details["output"])
            payload = payload.get("Payload", payload) if isinstance(payload, dict) else payload
            if isinstance(payload, dict) and "handled" in payload:
                run.handled += int(payload["handled"])
                run.outcomes.append(f"handled {payload['handled']}")
            elif isinstance(payload, dict) and "outcome" in payload:
                run.outcomes.append(str(payload["outcome"]))
    return run


def task_states() -> set[str]:
    """The Task states of the template's state machines."""
    from tools import template

    def tasks(states: dict[str, Any]) -> set[str]:
        found = {name for name, state in states.items() if state.get("Type") == "Task"}
        for state in states.values():  # a Map's own states
            found |= tasks(state.get("ItemProcessor", {}).get("States", {}))
        return found

    out: set[str] = set()
    for res in template.resources("AWS::Serverless::StateMachine").values():
        out |= tasks(json.loads((template.ROOT / res["Properties"]["DefinitionUri"]).read_text())["States"])
    return out


def transitions(e: Execution, tasks: set[str]) -> int:
    """States entered, plus each retried task once more (a retry is a transition too)."""
    return len(e.states) + max(0, e.tasks - sum(s in tasks for s in e.states))


def memory_mb() -> dict[str, int]:
    """MemorySize of each function (its own, else Globals; Lambda's default 128)."""
    from tools import template

    default = int(template.load().get("Globals", {}).get("Function", {}).get("MemorySize", 128))
    return {
        name: int(res["Properties"].get("MemorySize", default))
        for name, res in template.resources("AWS::Serverless::Function").items()
    }
