"""The local stack's own machinery: stream event sources, schedules, state machines, shutdown, and
what each does when a function's execution environment dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from tools import template
from tools.ddblocal import DynamoDBLocal, client_kwargs
from tools.local.functions import FunctionPool, Invocation
from tools.local.motoserver import MotoServer
from tools.local.schedules import Schedule
from tools.local.stack import LocalStack, StackConfig
from tools.local.statemachines import StateMachines, lambda_arn
from tools.local.streams import StreamSource
from tools.template import ROOT

pytestmark = pytest.mark.integration
FILTER = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["wanted"]}}}}


@pytest.fixture
def stream_table(ddb_local: DynamoDBLocal) -> Iterator[tuple[object, str]]:
    client = boto3.client("dynamodb", **client_kwargs(ddb_local.endpoint_url))  # type: ignore[call-overload]
    name = f"runner-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    yield client, name
    client.delete_table(TableName=name)


def _pool(fixture: str, record_file: Path, concurrency: int = 1) -> FunctionPool:
    """A pool of the test function ``tests/fixtures/<fixture>``, which records each delivery."""
    return FunctionPool(
        fixture.capitalize(),
        ROOT / "tests/fixtures" / fixture,
        "app.lambda_handler",
        {f"{fixture.upper()}_FILE": str(record_file), "PATH": os.environ.get("PATH", "")},
        [],
        concurrency=concurrency,
        timeout=10,
    )


def _source(
    ddb_local: DynamoDBLocal,
    table: str,
    record_file: Path,
    retries: int,
    *,
    parallel: int = 1,
    pattern: dict[str, object] = FILTER,
    fixture: str = "recorder",
    bisect: bool = False,
) -> tuple[StreamSource, FunctionPool]:
    pool = _pool(fixture, record_file, parallel)
    kwargs = client_kwargs(ddb_local.endpoint_url)
    streams = boto3.client("dynamodbstreams", **kwargs)  # type: ignore[call-overload]
    arn = boto3.client("dynamodb", **kwargs).describe_table(TableName=table)["Table"]["LatestStreamArn"]  # type: ignore[call-overload]
    source = StreamSource(
        function=pool,
        streams_client=streams,
        stream_arn=arn,
        properties={
            "BatchSize": 10,
            "StartingPosition": "TRIM_HORIZON",
            "MaximumRetryAttempts": retries,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "FilterCriteria": {"Filters": [{"Pattern": json.dumps(pattern)}]},
            "ParallelizationFactor": parallel,
            "BisectBatchOnFunctionError": bisect,
        },
        poll_seconds=0.1,
    )
    return source, pool


def _lines(path: Path) -> list[dict[str, list[str]]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _deliveries(path: Path) -> list[list[str]]:
    return [json.loads(line)["ids"] for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_filters_batch_failures_and_retries_follow_lambda(
    ddb_local: DynamoDBLocal, stream_table: tuple[object, str], tmp_path: Path
) -> None:
    client, table = stream_table
    record_file = tmp_path / "deliveries.jsonl"
    items = [
        {"id": "u1", "kind": "unwanted"},
        {"id": "w1", "kind": "wanted"},
        {"id": "w2", "kind": "wanted", "fail": "once"},
        {"id": "w3", "kind": "wanted"},
        {"id": "u2", "kind": "unwanted", "fail": "always"},
    ]
    for item in items:
        client.put_item(TableName=table, Item={k: {"S": v} for k, v in item.items()})  # type: ignore[attr-defined]
    client.delete_item(TableName=table, Key={"id": {"S": "w1"}})  # type: ignore[attr-defined]  # a REMOVE: filtered out
    source, pool = _source(ddb_local, table, record_file, retries=2)
    source.start()
    try:
        _wait_for(lambda: len(_deliveries(record_file)) >= 2)
        time.sleep(1.0)  # nothing more should arrive
    finally:
        source.stop()
        pool.shutdown()
    deliveries = _deliveries(record_file)
    delivered = {rid for batch in deliveries for rid in batch}
    assert not delivered & {"u1", "u2"}, "a record the filter rejects must never reach the function"
    # w2 failed once: the retry starts from it (so w3 comes again), not from w1.
    assert deliveries == [["w1", "w2", "w3"], ["w2", "w3"]]


def test_a_record_that_keeps_failing_is_sent_to_the_on_failure_destination(
    ddb_local: DynamoDBLocal, stream_table: tuple[object, str], tmp_path: Path
) -> None:
    client, table = stream_table
    record_file = tmp_path / "deliveries.jsonl"
    client.put_item(TableName=table, Item={"id": {"S": "bad"}, "kind": {"S": "wanted"}, "fail": {"S": "always"}})  # type: ignore[attr-defined]
    source, pool = _source(ddb_local, table, record_file, retries=2)
    source.start()
    try:
        _wait_for(lambda: len(source.discarded) == 1)
    finally:
        source.stop()
        pool.shutdown()
    assert _deliveries(record_file) == [["bad"]] * 3  # the first try and MaximumRetryAttempts=2 retries
    assert source.discarded[0]["dynamodb"]["NewImage"]["id"]["S"] == "bad"


def test_stopping_the_stack_leaves_no_dynamodb_local_behind() -> None:
    stack = LocalStack(StackConfig(port=0, seed=False)).start()
    assert stack.ddb is not None
    pid = stack.ddb.pid
    assert pid is not None and Path(f"/proc/{pid}").exists()
    stack.stop()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_sigterm_to_make_run_stops_everything_it_started() -> None:
    env = {**os.environ, "STOCKHOLD_PORT": "0", "PYTHONPATH": f"{ROOT}/layers/stockhold:{ROOT}/functions/api:{ROOT}"}
    env.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    banner = []
    for line in proc.stdout:
        banner.append(line)
        if "Ctrl-C stops everything" in line:
            break
    text = "".join(banner)
    assert "stockhold is running at http://127.0.0.1:" in text, text
    ddb_port = text.split("DynamoDB Local: http://127.0.0.1:")[1].split()[0]
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "the stack runs worker and DynamoDB Local processes"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    left = subprocess.run(["pgrep", "-f", f"DynamoDBLocal.jar.*-port {ddb_port}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"DynamoDB Local still running: {left.stdout}"
    for child in children:
        assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text().lower()


def test_parallelization_factor_splits_a_batch_by_item_and_keeps_each_items_order(
    ddb_local: DynamoDBLocal, stream_table: tuple[object, str], tmp_path: Path
) -> None:
    client, table = stream_table
    record_file = tmp_path / "deliveries.jsonl"
    keys = [f"k{i}" for i in range(8)]
    for n in ("1", "2", "3"):
        for key in keys:  # INSERT, then two MODIFYs of every item
            client.put_item(TableName=table, Item={"id": {"S": key}, "kind": {"S": "wanted"}, "n": {"S": n}})  # type: ignore[attr-defined]
    pattern = {"dynamodb": {"NewImage": {"kind": {"S": ["wanted"]}}}}
    source, pool = _source(ddb_local, table, record_file, retries=0, parallel=4, pattern=pattern)
    source.start()
    try:
        _wait_for(lambda: sum(len(line["ids"]) for line in _lines(record_file)) >= 24)
        time.sleep(0.5)
    finally:
        source.stop()
        pool.shutdown()
    lines = _lines(record_file)
    seen: dict[str, list[str]] = {}
    lane_of: dict[str, set[int]] = {}
    for i, line in enumerate(lines):
        for rid, n in zip(line["ids"], line["ns"], strict=True):
            seen.setdefault(rid, []).append(n)
            lane_of.setdefault(rid, set()).add(i)
    assert seen == {key: ["1", "2", "3"] for key in keys}  # every record once, each item's in order
    # The 24 records arrive in pages of 10 (BatchSize); each page went out as several batches at once.
    assert len(lines) > 3
    assert max(len(line["ids"]) for line in lines) < 10


# --- a function that dies (issue 9, section 3) ------------------------------------------------


def _put(client: object, table: str, **item: str) -> None:
    client.put_item(TableName=table, Item={k: {"S": v} for k, v in item.items()})  # type: ignore[attr-defined]


def test_a_dead_environment_fails_only_its_own_invocation_and_is_replaced(tmp_path: Path) -> None:
    """One SIGKILLed worker used to break the function's ProcessPoolExecutor for good: every
    running and later invocation raised BrokenProcessPool (the HTTP client saw a closed
    connection). Now, as in Lambda, only the invocation it was running fails."""
    pool = _pool("crasher", tmp_path / "calls.jsonl", concurrency=2)
    try:
        pool.warm_up(2)
        with ThreadPoolExecutor(2) as threads:
            dying = threads.submit(pool.invoke, {"id": "dies", "sleep": 0.3, "die": True})
            other = threads.submit(pool.invoke, {"id": "lives", "sleep": 0.6})
            died, lived = dying.result(timeout=30), other.result(timeout=30)
        assert died.failed and died.error_type == "Runtime.ExitError"
        assert died.error_message == "Runtime exited with error: signal: killed"
        assert not lived.failed and lived.payload["pid"] in pool.pids  # its environment carried on
        with ThreadPoolExecutor(2) as threads:  # two at a time: a new environment takes the dead one's place
            later = list(threads.map(pool.invoke, [{"id": f"later-{i}", "sleep": 0.2} for i in range(4)]))
        assert [r.failed for r in later] == [False] * 4
        assert pool.environments_lost == 1 and len({r.payload["pid"] for r in later}) == 2
    finally:
        pool.shutdown()
    assert pool.pids == []


def test_a_batch_whose_invocation_dies_is_delivered_again_not_dropped(
    ddb_local: DynamoDBLocal, stream_table: tuple[object, str], tmp_path: Path
) -> None:
    """The stream source used to move the shard iterator on before delivering: an invocation
    that died lost its batch (a hold without a timer, a lost audit entry), and the broken
    pool lost every later batch too. Now the batch is retried until it is handled."""
    client, table = stream_table
    record_file = tmp_path / "deliveries.jsonl"
    _put(client, table, id="w1", kind="wanted")
    _put(client, table, id="w2", kind="wanted", die="once")
    _put(client, table, id="w3", kind="wanted")
    source, pool = _source(ddb_local, table, record_file, retries=2, fixture="crasher")
    source.start()
    try:
        _wait_for(lambda: len(_deliveries(record_file)) >= 2)
        _put(client, table, id="w4", kind="wanted")  # a later batch: the function still works
        _wait_for(lambda: "w4" in {i for batch in _deliveries(record_file) for i in batch})
        time.sleep(0.5)  # nothing more should arrive
    finally:
        source.stop()
        pool.shutdown()
    assert _deliveries(record_file) == [["w1", "w2", "w3"], ["w1", "w2", "w3"], ["w4"]]
    assert source.discarded == []
    assert pool.environments_lost == 1


def test_a_record_whose_invocations_keep_dying_is_bisected_out_and_sent_to_on_failure(
    ddb_local: DynamoDBLocal, stream_table: tuple[object, str], tmp_path: Path
) -> None:
    """BisectBatchOnFunctionError: a batch whose invocation fails is split in two and each half
    retried; the record that keeps killing its environment ends in OnFailure after
    MaximumRetryAttempts, and every other record is delivered."""
    client, table = stream_table
    record_file = tmp_path / "deliveries.jsonl"
    for rid in ("a", "b", "c", "d"):
        _put(client, table, id=rid, kind="wanted", **({"die": "always"} if rid == "b" else {}))
    source, pool = _source(ddb_local, table, record_file, retries=2, fixture="crasher", bisect=True)
    source.start()
    try:
        _wait_for(lambda: len(source.discarded) == 1 and len(_deliveries(record_file)) >= 5)
        time.sleep(0.5)
    finally:
        source.stop()
        pool.shutdown()
    # [abcd] dies (1 failure): halves; [ab] dies (2): halves; [a] ok; [b] dies (3 > 2): OnFailure; [cd] ok.
    assert _deliveries(record_file) == [["a", "b", "c", "d"], ["a", "b"], ["a"], ["b"], ["c", "d"]]
    assert [r["dynamodb"]["NewImage"]["id"]["S"] for r in source.discarded] == ["b"]


class _RaisingOnce:
    """A function whose first invocation raises in the stack itself (not a function error)."""

    name = "Flaky"

    def __init__(self) -> None:
        self.calls = 0

    def invoke(self, event: dict[str, object]) -> Invocation:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the pool broke")
        return Invocation(payload={})


def test_the_schedule_survives_a_run_that_fails(tmp_path: Path) -> None:
    """An exception from one run (a BrokenProcessPool, before) ended the schedule's thread:
    reconciliation never ran again. Now a failing run is logged and the next one fires."""
    flaky = _RaisingOnce()
    schedule = Schedule(flaky, "flaky", "rate(1 minute)", every=0.05)  # type: ignore[arg-type]
    schedule.start()
    try:
        _wait_for(lambda: flaky.calls >= 3, timeout=5)
    finally:
        schedule.stop()

    record_file = tmp_path / "runs.jsonl"
    Path(f"{record_file}.die").touch()  # the first run's environment dies
    pool = _pool("crasher", record_file)
    schedule = Schedule(pool, "crasher", "rate(1 minute)", every=0.1)
    schedule.start()
    try:
        _wait_for(lambda: len(_deliveries(record_file)) >= 3)
    finally:
        schedule.stop()
        pool.shutdown()
    assert pool.environments_lost == 1 and schedule.fired >= 3


def test_fifty_slot_timers_started_at_once_all_run(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's ASL parser keeps its query-language scope stack in a class attribute, and every
    execution parses its definition on a thread of its own. An execution whose parse found
    the stack non-empty (another parse under way) and read its top just after that other
    parse emptied it died with an IndexError before its first state: its hold's timer never
    ran. The window is widened here (a parse is held up between that check and that read)
    so that the race shows every time; the test is that all 50 timers run."""
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    real_open, real_close = Preprocessor._open_query_language_scope, Preprocessor._close_query_language_scope
    real_read = Preprocessor._get_current_query_language
    here = threading.local()

    def open_scope(self: Preprocessor, tree: object) -> None:
        depth = getattr(here, "depth", 0)
        here.opening_first = depth == 0
        try:
            real_open(self, tree)  # type: ignore[arg-type]
        finally:
            here.opening_first = False
        here.depth = depth + 1

    def close_scope(self: Preprocessor) -> None:
        real_close(self)
        here.depth -= 1

    def read_scope(self: Preprocessor) -> object:
        if getattr(here, "opening_first", False):  # this parse found another's scopes on the stack
            time.sleep(0.3)
        return real_read(self)

    monkeypatch.setattr(Preprocessor, "_open_query_language_scope", open_scope)
    monkeypatch.setattr(Preprocessor, "_close_query_language_scope", close_scope)
    monkeypatch.setattr(Preprocessor, "_get_current_query_language", read_scope)

    class Expire:
        name = "ExpireFunction"

        def __init__(self) -> None:
            self.ended: set[str] = set()
            self.lock = threading.Lock()

        def invoke(self, event: dict[str, Any]) -> Invocation:
            with self.lock:
                self.ended.add(str(event["slot"]))
            return Invocation(
                payload={
                    "handled": 1,
                    "failed": 0,
                    "pending": 0,
                    "fanOut": False,
                    "groups": [],
                    "again": False,
                    "loop": 1,
                }
            )

    expire = Expire()
    suffix = f"-{uuid.uuid4().hex[:6]}"
    machines = StateMachines(lambda: {"ExpireFunction": expire}, moto_server, suffix)  # type: ignore[dict-item]
    refs = {**template.parameter_defaults(), "ExpireFunction.Arn": lambda_arn("ExpireFunction", suffix)}
    [arn] = machines.start(refs).values()
    sfn = moto_server.client("stepfunctions")
    try:

        def start(i: int) -> str:
            timer_input = {"kind": "expire", "slot": i, "at": "2020-01-01T00:00:00Z", "loop": 0}
            return str(
                sfn.start_execution(stateMachineArn=arn, name=f"h{i}{suffix}", input=json.dumps(timer_input))[
                    "executionArn"
                ]
            )

        with ThreadPoolExecutor(50) as threads:
            executions = list(threads.map(start, range(50)))

        def statuses() -> list[str]:
            return [sfn.describe_execution(executionArn=e)["status"] for e in executions]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "RUNNING" in statuses():
            time.sleep(0.2)
    finally:
        machines.stop()
    assert statuses() == ["SUCCEEDED"] * 50
    assert expire.ended == {str(i) for i in range(50)}


