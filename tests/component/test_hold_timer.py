"""The hold timer's real ASL, run by moto's Step Functions interpreter against the real
expire function (Lambda calls answered in-process): one execution per slot, a second of
deadlines (docs/expiry.md, "Slot timers"). Wait states really sleep, so holds here last
one to three seconds."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from stockhold import wiring
from stockhold.data import schema
from stockhold.data.hold_timer import MAX_HOPS, Armed, SlotMarks, SlotTimers, SlotTimersStuck, execution_name
from stockhold.data.schema import hold_sweep_keys, reservation_key, to_av
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Line
from stockhold.domain.rules import SlotKind, expiry_slot
from stockhold.usecases.slots import ROTATING_SHARDS
from stockhold.wiring import services
from tests.helpers import load_function
from tools import lambda_hook
from tools.local.context import LambdaContext
from tools.local.statemachines import scope_stack_per_parse
from tools.template import ROOT, create_tables

EXPIRE_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ExpireFunction"
ON_HAND = 40


@pytest.fixture
def timer(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("MIN_HOLD_SECONDS", "1")
    # moto's in-process DynamoDB is not safe for concurrent writes to one item (the holds here
    # share a stock cell), so invocations run one at a time and end their holds one by one.
    # Concurrent slot work is run on DynamoDB Local by the local stack's tests.
    monkeypatch.setattr("stockhold.usecases.slots.PARALLEL", 1)
    scope_stack_per_parse()  # several slots' executions run at once
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        wiring.reset()
        create_tables(boto3.client("dynamodb"))
        calls: list[dict[str, Any]] = []
        failures = {"left": 0}
        expire = load_function("expire").lambda_handler
        lock = threading.Lock()

        def dispatch(name: str, event: Any) -> tuple[Any, str | None]:
            with lock:
                calls.append(event)
                if failures["left"] > 0:
                    failures["left"] -= 1
                    return {"errorType": "RuntimeError", "errorMessage": "DynamoDB is having a bad day"}, "RuntimeError"
                try:
                    return expire(event, LambdaContext()), None
                except Exception as exc:  # as Lambda answers a function that raised
                    return {"errorType": type(exc).__name__, "errorMessage": str(exc)}, "Unhandled"

        hook = lambda_hook.install(dispatch)
        sfn = boto3.client("stepfunctions")
        asl = (ROOT / "statemachine/hold_timer.asl.json").read_text().replace("${ExpireFunctionArn}", EXPIRE_ARN)
        arn = sfn.create_state_machine(
            name="HoldTimer", definition=asl, roleArn="arn:aws:iam::123456789012:role/timer", type="STANDARD"
        )["stateMachineArn"]
        monkeypatch.setenv("HOLD_TIMER_ARN", arn)
        wiring.reset()
        try:
            yield {"sfn": sfn, "arn": arn, "calls": calls, "failures": failures}
        finally:
            lambda_hook.uninstall(hook)
            wiring.reset()


def _start_of_a_second() -> None:
    """Wait for the start of a second, so that holds made next share one slot."""
    time.sleep(1 - (now_ms() % 1000) / 1000 + 0.02)


def _hold(seconds: int, cart: str = "c", quantity: int = 2) -> Any:
    svc = services()
    if not svc.stock.get_many("demo", ["T"])[0]:
        svc.stock.set("demo", "T", on_hand=ON_HAND, low_stock_threshold=None, unlimited=False)
    return svc.reserving.reserve(
        "demo", cart_id=cart, customer_id=None, lines=[Line(sku="T", quantity=quantity)], hold_seconds=seconds
    )


def _timers() -> SlotTimers:
    """The slot timers of a container of their own (a memory of their own)."""
    svc = services()
    return SlotTimers(
        boto3.client("stepfunctions"), svc.runner.client, svc.settings.TABLE_NAME, svc.settings.HOLD_TIMER_ARN
    )


def _arm(res: Any, timers: SlotTimers | None = None) -> Armed:
    """Arm the expire slot of a hold's deadline, as the hold stream does."""
    return (timers or _timers()).arm(SlotKind.EXPIRE, expiry_slot(res.expires_at, now_ms()), [_shard(res)])


