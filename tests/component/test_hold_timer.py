"""The hold timer's real ASL, run by moto's Step Functions interpreter against the real
expire function (Lambda calls answered in-process). Wait states really sleep, so holds
here last one or two seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stockhold import wiring
from stockhold.data.schema import reservation_key, to_av
from stockhold.domain.models import Line
from stockhold.wiring import services
from tests.helpers import load_function
from tools import lambda_hook
from tools.local.context import LambdaContext
from tools.local.statemachines import stop_waits_for_start
from tools.template import ROOT, create_tables

EXPIRE_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ExpireFunction"


@pytest.fixture
def timer(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("MIN_HOLD_SECONDS", "1")
    stop_waits_for_start()  # a timer stopped right after its start (moto runs it on a thread of its own)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        wiring.reset()
        create_tables(boto3.client("dynamodb"))
        calls: list[dict[str, Any]] = []
        failures = {"left": 0}
        expire = load_function("expire").lambda_handler

        def dispatch(name: str, event: Any) -> tuple[Any, str | None]:
            calls.append(event)
            if failures["left"] > 0:
                failures["left"] -= 1
                return {"errorType": "RuntimeError", "errorMessage": "DynamoDB is having a bad day"}, "RuntimeError"
            return expire(event, LambdaContext()), None

        hook = lambda_hook.install(dispatch)
        sfn = boto3.client("stepfunctions")
        asl = (ROOT / "statemachine/hold_timer.asl.json").read_text().replace("${ExpireFunctionArn}", EXPIRE_ARN)
        arn = sfn.create_state_machine(
            name="HoldTimer", definition=asl, roleArn="arn:aws:iam::123456789012:role/timer", type="STANDARD"
        )["stateMachineArn"]
        try:
            yield {"sfn": sfn, "arn": arn, "calls": calls, "failures": failures}
        finally:
            lambda_hook.uninstall(hook)
            wiring.reset()


def _hold(seconds: int, cart: str = "c") -> Any:
    svc = services()
    if not svc.stock.get_many("demo", ["T"])[0]:
        svc.stock.set("demo", "T", on_hand=5, low_stock_threshold=None, unlimited=False)
    return svc.reserving.reserve(
        "demo", cart_id=cart, customer_id=None, lines=[Line(sku="T", quantity=2)], hold_seconds=seconds
    )


def _run(timer: dict[str, Any], res: Any, timeout: float = 20) -> dict[str, Any]:
    from stockhold.domain.models import timer_deadline

    sfn = timer["sfn"]
    execution = sfn.start_execution(
        stateMachineArn=timer["arn"],
        name=f"demo--{res.reservation_id}",
        input=json.dumps(
            {
                "storeId": "demo",
                "reservationId": res.reservation_id,
                "expiresAt": timer_deadline(res.expires_at),
                "loop": 0,
            }
        ),
    )["executionArn"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sfn.describe_execution(executionArn=execution)
        if out["status"] != "RUNNING":
            return out
        time.sleep(0.1)
    raise AssertionError("the timer did not finish")


def test_a_due_hold_is_expired_and_its_units_return(timer: dict[str, Any]) -> None:
    res = _hold(1)
    out = _run(timer, res)
    assert out["status"] == "SUCCEEDED"
    assert json.loads(out["output"])["result"]["outcome"] == "expired"
    after = services().holds.get("demo", res.reservation_id)
    assert after.status.value == "EXPIRED" and after.end_reason == "expired"
    level = services().stock.get("demo", "T")
    assert (level.reserved, level.available) == (0, 5)


def test_an_extended_hold_is_waited_for_again_and_expires_at_its_last_deadline(timer: dict[str, Any]) -> None:
    res = _hold(1)
    svc = services()
    first = svc.holds.extend("demo", res.reservation_id, 2)
    second = svc.holds.extend("demo", res.reservation_id, 3)
    assert second.expires_at > first.expires_at > res.expires_at
    out = _run(timer, res)
    outcomes = [c.get("loop") for c in timer["calls"]]
    assert out["status"] == "SUCCEEDED" and len(outcomes) >= 2  # woke at the old deadline, then waited again
    ended = svc.holds.get("demo", res.reservation_id)
    assert ended.status.value == "EXPIRED" and ended.ended_at is not None and ended.ended_at >= second.expires_at


@pytest.mark.parametrize("end", ["confirm", "release"])
def test_a_hold_ended_before_its_deadline_ends_the_timer_without_touching_stock(
    timer: dict[str, Any], end: str
) -> None:
    res = _hold(1)
    svc = services()
    if end == "confirm":
        svc.holds.confirm("demo", res.reservation_id, "o-1")
    else:
        svc.holds.release("demo", res.reservation_id, "cancelled")
    before = svc.stock.get("demo", "T")
    out = _run(timer, res)
    assert out["status"] == "SUCCEEDED"
    assert json.loads(out["output"])["result"]["outcome"] == "already_ended"
    after = svc.stock.get("demo", "T")
    assert (after.on_hand, after.reserved, after.allocated, after.available) == (
        before.on_hand,
        before.reserved,
        before.allocated,
        before.available,
    )


def test_a_failing_invocation_is_retried(timer: dict[str, Any]) -> None:
    timer["failures"]["left"] = 1
    res = _hold(1)
    out = _run(timer, res)
    assert out["status"] == "SUCCEEDED"
    assert len(timer["calls"]) == 2  # the failure, then the retry that expired it
    assert services().holds.get("demo", res.reservation_id).status.value == "EXPIRED"


# --- the hold stream starts each hold's timer and stops it when the hold ends early --------------


@pytest.fixture
def hold_stream(timer: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hold stream's handler, its HOLD_TIMER_ARN the timer fixture's state machine."""
    monkeypatch.setenv("HOLD_TIMER_ARN", timer["arn"])
    wiring.reset()
    return lambda records: load_function("hold_stream").lambda_handler({"Records": records}, LambdaContext())


