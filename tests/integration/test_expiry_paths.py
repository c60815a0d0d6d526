"""The TTL backstop and reconciliation on DynamoDB Local: real TTL deletions, real stream records."""

from __future__ import annotations

import time
from typing import Any

import pytest

from stockhold import wiring
from stockhold.data.schema import reservation_key, stock_key, to_av
from stockhold.domain.errors import InsufficientStock
from stockhold.domain.models import Line, ReservationStatus
from stockhold.wiring import Services, services
from tests.helpers import load_function
from tests.integration.conftest import assert_invariants, hold_stream_source, stream_records
from tools.local.context import LambdaContext

pytestmark = pytest.mark.integration


def _matches(record: dict[str, Any]) -> bool:
    """Whether the hold stream's FilterCriteria admit this record (the TTL backstop is one of its kinds)."""
    return hold_stream_source().matches(record)


def _wait(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError("condition not met in time")


@pytest.fixture
def short_holds(local: Services, monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("MIN_HOLD_SECONDS", "1")
    monkeypatch.setenv("SWEEP_GRACE_SECONDS", "0")
    monkeypatch.setenv("RECONCILE_QUIET_SECONDS", "0")
    wiring.reset()
    return services()


def _reserve(svc: Services, cart: str, sku: str = "TTL", qty: int = 2, seconds: int = 1) -> Any:
    return svc.reserving.reserve(
        "demo", cart_id=cart, customer_id=None, lines=[Line(sku=sku, quantity=qty)], hold_seconds=seconds
    )


def test_a_hold_whose_timer_never_ran_is_returned_by_the_ttl_path_once(
    short_holds: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTL_GRACE_SECONDS", "0")  # DynamoDB Local's TTL deletes it as soon as it is due
    wiring.reset()
    svc = services()
    svc.stock.set("demo", "TTL", on_hand=5, low_stock_threshold=None, unlimited=False)
    res = _reserve(svc, "ttl-cart")
    key = to_av(reservation_key("demo", res.reservation_id))
    client = wiring.dynamodb_client()
    # DynamoDB Local's TTL sweeper deletes the item (deadline + grace 0 has passed).
    _wait(lambda: "Item" not in client.get_item(TableName=svc.settings.TABLE_NAME, Key=key, ConsistentRead=True))
    removes = [
        r for r in stream_records(svc) if r["eventName"] == "REMOVE" and r["dynamodb"]["Keys"]["pk"] == key["pk"]
    ]
    assert len(removes) == 1 and removes[0]["userIdentity"] == {
        "type": "Service",
        "principalId": "dynamodb.amazonaws.com",
    }
    assert _matches(removes[0])
    handler = load_function("hold_stream").lambda_handler
    assert handler({"Records": removes}, LambdaContext()) == {"batchItemFailures": []}
    level = svc.stock.get("demo", "TTL")
    assert (level.reserved, level.available) == (0, 5)
    restored = svc.holds.get("demo", res.reservation_id)
    assert restored.status is ReservationStatus.EXPIRED and restored.end_reason == "expired"
    # Delivered again: nothing more comes back.
    assert handler({"Records": removes}, LambdaContext()) == {"batchItemFailures": []}
    assert svc.stock.get("demo", "TTL").available == 5
    assert_invariants(svc)


def test_removes_that_are_not_ttl_deletions_of_active_holds_are_filtered_out(short_holds: Services) -> None:
    svc = short_holds
    svc.stock.set("demo", "F", on_hand=5, low_stock_threshold=None, unlimited=False)
    active = _reserve(svc, "user-delete", "F", 1, seconds=600)
    ended = _reserve(svc, "ended", "F", 1)
    svc.holds.release("demo", ended.reservation_id, "cancelled")
    client = wiring.dynamodb_client()
    # A user's delete of an active hold (not the TTL service).
    client.delete_item(TableName=svc.settings.TABLE_NAME, Key=to_av(reservation_key("demo", active.reservation_id)))
    records = stream_records(svc)
    removes = [r for r in records if r["eventName"] == "REMOVE" and r["dynamodb"]["Keys"]["sk"]["S"] == "RESERVATION"]
    assert len(removes) == 1 and "userIdentity" not in removes[0]
    # The TTL service deleting an ended hold's history, 30 days on: made from the real
    # record of its release (DynamoDB Local's TTL would need 30 days).
    released = next(
        r
        for r in records
        if r["eventName"] == "MODIFY"
        and r["dynamodb"]["NewImage"].get("reservationId", {}).get("S") == ended.reservation_id
    )
    ttl_remove = {
        **released,
        "eventName": "REMOVE",
        "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
        "dynamodb": {**released["dynamodb"], "OldImage": released["dynamodb"]["NewImage"]},
    }
    del ttl_remove["dynamodb"]["NewImage"]
    removes.append(ttl_remove)
    assert len(removes) == 2
    assert not any(_matches(r) for r in removes)


def test_reconcile_ends_overdue_holds_the_others_missed(short_holds: Services) -> None:
    svc = short_holds
    svc.stock.set("demo", "R", on_hand=3, low_stock_threshold=None, unlimited=False)
    res = _reserve(svc, "rec", "R", 3)
    time.sleep(1.1)
    dry = svc.reconciler.run(dry_run=True)
    assert res.reservation_id in dry.overdue and not dry.expired
    assert svc.stock.get("demo", "R").reserved == 3  # a dry run changes nothing
    report = svc.reconciler.run()
    assert report.expired == [res.reservation_id]
    assert svc.holds.get("demo", res.reservation_id).status is ReservationStatus.EXPIRED
    assert svc.stock.get("demo", "R").available == 3
    assert svc.reconciler.run().expired == []  # nothing left to do
    assert_invariants(svc)


def _corrupt_reserved(svc: Services, sku: str, delta: int) -> None:
    wiring.dynamodb_client().update_item(
        TableName=svc.settings.TABLE_NAME,
        Key=to_av(stock_key("demo", sku)),
        UpdateExpression="SET reserved = reserved + :d, available = available - :d",
        ExpressionAttributeValues={":d": {"N": str(delta)}},
    )


def test_drift_upward_is_corrected_and_stuck_units_only_reported(short_holds: Services) -> None:
    svc = short_holds
    svc.stock.set("demo", "D", on_hand=10, low_stock_threshold=None, unlimited=False)
    svc.stock.set("demo", "S", on_hand=10, low_stock_threshold=None, unlimited=False)
    _reserve(svc, "d1", "D", 2, seconds=600)
    _reserve(svc, "s1", "S", 2, seconds=600)
    _corrupt_reserved(svc, "D", -1)  # counter too low: available too high (the oversell direction)
    _corrupt_reserved(svc, "S", +3)  # counter too high: 3 units stuck
    report = svc.reconciler.run()
    drift = {d.sku: d for d in report.drift}
    assert drift["D"].action == "corrected" and drift["D"].counted == 2
    assert drift["S"].action == "reported" and drift["S"].reserved == 5 and drift["S"].counted == 2
    assert svc.stock.get("demo", "D").reserved == 2
    assert svc.stock.get("demo", "S").reserved == 5
    # The operator's explicit choice corrects the stuck units, under the same conditions.
    fixed = svc.reconciler.run(correct_stuck=True)
    assert {d.sku: d.action for d in fixed.drift} == {"S": "corrected"}
    assert svc.stock.get("demo", "S").available == 8
    assert svc.reconciler.run().drift == []
    assert_invariants(svc)


def test_drift_on_a_sku_that_just_changed_is_not_corrected(local: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_QUIET_SECONDS", "300")
    wiring.reset()
    svc = services()
    svc.stock.set("demo", "Q", on_hand=10, low_stock_threshold=None, unlimited=False)
    svc.reserving.reserve("demo", cart_id="q1", customer_id=None, lines=[Line(sku="Q", quantity=2)])
    _corrupt_reserved(svc, "Q", -1)
    report = svc.reconciler.run()
    assert [(d.sku, d.action) for d in report.drift] == [("Q", "not_quiet")]
    assert svc.stock.get("demo", "Q").reserved == 1


def test_a_dead_hold_never_blocks_a_shopper(short_holds: Services) -> None:
    svc = short_holds
    svc.stock.set("demo", "LAST1", on_hand=1, low_stock_threshold=None, unlimited=False)
    dead = _reserve(svc, "walked-away", "LAST1", 1)
    with pytest.raises(InsufficientStock):
        _reserve(svc, "early-bird", "LAST1", 1, seconds=600)  # before the deadline: really short
    time.sleep(1.1)
    # Past the deadline, nothing has released it yet; the next shopper's request does.
    res = _reserve(svc, "next-shopper", "LAST1", 1, seconds=600)
    assert res.status is ReservationStatus.ACTIVE
    assert svc.holds.get("demo", dead.reservation_id).status is ReservationStatus.EXPIRED
    assert_invariants(svc)


def test_the_operator_sweep_dry_run_prints_and_changes_nothing(
    short_holds: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    from tools.reconcile import main as reconcile_main

    svc = short_holds
    svc.stock.set("demo", "OP", on_hand=2, low_stock_threshold=None, unlimited=False)
    res = _reserve(svc, "op", "OP", 2)
    time.sleep(1.1)
    endpoint = wiring.dynamodb_client().meta.endpoint_url
    args = ["--table", svc.settings.TABLE_NAME, "--endpoint-url", endpoint]
    assert reconcile_main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "overdue active holds: 1; would end: 1" in printed and res.reservation_id in printed
    assert services().stock.get("demo", "OP").reserved == 2
    assert reconcile_main(args) == 0
    assert "ended: 1" in capsys.readouterr().out
    assert services().stock.get("demo", "OP").available == 2
