"""Stock events (docs/events.md): which stream records mean which events, the template's
filters, and publishing once (moto EventBridge, observed through an SQS target)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from stockhold import runtime
from stockhold.event_store import event_sent_key
from stockhold.events import decide, event_id
from stockhold.store import from_av, to_av
from tests.helpers import load_function
from tools import template
from tools.local.context import LambdaContext
from tools.local.streams import StreamSource

THRESHOLD = 5  # LOW_STOCK_THRESHOLD's default
NOW_MS = 1_795_420_000_000


# --- records as Lambda delivers them ---------------------------------------------------


def stream_record(
    name: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    *,
    record_id: str = "rec-1",
    seq: str = "100",
    at_s: float | None = NOW_MS / 1000,
) -> dict[str, Any]:
    image = new or old or {}
    ddb: dict[str, Any] = {
        "Keys": to_av({"pk": image.get("pk", "PK"), "sk": image.get("sk", "SK")}),
        "SequenceNumber": seq,
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if at_s is not None:
        ddb["ApproximateCreationDateTime"] = at_s
    if old is not None:
        ddb["OldImage"] = to_av(old)
    if new is not None:
        ddb["NewImage"] = to_av(new)
    return {"eventID": record_id, "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": ddb}


def stock(available: int, *, threshold: int | None = None, unlimited: bool = False, **extra: Any) -> dict[str, Any]:
    reserved = extra.pop("reserved", 0)
    return {
        "pk": "STORE#demo#SKU#MUG",
        "sk": "STOCK#_",
        "type": "STOCK",
        "storeId": "demo",
        "sku": "MUG",
        "location": "_",
        "onHand": available + reserved,
        "reserved": reserved,
        "allocated": 0,
        "available": available,
        "lowStockThreshold": threshold,
        "unlimited": unlimited,
        "updatedAt": NOW_MS,
        "lastAction": "stock_adjusted",
        **extra,
    }


def hold(status: str = "ACTIVE", **extra: Any) -> dict[str, Any]:
    return {
        "pk": "STORE#demo#RES#res_1",
        "sk": "RESERVATION",
        "type": "RESERVATION",
        "storeId": "demo",
        "reservationId": "res_1",
        "cartId": "cart-1",
        "customerId": "u-9",
        "checkoutId": "chk_1",
        "status": status,
        "lines": [{"sku": "MUG", "quantity": 2, "held": True}],
        "createdAt": NOW_MS - 240_000,
        "expiresAt": NOW_MS + 60_000,
        "extensionsUsed": 0,
        "maxExtensions": 3,
        **extra,
    }


def order(**extra: Any) -> dict[str, Any]:
    return {
        "pk": "STORE#demo#ORD#ord_1",
        "sk": "ORDER",
        "type": "ORDER",
        "storeId": "demo",
        "orderId": "ord_1",
        "checkoutId": "chk_1",
        "reservationId": "res_1",
        "cartId": "cart-1",
        "customerId": "u-9",
        "lines": [{"sku": "MUG", "quantity": 2, "held": True}, {"sku": "EBOOK", "quantity": 1, "held": False}],
        "status": "PLACED",
        "paymentReference": "pay-1",
        "createdAt": NOW_MS,
        "updatedAt": NOW_MS,
        **extra,
    }


def kinds(record: dict[str, Any]) -> list[str]:
    return [e["detail-type"] for e in decide(record, THRESHOLD)]


# --- stock crossings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (10, 6, []),  # above the threshold both times
        (6, 5, ["StockLow"]),  # crosses to the threshold
        (5, 3, []),  # already low
        (3, 1, []),
        (3, 0, ["StockOut"]),
        (0, 0, []),  # still out (e.g. onHand raised while everything is held)
        (0, 4, ["StockBackIn"]),  # back in but low: one event, not two
        (10, 0, ["StockOut"]),  # straight to zero: out, not also low
        (0, 9, ["StockBackIn"]),
        (4, 8, []),  # recovering above the threshold is not an event
        (8, 8, []),  # a write that moves nothing
    ],
)
def test_each_crossing_emits_one_event_and_other_writes_none(before: int, after: int, expected: list[str]) -> None:
    assert kinds(stream_record("MODIFY", stock(before), stock(after))) == expected


def test_the_sequence_10_6_5_3_0_4_emits_low_out_back_in_once_each() -> None:
    levels = [10, 6, 5, 3, 0, 4]
    emitted = [
        k
        for i, (a, b) in enumerate(itertools.pairwise(levels))
        for k in kinds(stream_record("MODIFY", stock(a), stock(b), record_id=f"r{i}"))
    ]
    assert emitted == ["StockLow", "StockOut", "StockBackIn"]


@pytest.mark.parametrize(("available", "expected"), [(10, []), (5, ["StockLow"]), (3, ["StockLow"]), (0, ["StockOut"])])
def test_a_new_sku_counts_as_in_stock_and_not_low_before(available: int, expected: list[str]) -> None:
    assert kinds(stream_record("INSERT", None, stock(available))) == expected


def test_a_skus_own_threshold_replaces_the_default() -> None:
    assert kinds(stream_record("MODIFY", stock(6, threshold=2), stock(5, threshold=2))) == []
    assert kinds(stream_record("MODIFY", stock(3, threshold=2), stock(2, threshold=2))) == ["StockLow"]
    assert kinds(stream_record("MODIFY", stock(12, threshold=10), stock(10, threshold=10))) == ["StockLow"]
    # Threshold 0: never "low", only out.
    assert kinds(stream_record("MODIFY", stock(2, threshold=0), stock(1, threshold=0))) == []
    assert kinds(stream_record("MODIFY", stock(1, threshold=0), stock(0, threshold=0))) == ["StockOut"]


def test_raising_the_threshold_over_the_available_units_is_a_crossing() -> None:
    """Each image is judged by its own threshold: the SKU became low by this write."""
    assert kinds(stream_record("MODIFY", stock(6), stock(6, threshold=10))) == ["StockLow"]
    assert kinds(stream_record("MODIFY", stock(6, threshold=10), stock(6))) == []  # lowered: not an event


def test_unlimited_items_emit_nothing() -> None:
    assert kinds(stream_record("MODIFY", stock(3, unlimited=True), stock(0, unlimited=True))) == []
    assert kinds(stream_record("INSERT", None, stock(0, unlimited=True))) == []
    assert kinds(stream_record("MODIFY", stock(6), stock(0, unlimited=True))) == []
    # Made limited with nothing available: it is out now.
    assert kinds(stream_record("MODIFY", stock(0, unlimited=True), stock(0))) == ["StockOut"]


def test_a_stock_event_carries_the_counters_threshold_time_and_cause() -> None:
    old = stock(6)
    new = stock(5, reserved=1, lastAction="reservation_created", lastRef="res_9")
    (event,) = decide(stream_record("MODIFY", old, new, record_id="abc"), THRESHOLD)
    assert event["source"] == "stockhold"
    assert event["detail"] == {
        "eventId": event_id("abc", "StockLow"),
        "storeId": "demo",
        "sku": "MUG",
        "available": 5,
        "onHand": 6,
        "reserved": 1,
        "allocated": 0,
        "threshold": 5,
        "at": "2026-11-23T07:46:40.000Z",
        "cause": {"action": "reservation_created", "ref": "res_9"},
    }


def test_event_ids_are_stable_per_record_and_type() -> None:
    first = decide(stream_record("MODIFY", stock(1), stock(0), record_id="r-1"), THRESHOLD)
    again = decide(stream_record("MODIFY", stock(1), stock(0), record_id="r-1"), THRESHOLD)
    other = decide(stream_record("MODIFY", stock(1), stock(0), record_id="r-2"), THRESHOLD)
    assert first == again
    assert first[0]["detail"]["eventId"] != other[0]["detail"]["eventId"]
    assert event_id("r-1", "StockOut") != event_id("r-1", "StockLow")


# --- reservations and orders -------------------------------------------------------------


def test_an_expired_hold_emits_reservation_expired() -> None:
    new = hold("EXPIRED", expiredBy="timer", endedAt=NOW_MS, endReason="expired")
    (event,) = decide(stream_record("MODIFY", hold(), new, record_id="x"), THRESHOLD)
    assert event["detail-type"] == "ReservationExpired"
    assert event["detail"] == {
        "eventId": event_id("x", "ReservationExpired"),
        "storeId": "demo",
        "reservationId": "res_1",
        "cartId": "cart-1",
        "customerId": "u-9",
        "checkoutId": "chk_1",
        "items": [{"sku": "MUG", "quantity": 2}],
        "expiresAt": "2026-11-23T07:47:40.000Z",
        "expiredBy": "timer",
    }


def test_the_ttl_backstops_expired_insert_emits_reservation_expired() -> None:
    assert kinds(stream_record("INSERT", None, hold("EXPIRED", expiredBy="ttl"))) == ["ReservationExpired"]


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("INSERT", None, hold()),  # a new hold
        ("MODIFY", hold(), hold("CONFIRMED")),
        ("MODIFY", hold(), hold("RELEASED")),
        ("MODIFY", hold("EXPIRED"), hold("EXPIRED", purgeAt=1)),  # a later write to an ended hold
        ("MODIFY", hold(), hold(expiresAt=NOW_MS + 300_000, extensionsUsed=1)),  # extended
        ("REMOVE", hold(), None),
    ],
)
def test_other_reservation_writes_emit_nothing(name: str, old: Any, new: Any) -> None:
    assert kinds(stream_record(name, old, new)) == []


def test_warning_a_checkout_hold_emits_reservation_expiring_with_the_seconds_left() -> None:
    deadline = NOW_MS + 60_000
    warned = hold(expiresAt=deadline, warnedFor=deadline, lastAction="reservation_expiring")
    (event,) = decide(stream_record("MODIFY", hold(expiresAt=deadline), warned, record_id="w"), THRESHOLD)
    assert event["detail-type"] == "ReservationExpiring"
    assert event["detail"] == {
        "eventId": event_id("w", "ReservationExpiring"),
        "storeId": "demo",
        "reservationId": "res_1",
        "checkoutId": "chk_1",
        "cartId": "cart-1",
        "customerId": "u-9",
        "expiresAt": "2026-11-23T07:47:40.000Z",
        "secondsLeft": 60,
    }
    # The time of the warning write itself, when it carries one, beats the record's coarse time.
    at_write = hold(expiresAt=deadline, warnedFor=deadline, warnedAt=deadline - 58_400)
    (exact,) = decide(stream_record("MODIFY", hold(expiresAt=deadline), at_write), THRESHOLD)
    assert exact["detail"]["secondsLeft"] == 58


def test_an_extended_hold_is_warned_again_for_its_new_deadline_and_only_then() -> None:
    first, later = NOW_MS + 60_000, NOW_MS + 400_000
    warned = hold(expiresAt=first, warnedFor=first)
    extended = hold(expiresAt=later, warnedFor=first, extensionsUsed=1)
    rewarned = hold(expiresAt=later, warnedFor=later, extensionsUsed=1)
    assert kinds(stream_record("MODIFY", warned, extended)) == []  # the extension itself
    assert kinds(stream_record("MODIFY", extended, rewarned, at_s=(later - 60_000) / 1000)) == ["ReservationExpiring"]
    assert kinds(stream_record("MODIFY", rewarned, rewarned)) == []  # any later write


def test_orders_emit_order_created_on_insert_only() -> None:
    (event,) = decide(stream_record("INSERT", None, order(), record_id="o"), THRESHOLD)
    assert event["detail-type"] == "OrderCreated"
    assert event["detail"] == {
        "eventId": event_id("o", "OrderCreated"),
        "storeId": "demo",
        "orderId": "ord_1",
        "checkoutId": "chk_1",
        "reservationId": "res_1",
        "customerId": "u-9",
        "items": [{"sku": "MUG", "quantity": 2}, {"sku": "EBOOK", "quantity": 1}],
        "paymentReference": "pay-1",
        "createdAt": "2026-11-23T07:46:40.000Z",
    }
    assert kinds(stream_record("MODIFY", order(), order(status="FULFILLED"))) == []


@pytest.mark.parametrize(
    "item",
    [
        {"pk": "STORE#demo#AUDIT#SKU#MUG", "sk": "1#x", "type": "AUDIT", "storeId": "demo"},
        {"pk": "EVENT#evt_1", "sk": "SENT", "type": "EVENT_SENT", "storeId": "demo"},
        {"pk": "STORE#demo#CHK#chk_1", "sk": "CHECKOUT", "type": "CHECKOUT", "storeId": "demo", "status": "checkout"},
    ],
)
def test_other_items_emit_nothing(item: dict[str, Any]) -> None:
    assert kinds(stream_record("INSERT", None, item)) == []


# --- the template's filters agree with the decision ---------------------------------------


class _Nobody:
    name = "nobody"


def admitted(record: dict[str, Any]) -> bool:
    """Whether the change feed's FilterCriteria admit the record (it publishes events and writes the audit trail)."""
    props = template.functions()["ChangeFeedFunction"].events["TableChanges"]["Properties"]
    source = StreamSource(function=_Nobody(), streams_client=None, stream_arn="", properties=props)  # type: ignore[arg-type]
    return source.matches(record)


