"""Stock events on DynamoDB Local: real stock changes through the services, the real
stream records (through the template's filters) fed to the change feed, EventBridge
served by the local stack's moto server and observed through an SQS subscriber (the
``moto_server`` and ``bus`` fixtures, tests/integration/conftest.py); and the hold timer
run from the real ASL by moto's interpreter: its warn and expire slots, and a slot that
leaves a hold ended early alone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stockhold import wiring
from stockhold.domain.models import Line, ReservationStatus
from stockhold.wiring import Services, services
from tests.helpers import load_function
from tests.integration.conftest import change_feed_source, hold_stream_source, hold_timer_on, stream_records
from tools import lambda_hook
from tools.local.context import LambdaContext
from tools.local.motoserver import MotoServer

pytestmark = pytest.mark.integration


def admitted(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Lambda would hand the change feed: the records its FilterCriteria admit."""
    source = change_feed_source()
    return [r for r in records if source.matches(r)]


def new_holds(svc: Services) -> list[dict[str, Any]]:
    """The hold stream's records that arm timer slots: INSERTs of ACTIVE reservations."""
    return [
        r
        for r in stream_records(svc)
        if r["eventName"] == "INSERT"
        and r["dynamodb"]["NewImage"]["type"]["S"] == "RESERVATION"
        and r["dynamodb"]["NewImage"]["status"]["S"] == "ACTIVE"
    ]


def publish(records: list[dict[str, Any]]) -> Any:
    return load_function("change_feed").lambda_handler({"Records": records}, LambdaContext())


def test_available_10_6_5_3_0_4_emits_low_out_and_back_in_exactly_once(bus: dict[str, Any]) -> None:
    svc = services()
    svc.stock.set("demo", "MUG", on_hand=10, low_stock_threshold=None, unlimited=False)  # threshold: 5
    four = svc.reserving.reserve("demo", cart_id="c1", customer_id=None, lines=[Line(sku="MUG", quantity=4)])
    svc.reserving.reserve("demo", cart_id="c2", customer_id=None, lines=[Line(sku="MUG", quantity=1)])  # 5
    svc.stock.adjust("demo", "MUG", -2)  # 3
    svc.reserving.reserve("demo", cart_id="c3", customer_id=None, lines=[Line(sku="MUG", quantity=3)])  # 0
    svc.holds.release("demo", four.reservation_id, "cancelled")  # 4
    assert svc.stock.get("demo", "MUG").available == 4

    records = stream_records(svc)
    batch = admitted(records)
    assert batch and len(batch) < len(records)  # holds, cart slots... never reach the function
    assert publish(batch) == {"batchItemFailures": []}
    got = bus["received"]()
    assert [(e["detail-type"], e["detail"]["available"]) for e in got] == [
        ("StockLow", 5),
        ("StockOut", 0),
        ("StockBackIn", 4),
    ]
    assert [e["detail"]["cause"]["action"] for e in got] == ["reservation_created"] * 2 + ["reservation_released"]
    # The whole stream delivered again (a replay, retries): nothing is published twice.
    assert publish(batch) == {"batchItemFailures": []}
    assert bus["received"]() == []


def test_confirming_a_hold_emits_order_created_and_nothing_else(bus: dict[str, Any]) -> None:
    svc = services()
    svc.stock.set("demo", "TEE", on_hand=50, low_stock_threshold=None, unlimited=False)
    res = svc.reserving.reserve("demo", cart_id="c1", customer_id="u1", lines=[Line(sku="TEE", quantity=2)])
    svc.holds.confirm("demo", res.reservation_id, "o-1")
    assert publish(admitted(stream_records(svc))) == {"batchItemFailures": []}
    got = bus["received"]()
    assert [e["detail-type"] for e in got] == ["OrderCreated"]
    assert got[0]["detail"]["orderId"] == "o-1" and got[0]["detail"]["reservationId"] == res.reservation_id


