"""The audit trail written once however often a stream record is delivered (the change
feed's handler on moto), and read back through GET /audit (admin, newest first, paginated).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest

from stockhold import wiring
from stockhold.data.audit import Trail, entries_for
from stockhold.data.audit_store import AuditStore, encode_token, trail_pk
from stockhold.wiring import services
from tests.audit_records import T0, change, record, stock
from tests.helpers import ApiClient, ApiResponse, load_function
from tools.local.context import LambdaContext
from tools.template import ROOT


def _audit_items() -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    items = client.scan(TableName=services().settings.TABLE_NAME)["Items"]
    return [i for i in items if i["type"]["S"] == "AUDIT"]


@pytest.fixture
def feed(aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The change feed's handler (these records mean no event: nothing reaches the bus)."""
    monkeypatch.setenv("EVENT_BUS_NAME", "stockhold-test-events")
    wiring.reset()
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
        services().audit.put(entries_for(change("MODIFY" if i else "INSERT", new, None, rid=ids[-1])))
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
