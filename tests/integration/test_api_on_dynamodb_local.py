"""The API handler end to end on DynamoDB Local: idempotent retries, replace, 96-line carts, TTL attributes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from stockhold.data.schema import reservation_key, to_av
from stockhold.domain.models import Line
from stockhold.domain.rules import MAX_LINES
from stockhold.wiring import Services, dynamodb_client
from tests.helpers import ApiClient
from tests.integration.conftest import assert_invariants

pytestmark = pytest.mark.integration


@pytest.fixture
def api(local: Services) -> ApiClient:
    return ApiClient(store="demo", role="storefront")


@pytest.fixture
def admin(local: Services) -> ApiClient:
    return ApiClient(store="demo", role="admin")


def test_a_retried_reserve_with_the_same_key_holds_stock_once(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    admin.put("/stock/K", {"onHand": 4})
    body = {"cartId": "c-1", "items": [{"sku": "K", "quantity": 3}]}
    first = api.post("/reservations", body, headers={"Idempotency-Key": "k-1"})
    again = api.post("/reservations", body, headers={"Idempotency-Key": "k-1"})
    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert admin.get("/stock/K").body["reserved"] == 3
    reused = api.post("/reservations", {**body, "cartId": "c-2"}, headers={"Idempotency-Key": "k-1"})
    assert (reused.status, reused.error_code) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert admin.get("/stock/K").body["reserved"] == 3
    assert_invariants(local)


def test_a_retry_after_a_crash_between_commit_and_response_does_not_hold_twice(local: Services) -> None:
    """The idempotency record is lost (crash before Powertools saved the response): the
    reservation id and transaction token derived from the key still make the retry a no-op."""
    local.stock.set("demo", "CR", on_hand=5, low_stock_threshold=None, unlimited=False)
    kwargs = {
        "cart_id": "c-crash",
        "customer_id": None,
        "lines": [Line(sku="CR", quantity=2)],
        "idempotency_key": "crash-1",
    }
    first = local.reserving.reserve("demo", **kwargs)  # type: ignore[arg-type]
    retry = local.reserving.reserve("demo", **kwargs)  # type: ignore[arg-type]
    assert retry.reservation_id == first.reservation_id
    assert local.stock.get("demo", "CR").reserved == 2
    assert_invariants(local)


def test_concurrent_requests_with_one_key_hold_once(api: ApiClient, admin: ApiClient, local: Services) -> None:
    admin.put("/stock/DUP", {"onHand": 10})
    barrier = threading.Barrier(8)

    def send(_: int) -> int:
        barrier.wait()
        # The Powertools resolver keeps per-request state, so threads race through the service layer.
        try:
            local.reserving.reserve(
                "demo", cart_id="c-dup", customer_id=None, lines=[Line(sku="DUP", quantity=1)], idempotency_key="same"
            )
            return 201
        except Exception as exc:
            return getattr(exc, "status", 500)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(8)))
    assert set(statuses) == {201}
    assert admin.get("/stock/DUP").body["reserved"] == 1
    assert_invariants(local)


def test_replace_swaps_a_carts_hold_atomically(api: ApiClient, admin: ApiClient, local: Services) -> None:
    admin.put("/stock/S1", {"onHand": 3})
    admin.put("/stock/S2", {"onHand": 3})
    old = api.post(
        "/reservations", {"cartId": "cart", "items": [{"sku": "S1", "quantity": 3}, {"sku": "S2", "quantity": 1}]}
    )
    assert old.status == 201
    blocked = api.post("/reservations", {"cartId": "cart", "items": [{"sku": "S2", "quantity": 1}]})
    assert (blocked.status, blocked.error_code) == (409, "CART_ALREADY_RESERVED")
    assert blocked.body["error"]["details"]["reservationId"] == old.body["reservationId"]
    new = api.post(
        "/reservations",
        {"cartId": "cart", "items": [{"sku": "S1", "quantity": 1}, {"sku": "S2", "quantity": 3}], "replace": True},
    )
    assert new.status == 201
    assert api.get(f"/reservations/{old.body['reservationId']}").body["status"] == "RELEASED"
    assert api.get("/carts/cart/reservation").body["reservationId"] == new.body["reservationId"]
    s1, s2 = admin.get("/stock/S1").body, admin.get("/stock/S2").body
    assert (s1["reserved"], s1["available"], s2["reserved"], s2["available"]) == (1, 2, 3, 0)
    assert_invariants(local)


def test_a_replace_that_cannot_be_held_keeps_the_old_hold(api: ApiClient, admin: ApiClient, local: Services) -> None:
    admin.put("/stock/T", {"onHand": 2})
    old = api.post("/reservations", {"cartId": "cart", "items": [{"sku": "T", "quantity": 2}]})
    short = api.post("/reservations", {"cartId": "cart", "items": [{"sku": "T", "quantity": 3}], "replace": True})
    assert (short.status, short.error_code) == (409, "INSUFFICIENT_STOCK")
    # The old hold's 2 units count as available to its own replacement.
    assert short.body["error"]["details"]["items"] == [{"sku": "T", "requested": 3, "available": 2}]
    assert api.get(f"/reservations/{old.body['reservationId']}").body["status"] == "ACTIVE"
    assert admin.get("/stock/T").body["reserved"] == 2
    assert_invariants(local)


def test_the_largest_cart_fits_in_one_real_transaction(api: ApiClient, admin: ApiClient, local: Services) -> None:
    for i in range(MAX_LINES):
        local.stock.set("demo", f"L{i}", on_hand=1, low_stock_threshold=None, unlimited=False)
    items = [{"sku": f"L{i}", "quantity": 1} for i in range(MAX_LINES)]
    r = api.post("/reservations", {"cartId": "big", "items": items})
    assert r.status == 201, r.body
    released = api.post(f"/reservations/{r.body['reservationId']}/release", {"reason": "cancelled"})
    assert released.status == 200
    assert all(x.available == 1 for x in local.stock.get_many("demo", [f"L{i}" for i in range(MAX_LINES)])[0])
    assert_invariants(local)


def test_an_active_hold_carries_its_ttl_and_an_ended_one_its_retention(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    admin.put("/stock/TT", {"onHand": 1})
    r = api.post("/reservations", {"cartId": "ttl", "items": [{"sku": "TT", "quantity": 1}], "holdSeconds": 120})
    key = to_av(reservation_key("demo", r.body["reservationId"]))
    client = dynamodb_client()
    item = client.get_item(TableName=local.settings.TABLE_NAME, Key=key, ConsistentRead=True)["Item"]
    expires = int(item["expiresAt"]["N"]) // 1000
    assert int(item["purgeAt"]["N"]) == expires + local.settings.TTL_GRACE_SECONDS
    api.post(f"/reservations/{r.body['reservationId']}/release", {"reason": "manual"})
    item = client.get_item(TableName=local.settings.TABLE_NAME, Key=key, ConsistentRead=True)["Item"]
    assert int(item["purgeAt"]["N"]) >= int(time.time()) + local.settings.history_retention_seconds - 5
    ttl = boto3.client("dynamodb", endpoint_url=client.meta.endpoint_url).describe_time_to_live(
        TableName=local.settings.TABLE_NAME
    )
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "purgeAt"