@pytest.fixture
def hold_timer(local: Services, bus: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The real ASL on the moto server; its Lambda tasks answered by the expire handler in-process."""
    monkeypatch.setenv("MIN_HOLD_SECONDS", "1")
    monkeypatch.setenv("CHECKOUT_HOLD_SECONDS", "6")
    monkeypatch.setenv("EXPIRING_NOTICE_SECONDS", "2")
    server: MotoServer = bus["server"]
    sfn, arn = hold_timer_on(server, monkeypatch)
    calls: list[dict[str, Any]] = []
    expire = load_function("expire").lambda_handler

    def dispatch(name: str, event: Any) -> tuple[Any, str | None]:
        calls.append(event)
        return expire(event, LambdaContext()), None

    hook = lambda_hook.install(dispatch)
    try:
        yield {"sfn": sfn, "arn": arn, "calls": calls}
    finally:
        lambda_hook.uninstall(hook)


def _finished(sfn: Any, arn: str, timeout: float = 30) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        executions = sfn.list_executions(stateMachineArn=arn)["executions"]
        if executions and all(e["status"] != "RUNNING" for e in executions):
            return dict(sfn.describe_execution(executionArn=executions[0]["executionArn"]))
        time.sleep(0.2)
    raise AssertionError("the hold timer did not finish")


def _wait_for(condition: Any, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_a_checkout_hold_is_warned_once_per_deadline_then_expires(
    hold_timer: dict[str, Any], bus: dict[str, Any]
) -> None:
    svc = services()
    svc.stock.set("demo", "MUG", on_hand=10, low_stock_threshold=None, unlimited=False)
    view = svc.checkouts.start("demo", cart_id="c-warn", customer_id="u-1", lines=[Line(sku="MUG", quantity=1)])
    res = view.reservation
    assert res is not None and res.checkout_id == view.checkout.checkout_id

    def warned_for() -> Any:
        item = wiring.dynamodb_client().get_item(
            TableName=svc.settings.TABLE_NAME,
            Key={"pk": {"S": f"STORE#demo#RES#{res.reservation_id}"}, "sk": {"S": "RESERVATION"}},
            ConsistentRead=True,
        )["Item"]
        return int(item["warnedFor"]["N"]) if "warnedFor" in item else None

    # The hold stream, fed the hold's real INSERT record, arms the hold's warn and expire slots.
    inserts = [r for r in new_holds(svc) if r["dynamodb"]["NewImage"]["reservationId"]["S"] == res.reservation_id]
    hold_stream = load_function("hold_stream").lambda_handler
    assert hold_stream({"Records": inserts}, LambdaContext()) == {"batchItemFailures": []}
    started = hold_timer["sfn"].list_executions(stateMachineArn=hold_timer["arn"])["executions"]
    kinds = sorted(e["name"].split("-")[0] for e in started)
    # Its warn slot, or (the stream reached it inside the notice: a loaded machine) a warning at once.
    assert kinds == ["expire", "warn"] or (kinds == ["expire"] and warned_for() == res.expires_at)

    _wait_for(lambda: warned_for() == res.expires_at)
    # Extended after the warning: the stream's record of it arms the new deadline's slots;
    # the old expire slot wakes and leaves the hold alone, the new ones warn again and end it.
    extended = svc.holds.extend("demo", res.reservation_id, 6)
    assert hold_stream({"Records": hold_stream_records(svc)}, LambdaContext()) == {"batchItemFailures": []}
    assert len(hold_timer["sfn"].list_executions(stateMachineArn=hold_timer["arn"])["executions"]) == 4
    out = _finished(hold_timer["sfn"], hold_timer["arn"])
    assert out["status"] == "SUCCEEDED"
    assert warned_for() == extended.expires_at
    ended = svc.holds.get("demo", res.reservation_id)
    assert ended.status is ReservationStatus.EXPIRED and ended.ended_at is not None
    assert ended.ended_at >= extended.expires_at
    assert sum(1 for c in hold_timer["calls"] if c.get("kind") == "warn") >= 2

    records = stream_records(svc)
    warn_writes = [
        r
        for r in records
        if r["eventName"] == "MODIFY"
        and r["dynamodb"]["NewImage"].get("lastAction", {}).get("S") == "reservation_expiring"
    ]
    assert len(warn_writes) == 2  # once per deadline, never twice for one
    assert publish(admitted(records)) == {"batchItemFailures": []}
    got = [e for e in bus["received"]() if e["detail"].get("reservationId") == res.reservation_id]
    assert [e["detail-type"] for e in got] == ["ReservationExpiring", "ReservationExpiring", "ReservationExpired"]
    first, second, expired = (e["detail"] for e in got)
    assert first["checkoutId"] == second["checkoutId"] == view.checkout.checkout_id
    assert first["expiresAt"] != second["expiresAt"]
    # About the notice (2 s): Wait states work in whole seconds, and a warning up to 2 s early is accepted.
    assert 0 <= first["secondsLeft"] <= 4 and 0 <= second["secondsLeft"] <= 4
    assert expired["expiredBy"] == "timer"


def test_a_plain_hold_gets_no_warning(hold_timer: dict[str, Any], bus: dict[str, Any]) -> None:
    svc = services()
    svc.stock.set("demo", "MUG", on_hand=10, low_stock_threshold=None, unlimited=False)
    res = svc.reserving.reserve(
        "demo", cart_id="plain", customer_id=None, lines=[Line(sku="MUG", quantity=1)], hold_seconds=3
    )
    inserts = new_holds(svc)
    assert load_function("hold_stream").lambda_handler({"Records": inserts}, LambdaContext()) == {
        "batchItemFailures": []
    }
    assert _finished(hold_timer["sfn"], hold_timer["arn"])["status"] == "SUCCEEDED"
    # One expire slot (it may look twice: woken a moment early), no warn slot.
    assert {c["kind"] for c in hold_timer["calls"]} == {"expire"}
    assert (
        hold_timer["sfn"]
        .list_executions(stateMachineArn=hold_timer["arn"])["executions"][0]["name"]
        .startswith("expire-")
    )
    assert publish(admitted(stream_records(svc))) == {"batchItemFailures": []}
    got = [e["detail-type"] for e in bus["received"]() if e["detail"].get("reservationId") == res.reservation_id]
    assert got == ["ReservationExpired"]


def hold_stream_records(svc: Services) -> list[dict[str, Any]]:
    """What Lambda would hand the hold stream: the records its FilterCriteria admit."""
    source = hold_stream_source()
    return [r for r in stream_records(svc) if source.matches(r)]


@pytest.mark.parametrize("end", ["complete", "cancel"])
def test_a_checkout_that_ends_early_is_left_alone_by_its_waking_slot(
    hold_timer: dict[str, Any], bus: dict[str, Any], monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    monkeypatch.setenv("CHECKOUT_HOLD_SECONDS", "3")
    monkeypatch.setenv("EXPIRING_NOTICE_SECONDS", "0")
    wiring.reset()
    svc = services()
    svc.stock.set("demo", "MUG", on_hand=10, low_stock_threshold=None, unlimited=False)
    view = svc.checkouts.start("demo", cart_id=f"c-{end}", customer_id="u-1", lines=[Line(sku="MUG", quantity=1)])
    res = view.reservation
    assert res is not None
    handler = load_function("hold_stream").lambda_handler
    assert handler({"Records": hold_stream_records(svc)}, LambdaContext()) == {"batchItemFailures": []}
    sfn, arn = hold_timer["sfn"], hold_timer["arn"]
    (started,) = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert started["status"] == "RUNNING" and started["name"].startswith("expire-")

    if end == "complete":
        svc.checkouts.complete("demo", view.checkout.checkout_id, "pay-1")
    else:
        svc.checkouts.cancel("demo", view.checkout.checkout_id, "cancelled")
    # The real stream so far, through the hold stream's filter: the hold's INSERT again (a
    # replay is harmless), and nothing for its end: no timer is ever stopped.
    records = hold_stream_records(svc)
    assert [r["eventName"] for r in records] == ["INSERT"]
    assert handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    before = svc.stock.get("demo", "MUG")
    out = _finished(sfn, arn)
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"])["result"]["handled"] == 0
    after = svc.stock.get("demo", "MUG")
    assert (after.reserved, after.allocated, after.available) == (before.reserved, before.allocated, before.available)
    assert svc.holds.get("demo", res.reservation_id).status is (
        ReservationStatus.CONFIRMED if end == "complete" else ReservationStatus.RELEASED
    )
    assert publish(admitted(stream_records(svc))) == {"batchItemFailures": []}
    got = [e["detail-type"] for e in bus["received"]() if e["detail"].get("reservationId") == res.reservation_id]
    assert got == (["OrderCreated"] if end == "complete" else [])