def _item(res: Any) -> dict[str, Any]:
    item = services().runner.get(reservation_key("demo", res.reservation_id))
    assert item is not None
    return item


def _record(name: str, old: dict[str, Any] | None, new: dict[str, Any] | None, seq: int) -> dict[str, Any]:
    """A stream record of the hold's real item images, as Lambda delivers it."""
    ddb: dict[str, Any] = {
        "Keys": to_av({"pk": (new or old or {})["pk"], "sk": "RESERVATION"}),
        "SequenceNumber": str(seq),
    }
    if old is not None:
        ddb["OldImage"] = to_av(old)
    if new is not None:
        ddb["NewImage"] = to_av(new)
    return {"eventID": f"ev-{seq}", "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": ddb}


def _execution(timer: dict[str, Any], res: Any) -> dict[str, Any]:
    arn = timer["arn"].replace(":stateMachine:", ":execution:") + f":demo--{res.reservation_id}"
    return dict(timer["sfn"].describe_execution(executionArn=arn))


def _settled(timer: dict[str, Any], res: Any, timeout: float = 30) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = _execution(timer, res)
        if out["status"] != "RUNNING":
            return out
        time.sleep(0.05)
    raise AssertionError("the timer is still running")


@pytest.mark.parametrize("end", ["confirm", "release"])
def test_a_hold_ended_before_its_deadline_has_its_timer_stopped(
    timer: dict[str, Any], hold_stream: Any, end: str
) -> None:
    res = _hold(60)
    created = _item(res)
    assert hold_stream([_record("INSERT", None, created, 1)]) == {"batchItemFailures": []}
    assert _execution(timer, res)["status"] == "RUNNING"  # waiting for the deadline, a minute away
    svc = services()
    if end == "confirm":
        svc.holds.confirm("demo", res.reservation_id, "o-1")
    else:
        svc.holds.release("demo", res.reservation_id, "cancelled")
    ended = _item(res)
    before = svc.stock.get("demo", "T")
    started = time.monotonic()
    assert hold_stream([_record("MODIFY", created, ended, 2)]) == {"batchItemFailures": []}
    out = _settled(timer, res)
    assert out["status"] == "ABORTED" and time.monotonic() - started < 5  # not at the deadline
    history = timer["sfn"].get_execution_history(executionArn=out["executionArn"])["events"]
    assert not any(e["type"].startswith(("TaskScheduled", "LambdaFunctionScheduled")) for e in history)
    assert timer["calls"] == []  # the expire function never ran for it
    after = svc.stock.get("demo", "T")
    assert (after.reserved, after.allocated, after.available) == (before.reserved, before.allocated, before.available)
    # Both records delivered again (a retried batch): nothing new starts, nothing fails.
    records = [_record("INSERT", None, created, 1), _record("MODIFY", created, ended, 2)]
    assert hold_stream(records) == {"batchItemFailures": []}
    assert _execution(timer, res)["status"] == "ABORTED"
    assert len(timer["sfn"].list_executions(stateMachineArn=timer["arn"])["executions"]) == 1


