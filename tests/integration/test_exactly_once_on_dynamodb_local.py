"""Every mutating route takes effect once per Idempotency-Key, even across a crash.

The fault: the Lambda environment dies after DynamoDB committed the change but before
Powertools saved the response. Once Powertools' in-progress record is gone, the client's
retry with the same key runs the request again. It is emulated here as the issue found it:
the first request answers, then every Powertools record is deleted, then the request is
sent again. The change must not happen twice, and the retry's answer must be what a GET
shows right after it. On DynamoDB Local, through the API function's real handler.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from stockhold import wiring
from stockhold.wiring import Services, services
from tests.helpers import ApiClient, ApiResponse
from tests.integration.conftest import assert_invariants

pytestmark = pytest.mark.integration


@pytest.fixture
def api(local: Services) -> ApiClient:
    return ApiClient(store="demo", role="storefront")


@pytest.fixture
def admin(local: Services) -> ApiClient:
    return ApiClient(store="demo", role="admin")


def crash(svc: Services) -> None:
    """Forget every Powertools idempotency record, as a crash before it saved the answer would."""
    client = wiring.dynamodb_client()
    table = svc.settings.IDEMPOTENCY_TABLE_NAME
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            client.delete_item(TableName=table, Key={"id": item["id"]})


def key(name: str) -> dict[str, str]:
    return {"Idempotency-Key": name}


def agrees(retry: ApiResponse, now: ApiResponse) -> None:
    """The retry's answer is what a GET says right after it (warnings are advice, not state)."""
    assert retry.status < 300, retry.body
    assert {k: v for k, v in retry.body.items() if k != "warnings"} == {
        k: v for k, v in now.body.items() if k != "warnings"
    }


