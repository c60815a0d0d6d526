"""The audit trail: which change leaves which entry, written once however often a stream
record is delivered, and read back through GET /audit (admin, newest first, paginated).

Stream images are built by hand here (moto's streams carry no userIdentity and apply no
filters); tests/integration/test_audit_on_dynamodb_local.py feeds real stream records.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from stockhold import runtime
from stockhold.audit import AuditEntry, StreamChange, Trail, actor_of, entries_for
from stockhold.audit_store import AuditStore, audit_store, encode_token, stream_change, trail_pk
from stockhold.runtime import services
from stockhold.store import to_av
from tests.helpers import ApiClient, ApiResponse, load_function
from tools import template
from tools.local.context import LambdaContext
from tools.local.streams import StreamSource
from tools.template import ROOT

T0 = 1_795_420_000_000  # epoch ms
RID = "res_abc"


# --- images -----------------------------------------------------------------------------------


def reservation(**over: Any) -> dict[str, Any]:
    item = {
        "pk": f"STORE#demo#RES#{RID}",
        "sk": "RESERVATION",
        "type": "RESERVATION",
        "storeId": "demo",
        "reservationId": RID,
        "cartId": "c-1",
        "customerId": "u-9",
        "status": "ACTIVE",
        "lines": [{"sku": "A-1", "quantity": 2, "held": True}],
        "createdAt": T0,
        "expiresAt": T0 + 900_000,
        "extensionsUsed": 0,
        "maxExtensions": 3,
        "purgeAt": (T0 + 900_000) // 1000 + 3600,
        "sweepPk": "HOLD#1",
        "sweepSk": f"{T0 + 900_000:015d}",
        "lastAction": "reservation_created",
        "lastActor": "storefront:5e1f0c2a",
    }
    item.update(over)
    return {k: v for k, v in item.items() if v is not None}


def stock(**over: Any) -> dict[str, Any]:
    item = {
        "pk": "STORE#demo#SKU#A-1",
        "sk": "STOCK#_",
        "type": "STOCK",
        "storeId": "demo",
        "sku": "A-1",
        "location": "_",
        "onHand": 10,
        "reserved": 0,
        "allocated": 0,
        "available": 10,
        "unlimited": False,
        "updatedAt": T0,
        "lastAction": "stock_set",
        "lastActor": "admin:1a2b3c4d",
    }
    item.update(over)
    return {k: v for k, v in item.items() if v is not None}


def checkout(**over: Any) -> dict[str, Any]:
    item = {
        "pk": "STORE#demo#CHK#chk_1",
        "sk": "CHECKOUT",
        "type": "CHECKOUT",
        "storeId": "demo",
        "checkoutId": "chk_1",
        "cartId": "c-1",
        "status": "checkout",
        "items": [{"sku": "A-1", "quantity": 2}],
        "reservationId": RID,
        "shippingAddress": {"line1": "1 Main St", "city": "Springfield"},
        "paymentMethod": "card",
        "createdAt": T0,
        "updatedAt": T0,
        "version": 1,
        "lastAction": "checkout_started",
        "lastActor": "storefront:5e1f0c2a",
    }
    item.update(over)
    return {k: v for k, v in item.items() if v is not None}


def order(**over: Any) -> dict[str, Any]:
    item = {
        "pk": "STORE#demo#ORD#o-1",
        "sk": "ORDER",
        "type": "ORDER",
        "storeId": "demo",
        "orderId": "o-1",
        "checkoutId": "chk_1",
        "reservationId": RID,
        "cartId": "c-1",
        "lines": [{"sku": "A-1", "quantity": 2, "held": True}],
        "status": "PLACED",
        "paymentReference": "pay-1",
        "createdAt": T0,
        "updatedAt": T0,
        "lastAction": "order_created",
        "lastActor": "storefront:5e1f0c2a",
    }
    item.update(over)
    return {k: v for k, v in item.items() if v is not None}


def change(
    event: str, new: dict[str, Any] | None, old: dict[str, Any] | None = None, rid: str = "ev-1", **kw: Any
) -> StreamChange:
    return StreamChange(record_id=rid, event_name=event, new=new, old=old, **kw)  # type: ignore[arg-type]


def record(
    event: str, new: dict[str, Any] | None, old: dict[str, Any] | None = None, event_id: str = "ev-1", **extra: Any
) -> dict[str, Any]:
    """A stream record as Lambda delivers it."""
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": T0 // 1000,
        "Keys": to_av({"pk": (new or old or {})["pk"], "sk": (new or old or {})["sk"]}),
        "SequenceNumber": str(abs(hash(event_id)) % 10**12),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        ddb["NewImage"] = to_av(new)
    if old is not None:
        ddb["OldImage"] = to_av(old)
    return {"eventID": event_id, "eventName": event, "eventSource": "aws:dynamodb", "dynamodb": ddb, **extra}


def only(entries: list[AuditEntry]) -> AuditEntry:
    assert len(entries) == 1, entries
    return entries[0]


# --- reservations -----------------------------------------------------------------------------


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


def _audit_items() -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    items = client.scan(TableName=services().settings.TABLE_NAME)["Items"]
    return [i for i in items if i["type"]["S"] == "AUDIT"]


@pytest.fixture
def feed(aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The change feed's handler (these records mean no event: nothing reaches the bus)."""
    monkeypatch.setenv("EVENT_BUS_NAME", "stockhold-test-events")
    runtime.reset()
    return load_function("change_feed").lambda_handler