def _shard(res: Any) -> int:
    """The Sweep index's hold shard the hold is listed in (what the hold stream arms with)."""
    return int(hold_sweep_keys(res.reservation_id, res.expires_at)["sweepPk"].split("#")[1])


def _slot_arn(timer: dict[str, Any], slot: int, kind: SlotKind = SlotKind.EXPIRE) -> str:
    return timer["arn"].replace(":stateMachine:", ":execution:") + ":" + execution_name(kind, slot)


def _settled(timer: dict[str, Any], slot: int, timeout: float = 30) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = timer["sfn"].describe_execution(executionArn=_slot_arn(timer, slot))
        if out["status"] != "RUNNING":
            return dict(out)
        time.sleep(0.05)
    raise AssertionError(f"slot {slot}'s timer is still running")


def _executions(timer: dict[str, Any]) -> list[str]:
    return sorted(e["name"] for e in timer["sfn"].list_executions(stateMachineArn=timer["arn"])["executions"])


def _status(res: Any) -> str:
    return services().holds.get("demo", res.reservation_id).status.value


def _stock() -> tuple[int, int, int]:
    level = services().stock.get("demo", "T")
    return level.reserved, level.allocated, level.available


def _handled(timer: dict[str, Any]) -> int:
    """Holds the expire function's slot calls ended, as the state machine saw them."""
    return sum(1 for c in timer["calls"] if "slot" in c)


def test_the_due_holds_of_a_slot_are_expired_by_one_execution_and_their_units_return(timer: dict[str, Any]) -> None:
    _start_of_a_second()
    holds = [_hold(1, cart=f"c{i}") for i in range(3)]
    timers = _timers()
    slot = {_arm(res, timers).slot for res in holds}.pop()  # one second of deadlines, one timer
    assert _stock() == (6, 0, ON_HAND - 6)
    out = _settled(timer, slot)
    assert out["status"] == "SUCCEEDED"
    assert json.loads(out["output"])["result"]["handled"] == 3
    assert [_status(res) for res in holds] == ["EXPIRED"] * 3
    assert _stock() == (0, 0, ON_HAND)
    assert _executions(timer) == [execution_name(SlotKind.EXPIRE, slot)]


def test_a_hold_joins_a_slot_that_is_already_running(timer: dict[str, Any]) -> None:
    _start_of_a_second()
    first = _hold(3, cart="first")
    slot = _arm(first).slot
    assert timer["sfn"].describe_execution(executionArn=_slot_arn(timer, slot))["status"] == "RUNNING"
    later = _hold(3, cart="later")
    other_container = _timers()
    assert _arm(later, other_container) == Armed(slot, started=False)  # the slot's mark says it is armed
    assert other_container.start_calls == 0
    assert _settled(timer, slot)["status"] == "SUCCEEDED"
    assert (_status(first), _status(later)) == ("EXPIRED", "EXPIRED")
    assert _executions(timer) == [execution_name(SlotKind.EXPIRE, slot)]


