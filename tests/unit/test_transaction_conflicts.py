"""TransactionConflict (two transactions meeting on a hot item) is retried with backoff, bounded.

DynamoDB Local never raises it, so these tests script DynamoDB's answers with botocore's Stubber.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber

from stockhold.errors import TooBusy
from stockhold.models import HeldLine, Reservation, ReservationStatus
from stockhold.store import DynamoStore, StockMove


def _reservation() -> Reservation:
    return Reservation(
        reservation_id="res_1",
        store_id="demo",
        cart_id="c-1",
        customer_id=None,
        status=ReservationStatus.ACTIVE,
        lines=(HeldLine(sku="A-1", quantity=1),),
        created_at=0,
        expires_at=60_000,
        extensions_used=0,
        max_extensions=3,
    )


def _conflict(stubber: Stubber, actions: int) -> None:
    reasons = [{"Code": "None"}, {"Code": "TransactionConflict"}] + [{"Code": "None"}] * (actions - 2)
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled [None, TransactionConflict, None]",
        http_status_code=400,
        modeled_fields={"CancellationReasons": reasons},
    )


def _reserve(store: DynamoStore, token: str | None = "tok") -> None:
    store.create_reservation(
        _reservation(),
        purge_at=1,
        moves=[StockMove("A-1", available=-1, reserved=1)],
        replacing=None,
        ended_purge_at=1,
        now_ms=0,
        token=token,
    )


def test_a_conflict_is_retried_and_the_reservation_then_commits() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    sleeps: list[float] = []
    store = DynamoStore(client, "t", sleep=sleeps.append)
    with Stubber(client) as stub:
        _conflict(stub, 3)
        _conflict(stub, 3)
        stub.add_response("transact_write_items", {}, {"TransactItems": ANY, "ClientRequestToken": ANY})
        _reserve(store)
        stub.assert_no_pending_responses()
    assert len(sleeps) == 2 and all(0 <= s <= 0.5 for s in sleeps)


def test_each_retry_after_a_cancellation_sends_its_own_client_request_token() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    store = DynamoStore(client, "t", sleep=lambda _: None)
    tokens: list[str] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: tokens.append(params["ClientRequestToken"]),
    )
    with Stubber(client) as stub:
        _conflict(stub, 3)
        stub.add_response("transact_write_items", {})
        _reserve(store, token="a" * 32)
    assert tokens[0] == "a" * 32 and tokens[1] != tokens[0] and len(tokens[1]) <= 36


def test_conflicts_that_never_clear_give_up_with_too_busy() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    store = DynamoStore(client, "t", conflict_retries=3, sleep=lambda _: None)
    with Stubber(client) as stub:
        for _ in range(4):
            _conflict(stub, 3)
        with pytest.raises(TooBusy) as raised:
            _reserve(store)
        stub.assert_no_pending_responses()
    assert raised.value.status == 503


def test_too_busy_reaches_the_shopper_as_503_in_the_error_shape(api, admin, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Through the API: a hot SKU that never clears answers 503 TOO_BUSY and holds nothing."""
    from stockhold import store as store_module

    assert admin.put("/stock/HOT", {"onHand": 5}).status == 200

    def always_conflict(self, actions, token):  # type: ignore[no-untyped-def]
        raise TooBusy("the stock is being changed by many requests at once; retry shortly")

    monkeypatch.setattr(store_module.DynamoStore, "_transact", always_conflict)
    r = api.post("/reservations", {"cartId": "c-hot", "items": [{"sku": "HOT", "quantity": 1}]})
    assert r.status == 503 and r.error_code == "TOO_BUSY"
    monkeypatch.undo()
    assert admin.get("/stock/HOT").body["available"] == 5