def test_a_record_processed_twice_leaves_one_entry(feed: Any) -> None:
    handler = feed
    event = json.loads((ROOT / "events/change_feed-reservation-confirmed.json").read_text())
    assert handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert handler(copy.deepcopy(event), LambdaContext()) == {"batchItemFailures": []}
    items = _audit_items()
    # one entry on the reservation's trail and one on its order's: the confirmation, once each
    assert sorted(i["pk"]["S"] for i in items) == [
        "STORE#demo#AUDIT#order#o-1",
        "STORE#demo#AUDIT#reservation#res_agrappybnkehtqauswxf474dvq",
    ]
    assert {i["sk"]["S"] for i in items} == {"001795420300000#7f6e5d4c3b2a19081726354453627180"}


def test_entries_are_kept_for_the_retention_period(aws: None) -> None:
    settings = services().settings
    assert settings.AUDIT_RETENTION_DAYS == 90
    store = AuditStore(boto3.client("dynamodb"), settings.TABLE_NAME, retention_days=90, clock=lambda: 1_000_000.5)
    assert store.put(entries_for(change("INSERT", stock()))) == 1
    assert store.put(entries_for(change("INSERT", stock()))) == 0  # already there
    (item,) = _audit_items()
    assert int(item["purgeAt"]["N"]) == 1_000_000 + 90 * 86400


def test_a_bad_record_fails_and_the_rest_of_the_batch_is_still_written(feed: Any) -> None:
    handler = feed
    before = record("INSERT", stock(), event_id="before")
    bad = record("INSERT", stock(), event_id="bad")
    del bad["dynamodb"]["NewImage"]["sku"]  # a STOCK image without its SKU
    after = record("INSERT", stock(), event_id="after")
    out = handler({"Records": [before, bad, after]}, LambdaContext())
    # Lambda retries from the bad record; the one after it is failed too (its events, if it had
    # any, must not leave before the bad record's), but its audit entry is written already.
    assert out == {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in (bad, after)]}
    assert sorted(i["sk"]["S"].split("#")[1] for i in _audit_items()) == ["after", "before"]
    # Lambda bisects the retried batch until the bad record fails alone; the other one's write is then a no-op.
    assert handler({"Records": [after]}, LambdaContext()) == {"batchItemFailures": []}
    assert len(_audit_items()) == 2


# --- GET /audit --------------------------------------------------------------------------------


def _write_trail(n: int, sku: str = "P-1", store: str = "demo") -> list[str]:
    """n stock changes of one SKU, a second apart; returns their record ids, oldest first."""
    ids = []
    for i in range(n):
        new = stock(pk=f"STORE#{store}#SKU#{sku}", storeId=store, sku=sku, onHand=i, available=i, updatedAt=T0 + i)
        ids.append(f"rec-{i:02d}")
        audit_store().put(entries_for(change("MODIFY" if i else "INSERT", new, None, rid=ids[-1])))
    return ids


