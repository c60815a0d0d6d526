"""The audit trail's rules: which change leaves which entry, the same for a record
delivered twice, and the template's stream filter. Pure: no AWS.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from typing import Any

import pytest

from stockhold.data.audit import Trail, actor_of, entries_for
from stockhold.data.schema import stream_change
from tests.audit_records import RID, T0, change, checkout, only, order, record, reservation, stock
from tools import template
from tools.local.streams import StreamSource
from tools.template import ROOT


def test_a_new_active_hold_is_reservation_created_at_its_creation_time() -> None:
    entry = only(entries_for(change("INSERT", reservation())))
    assert (entry.trail, entry.trail_id) == (Trail.RESERVATION, RID)
    assert entry.action == "reservation_created" and entry.at == T0
    assert entry.entity.model_dump() == {"type": "reservation", "id": RID}
    assert entry.before is None
    assert entry.after == {
        "status": "ACTIVE",
        "expiresAt": "2026-11-23T08:01:40.000Z",
        "extensionsUsed": 0,
        "items": [{"sku": "A-1", "quantity": 2}],
    }
    assert entry.actor == "storefront:5e1f0c2a"


def test_a_later_deadline_on_an_active_hold_is_reservation_extended_after_its_creation() -> None:
    old = reservation()
    new = reservation(expiresAt=T0 + 1_200_000, extensionsUsed=1, lastAction="reservation_extended")
    # The extension stamps no time of its own and the stream's time is whole seconds: it
    # still sorts after the creation it follows.
    entry = only(entries_for(change("MODIFY", new, old, approximate_at=T0 - 500)))
    assert entry.action == "reservation_extended"
    assert entry.at > T0
    assert entry.before is not None and entry.after is not None
    assert (entry.before["extensionsUsed"], entry.after["extensionsUsed"]) == (0, 1)
    assert entry.before["expiresAt"] < entry.after["expiresAt"]


@pytest.mark.parametrize(
    ("status", "action", "extra"),
    [
        ("CONFIRMED", "reservation_confirmed", {"orderId": "o-1", "endReason": "confirmed"}),
        ("RELEASED", "reservation_released", {"endReason": "cancelled"}),
        ("EXPIRED", "reservation_expired", {"endReason": "expired", "expiredBy": "timer"}),
    ],
)
def test_a_hold_leaving_active_records_how_it_ended(status: str, action: str, extra: dict[str, Any]) -> None:
    old = reservation()
    new = reservation(status=status, endedAt=T0 + 60_000, sweepPk=None, sweepSk=None, lastAction=None, **extra)
    entries = entries_for(change("MODIFY", new, old))
    entry = entries[0]
    assert entry.action == action
    assert entry.at == T0 + 60_000  # endedAt: the write's own time
    assert entry.before is not None and entry.before["status"] == "ACTIVE"
    assert entry.after is not None and entry.after["status"] == status
    assert entry.reason == extra["endReason"]  # no lastReason yet: the end reason


def test_a_confirmed_hold_is_also_listed_on_its_order_and_checkout_trails() -> None:
    new = reservation(status="CONFIRMED", endedAt=T0 + 5, orderId="o-1", checkoutId="chk_1", lastRef="o-1")
    entries = entries_for(change("MODIFY", new, reservation(checkoutId="chk_1")))
    assert [(e.trail, e.trail_id) for e in entries] == [
        (Trail.RESERVATION, RID),
        (Trail.ORDER, "o-1"),
        (Trail.CHECKOUT, "chk_1"),
    ]
    assert {e.action for e in entries} == {"reservation_confirmed"} and {e.ref for e in entries} == {"o-1"}
    assert len({e.record_id for e in entries}) == 1


def test_the_ttl_backstops_re_put_is_reservation_expired() -> None:
    new = reservation(
        status="EXPIRED",
        endedAt=T0 + 4_000_000,
        endReason="expired",
        expiredBy="ttl",
        sweepPk=None,
        sweepSk=None,
        lastAction=None,
        lastActor=None,
    )
    entry = only(entries_for(change("INSERT", new)))
    assert entry.action == "reservation_expired"
    assert entry.at == T0 + 4_000_000  # the re-put's endedAt, not the original createdAt
    assert entry.actor == "system:ttl"  # no lastActor: the path that expired it


def test_marking_a_hold_as_warned_leaves_no_entry() -> None:
    old = reservation()
    new = reservation(warnedFor=T0 + 900_000, lastAction="reservation_expiring", lastActor="system")
    assert entries_for(change("MODIFY", new, old)) == []


def test_removes_leave_no_entry_whoever_made_them() -> None:
    ttl = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert entries_for(stream_change(record("REMOVE", None, reservation(), userIdentity=ttl))) == []
    ended = reservation(status="RELEASED", endedAt=T0 + 1)
    assert entries_for(change("REMOVE", None, ended)) == []


def test_a_modify_that_changes_only_bookkeeping_leaves_no_entry() -> None:
    old = stock()
    assert entries_for(change("MODIFY", stock(sweepPk="STOCK#2", purgeAt=5), old)) == []


# --- stock, checkouts, orders -------------------------------------------------------------------


def test_a_new_stock_item_is_stock_set_with_its_counters() -> None:
    entry = only(entries_for(change("INSERT", stock(lastAction=None))))
    assert (entry.trail, entry.trail_id) == (Trail.SKU, "A-1")
    assert entry.action == "stock_set" and entry.before is None
    assert entry.entity.model_dump() == {"type": "stock", "id": "A-1"}
    assert entry.after == {
        "onHand": 10,
        "reserved": 0,
        "allocated": 0,
        "available": 10,
        "unlimited": False,
        "lowStockThreshold": None,
    }


def test_a_split_hold_records_the_cells_each_line_took_from_and_its_backorders() -> None:
    lines = [
        {
            "sku": "A-1",
            "quantity": 5,
            "held": True,
            "allocations": [{"locationId": "leeds", "quantity": 3}, {"locationId": "default", "quantity": 2}],
            "backordered": 1,
        },
        {"sku": "B-2", "quantity": 1, "held": True},
    ]
    entry = only(entries_for(change("INSERT", reservation(lines=lines))))
    assert entry.after is not None
    assert entry.after["items"] == [
        {
            "sku": "A-1",
            "quantity": 5,
            "allocations": [{"locationId": "leeds", "quantity": 3}, {"locationId": "default", "quantity": 2}],
            "backordered": 1,
        },
        {"sku": "B-2", "quantity": 1},
    ]


def test_a_cell_at_another_location_names_it_and_a_skus_limits_are_recorded() -> None:
    leeds = only(entries_for(change("INSERT", stock(sk="STOCK#leeds", location="leeds", lastAction="stock_set"))))
    assert leeds.after is not None and leeds.after["locationId"] == "leeds"
    head = only(entries_for(change("MODIFY", stock(backorderLimit=4, maxPerCustomer=2), stock())))
    assert head.before is not None and head.after is not None
    assert "locationId" not in head.after and "backorderLimit" not in head.before
    assert (head.after["backorderLimit"], head.after["maxPerCustomer"]) == (4, 2)


def test_a_stock_move_names_its_action_and_the_hold_that_caused_it() -> None:
    old = stock()
    new = stock(
        reserved=2, available=8, updatedAt=T0 + 10, lastAction="reservation_created", lastRef=RID, lastActor="x:1"
    )
    entry = only(entries_for(change("MODIFY", new, old)))
    assert (entry.action, entry.ref, entry.at, entry.actor) == ("reservation_created", RID, T0 + 10, "x:1")
    assert entry.before is not None and entry.after is not None
    assert (entry.before["available"], entry.after["available"]) == (10, 8)
    assert (entry.before["reserved"], entry.after["reserved"]) == (0, 2)


def test_an_adjustment_keeps_its_reason_and_a_stock_write_without_last_action_is_stock_changed() -> None:
    adjusted = stock(onHand=8, available=8, updatedAt=T0 + 1, lastAction="stock_adjusted", lastReason="damaged")
    entry = only(entries_for(change("MODIFY", adjusted, stock())))
    assert (entry.action, entry.reason) == ("stock_adjusted", "damaged")
    bare = stock(onHand=8, available=8, updatedAt=T0 + 1, lastAction=None)
    assert only(entries_for(change("MODIFY", bare, stock(lastAction=None)))).action == "stock_changed"


def test_checkout_writes_record_a_small_projection_without_personal_data() -> None:
    started = only(entries_for(change("INSERT", checkout())))
    assert (started.trail, started.trail_id, started.action) == (Trail.CHECKOUT, "chk_1", "checkout_started")
    assert started.after == {
        "status": "checkout",
        "reservationId": RID,
        "items": [{"sku": "A-1", "quantity": 2}],
    }
    done = checkout(status="completed", orderId="o-1", updatedAt=T0 + 9, version=2, lastAction=None)
    entry = only(entries_for(change("MODIFY", done, checkout())))
    assert entry.action == "checkout_updated" and entry.at == T0 + 9
    assert entry.before is not None and entry.after is not None
    assert (entry.before["status"], entry.after["status"], entry.after["orderId"]) == ("checkout", "completed", "o-1")
    assert "shippingAddress" not in json.dumps([entry.before, entry.after])


def test_order_writes_record_their_action() -> None:
    created = only(entries_for(change("INSERT", order())))
    assert (created.trail, created.trail_id, created.action) == (Trail.ORDER, "o-1", "order_created")
    fulfilled = order(status="FULFILLED", updatedAt=T0 + 7, lastAction="order_fulfilled", lastActor="admin:1a2b3c4d")
    entry = only(entries_for(change("MODIFY", fulfilled, order())))
    assert (entry.action, entry.actor, entry.at) == ("order_fulfilled", "admin:1a2b3c4d", T0 + 7)
    assert entry.before is not None and entry.after is not None
    assert (entry.before["status"], entry.after["status"]) == ("PLACED", "FULFILLED")
    bare = order(status="CANCELLED", updatedAt=T0 + 8, lastAction=None)
    assert only(entries_for(change("MODIFY", bare, order()))).action == "order_updated"


def test_items_that_are_not_audited_leave_no_entry() -> None:
    audit = {"pk": "STORE#demo#AUDIT#sku#A-1", "sk": "x", "type": "AUDIT", "storeId": "demo", "at": T0}
    cart = {"pk": "STORE#demo#CART#c-1", "sk": "HOLD", "type": "CART_HOLD", "storeId": "demo"}
    assert entries_for(change("INSERT", audit)) == [] and entries_for(change("INSERT", cart)) == []


def test_the_actor_falls_back_to_the_ttl_service_then_unknown() -> None:
    ttl = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    by_ttl = stream_change(record("MODIFY", stock(lastActor=None), stock(), userIdentity=ttl))
    assert by_ttl.by_ttl_service and actor_of(by_ttl) == "system:ttl"
    assert actor_of(change("MODIFY", stock(lastActor=None), stock())) == "unknown"


def test_the_same_record_always_maps_to_the_same_entries() -> None:
    raw = json.loads((ROOT / "events/change_feed-reservation-confirmed.json").read_text())["Records"][0]
    first, again = entries_for(stream_change(raw)), entries_for(stream_change(copy.deepcopy(raw)))
    assert first == again and first[0].record_id == raw["eventID"]
    assert first[0].action == "reservation_confirmed" and first[0].ref == "o-1"


# --- the template's event source -----------------------------------------------------------------


def _audit_event_source() -> dict[str, Any]:
    """The change feed's event source: it writes the audit trail (and publishes events, tests/unit/test_events.py)."""
    props: dict[str, Any] = template.functions()["ChangeFeedFunction"].events["TableChanges"]["Properties"]
    return props


