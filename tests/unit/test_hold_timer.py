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

from stockhold import runtime
from stockhold.models import Line
from stockhold.runtime import services
from tests.helpers import load_function
from tools import lambda_hook
from tools.local.context import LambdaContext
from tools.template import ROOT, create_tables

EXPIRE_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ExpireFunction"


@pytest.fixture
def timer(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("MIN_HOLD_SECONDS", "1")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        runtime.reset()
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
            runtime.reset()


def _hold(seconds: int, cart: str = "c") -> Any:
    svc = services()
    if svc.store.get_stock("demo", "T") is None:
        svc.stock.set("demo", "T", on_hand=5, low_stock_threshold=None, unlimited=False)
    return svc.reservations.reserve(
        "demo", cart_id=cart, customer_id=None, lines=[Line(sku="T", quantity=2)], hold_seconds=seconds
    )


def _run(timer: dict[str, Any], res: Any, timeout: float = 20) -> dict[str, Any]:
    from stockhold.models import timer_deadline

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
    after = services().reservations.get("demo", res.reservation_id)
    assert after.status.value == "EXPIRED" and after.end_reason == "expired"
    level = services().stock.get("demo", "T")
    assert (level.reserved, level.available) == (0, 5)


def test_an_extended_hold_is_waited_for_again_and_expires_at_its_last_deadline(timer: dict[str, Any]) -> None:
    res = _hold(1)
    svc = services()
    first = svc.reservations.extend("demo", res.reservation_id, 2)
    second = svc.reservations.extend("demo", res.reservation_id, 3)
    assert second.expires_at > first.expires_at > res.expires_at
    out = _run(timer, res)
    outcomes = [c.get("loop") for c in timer["calls"]]
    assert out["status"] == "SUCCEEDED" and len(outcomes) >= 2  # woke at the old deadline, then waited again
    ended = svc.reservations.get("demo", res.reservation_id)
    assert ended.status.value == "EXPIRED" and ended.ended_at is not None and ended.ended_at >= second.expires_at


@pytest.mark.parametrize("end", ["confirm", "release"])
def test_a_hold_ended_before_its_deadline_ends_the_timer_without_touching_stock(
    timer: dict[str, Any], end: str
) -> None:
    res = _hold(1)
    svc = services()
    if end == "confirm":
        svc.reservations.confirm("demo", res.reservation_id, "o-1")
    else:
        svc.reservations.release("demo", res.reservation_id, "cancelled")
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
    assert services().reservations.get("demo", res.reservation_id).status.value == "EXPIRED"