def assert_error(resp: ApiResponse, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, (resp.status, resp.body)
    assert isinstance(resp.body, dict) and set(resp.body) == {"error"}, resp.body
    err = resp.body["error"]
    assert set(err) == {"code", "message", "details"} and err["code"] == code, err
    return err


def _fields(err: dict[str, Any]) -> list[str]:
    return sorted(f["field"] for f in err["details"].get("fields", []))


def test_get_audit_answers_entries_newest_first_in_the_api_shape(admin: ApiClient) -> None:
    _write_trail(3)
    resp = admin.get("/audit", query={"sku": "P-1"})
    assert resp.status == 200, resp.body
    assert set(resp.body) == {"items", "nextToken"} and resp.body["nextToken"] is None
    items = resp.body["items"]
    assert [x["after"]["onHand"] for x in items] == [2, 1, 0]
    assert items[0] == {
        "at": "2026-11-23T07:46:40.002Z",
        "action": "stock_set",
        "entity": {"type": "stock", "id": "P-1"},
        "ref": None,
        "before": None,
        "after": {
            "onHand": 2,
            "reserved": 0,
            "allocated": 0,
            "available": 2,
            "unlimited": False,
            "lowStockThreshold": None,
        },
        "actor": "admin:1a2b3c4d",
        "reason": None,
    }


def test_get_audit_pages_through_a_trail_without_gaps_or_repeats(admin: ApiClient) -> None:
    ids = _write_trail(7)
    seen, token, pages = [], None, 0
    while True:
        query = {"sku": "P-1", "limit": "3", **({"nextToken": token} if token else {})}
        resp = admin.get("/audit", query=query)
        assert resp.status == 200, resp.body
        pages += 1
        seen.extend(x["after"]["onHand"] for x in resp.body["items"])
        token = resp.body["nextToken"]
        if token is None:
            break
    assert pages == 3 and seen == list(range(len(ids)))[::-1]


def test_a_trail_that_fills_its_last_page_exactly_has_no_next_token(admin: ApiClient) -> None:
    _write_trail(4)
    first = admin.get("/audit", query={"sku": "P-1", "limit": "2"})
    second = admin.get("/audit", query={"sku": "P-1", "limit": "2", "nextToken": first.body["nextToken"]})
    assert len(second.body["items"]) == 2 and second.body["nextToken"] is None


def test_an_unknown_id_has_an_empty_trail(admin: ApiClient) -> None:
    resp = admin.get("/audit", query={"reservationId": "res_nothing"})
    assert (resp.status, resp.body) == (200, {"items": [], "nextToken": None})


def test_another_stores_trail_is_not_visible(admin: ApiClient) -> None:
    _write_trail(2, store="other")
    assert admin.get("/audit", query={"sku": "P-1"}).body["items"] == []
    assert len(admin.as_(store="other").get("/audit", query={"sku": "P-1"}).body["items"]) == 2


def test_get_audit_is_for_admins_only(api: ApiClient) -> None:
    assert_error(api.get("/audit", query={"sku": "P-1"}), 403, "FORBIDDEN")
    assert_error(api.as_(role="nobody").get("/audit", query={"sku": "P-1"}), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ({}, ["query.checkoutId", "query.orderId", "query.reservationId", "query.sku"]),
        ({"sku": "A-1", "orderId": "o-1"}, ["query.orderId", "query.sku"]),
        ({"sku": "A-1", "limit": "0"}, ["query.limit"]),
        ({"sku": "A-1", "limit": "101"}, ["query.limit"]),
        ({"sku": "A-1", "limit": "ten"}, ["query.limit"]),
        ({"sku": "A-1", "nextToken": "not a token!"}, ["query.nextToken"]),
        ({"sku": "A-1", "nextToken": "eyJwayI6MX0"}, ["query.nextToken"]),  # base64 of {"pk":1}
        ({"sku": "bad sku"}, ["query.sku"]),
        ({"sku": "A-1", "limt": "5"}, ["query.limt"]),
    ],
)
def test_bad_audit_queries_are_400_naming_the_fields(
    admin: ApiClient, query: dict[str, str], fields: list[str]
) -> None:
    err = assert_error(admin.get("/audit", query=query), 400, "VALIDATION_ERROR")
    assert _fields(err) == fields


def test_a_token_of_another_trail_or_store_is_refused(admin: ApiClient) -> None:
    _write_trail(3)
    token = admin.get("/audit", query={"sku": "P-1", "limit": "1"}).body["nextToken"]
    assert token
    other_sku = admin.get("/audit", query={"sku": "P-2", "nextToken": token})
    assert _fields(assert_error(other_sku, 400, "VALIDATION_ERROR")) == ["query.nextToken"]
    other_store = admin.as_(store="other").get("/audit", query={"sku": "P-1", "nextToken": token})
    assert _fields(assert_error(other_store, 400, "VALIDATION_ERROR")) == ["query.nextToken"]
    forged = encode_token({"pk": trail_pk("other", Trail.SKU, "P-1"), "sk": f"{T0:015d}#x"})
    assert_error(admin.get("/audit", query={"sku": "P-1", "nextToken": forged}), 400, "VALIDATION_ERROR")