def _gone(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True


# What `make run` starts that lives outside its process: DynamoDB Local (from a thread that
# has ended by the time the process is killed) and function workers.
_HARD_KILLED = """
import sys, threading, time
from pathlib import Path
from tools.ddblocal import DynamoDBLocal
from tools.local.functions import FunctionPool

started = {}
starter = threading.Thread(target=lambda: started.update(ddb=DynamoDBLocal().start(shared_db=True)))
starter.start()
starter.join()
pool = FunctionPool("Crasher", Path(sys.argv[1]), "app.lambda_handler", {"CRASHER_FILE": sys.argv[2]}, [],
                    concurrency=2, timeout=10)
pool.warm_up(2)
print(started["ddb"].pid, *pool.pids, flush=True)
time.sleep(300)
"""


def test_a_stack_killed_hard_takes_dynamodb_local_and_its_workers_with_it(tmp_path: Path) -> None:
    """DynamoDB Local lives in a session of its own (so Ctrl-C reaches only the stack, which
    stops it in order); when the stack itself was SIGKILLed (say after a SIGTERM that took
    too long), nothing stopped it and it ran on. Now it dies with the process that started
    it, however that dies, and so do the function workers."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HARD_KILLED, str(ROOT / "tests/fixtures/crasher"), str(tmp_path / "calls.jsonl")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        java, *workers = (int(pid) for pid in proc.stdout.readline().split())
        assert len(workers) == 2 and not _gone(java)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    try:
        _wait_for(lambda: _gone(java) and all(_gone(pid) for pid in workers), timeout=10)
    finally:  # a failure here must not leave them running for the rest of the suite
        for pid in (java, *workers):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