EVENTFUL = [
    stream_record("MODIFY", stock(6), stock(5)),
    stream_record("INSERT", None, stock(0)),
    stream_record("MODIFY", stock(0), stock(4)),
    stream_record("MODIFY", hold(), hold("EXPIRED")),
    stream_record("INSERT", None, hold("EXPIRED")),
    stream_record(
        "MODIFY",
        hold(),
        hold(warnedFor=NOW_MS + 60_000, lastAction="reservation_expiring"),
    ),
    stream_record("INSERT", None, order()),
]

# Admitted for the audit trail (the change feed's filter is the audit filter), but they mean
# no event: the records the events function's own filter kept out before the merge.
UNEVENTFUL = [
    stream_record("MODIFY", stock(3, unlimited=True), stock(0, unlimited=True)),
    stream_record("INSERT", None, hold()),
    stream_record("MODIFY", hold(), hold("RELEASED")),
    stream_record("MODIFY", hold(), hold("CONFIRMED")),
    stream_record("MODIFY", hold("EXPIRED"), hold("EXPIRED")),
    stream_record("MODIFY", hold(warnedFor=1), hold(warnedFor=1, lastAction="reservation_extended")),
    stream_record("MODIFY", order(), order(status="FULFILLED")),
    stream_record("MODIFY", {"type": "CHECKOUT"}, {"type": "CHECKOUT", "storeId": "d"}),
]

