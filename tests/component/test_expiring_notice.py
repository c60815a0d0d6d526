"""ReservationExpiring's timing (docs/events.md): which holds the timer warns, when, and
that the warning write happens once per deadline. The whole path under the real ASL is in
tests/integration/test_events_on_dynamodb_local.py."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from stockhold import wiring
from stockhold.data.schema import reservation_key, to_av
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Line, Reservation, timer_deadline
from stockhold.domain.rules import expiry_slot, warn_slot
from stockhold.wiring import services
from tests.helpers import load_function
from tools.local.context import LambdaContext
from tools.local.streams import lambda_record
from tools.template import ROOT


@pytest.fixture(autouse=True)
def short_holds(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_HOLD_SECONDS", "1")
    wiring.reset()
    services().stock.set("demo", "MUG", on_hand=10, low_stock_threshold=None, unlimited=False)


def _hold(seconds: int, checkout: str | None = "chk_1", cart: str = "c1") -> Reservation:
    return services().reserving.reserve(
        "demo",
        cart_id=cart,
        customer_id=None,
        lines=[Line(sku="MUG", quantity=1)],
        hold_seconds=seconds,
        checkout_id=checkout,
    )


def _item(res: Reservation) -> dict[str, Any]:
    item = services().runner.get(reservation_key("demo", res.reservation_id))
    assert item is not None
    return item


def _expire(payload: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = load_function("expire").lambda_handler(payload, LambdaContext())
    return out


def test_a_checkout_hold_within_the_notice_is_warned_once_for_its_deadline() -> None:
    res = _hold(61)  # EXPIRING_NOTICE_SECONDS defaults to 60
    task = {"action": "warn", "storeId": "demo", "reservationId": res.reservation_id, "loop": 0}
    assert _expire(task) == {"outcome": "warned"}
    item = _item(res)
    assert item["warnedFor"] == res.expires_at and item["lastAction"] == "reservation_expiring"
    assert item["lastActor"] == "system:timer" and 0 < res.expires_at - item["warnedAt"] <= 61_000
    assert item["status"] == "ACTIVE" and item["expiresAt"] == res.expires_at  # nothing else changed
    assert _expire(task) == {"outcome": "already_warned"}  # a retried task writes nothing


@pytest.mark.parametrize(
    ("seconds", "checkout", "end", "outcome"),
    [
        (600, "chk_1", None, "not_yet"),  # extended since the timer was set: warned before the new deadline
        (61, None, None, "not_checkout"),  # a plain reservation is never warned
        (61, "chk_1", "release", "already_ended"),
    ],
)
def test_other_holds_are_not_warned(seconds: int, checkout: str | None, end: str | None, outcome: str) -> None:
    res = _hold(seconds, checkout)
    if end == "release":
        services().holds.release("demo", res.reservation_id, "cancelled")
    task = {"action": "warn", "storeId": "demo", "reservationId": res.reservation_id}
    assert _expire(task) == {"outcome": outcome}
    assert "warnedFor" not in _item(res)


def test_a_notice_of_zero_turns_warnings_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPIRING_NOTICE_SECONDS", "0")
    wiring.reset()
    res = _hold(30)
    assert services().expiry.expiring_notice_at(res) is None
    assert _expire({"action": "warn", "storeId": "demo", "reservationId": res.reservation_id}) == {
        "outcome": "not_checkout"
    }


def _stream_arms(res: Reservation, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Deliver the hold's INSERT to the hold stream; the slot executions it started, by name
    (moto's Step Functions records them without running them)."""
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="HoldTimer", definition=_ASL, roleArn="arn:aws:iam::123456789012:role/timer", type="STANDARD"
    )["stateMachineArn"]
    monkeypatch.setenv("HOLD_TIMER_ARN", arn)
    wiring.reset()
    record = lambda_record(
        {"eventID": "e1", "eventName": "INSERT", "dynamodb": {"NewImage": to_av(_item(res)), "SequenceNumber": "1"}}
    )
    app = load_function("hold_stream")
    assert app.lambda_handler({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    out = {}
    for e in sfn.list_executions(stateMachineArn=arn)["executions"]:
        out[e["name"]] = json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
    return out


_ASL = (ROOT / "statemachine/hold_timer.asl.json").read_text().replace("${ExpireFunctionArn}", "arn:aws:lambda:::f")


def test_a_checkout_hold_arms_the_warn_slot_of_its_notice_and_the_expire_slot_of_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    res = _hold(300)
    started = _stream_arms(res, monkeypatch)
    notice = (res.expires_at - 60_000) // 1000  # EXPIRING_NOTICE_SECONDS, whole seconds, not later
    deadline = expiry_slot(res.expires_at, now_ms())
    assert started == {
        f"warn-{notice}": {"kind": "warn", "slot": notice, "at": timer_deadline(notice * 1000), "loop": 0},
        f"expire-{deadline}": {"kind": "expire", "slot": deadline, "at": timer_deadline(deadline * 1000), "loop": 0},
    }
    assert deadline * 1000 >= res.expires_at  # never before the deadline


def test_no_warn_slot_for_plain_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    started = _stream_arms(_hold(300, None), monkeypatch)
    assert [name.split("-")[0] for name in started] == ["expire"]


def test_a_hold_arriving_inside_the_notice_is_warned_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 30 s checkout hold with a 60 s notice (or a stream running late): warn now, not never."""
    res = _hold(30)
    started = _stream_arms(res, monkeypatch)
    assert [name.split("-")[0] for name in started] == ["expire"]
    item = _item(res)
    assert item["warnedFor"] == res.expires_at and item["lastActor"] == "system:timer"


def _warn_slot_of(res: Reservation) -> int:
    warn_at = services().expiry.expiring_notice_at(res)
    assert warn_at is not None
    slot = warn_slot(warn_at, now_ms())
    assert slot is not None
    return slot


def _wake(kind: str, slot: int) -> dict[str, Any]:
    """The slot's execution waking at its second (it waits for it)."""
    time.sleep(max(0.0, slot - now_ms() / 1000))
    return _expire({"kind": kind, "slot": slot, "loop": 0})


def test_a_warn_slot_warns_the_checkout_holds_of_its_second_and_no_others() -> None:
    checkout = _hold(63)  # EXPIRING_NOTICE_SECONDS is 60: its notice is 2 or 3 s away
    plain = _hold(63, None, cart="c2")
    later = _hold(400, cart="c3")  # its notice is minutes away
    slot = _warn_slot_of(checkout)
    answer = _wake("warn", slot)
    assert answer["handled"] == 1 and answer["fanOut"] is False and answer["again"] is False
    assert _item(checkout)["warnedFor"] == checkout.expires_at
    assert "warnedFor" not in _item(plain) and "warnedFor" not in _item(later)
    assert _expire({"kind": "warn", "slot": slot, "loop": 1})["handled"] == 0  # a retried wake-up writes nothing
    assert (_item(checkout)["status"], _item(checkout)["expiresAt"]) == ("ACTIVE", checkout.expires_at)


def test_an_extended_checkout_hold_is_warned_by_the_slot_of_its_new_notice() -> None:
    res = _hold(63)
    old_slot = _warn_slot_of(res)
    extended = services().holds.extend("demo", res.reservation_id, 66)
    new_slot = _warn_slot_of(extended)
    assert new_slot > old_slot
    assert _wake("warn", old_slot)["handled"] == 0
    assert "warnedFor" not in _item(res)
    assert _wake("warn", new_slot)["handled"] == 1
    assert _item(res)["warnedFor"] == extended.expires_at