def test_put_stock_retried_after_a_crash_does_not_bring_back_sold_units(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    """Set onHand 5 (crash), ship an order of 2 (onHand 3), retry the PUT: onHand stays 3."""
    assert admin.put("/stock/PS", {"onHand": 5}, headers=key("put-1")).status == 200
    crash(local)
    res = api.post("/reservations", {"cartId": "c-ps", "items": [{"sku": "PS", "quantity": 2}]}).body
    api.post(f"/reservations/{res['reservationId']}/confirm", {"orderId": "o-ps"})
    assert admin.post("/orders/o-ps/fulfil").status == 200
    retry = admin.put("/stock/PS", {"onHand": 5}, headers=key("put-1"))
    after = admin.get("/stock/PS")
    assert after.body["onHand"] == 3 and after.body["available"] == 3
    agrees(retry, after)
    assert_invariants(local)


def test_put_stock_creating_a_sku_retried_after_a_crash_changes_nothing(admin: ApiClient, local: Services) -> None:
    assert admin.put("/stock/NEW", {"onHand": 4}, headers=key("put-new")).status == 200
    crash(local)
    assert admin.post("/stock/NEW/adjustments", {"delta": -1, "reason": "damaged"}).status == 200
    retry = admin.put("/stock/NEW", {"onHand": 4}, headers=key("put-new"))
    agrees(retry, admin.get("/stock/NEW"))
    assert retry.body["onHand"] == 3


def test_an_adjustment_retried_after_a_crash_applies_once(admin: ApiClient, local: Services) -> None:
    admin.put("/stock/ADJ", {"onHand": 10})
    body = {"delta": 5, "reason": "received"}
    assert admin.post("/stock/ADJ/adjustments", body, headers=key("adj-1")).body["onHand"] == 15
    crash(local)
    retry = admin.post("/stock/ADJ/adjustments", body, headers=key("adj-1"))
    after = admin.get("/stock/ADJ")
    assert after.body["onHand"] == 15
    agrees(retry, after)


def test_the_same_key_with_another_request_after_a_crash_is_refused(admin: ApiClient, local: Services) -> None:
    """Powertools' own check is gone with its record: the key's mark still knows the request."""
    admin.put("/stock/RU", {"onHand": 10})
    admin.post("/stock/RU/adjustments", {"delta": 5, "reason": "received"}, headers=key("adj-ru"))
    crash(local)
    other = admin.post("/stock/RU/adjustments", {"delta": -3, "reason": "damaged"}, headers=key("adj-ru"))
    assert (other.status, other.error_code) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert admin.get("/stock/RU").body["onHand"] == 15


def _hold(api: ApiClient, admin: ApiClient, sku: str, cart: str, **extra: Any) -> dict[str, Any]:
    admin.put(f"/stock/{sku}", {"onHand": 10})
    made = api.post("/reservations", {"cartId": cart, "items": [{"sku": sku, "quantity": 2}], **extra})
    assert made.status == 201, made.body
    return made.body


def test_an_extension_retried_after_a_crash_uses_one_extension(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    rid = _hold(api, admin, "EXT", "c-ext", holdSeconds=60)["reservationId"]
    first = api.post(f"/reservations/{rid}/extend", {"holdSeconds": 600}, headers=key("ext-1"))
    assert first.body["extensionsUsed"] == 1
    crash(local)
    time.sleep(0.01)  # a re-run would now move the deadline again
    retry = api.post(f"/reservations/{rid}/extend", {"holdSeconds": 600}, headers=key("ext-1"))
    after = api.get(f"/reservations/{rid}")
    assert after.body["extensionsUsed"] == 1 and after.body["expiresAt"] == first.body["expiresAt"]
    agrees(retry, after)


def test_the_last_extension_retried_after_a_crash_answers_it_not_a_409(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    rid = _hold(api, admin, "EXL", "c-exl", holdSeconds=60)["reservationId"]
    for i in range(local.settings.MAX_EXTENSIONS - 1):
        api.post(f"/reservations/{rid}/extend", {"holdSeconds": 120 + i * 60})
    last = api.post(f"/reservations/{rid}/extend", {"holdSeconds": 900}, headers=key("ext-last"))
    assert last.body["extensionsLeft"] == 0
    crash(local)
    retry = api.post(f"/reservations/{rid}/extend", {"holdSeconds": 900}, headers=key("ext-last"))
    agrees(retry, api.get(f"/reservations/{rid}"))


def test_reserve_confirm_release_retried_after_a_crash_take_effect_once(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    """These are guarded by the state they make (the key derives the reservation id; a
    confirmed or released hold stays so): the retry answers the state, nothing moves twice."""
    admin.put("/stock/RCR", {"onHand": 10})
    body = {"cartId": "c-rcr", "items": [{"sku": "RCR", "quantity": 3}]}
    made = api.post("/reservations", body, headers=key("res-1"))
    crash(local)
    again = api.post("/reservations", body, headers=key("res-1"))
    assert again.body["reservationId"] == made.body["reservationId"]
    rid = made.body["reservationId"]
    agrees(again, api.get(f"/reservations/{rid}"))
    api.post(f"/reservations/{rid}/confirm", {"orderId": "o-rcr"}, headers=key("conf-1"))
    crash(local)
    agrees(
        api.post(f"/reservations/{rid}/confirm", {"orderId": "o-rcr"}, headers=key("conf-1")),
        api.get(f"/reservations/{rid}"),
    )
    other = _hold(api, admin, "RCR2", "c-rcr2")["reservationId"]
    api.post(f"/reservations/{other}/release", {"reason": "cancelled"}, headers=key("rel-1"))
    crash(local)
    agrees(
        api.post(f"/reservations/{other}/release", {"reason": "cancelled"}, headers=key("rel-1")),
        api.get(f"/reservations/{other}"),
    )
    stock = admin.get("/stock/RCR").body
    assert (stock["reserved"], stock["allocated"], stock["available"]) == (0, 3, 7)
    assert admin.get("/stock/RCR2").body["available"] == 10
    assert_invariants(local)


def test_order_fulfil_and_cancel_retried_after_a_crash_move_units_once(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    for sku, order in (("OF", "o-of"), ("OC", "o-oc")):
        rid = _hold(api, admin, sku, f"c-{sku}")["reservationId"]
        api.post(f"/reservations/{rid}/confirm", {"orderId": order})
    admin.post("/orders/o-of/fulfil", headers=key("ful-1"))
    api.post("/orders/o-oc/cancel", headers=key("can-1"))
    crash(local)
    agrees(admin.post("/orders/o-of/fulfil", headers=key("ful-1")), admin.get("/orders/o-of"))
    agrees(api.post("/orders/o-oc/cancel", headers=key("can-1")), api.get("/orders/o-oc"))
    assert admin.get("/stock/OF").body["onHand"] == 8
    assert admin.get("/stock/OC").body["available"] == 10
    assert_invariants(local)


# ----- checkout


@pytest.fixture
def extending(local: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """Settings under which every PATCH finds less than the threshold left, so it extends."""
    monkeypatch.setenv("EXTEND_THRESHOLD_SECONDS", str(local.settings.CHECKOUT_HOLD_SECONDS))
    wiring.reset()
    yield services()


def _checkout(api: ApiClient, admin: ApiClient, sku: str, cart: str, **headers: str) -> ApiResponse:
    admin.put(f"/stock/{sku}", {"onHand": 10})
    made = api.post(
        "/checkouts", {"cartId": cart, "customerId": "u-1", "items": [{"sku": sku, "quantity": 2}]}, headers=headers
    )
    assert made.status == 201, made.body
    return made


def test_checkout_start_retried_after_its_hold_ended_answers_what_a_get_says(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    """Not 201 ``checkout`` over an ended hold: the retry reads the checkout as it is now."""
    made = _checkout(api, admin, "CS", "c-cs", **key("chk-1"))
    cid = made.body["checkoutId"]
    api.post(f"/checkouts/{cid}/cancel", {"reason": "cancelled"})
    crash(local)
    body = {"cartId": "c-cs", "customerId": "u-1", "items": [{"sku": "CS", "quantity": 2}]}
    retry = api.post("/checkouts", body, headers=key("chk-1"))
    after = api.get(f"/checkouts/{cid}")
    assert after.body["status"] == "abandoned"
    agrees(retry, after)
    assert admin.get("/stock/CS").body["reserved"] == 0


def test_patch_retried_after_a_crash_extends_the_hold_once(
    api: ApiClient, admin: ApiClient, extending: Services
) -> None:
    cid = _checkout(api, admin, "PA", "c-pa").body["checkoutId"]
    time.sleep(0.01)
    first = api.patch(f"/checkouts/{cid}", {"step": "shipping"}, headers=key("patch-1"))
    local_left = first.body["reservation"]["extensionsLeft"]
    assert local_left == extending.settings.MAX_EXTENSIONS - 1, first.body
    crash(extending)
    time.sleep(0.01)
    retry = api.patch(f"/checkouts/{cid}", {"step": "shipping"}, headers=key("patch-1"))
    after = api.get(f"/checkouts/{cid}")
    assert after.body["reservation"]["extensionsLeft"] == local_left
    assert after.body["reservation"]["expiresAt"] == first.body["reservation"]["expiresAt"]
    agrees(retry, after)


def test_payment_retried_after_a_crash_keeps_what_the_shopper_saved_since(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    cid = _checkout(api, admin, "PY", "c-py").body["checkoutId"]
    assert api.post(f"/checkouts/{cid}/payment", headers=key("pay-1")).body["step"] == "payment"
    assert api.patch(f"/checkouts/{cid}", {"step": "review"}).status == 200
    crash(local)
    retry = api.post(f"/checkouts/{cid}/payment", headers=key("pay-1"))
    after = api.get(f"/checkouts/{cid}")
    assert after.body["step"] == "review"
    agrees(retry, after)


def test_a_payment_failure_retried_after_a_new_start_leaves_the_new_hold_alone(
    api: ApiClient, admin: ApiClient, local: Services
) -> None:
    made = _checkout(api, admin, "PF", "c-pf")
    cid = made.body["checkoutId"]
    failed = api.post(f"/checkouts/{cid}/cancel", {"reason": "payment_failed"}, headers=key("fail-1"))
    assert failed.body["status"] == "active"
    crash(local)
    body = {"cartId": "c-pf", "customerId": "u-1", "items": [{"sku": "PF", "quantity": 2}]}
    again = api.post("/checkouts", body)
    new_hold = again.body["reservation"]["reservationId"]
    assert new_hold != made.body["reservation"]["reservationId"]
    retry = api.post(f"/checkouts/{cid}/cancel", {"reason": "payment_failed"}, headers=key("fail-1"))
    after = api.get(f"/checkouts/{cid}")
    assert after.body["status"] == "checkout"
    assert api.get(f"/reservations/{new_hold}").body["status"] == "ACTIVE"
    assert admin.get("/stock/PF").body["reserved"] == 2
    agrees(retry, after)


def test_complete_retried_after_a_crash_makes_one_order(api: ApiClient, admin: ApiClient, local: Services) -> None:
    cid = _checkout(api, admin, "CO", "c-co").body["checkoutId"]
    order = api.post(f"/checkouts/{cid}/complete", {"paymentReference": "p-1"}, headers=key("done-1"))
    assert order.status == 201
    crash(local)
    retry = api.post(f"/checkouts/{cid}/complete", {"paymentReference": "p-1"}, headers=key("done-1"))
    agrees(retry, api.get(f"/orders/{order.body['orderId']}"))
    stock = admin.get("/stock/CO").body
    assert (stock["reserved"], stock["allocated"]) == (0, 2)
    assert_invariants(local)


# ----- TransactionConflict, then a commit, then the crash (DynamoDB Local never conflicts)


def _conflict_then_crash(client: Any) -> Callable[[], None]:
    """The next TransactWriteItems meets a TransactionConflict (as DynamoDB would answer it);
    the retry commits; then the environment dies before anyone hears of it."""
    calls = {"n": 0}

    class Crash(Exception):
        pass

    def before(**_: Any) -> Any:
        calls["n"] += 1
        if calls["n"] != 1:
            return None
        reasons = [{"Code": "TransactionConflict"}, {"Code": "None"}]
        parsed = {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": reasons,
        }
        return AWSResponse("https://dynamodb", 400, {}, None), parsed

    def after(**_: Any) -> None:
        if calls["n"] == 2:
            raise Crash("the environment died after the commit")

    client.meta.events.register_first("before-call.dynamodb.TransactWriteItems", before, unique_id="conflict")
    client.meta.events.register("after-call.dynamodb.TransactWriteItems", after, unique_id="crash")

    def undo() -> None:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="conflict")
        client.meta.events.unregister("after-call.dynamodb.TransactWriteItems", unique_id="crash")

    return undo


def test_an_adjustment_that_committed_on_its_conflict_retry_is_not_applied_again(
    admin: ApiClient, local: Services
) -> None:
    """Attempt 1 conflicts, attempt 2 commits, the environment dies: the client's retry (its
    first attempt has a fresh token, which never committed) finds the key's mark instead."""
    admin.put("/stock/CC", {"onHand": 10})
    body = {"delta": 4, "reason": "received"}
    undo = _conflict_then_crash(wiring.dynamodb_client())
    try:
        with pytest.raises(Exception, match="died after the commit"):
            admin.post("/stock/CC/adjustments", body, headers=key("cc-1"))
    finally:
        undo()
    assert admin.get("/stock/CC").body["onHand"] == 14  # it did commit
    retry = admin.post("/stock/CC/adjustments", body, headers=key("cc-1"))
    after = admin.get("/stock/CC")
    assert after.body["onHand"] == 14
    agrees(retry, after)
