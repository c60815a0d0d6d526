"""Stock events published once per record, failures retried (moto EventBridge, observed
through an SQS target; the change feed's handler).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from stockhold import wiring
from stockhold.data.event_store import event_sent_key
from stockhold.data.events import event_id
from stockhold.data.schema import from_av, to_av
from tests.event_records import hold, stock, stream_record
from tests.helpers import load_function
from tools import template
from tools.local.context import LambdaContext

# --- publishing: once per record, failures retried ----------------------------------------


@pytest.fixture
def bus(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A moto bus whose every event lands in an SQS queue (what a subscriber would see)."""
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name="stockhold-test-events")
    queue = sqs.create_queue(QueueName="subscriber")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="all-stockhold", EventBusName="stockhold-test-events", EventPattern=json.dumps({"source": ["stockhold"]})
    )
    events.put_targets(Rule="all-stockhold", EventBusName="stockhold-test-events", Targets=[{"Id": "q", "Arn": arn}])
    monkeypatch.setenv("EVENT_BUS_NAME", "stockhold-test-events")
    wiring.reset()

    def received() -> list[dict[str, Any]]:
        out = []
        while True:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for m in got:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    yield {"received": received}
    wiring.reset()


def handler(event: dict[str, Any]) -> Any:
    return load_function("change_feed").lambda_handler(event, LambdaContext())


def test_a_record_is_published_once_however_often_it_is_delivered(bus: dict[str, Any]) -> None:
    record = stream_record("MODIFY", stock(6), stock(5), record_id="once", seq="1")
    assert handler({"Records": [record]}) == {"batchItemFailures": []}
    (got,) = bus["received"]()
    assert got["source"] == "stockhold" and got["detail-type"] == "StockLow"
    assert got["detail"]["eventId"] == event_id("once", "StockLow") and got["detail"]["available"] == 5
    # Redelivered (a retry of its batch, a replay): nothing more reaches the bus.
    assert handler({"Records": [record]}) == {"batchItemFailures": []}
    assert handler({"Records": [record, record]}) == {"batchItemFailures": []}
    assert bus["received"]() == []
    marker = wiring.dynamodb_client().get_item(
        TableName=wiring.services().settings.TABLE_NAME, Key=to_av(event_sent_key(got["detail"]["eventId"]))
    )["Item"]
    item = from_av(marker)
    assert item["type"] == "EVENT_SENT" and item["storeId"] == "demo"
    assert 86000 < item["purgeAt"] - item["sentAt"] // 1000 <= 86400


def test_a_batch_publishes_only_its_crossings_in_order(bus: dict[str, Any]) -> None:
    levels = [10, 6, 5, 3, 0, 4]
    records = [
        stream_record("MODIFY", stock(a), stock(b), record_id=f"r{i}", seq=str(i + 1))
        for i, (a, b) in enumerate(itertools.pairwise(levels))
    ]
    assert handler({"Records": records}) == {"batchItemFailures": []}
    assert [e["detail-type"] for e in bus["received"]()] == ["StockLow", "StockOut", "StockBackIn"]


class _RefusingEvents:
    """PutEvents refusing entries of some types with FailedEntryCount (as EventBridge does
    when throttled internally); other entries go to the real (moto) bus."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.calls: list[list[str]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([e["DetailType"] for e in Entries])
        results, failed = [], 0
        for entry in Entries:
            if entry["DetailType"] in self.refuse:
                failed += 1
                results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "try again"})
            else:
                results.extend(wiring.events_client().put_events(Entries=[entry])["Entries"])
        return {"FailedEntryCount": failed, "Entries": results}


def test_refused_entries_fail_the_record_so_it_is_retried_and_then_published_once(
    bus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_function("change_feed")
    records = [
        stream_record("MODIFY", stock(6), stock(5), record_id="ok", seq="6"),
        stream_record("MODIFY", stock(1), stock(0), record_id="refused", seq="7"),
        stream_record("MODIFY", stock(0), stock(3), record_id="after", seq="8"),
    ]
    refusing = _RefusingEvents({"StockOut"})
    monkeypatch.setattr(app, "events_client", lambda: refusing)
    out = handler({"Records": records})
    # The refused record and the one after it (not tried: events leave in stream order).
    assert out == {"batchItemFailures": [{"itemIdentifier": "7"}, {"itemIdentifier": "8"}]}
    assert refusing.calls == [["StockLow"], ["StockOut"]]
    assert [e["detail-type"] for e in bus["received"]()] == ["StockLow"]
    assert (
        not wiring.dynamodb_client()
        .get_item(
            TableName=wiring.services().settings.TABLE_NAME, Key=to_av(event_sent_key(event_id("refused", "StockOut")))
        )
        .get("Item")
    )
    # Lambda retries from the failed record (the whole batch, here); now EventBridge accepts.
    refusing.refuse.clear()
    assert handler({"Records": records}) == {"batchItemFailures": []}
    assert [e["detail-type"] for e in bus["received"]()] == ["StockOut", "StockBackIn"]  # StockLow not again


def _audit_keys() -> list[tuple[str, str]]:
    items = wiring.dynamodb_client().scan(TableName=wiring.services().settings.TABLE_NAME)["Items"]
    return sorted((i["pk"]["S"], i["sk"]["S"]) for i in items if i["type"]["S"] == "AUDIT")


def test_a_record_whose_publish_failed_is_retried_whole_and_its_audit_entry_is_written_once(
    bus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change feed writes a record's audit entries first, then publishes: a refused publish
    fails the record, and its retry finds the entries written (a no-op) and publishes."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    app = load_function("change_feed")
    refusing = _RefusingEvents({"StockOut"})
    monkeypatch.setattr(app, "events_client", lambda: refusing)
    record = stream_record("MODIFY", stock(1), stock(0), record_id="out", seq="1")
    with pytest.raises(BatchProcessingError):
        handler({"Records": [record]})
    written = _audit_keys()
    assert len(written) == 1 and written[0][0] == "STORE#demo#AUDIT#sku#MUG"
    assert bus["received"]() == []
    refusing.refuse.clear()
    assert handler({"Records": [record]}) == {"batchItemFailures": []}
    assert _audit_keys() == written  # the same entry, not a second one
    assert [e["detail-type"] for e in bus["received"]()] == ["StockOut"]


def test_a_batch_whose_first_record_is_refused_fails_whole_so_lambda_bisects_it(
    bus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    app = load_function("change_feed")
    monkeypatch.setattr(app, "events_client", lambda: _RefusingEvents({"StockOut"}))
    records = [
        stream_record("MODIFY", stock(1), stock(0), record_id="first", seq="1"),
        stream_record("MODIFY", stock(6), stock(5), record_id="second", seq="2"),
    ]
    with pytest.raises(BatchProcessingError):
        handler({"Records": records})
    assert bus["received"]() == []


def test_a_batch_with_nothing_eventful_publishes_nothing(bus: dict[str, Any]) -> None:
    records = [
        stream_record("MODIFY", stock(10), stock(9), record_id="n1", seq="1"),
        stream_record("MODIFY", hold(), hold("RELEASED"), record_id="n2", seq="2"),
    ]
    assert handler({"Records": records}) == {"batchItemFailures": []}
    assert bus["received"]() == []


def test_the_sample_event_publishes_a_stock_low(bus: dict[str, Any]) -> None:
    event = json.loads((template.ROOT / "events/change_feed-stock-low.json").read_text())
    assert handler(event) == {"batchItemFailures": []}
    assert [e["detail-type"] for e in bus["received"]()] == ["StockLow"]
