"""TransactionConflict (two transactions meeting on a hot item) is retried with backoff, bounded.

DynamoDB Local never raises it, so these tests script DynamoDB's answers with botocore's Stubber.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from stockhold.data.transactions import TransactionRunner
from stockhold.data.unit import UnitOfWork
from stockhold.domain.errors import IdempotencyKeyReused, TooBusy
from stockhold.domain.intents import Cause, MoveStock, PutHold, TakeCart
from stockhold.domain.models import HeldLine, RequestKey, Reservation, ReservationStatus
from stockhold.domain.rules import StockMove
from stockhold.settings import Settings
from stockhold.wiring import build


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


def _reserve(runner: TransactionRunner) -> None:
    res = _reservation()
    move = MoveStock("demo", StockMove("A-1", available=-1, reserved=1), 0, Cause("reservation_created", ref="res_1"))
    UnitOfWork(runner).commit([PutHold(res, 1), TakeCart(res, None), move])


def test_a_conflict_is_retried_and_the_reservation_then_commits() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    sleeps: list[float] = []
    store = TransactionRunner(client, "t", sleep=sleeps.append)
    with Stubber(client) as stub:
        _conflict(stub, 3)
        _conflict(stub, 3)
        stub.add_response("transact_write_items", {}, {"TransactItems": ANY})
        _reserve(store)
        stub.assert_no_pending_responses()
    assert len(sleeps) == 2 and all(0 <= s <= 0.5 for s in sleeps)


def test_conflicts_that_never_clear_give_up_with_too_busy() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    store = TransactionRunner(client, "t", conflict_retries=3, sleep=lambda _: None)
    with Stubber(client) as stub:
        for _ in range(4):
            _conflict(stub, 3)
        with pytest.raises(TooBusy) as raised:
            _reserve(store)
        stub.assert_no_pending_responses()
    assert raised.value.status == 503


def _stock_item(on_hand: int) -> dict[str, Any]:
    return {
        "pk": {"S": "STORE#demo#SKU#A-1"},
        "sk": {"S": "STOCK#_"},
        "sku": {"S": "A-1"},
        "onHand": {"N": str(on_hand)},
        "reserved": {"N": "0"},
        "allocated": {"N": "0"},
        "available": {"N": str(on_hand)},
        "unlimited": {"BOOL": False},
        "updatedAt": {"N": "1"},
    }


def test_a_conflict_then_commit_then_crash_is_not_applied_again_by_the_clients_retry() -> None:
    """Attempt 1 conflicts, attempt 2 commits, the environment dies before answering. Every
    attempt carried the same Idempotency-Key mark, so the client's retry (a new request: new
    ClientRequestToken) is cancelled on the mark and answers the current level, writing nothing."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    stock = build(client, Settings(TABLE_NAME="t"), sleep=lambda _: None).stock
    key = RequestKey(store_id="demo", value="adj-1", fingerprint="f" * 64)
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems", lambda params, **_: sent.append(params)
    )
    with Stubber(client) as stub:
        stub.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            service_message="Transaction cancelled [TransactionConflict, None]",
            http_status_code=400,
            modeled_fields={"CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}]},
        )
        stub.add_response("transact_write_items", {})
        stub.add_response("get_item", {"Item": _stock_item(14)})
        assert stock.adjust("demo", "A-1", 4, key, "received").on_hand == 14
        # The client's retry: DynamoDB finds the mark the committed attempt wrote.
        mark = sent[-1]["TransactItems"][-1]["Put"]["Item"]
        stub.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            service_message="Transaction cancelled [None, ConditionalCheckFailed]",
            http_status_code=400,
            modeled_fields={
                "CancellationReasons": [{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Item": mark}]
            },
        )
        stub.add_response("get_item", {"Item": _stock_item(14)})
        assert stock.adjust("demo", "A-1", 4, key, "received").on_hand == 14
        stub.assert_no_pending_responses()
    marks = [call["TransactItems"][-1]["Put"] for call in sent]
    assert len(marks) == 3 and all(m["Item"] == marks[0]["Item"] for m in marks[1:])
    assert all("attribute_not_exists(pk)" in m["ConditionExpression"] for m in marks)
    # botocore fills a token per call: it is the mark, not the token, that stops the re-run.
    assert len({call.get("ClientRequestToken") for call in sent}) == 3


def test_the_mark_of_another_request_is_idempotency_key_reused() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    stock = build(client, Settings(TABLE_NAME="t"), sleep=lambda _: None).stock
    key = RequestKey(store_id="demo", value="adj-1", fingerprint="f" * 64)
    with Stubber(client) as stub:
        stub.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            service_message="Transaction cancelled [None, ConditionalCheckFailed]",
            http_status_code=400,
            modeled_fields={
                "CancellationReasons": [
                    {"Code": "None"},
                    {"Code": "ConditionalCheckFailed", "Item": {"fingerprint": {"S": "another"}}},
                ]
            },
        )
        with pytest.raises(IdempotencyKeyReused):
            stock.adjust("demo", "A-1", 4, key, "received")
        stub.assert_no_pending_responses()
