"""The hold timer's executions (docs/expiry.md): one Step Functions execution per *slot*,
a second of deadlines across every store, never one per hold.

A slot's execution is named ``<kind>-<second>`` (``expire-1767225600``). Starting it
again with the same input while it runs is harmless (Step Functions answers with the
running execution); once it has run, Step Functions refuses the name
(``ExecutionAlreadyExists``): the slot has fired, and its holds go to the next slot.

Arming is cheap after the first time: a container remembers the slots it armed, and
every container reads the slot's mark (``TIMER#<kind>#<second>``) before it calls Step
Functions, so StartExecution grows with slots per second, not with holds or containers.
The mark is claimed with a conditional put, the execution started, and then the mark is
set ``started``: a crash in between leaves a claim without ``started``, and the next
arming (the stream's retry of the same record, or any other hold of that second) starts
the execution itself. Marks and memory are trusted only for a slot more than TRUST_MS
ahead; nearer than that, the slot may be firing, so arming asks Step Functions itself.

No execution is ever stopped: a hold that is confirmed or released leaves the Sweep
index, so its slot wakes and finds nothing to do for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from stockhold.data.schema import SLOT_TIMER, from_av, slot_timer_key, to_av
from stockhold.data.transactions import condition_failed, error_code
from stockhold.domain.ids import now_ms
from stockhold.domain.models import timer_deadline
from stockhold.domain.rules import SlotKind

MARK_KEEP_SECONDS = 86400  # a slot's mark outlives its execution's longest run by far
# A slot this far ahead cannot have fired (only a clock more than this far behind Step
# Functions' could say otherwise): its mark or the memory is enough. The hold stream arms
# no slot nearer than that (rules.expiry_slot, warn_slot), so a stream running late
# still makes about one StartExecution per slot, not one per record.
TRUST_MS = 1000
MAX_HOPS = 5  # later slots tried when a slot (and the next ones) have fired already
_MEMO_LIMIT = 4096  # slots a container remembers; older ones are forgotten first


@dataclass(frozen=True)
class Armed:
    slot: int  # the slot whose execution will handle the holds (a later one when the asked one fired)
    started: bool  # this call asked Step Functions (it started the execution, or found it running)


class SlotTimersStuck(RuntimeError):
    """Every slot tried has fired already: Step Functions' clock is far ahead of this one.
    The stream retries the record; the TTL backstop and reconciliation still end the hold."""


def execution_name(kind: SlotKind, slot: int) -> str:
    return f"{kind.value}-{slot}"


def slot_input(kind: SlotKind, slot: int) -> dict[str, Any]:
    """What a slot's execution starts with: its second, as a Wait state's timestamp too."""
    return {"kind": kind.value, "slot": slot, "at": timer_deadline(slot * 1000), "loop": 0}


class SlotTimers:
    def __init__(
        self, sfn: Any, ddb: Any, table: str, state_machine_arn: str, clock: Callable[[], int] = now_ms
    ) -> None:
        self._sfn = sfn
        self._ddb = ddb
        self._table = table
        self._arn = state_machine_arn
        self._clock = clock
        self._armed: dict[tuple[SlotKind, int], None] = {}  # insertion-ordered: the oldest go first
        self._lock = threading.Lock()
        self.started = 0  # StartExecution calls that succeeded (found it running, in the last TRUST_MS)
        self.start_calls = 0  # every StartExecution call, including those that found the slot fired

    def arm(self, kind: SlotKind, slot: int) -> Armed:
        """Make sure a running execution will handle the slot's holds: the slot's own, or a
        later one when the slot has fired already."""
        for hop in range(MAX_HOPS):
            armed = self._arm_one(kind, slot + hop)
            if armed is not None:
                return armed
        raise SlotTimersStuck(f"{kind.value} slots {slot}..{slot + MAX_HOPS - 1} have all fired already")

    def _arm_one(self, kind: SlotKind, slot: int) -> Armed | None:
        """The slot armed, or None when it has fired."""
        fresh = slot * 1000 - self._clock() > TRUST_MS  # far enough ahead: a mark means it will still fire
        if fresh and (kind, slot) in self._armed:
            return Armed(slot, started=False)
        key = to_av(slot_timer_key(kind.value, slot))
        if fresh:
            mark = self._ddb.get_item(TableName=self._table, Key=key).get("Item")
            if mark is not None and from_av(mark).get("started"):
                self._remember(kind, slot)
                return Armed(slot, started=False)
            if mark is None:
                self._claim(kind, slot)
        if not self._start(kind, slot):
            return None
        if fresh:
            self._ddb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET started = :t",
                ExpressionAttributeValues={":t": {"BOOL": True}},
            )
            self._remember(kind, slot)
        return Armed(slot, started=True)

    def _claim(self, kind: SlotKind, slot: int) -> None:
        """Put the slot's mark, unless another container put it first (then it starts too,
        harmlessly, in the few milliseconds before the mark says ``started``)."""
        item = {
            **slot_timer_key(kind.value, slot),
            "type": SLOT_TIMER,
            "kind": kind.value,
            "slot": slot,
            "claimedAt": self._clock(),
            "purgeAt": slot + MARK_KEEP_SECONDS,
        }
        try:
            self._ddb.put_item(TableName=self._table, Item=to_av(item), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if not condition_failed(exc):
                raise

    def _start(self, kind: SlotKind, slot: int) -> bool:
        """Start the slot's execution, or find it running (the same name and input are
        idempotent in Step Functions): True. False when it has run and ended: its holds need
        a later slot."""
        with self._lock:
            self.start_calls += 1
        try:
            self._sfn.start_execution(
                stateMachineArn=self._arn, name=execution_name(kind, slot), input=json.dumps(slot_input(kind, slot))
            )
        except ClientError as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise
            return False
        with self._lock:
            self.started += 1
        return True

    def _remember(self, kind: SlotKind, slot: int) -> None:
        with self._lock:
            self._armed[(kind, slot)] = None
            while len(self._armed) > _MEMO_LIMIT:
                del self._armed[next(iter(self._armed))]
