"""The audit trail on DynamoDB Local: real writes through the API, the real stream records
they leave (through the template's FilterCriteria), handed to the change feed twice (it
writes the trail, then publishes the records' events to a bus on a moto server), then
read back through GET /audit."""

from __future__ import annotations

from typing import Any

import pytest

from stockhold import wiring
from stockhold.wiring import Services
from tests.helpers import ApiClient, load_function
from tests.integration.conftest import change_feed_source, stream_records
from tools.local.context import LambdaContext

pytestmark = pytest.mark.integration


def _audit_items(svc: Services) -> list[dict[str, Any]]:
    paginator = wiring.dynamodb_client().get_paginator("scan")
    out: list[dict[str, Any]] = []
    for page in paginator.paginate(
        TableName=svc.settings.TABLE_NAME,
        FilterExpression="#t = :a",
        ExpressionAttributeNames={"#t": "type"},
        ExpressionAttributeValues={":a": {"S": "AUDIT"}},
        ConsistentRead=True,
    ):
        out.extend(page["Items"])
    return out


@pytest.fixture
def admin(local: Services) -> ApiClient:
    return ApiClient(store="demo", role="admin")


@pytest.fixture
def api(local: Services) -> ApiClient:
    return ApiClient(store="demo", role="storefront")


def _trail(admin: ApiClient, **query: str) -> list[dict[str, Any]]:
    resp = admin.get("/audit", query=query)
    assert resp.status == 200, resp.body
    items: list[dict[str, Any]] = resp.body["items"]
    return items


def test_a_holds_life_leaves_one_entry_per_change_and_reads_back_newest_first(
    local: Services, admin: ApiClient, api: ApiClient, bus: dict[str, Any]
) -> None:
    assert admin.put("/stock/AU-1", {"onHand": 5}).status == 200
    made = api.post("/reservations", {"cartId": "c-au", "items": [{"sku": "AU-1", "quantity": 2}], "holdSeconds": 300})
    assert made.status == 201, made.body
    rid = made.body["reservationId"]
    assert api.post(f"/reservations/{rid}/extend", {"holdSeconds": 600}).status == 200
    assert api.post(f"/reservations/{rid}/confirm", {"orderId": "o-au-1"}).status == 200

    source = change_feed_source()
    records = stream_records(local)
    admitted = [r for r in records if source.matches(r)]
    # Every write of the stock item, the hold and the order passes the filter; cart slots do not.
    assert {r["dynamodb"]["NewImage"]["type"]["S"] for r in admitted} <= {"STOCK", "RESERVATION", "ORDER"}
    assert not any(r["dynamodb"]["Keys"]["sk"]["S"] == "HOLD" for r in admitted)

    handler = load_function("change_feed").lambda_handler
    assert handler({"Records": admitted}, LambdaContext()) == {"batchItemFailures": []}
    written = sorted((i["pk"]["S"], i["sk"]["S"]) for i in _audit_items(local))
    # Delivered again (a retried batch): nothing more.
    assert handler({"Records": admitted}, LambdaContext()) == {"batchItemFailures": []}
    assert sorted((i["pk"]["S"], i["sk"]["S"]) for i in _audit_items(local)) == written
    assert len(written) == len(set(written))

    # The change feed's own writes (audit entries, event markers) are in the same stream; its filter keeps them out.
    records = stream_records(local)
    audit_records = [r for r in records if r["dynamodb"].get("NewImage", {}).get("type") == {"S": "AUDIT"}]
    assert len(audit_records) == len(written)
    markers = [r for r in records if r["dynamodb"].get("NewImage", {}).get("type") == {"S": "EVENT_SENT"}]
    assert [e["detail-type"] for e in bus["received"]()] == ["StockLow", "OrderCreated"] and len(markers) == 2
    assert not any(source.matches(r) for r in audit_records + markers)

    hold = _trail(admin, reservationId=rid)
    assert [x["action"] for x in hold] == ["reservation_confirmed", "reservation_extended", "reservation_created"]
    assert [x["at"] for x in hold] == sorted((x["at"] for x in hold), reverse=True)
    assert {x["entity"]["id"] for x in hold} == {rid} and all(x["actor"].startswith("storefront") for x in hold)
    assert hold[1]["before"]["expiresAt"] < hold[1]["after"]["expiresAt"]
    assert (hold[0]["before"]["status"], hold[0]["after"]["status"]) == ("ACTIVE", "CONFIRMED")

    sku = _trail(admin, sku="AU-1")
    assert [(x["action"], x["ref"]) for x in sku] == [
        ("reservation_confirmed", rid),
        ("reservation_created", rid),
        ("stock_set", None),
    ]
    assert [x["after"]["available"] for x in sku] == [3, 3, 5]
    assert [x["after"]["reserved"] for x in sku] == [0, 2, 0]
    assert sku[0]["after"]["allocated"] == 2 and sku[-1]["actor"].startswith("admin")

    order = _trail(admin, orderId="o-au-1")
    assert sorted(x["action"] for x in order) == ["order_created", "reservation_confirmed"]


def test_a_released_hold_and_an_adjustment_record_their_reasons(
    local: Services, admin: ApiClient, api: ApiClient, bus: dict[str, Any]
) -> None:
    admin.put("/stock/AU-2", {"onHand": 4})
    assert admin.post("/stock/AU-2/adjustments", {"delta": -1, "reason": "damaged"}).status == 200
    rid = api.post("/reservations", {"cartId": "c-r", "items": [{"sku": "AU-2", "quantity": 1}]}).body["reservationId"]
    assert api.post(f"/reservations/{rid}/release", {"reason": "payment_failed"}).status == 200
    source = change_feed_source()
    admitted = [r for r in stream_records(local) if source.matches(r)]
    assert load_function("change_feed").lambda_handler({"Records": admitted}, LambdaContext()) == {
        "batchItemFailures": []
    }

    hold = _trail(admin, reservationId=rid)
    assert (hold[0]["action"], hold[0]["reason"]) == ("reservation_released", "payment_failed")
    sku = _trail(admin, sku="AU-2")
    assert [x["action"] for x in sku] == [
        "reservation_released",
        "reservation_created",
        "stock_adjusted",
        "stock_set",
    ]
    assert sku[2]["reason"] == "damaged"
    assert (sku[2]["before"]["onHand"], sku[2]["after"]["onHand"]) == (4, 3)