def test_the_stream_filter_admits_writes_of_audited_items_and_never_audit_items() -> None:
    source = StreamSource(
        function=SimpleNamespace(name="change_feed"),  # type: ignore[arg-type]
        streams_client=None,
        stream_arn="",
        properties=_audit_event_source(),
    )
    admitted = [
        record("INSERT", reservation()),
        record("MODIFY", reservation(status="RELEASED"), reservation()),
        record("INSERT", stock()),
        record("MODIFY", checkout(status="completed"), checkout()),
        record("INSERT", order()),
    ]
    assert all(source.matches(r) for r in admitted)
    audit_item = {"pk": "STORE#demo#AUDIT#sku#A-1", "sk": "x", "type": "AUDIT", "storeId": "demo"}
    refused = [
        record("INSERT", audit_item),  # its own writes: no feedback loop
        record("REMOVE", None, audit_item),  # their retention purge
        record("REMOVE", None, reservation()),  # TTL or purge: no entry, so no invocation
        record("INSERT", {"pk": "STORE#demo#CART#c-1", "sk": "HOLD", "type": "CART_HOLD"}),
        record("INSERT", {"pk": "EVENT#e1", "sk": "SENT", "type": "EVENT_SENT"}),
    ]
    assert not any(source.matches(r) for r in refused)


def test_the_stream_trigger_retries_boundedly_and_parks_failures() -> None:
    props = _audit_event_source()
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert 0 <= int(props["MaximumRetryAttempts"]) <= 20
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["StreamFailureQueue", "Arn"]}
    assert template.parameter_defaults()["AuditRetentionDays"] == "90"


# --- the stream function, on moto -----------------------------------------------------------------
