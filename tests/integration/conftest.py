"""Integration tests: the real code against DynamoDB Local (real transactions, conditions, TTL, streams).

One DynamoDB Local per test worker; every test gets its own freshly created tables
(from template.yaml), so tests never see each other's data.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
import pytest

from stockhold import wiring
from stockhold.data import schema
from stockhold.domain.errors import StockholdError
from stockhold.wiring import Services, services
from tools import template
from tools.ddblocal import DynamoDBLocal
from tools.local.motoserver import MotoServer
from tools.local.streams import StreamSource, lambda_record
from tools.template import create_tables

pytestmark = pytest.mark.integration
_counter = itertools.count()
T = TypeVar("T")


@pytest.fixture(autouse=True)
def few_sweep_shards(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reconciliation reads every key of the Sweep index (2 x 256 + 512 Queries), which
    is little on AWS but seconds on DynamoDB Local, and the races here reconcile hundreds
    of times. Writers and readers take the counts from the schema at call time, so 8 keys
    each is the same design on a smaller scale. Tests marked ``real_sweep_shards``, the
    e2e tests and the bench run the real counts."""
    if request.node.get_closest_marker("real_sweep_shards") is None:
        monkeypatch.setattr(schema, "HOLD_SHARDS", 8)
        monkeypatch.setattr(schema, "CELL_SHARDS", 8)


@pytest.fixture(scope="session")
def ddb_local() -> Iterator[DynamoDBLocal]:
    server = DynamoDBLocal().start(shared_db=True)
    yield server
    server.stop()


@pytest.fixture
def local(ddb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """Services wired to DynamoDB Local with tables of their own."""
    suffix = f"{next(_counter)}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", ddb_local.endpoint_url)
    client = boto3.client("dynamodb", endpoint_url=ddb_local.endpoint_url)
    names = create_tables(
        client, {"StockholdTable": f"stockhold-{suffix}", "IdempotencyTable": f"idempotency-{suffix}"}
    )
    monkeypatch.setenv("TABLE_NAME", names["StockholdTable"])
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", names["IdempotencyTable"])
    wiring.reset()
    yield services()
    wiring.reset()
    for name in names.values():
        client.delete_table(TableName=name)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    """EventBridge, SQS and Step Functions (moto), as the local stack serves them."""
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bus(local: Services, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A bus of the test's own on the moto server, with an SQS queue subscribed to stockhold's events."""
    name = f"stockhold-it-{uuid.uuid4().hex[:8]}"
    events, sqs = moto_server.client("events"), moto_server.client("sqs")
    events.create_event_bus(Name=name)
    queue = sqs.create_queue(QueueName=f"{name}-subscriber")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="subscriber", EventBusName=name, EventPattern=json.dumps({"source": ["stockhold"]}))
    events.put_targets(Rule="subscriber", EventBusName=name, Targets=[{"Id": "q", "Arn": arn}])
    monkeypatch.setenv("EVENT_BUS_NAME", name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", moto_server.endpoint)
    wiring.reset()

    def received() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for m in got:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    yield {"received": received, "server": moto_server}
    events.remove_targets(Rule="subscriber", EventBusName=name, Ids=["q"])
    events.delete_rule(Name="subscriber", EventBusName=name)
    events.delete_event_bus(Name=name)
    sqs.delete_queue(QueueUrl=queue)


def stock_items(svc: Services) -> list[dict[str, Any]]:
    client = wiring.dynamodb_client()
    paginator = client.get_paginator("scan")
    out = []
    for page in paginator.paginate(
        TableName=svc.settings.TABLE_NAME,
        FilterExpression="#t = :s",
        ExpressionAttributeNames={"#t": "type"},
        ExpressionAttributeValues={":s": {"S": "STOCK"}},
        ConsistentRead=True,
    ):
        out.extend({k: int(v["N"]) if "N" in v else v for k, v in item.items()} for item in page["Items"])
    return out


def assert_invariants(svc: Services) -> None:
    """available + reserved + allocated == onHand, all >= 0, for every SKU."""
    for item in stock_items(svc):
        counters = {k: item[k] for k in ("onHand", "reserved", "allocated", "available")}
        assert all(v >= 0 for v in counters.values()), counters
        assert counters["available"] + counters["reserved"] + counters["allocated"] == counters["onHand"], counters


def stream_records(svc: Services) -> list[dict[str, Any]]:
    """Every record of the table's stream so far, as Lambda delivers them."""
    client = wiring.dynamodb_client()
    arn = client.describe_table(TableName=svc.settings.TABLE_NAME)["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", endpoint_url=client.meta.endpoint_url)
    out: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while it:
            page = streams.get_records(ShardIterator=it)
            out.extend(page["Records"])
            if not page["Records"]:
                break
            it = page.get("NextShardIterator")
    return [lambda_record(r) for r in out]


class _NoFunction:
    name = "none"


def event_source(function: str, event: str) -> StreamSource:
    """The template's stream event source of ``function`` (its FilterCriteria), for matching only."""
    props = template.functions()[function].events[event]["Properties"]
    return StreamSource(function=_NoFunction(), streams_client=None, stream_arn="", properties=props)  # type: ignore[arg-type]


def hold_timer_on(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """The hold timer's real ASL as a state machine of the moto server, run by its
    interpreter, with the services' HOLD_TIMER_ARN and Step Functions endpoint set to it:
    (its client, its ARN). Lambda tasks go to whatever ``tools.lambda_hook`` dispatches."""
    # Per test: moto's state is process-wide, and other tests' mock_aws may have reset it.
    server.configure({"stepfunctions": {"execute_state_machine": True}})
    sfn = server.client("stepfunctions")
    asl = (template.ROOT / "statemachine/hold_timer.asl.json").read_text()
    asl = asl.replace("${ExpireFunctionArn}", "arn:aws:lambda:us-east-1:000000000000:function:ExpireFunction")
    arn = sfn.create_state_machine(
        name=f"HoldTimer-{uuid.uuid4().hex[:8]}",
        definition=asl,
        roleArn="arn:aws:iam::000000000000:role/timer",
        type="STANDARD",
    )["stateMachineArn"]
    monkeypatch.setenv("HOLD_TIMER_ARN", arn)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", server.endpoint)
    wiring.reset()
    return sfn, arn


def hold_stream_source() -> StreamSource:
    return event_source("HoldStreamFunction", "HoldChanges")


def change_feed_source() -> StreamSource:
    return event_source("ChangeFeedFunction", "TableChanges")


def race(n: int, work: Callable[[int], T]) -> list[T | StockholdError]:
    """Run ``work(i)`` for i in range(n) on n threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T | StockholdError:
        barrier.wait()
        try:
            return work(i)
        except StockholdError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))
