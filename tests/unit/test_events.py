"""Stock events (docs/events.md): which stream records mean which events, and the template's
filters. Pure: no AWS.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from stockhold.data.events import event_id
from tests.event_records import NOW_MS, THRESHOLD, decide, hold, kinds, order, stock, stream_record
from tools import template
from tools.local.streams import StreamSource

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


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (0, -2, []),  # taking backorders: still out, not "back in"
        (1, -1, ["StockOut"]),  # straight past zero into backorders
        (-2, 0, []),  # backorders filled: still nothing to sell
        (-1, 3, ["StockBackIn"]),
    ],
)
def test_a_sku_taking_backorders_is_out_below_zero_too(before: int, after: int, expected: list[str]) -> None:
    assert kinds(stream_record("MODIFY", stock(before, backorderLimit=5), stock(after, backorderLimit=5))) == expected


@pytest.mark.parametrize("extra", [{"location": "leeds", "sk": "STOCK#leeds"}, {"cells": {"leeds"}}])
def test_a_cell_of_a_sku_kept_in_several_places_is_judged_on_the_total_not_here(extra: dict[str, Any]) -> None:
    """stockhold.data.stock_totals reads the SKU's cells; one cell's images decide nothing."""
    assert kinds(stream_record("MODIFY", stock(1, **extra), stock(0, **extra))) == []


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
