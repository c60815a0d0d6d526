"""ReservationExpiring's timing (docs/events.md): which holds the timer warns, when, and
that the warning write happens once per deadline. The whole path under the real ASL is in
tests/integration/test_events_on_dynamodb_local.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stockhold import wiring
from stockhold.data.schema import reservation_key, to_av
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Line, Reservation, timer_deadline
from stockhold.wiring import services
from tests.helpers import load_function
from tools.local.context import LambdaContext
from tools.local.streams import lambda_record


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


class _Sfn:
    def __init__(self) -> None:
        self.inputs: list[dict[str, Any]] = []

    def start_execution(self, **kwargs: Any) -> dict[str, Any]:
        self.inputs.append(json.loads(kwargs["input"]))
        return {"executionArn": "arn:aws:states:us-east-1:123456789012:execution:t:x"}


def _start_timer(res: Reservation, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    app = load_function("hold_stream")
    sfn = _Sfn()
    monkeypatch.setattr(app, "stepfunctions_client", lambda: sfn)
    raw = services().runner.get(reservation_key("demo", res.reservation_id))
    assert raw is not None
    record = lambda_record(
        {"eventID": "e1", "eventName": "INSERT", "dynamodb": {"NewImage": to_av(raw), "SequenceNumber": "1"}}
    )
    monkeypatch.setenv("HOLD_TIMER_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:t")
    wiring.reset()
    assert app.lambda_handler({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    (timer_input,) = sfn.inputs
    return timer_input


def test_the_timer_of_a_checkout_hold_wakes_the_notice_before_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    res = _hold(300)
    timer_input = _start_timer(res, monkeypatch)
    warn_at = res.expires_at - 60_000
    assert timer_input["warnAt"] == timer_deadline(warn_at - warn_at % 1000)  # whole seconds, not later
    assert timer_input["expiresAt"] == timer_deadline(res.expires_at)


def test_no_warning_for_plain_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "warnAt" not in _start_timer(_hold(300, None), monkeypatch)


def test_a_timer_starting_inside_the_notice_warns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 30 s checkout hold with a 60 s notice (or a stream running late): warn now, not never."""
    res = _hold(30)
    timer_input = _start_timer(res, monkeypatch)
    assert timer_input["warnAt"] <= timer_deadline(now_ms())
    assert timer_input["expiresAt"] == timer_deadline(res.expires_at)


def test_waiting_for_an_extended_checkout_hold_sets_a_new_warning() -> None:
    checkout = _hold(300)
    plain = _hold(300, None, cart="c2")
    answer = _expire({"storeId": "demo", "reservationId": checkout.reservation_id, "loop": 0})
    assert answer["outcome"] == "not_due" and answer["wait"] is True
    warn_at = checkout.expires_at - 60_000
    assert answer["warnAt"] == timer_deadline(warn_at - warn_at % 1000)
    plain_answer = _expire({"storeId": "demo", "reservationId": plain.reservation_id, "loop": 0})
    assert plain_answer["wait"] is True and plain_answer["warnAt"] is None
