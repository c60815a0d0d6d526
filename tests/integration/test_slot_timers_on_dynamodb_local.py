"""Slot timers on DynamoDB Local (docs/expiry.md, "Slot timers"): holds made by racing
requests, armed by the hold stream from the table's real stream records, ended by the
real ASL in moto's interpreter (the local stack's moto server), whose expire invocations
end many holds at once (the survey and its Map groups, each with its threads) against
DynamoDB Local, while shoppers release some of the same holds. Faults are injected
where a retry could count twice: a group's answer is lost after its writes committed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from stockhold.domain.errors import StockholdError
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Line, ReservationStatus
from stockhold.wiring import Services, services
from tests.helpers import load_function
from tests.integration.conftest import assert_invariants, hold_stream_source, hold_timer_on, race, stream_records
from tools import lambda_hook
from tools.local.context import LambdaContext
from tools.local.motoserver import MotoServer

pytestmark = pytest.mark.integration

SKUS, ON_HAND, HOLDS = ("S-0", "S-1", "S-2", "S-3"), 10, 32


@pytest.fixture
def slots(local: Services, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The real ASL on the moto server; its Lambda tasks answered by the expire handler
    in-process, on DynamoDB Local. ``lose`` group answers are lost after the group ran."""
    monkeypatch.setenv("MIN_HOLD_SECONDS", "1")
    monkeypatch.setenv("SLOT_GROUP_HOLDS", "5")  # 32 holds over 8 hold shards: several groups
    sfn, arn = hold_timer_on(moto_server, monkeypatch)
    expire = load_function("expire").lambda_handler
    calls: list[dict[str, Any]] = []
    lost: set[str] = set()
    faults = {"lose": 0}
    lock = threading.Lock()

    def dispatch(name: str, event: Any) -> tuple[Any, str | None]:
        with lock:
            calls.append(event)
        try:
            answer = expire(event, LambdaContext())
        except Exception as exc:  # as Lambda answers a function that raised
            return {"errorType": type(exc).__name__, "errorMessage": str(exc)}, "Unhandled"
        key = f"{event.get('slot')}:{event.get('shards')}"
        with lock:
            lose = "shards" in event and faults["lose"] > 0 and key not in lost
            if lose:
                faults["lose"] -= 1
                lost.add(key)
        if lose:  # its holds are ended (committed); the environment died before it answered
            return {"errorType": "Runtime.ExitError", "errorMessage": "the environment died"}, "Unhandled"
        return answer, None

    hook = lambda_hook.install(dispatch)
    try:
        yield {"sfn": sfn, "arn": arn, "calls": calls, "faults": faults, "lost": lost}
    finally:
        lambda_hook.uninstall(hook)


def _all_finished(sfn: Any, arn: str, timeout: float = 60) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        executions = sfn.list_executions(stateMachineArn=arn)["executions"]
        if executions and all(e["status"] != "RUNNING" for e in executions):
            return list(executions)
        time.sleep(0.2)
    raise AssertionError("the slot timers did not finish")


def _hold_stream(svc: Services) -> None:
    source = hold_stream_source()
    records = [r for r in stream_records(svc) if source.matches(r)]
    handler = load_function("hold_stream").lambda_handler
    assert handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}


def test_a_crowded_slot_ends_every_hold_once_with_shoppers_racing_it_and_answers_lost(
    slots: dict[str, Any], local: Services
) -> None:
    svc = services()
    for sku in SKUS:
        svc.stock.set("demo", sku, on_hand=ON_HAND, low_stock_threshold=None, unlimited=False)
    slots["faults"]["lose"] = 2
    made = race(
        HOLDS,
        lambda i: svc.reserving.reserve(
            "demo",
            cart_id=f"cart-{i}",
            customer_id=None,
            lines=[Line(sku=SKUS[i % len(SKUS)], quantity=1)],
            hold_seconds=2,
        ),
    )
    holds = [r for r in made if not isinstance(r, StockholdError)]
    assert len(holds) == HOLDS  # 32 of 40 units
    _hold_stream(svc)  # the real INSERT records arm the slots (one or two seconds of deadlines)
    executions = slots["sfn"].list_executions(stateMachineArn=slots["arn"])["executions"]
    assert 1 <= len(executions) <= 2 and all(e["name"].startswith("expire-") for e in executions)

    # Half the shoppers cancel right at the deadline, racing the slot for the same holds.
    time.sleep(max(0.0, min(h.expires_at for h in holds) / 1000 - now_ms() / 1000))

    def cancel(i: int) -> str:
        try:
            return svc.holds.release("demo", holds[i].reservation_id, "cancelled").status.value
        except StockholdError as exc:
            return type(exc).__name__  # the slot ended it first

    cancels = race(HOLDS // 2, cancel)
    assert all(isinstance(c, str) for c in cancels)
    finished = _all_finished(slots["sfn"], slots["arn"])
    assert all(e["status"] == "SUCCEEDED" for e in finished)
    assert slots["lost"], "no group's answer was lost: the fault was not injected"

    ended = [svc.holds.get("demo", h.reservation_id) for h in holds]
    assert {r.status for r in ended} <= {ReservationStatus.EXPIRED, ReservationStatus.RELEASED}
    released = sum(r.status is ReservationStatus.RELEASED for r in ended)
    assert released == sum(c == "RELEASED" for c in cancels)  # whoever won, once
    for sku in SKUS:
        level = svc.stock.get("demo", sku)
        assert (level.reserved, level.allocated, level.available) == (0, 0, ON_HAND), sku
    assert_invariants(svc)
    # An expired hold was ended by its slot, or by a shopper's release that met it past its
    # deadline (a request ends a due hold as expired); the retried groups found theirs ended.
    by = Counter(r.expired_by for r in ended if r.status is ReservationStatus.EXPIRED)
    assert set(by) <= {"timer", "request"} and by["timer"] >= HOLDS // 2, by