def test_a_hold_and_its_end_in_one_batch_start_and_stop_its_timer(timer: dict[str, Any], hold_stream: Any) -> None:
    res = _hold(60)
    created = _item(res)
    services().holds.release("demo", res.reservation_id, "cancelled")
    records = [_record("INSERT", None, created, 1), _record("MODIFY", created, _item(res), 2)]
    assert hold_stream(records) == {"batchItemFailures": []}
    assert _settled(timer, res)["status"] == "ABORTED" and timer["calls"] == []


def test_stopping_a_timer_that_never_started_is_fine(timer: dict[str, Any], hold_stream: Any) -> None:
    res = _hold(60)
    created = _item(res)
    services().holds.confirm("demo", res.reservation_id, "o-1")
    assert hold_stream([_record("MODIFY", created, _item(res), 2)]) == {"batchItemFailures": []}
    assert timer["sfn"].list_executions(stateMachineArn=timer["arn"])["executions"] == []


def test_stopping_a_timer_that_already_finished_is_fine(timer: dict[str, Any], hold_stream: Any) -> None:
    """The stop record arrives after the timer woke, found the hold ended and stopped by itself."""
    res = _hold(1)
    created = _item(res)
    services().holds.release("demo", res.reservation_id, "cancelled")
    assert hold_stream([_record("INSERT", None, created, 1)]) == {"batchItemFailures": []}
    out = _settled(timer, res, timeout=20)
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"])["result"]["outcome"] == "already_ended"
    assert hold_stream([_record("MODIFY", created, _item(res), 2)]) == {"batchItemFailures": []}
    assert _execution(timer, res)["status"] == "SUCCEEDED"


def test_an_expired_hold_does_not_stop_the_timer_that_expired_it(timer: dict[str, Any], hold_stream: Any) -> None:
    """ACTIVE -> EXPIRED is not the hold stream's: its filter keeps it out, and its dispatch ignores it."""
    res = _hold(1)
    created = _item(res)
    assert hold_stream([_record("INSERT", None, created, 1)]) == {"batchItemFailures": []}
    out = _settled(timer, res, timeout=20)
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"])["result"]["outcome"] == "expired"
    expired = _record("MODIFY", created, _item(res), 2)
    assert load_function("hold_stream").change_of(expired) is None
    assert hold_stream([expired]) == {"batchItemFailures": []}
    assert _execution(timer, res)["status"] == "SUCCEEDED"


def test_without_a_hold_timer_arn_timers_are_neither_started_nor_stopped(
    timer: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOLD_TIMER_ARN", "")
    wiring.reset()
    handler = load_function("hold_stream").lambda_handler
    res = _hold(60)
    created = _item(res)
    services().holds.release("demo", res.reservation_id, "cancelled")
    records = [_record("INSERT", None, created, 1), _record("MODIFY", created, _item(res), 2)]
    assert handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    assert timer["sfn"].list_executions(stateMachineArn=timer["arn"])["executions"] == []