FILTERED_OUT = [
    stream_record("REMOVE", stock(3), None),
    stream_record("REMOVE", hold("EXPIRED"), None),
    stream_record("INSERT", None, {"pk": "STORE#d#AUDIT#SKU#M", "sk": "1", "type": "AUDIT", "storeId": "d"}),
    stream_record("INSERT", None, {"pk": "EVENT#evt_1", "sk": "SENT", "type": "EVENT_SENT", "storeId": "d"}),
    stream_record("INSERT", None, {"pk": "STORE#d#CART#c", "sk": "HOLD", "type": "CART_HOLD", "storeId": "d"}),
]


@pytest.mark.parametrize("record", EVENTFUL)
def test_every_record_that_means_an_event_passes_the_filters(record: dict[str, Any]) -> None:
    assert decide(record, THRESHOLD), "test data: this record should mean an event"
    assert admitted(record)


@pytest.mark.parametrize("record", UNEVENTFUL)
def test_admitted_records_that_cannot_mean_an_event_mean_none(record: dict[str, Any]) -> None:
    assert admitted(record), "test data: the change feed's filter admits this record (the audit trail needs it)"
    assert decide(record, THRESHOLD) == []


@pytest.mark.parametrize("record", FILTERED_OUT)
def test_records_that_are_neither_audited_nor_eventful_are_filtered_out(record: dict[str, Any]) -> None:
    assert not admitted(record)


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
    runtime.reset()

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
    runtime.reset()


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
    marker = runtime.dynamodb_client().get_item(
        TableName=runtime.services().settings.TABLE_NAME, Key=to_av(event_sent_key(got["detail"]["eventId"]))
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
                results.extend(runtime.events_client().put_events(Entries=[entry])["Entries"])
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
        not runtime.dynamodb_client()
        .get_item(
            TableName=runtime.services().settings.TABLE_NAME, Key=to_av(event_sent_key(event_id("refused", "StockOut")))
        )
        .get("Item")
    )
    # Lambda retries from the failed record (the whole batch, here); now EventBridge accepts.
    refusing.refuse.clear()
    assert handler({"Records": records}) == {"batchItemFailures": []}
    assert [e["detail-type"] for e in bus["received"]()] == ["StockOut", "StockBackIn"]  # StockLow not again


def _audit_keys() -> list[tuple[str, str]]:
    items = runtime.dynamodb_client().scan(TableName=runtime.services().settings.TABLE_NAME)["Items"]
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