def test_a_hold_armed_for_a_slot_that_has_fired_is_ended_by_a_later_one(
    timer: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A late stream record, or a clock behind Step Functions', arms a slot that is over:
    its execution ran (and did not look at this hold's shard) before the hold was armed."""
    monkeypatch.setattr(schema, "HOLD_SHARDS", 64)
    _start_of_a_second()
    for n in range(20):  # a hold whose shard is not among those the slot reads in turn
        res = _hold(1, cart=f"c{n}", quantity=1)
        fired = expiry_slot(res.expires_at, now_ms())
        turn = {(fired * ROTATING_SHARDS + i) % 64 for i in range(ROTATING_SHARDS)}
        if _shard(res) not in turn and (_shard(res) + 1) % 64 not in turn:
            break
        services().holds.release("demo", res.reservation_id, "cancelled")
    other_shard = (_shard(res) + 1) % 64
    assert _timers().arm(SlotKind.EXPIRE, fired, [other_shard]) == Armed(fired, started=True)
    out = _settled(timer, fired)
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"])["result"]["handled"] == 0
    assert _status(res) == "ACTIVE"  # due, but its slot never looked at its shard
    timers = _timers()
    later = timers.arm(SlotKind.EXPIRE, fired, [_shard(res)]).slot
    assert later > fired and timers.start_calls >= 2  # refused, then the next slot
    assert _settled(timer, later)["status"] == "SUCCEEDED"
    ended = services().holds.get("demo", res.reservation_id)
    assert ended.status.value == "EXPIRED" and ended.ended_at is not None
    assert _stock() == (0, 0, ON_HAND)


def test_a_stream_running_late_arms_each_slot_once_not_once_per_record(timer: dict[str, Any]) -> None:
    """Records that arrive after their holds' deadlines all go to the slot 2 s ahead, and
    the memory or the mark answers for all but the first: one StartExecution."""
    holds = [_hold(1, cart=f"late-{i}", quantity=1) for i in range(6)]
    time.sleep(1.1)
    _start_of_a_second()  # every deadline is past when the records are handled
    containers = [_timers(), _timers()]
    armed = [
        containers[i % 2].arm(SlotKind.EXPIRE, expiry_slot(res.expires_at, now_ms()), [_shard(res)])
        for i, res in enumerate(holds)
    ]
    (slot,) = {a.slot for a in armed}
    assert sum(t.start_calls for t in containers) == 1
    assert _settled(timer, slot)["status"] == "SUCCEEDED"
    assert [_status(res) for res in holds] == ["EXPIRED"] * 6 and _stock() == (0, 0, ON_HAND)


def test_an_extended_hold_moves_to_a_later_slot_and_expires_at_its_new_deadline(timer: dict[str, Any]) -> None:
    _start_of_a_second()
    res = _hold(1)
    old_slot = _arm(res).slot
    extended = services().holds.extend("demo", res.reservation_id, 3)
    new_slot = _arm(extended).slot  # the hold stream's MODIFY record of the extension
    assert new_slot > old_slot
    old = _settled(timer, old_slot)
    assert old["status"] == "SUCCEEDED" and json.loads(old["output"])["result"]["handled"] == 0
    assert _status(res) == "ACTIVE"  # the old slot woke and left it alone
    assert _settled(timer, new_slot)["status"] == "SUCCEEDED"
    ended = services().holds.get("demo", res.reservation_id)
    assert ended.status.value == "EXPIRED" and ended.ended_at is not None and ended.ended_at >= extended.expires_at


def test_containers_arming_one_slot_at_once_start_one_execution(timer: dict[str, Any]) -> None:
    _start_of_a_second()
    res = _hold(3)
    slot = expiry_slot(res.expires_at, now_ms())
    containers = [_timers() for _ in range(8)]
    gate = threading.Barrier(len(containers))
    answers: list[Armed] = []

    def arm(timers: SlotTimers) -> None:
        gate.wait()
        answers.append(timers.arm(SlotKind.EXPIRE, slot, [_shard(res)]))

    threads = [threading.Thread(target=arm, args=(t,)) for t in containers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a.slot for a in answers} == {slot} and any(a.started for a in answers)
    # One execution by name: Step Functions answers a start of a running one with it (moto's
    # in-process backend, not safe for starts racing on threads, may list the one name twice).
    assert set(_executions(timer)) == {execution_name(SlotKind.EXPIRE, slot)}
    second_wave = [_timers() for _ in range(8)]
    assert [t.arm(SlotKind.EXPIRE, slot, [_shard(res)]) for t in second_wave] == [Armed(slot, started=False)] * 8
    assert sum(t.start_calls for t in second_wave) == 0  # the mark answers: no Step Functions call
    assert _settled(timer, slot)["status"] == "SUCCEEDED" and _status(res) == "EXPIRED"


def test_confirmed_and_released_holds_in_a_waking_slot_are_left_alone(timer: dict[str, Any]) -> None:
    _start_of_a_second()
    confirmed, released, abandoned = (_hold(1, cart=c) for c in ("paid", "cancelled", "abandoned"))
    slot = _arm(confirmed).slot
    assert _arm(released).slot == _arm(abandoned).slot == slot
    svc = services()
    svc.holds.confirm("demo", confirmed.reservation_id, "o-1")
    svc.holds.release("demo", released.reservation_id, "cancelled")
    assert _stock() == (2, 2, ON_HAND - 4)
    out = _settled(timer, slot)
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"])["result"]["handled"] == 1
    assert (_status(confirmed), _status(released), _status(abandoned)) == ("CONFIRMED", "RELEASED", "EXPIRED")
    assert _stock() == (0, 2, ON_HAND - 2)  # the order keeps its units; the abandoned hold's came back


def test_a_slot_with_more_holds_than_one_invocation_takes_ends_them_in_parallel_groups(
    timer: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLOT_GROUP_HOLDS", "2")
    wiring.reset()
    _start_of_a_second()
    holds = [_hold(1, cart=f"c{i}", quantity=1) for i in range(7)]
    timers = _timers()
    slots = {_arm(res, timers).slot for res in holds}  # one, or two on a machine slow enough to cross a second
    assert all(_settled(timer, slot)["status"] == "SUCCEEDED" for slot in slots)
    groups = [c for c in timer["calls"] if "shards" in c]
    assert len(groups) >= 2  # the survey planned groups, and the Map ran one invocation for each
    assert {c["slot"] for c in groups} <= slots
    assert [_status(res) for res in holds] == ["EXPIRED"] * 7
    assert _stock() == (0, 0, ON_HAND)


def test_a_failing_invocation_is_retried(timer: dict[str, Any]) -> None:
    timer["failures"]["left"] = 1
    _start_of_a_second()
    res = _hold(1)
    slot = _arm(res).slot
    assert _settled(timer, slot)["status"] == "SUCCEEDED"
    assert len(timer["calls"]) >= 2  # the failure, then the retry that expired it
    assert _status(res) == "EXPIRED"


def test_an_execution_of_the_per_hold_timer_still_running_at_deploy_ends_its_hold(timer: dict[str, Any]) -> None:
    """Standard executions keep the definition they started with: one started before slot
    timers calls with one hold, and is told to end."""
    res = _hold(1)
    time.sleep(1.1)
    answer = load_function("expire").lambda_handler(
        {"storeId": "demo", "reservationId": res.reservation_id, "loop": 0}, LambdaContext()
    )
    assert answer["outcome"] == "expired" and answer["wait"] is False and answer["soon"] is False
    assert _status(res) == "EXPIRED" and _stock() == (0, 0, ON_HAND)


# --- the hold stream arms the slots -----------------------------------------------------------


def _hold_stream(records: list[dict[str, Any]]) -> Any:
    return load_function("hold_stream").lambda_handler({"Records": records}, LambdaContext())


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


def test_the_hold_stream_arms_a_new_holds_slot_once_however_often_the_record_comes(timer: dict[str, Any]) -> None:
    res = _hold(60)
    created = _record("INSERT", None, _item(res), 1)
    assert _hold_stream([created]) == {"batchItemFailures": []}
    slot = expiry_slot(res.expires_at, now_ms())
    assert _executions(timer) == [execution_name(SlotKind.EXPIRE, slot)]
    assert _hold_stream([created, created]) == {"batchItemFailures": []}  # a retried batch
    assert services().slot_timers.start_calls == 1  # type: ignore[union-attr]
    assert _executions(timer) == [execution_name(SlotKind.EXPIRE, slot)]


def test_the_hold_stream_arms_the_slot_of_an_extended_deadline(timer: dict[str, Any]) -> None:
    res = _hold(60)
    created = _item(res)
    extended = services().holds.extend("demo", res.reservation_id, 120)
    records = [_record("INSERT", None, created, 1), _record("MODIFY", created, _item(res), 2)]
    assert _hold_stream(records) == {"batchItemFailures": []}
    now = now_ms()
    assert _executions(timer) == sorted(
        execution_name(SlotKind.EXPIRE, expiry_slot(r.expires_at, now)) for r in (res, extended)
    )


@pytest.mark.parametrize("end", ["confirm", "release"])
def test_a_hold_ended_before_its_deadline_needs_nothing_from_the_hold_stream(timer: dict[str, Any], end: str) -> None:
    res = _hold(60)
    created = _item(res)
    svc = services()
    if end == "confirm":
        svc.holds.confirm("demo", res.reservation_id, "o-1")
    else:
        svc.holds.release("demo", res.reservation_id, "cancelled")
    ended = _record("MODIFY", created, _item(res), 2)
    assert load_function("hold_stream").change_of(ended) is None  # no StopExecution: the slot finds nothing
    assert _hold_stream([ended]) == {"batchItemFailures": []}
    assert _executions(timer) == []


def test_without_a_hold_timer_arn_no_slot_is_armed(timer: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOLD_TIMER_ARN", "")
    wiring.reset()
    res = _hold(60)
    assert _hold_stream([_record("INSERT", None, _item(res), 1)]) == {"batchItemFailures": []}
    assert _executions(timer) == []


def _queries_of(work: Any) -> int:
    """Sweep index Queries made by ``work()``, on the services' DynamoDB client."""
    seen: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        if params.get("IndexName") == "Sweep":
            seen.append(params["ExpressionAttributeValues"][":p"]["S"])

    events = services().runner.client.meta.events
    events.register("provide-client-params.dynamodb.Query", note)
    try:
        work()
    finally:
        events.unregister("provide-client-params.dynamodb.Query", note)
    return len(seen)


def test_a_slots_survey_reads_only_the_hold_shards_its_holds_were_armed_with(
    timer: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "HOLD_SHARDS", 64)  # more than a survey reads besides its mark's
    res = _hold(1)
    svc = services()
    slot = expiry_slot(res.expires_at, now_ms())
    # The mark as the hold stream leaves it (no execution here: the survey is called directly).
    SlotMarks(svc.runner.client, svc.settings.TABLE_NAME).record(SlotKind.EXPIRE, slot, [_shard(res)])
    time.sleep(max(0.0, slot - now_ms() / 1000) + 0.1)
    # Its hold's shard and the few that take their turn this second, not all 64.
    assert _queries_of(lambda: svc.slots.survey(SlotKind.EXPIRE, slot)) <= 1 + ROTATING_SHARDS
    assert _status(res) == "EXPIRED"
    # A slot nobody armed through the hold stream (no mark) looks at every shard.
    assert _queries_of(lambda: svc.slots.survey(SlotKind.EXPIRE, slot + 100)) == schema.HOLD_SHARDS


def test_the_hold_stream_arms_a_slot_once_per_batch_with_every_shard_of_its_holds(timer: dict[str, Any]) -> None:
    _start_of_a_second()
    holds = [_hold(2, cart=f"b{i}", quantity=1) for i in range(6)]
    records = [_record("INSERT", None, _item(res), i + 1) for i, res in enumerate(holds)]
    assert _hold_stream(records) == {"batchItemFailures": []}
    timers = services().slot_timers
    assert timers is not None and (timers.recorded, timers.start_calls) == (1, 1)
    (name,) = _executions(timer)
    slot = int(name.split("-")[1])
    marks = SlotMarks(services().runner.client, services().settings.TABLE_NAME)
    assert marks.shards(SlotKind.EXPIRE, slot) == sorted({_shard(res) for res in holds})
    assert _settled(timer, slot)["status"] == "SUCCEEDED"
    assert [_status(res) for res in holds] == ["EXPIRED"] * 6


def test_arming_gives_up_when_every_slot_tried_has_fired(timer: dict[str, Any]) -> None:
    """Step Functions' clock far ahead of this one: the error fails the stream batch (retried,
    then the failure queue), and the TTL backstop and reconciliation still end the hold."""
    sfn = boto3.client("stepfunctions")
    stub = Stubber(sfn)
    for _ in range(MAX_HOPS):
        stub.add_client_error("start_execution", "ExecutionAlreadyExists")
    svc = services()
    timers = SlotTimers(sfn, svc.runner.client, svc.settings.TABLE_NAME, svc.settings.HOLD_TIMER_ARN)
    slot = now_ms() // 1000  # this second: too near to trust a mark, so each hop asks Step Functions
    with stub, pytest.raises(SlotTimersStuck):
        timers.arm(SlotKind.EXPIRE, slot, [0])
    stub.assert_no_pending_responses()
    assert timers.start_calls == MAX_HOPS
