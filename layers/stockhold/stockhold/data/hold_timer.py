"""The hold timer's executions (docs/expiry.md): one Step Functions execution per *slot*,
a second of deadlines across every store, never one per hold.

A slot's execution is named ``<kind>-<second>`` (``expire-1767225600``). Starting it
again with the same input while it runs is harmless (Step Functions answers with the
running execution); once it has run, Step Functions refuses the name
(``ExecutionAlreadyExists``): the slot has fired, and its holds go to the next slot.

Arming is cheap after the first time. A slot's mark (``TIMER#<kind>#<second>``) holds the
hold shards of the Sweep index its holds are in, which is all its survey reads (a quiet
second's slot Queries one or two keys, not all 256), and whether its execution was
started. The hold stream arms once per slot per batch, with the shards of the batch's
holds: one write adds the shards this container has not recorded yet (and makes the mark
if absent) and answers whether the execution was started; if not, it starts it and sets
the mark ``started``. A container remembers what it recorded, so a slot's mark is
written about once per container and batch with new shards, and StartExecution is
called about once per slot, not per hold or container. A crash between the start and
``started`` leaves the mark without it: the next arming (the stream's retry, or any
other batch with holds of that second) starts the execution itself, and Step Functions
answers a start of a running execution with that execution. Shards are recorded before
the execution can survey, because the hold stream arms no slot less than TRUST_MS ahead;
marks and memory are trusted only that far ahead, and nearer than that, the slot may be
firing, so arming asks Step Functions itself.

No execution is ever stopped: a hold that is confirmed or released leaves the Sweep
index, so its slot wakes and finds nothing to do for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from stockhold.data.schema import SLOT_TIMER, slot_timer_key, to_av
from stockhold.data.transactions import error_code
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


class SlotMarks:
    """A slot's mark: whether its execution was started, and which hold shards of the Sweep
    index its holds are in (what its survey reads)."""

    def __init__(self, ddb: Any, table: str, clock: Callable[[], int] = now_ms) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock

    def record(self, kind: SlotKind, slot: int, shards: Iterable[int]) -> bool:
        """Add ``shards`` to the slot's mark (made if absent; no shards: "look at every shard").
        True when the mark says the slot's execution was started."""
        shards = sorted(set(shards))
        values: dict[str, Any] = {
            ":type": SLOT_TIMER,
            ":kind": kind.value,
            ":slot": slot,
            ":now": self._clock(),
            ":purge": slot + MARK_KEEP_SECONDS,
        }
        update = (
            "SET #type = if_not_exists(#type, :type), kind = if_not_exists(kind, :kind), "
            "slot = if_not_exists(slot, :slot), firstArmedAt = if_not_exists(firstArmedAt, :now), "
            "purgeAt = if_not_exists(purgeAt, :purge)"
        )
        if shards:
            update += " ADD shards :shards"
        else:
            update += ", allShards = :all"
            values[":all"] = True
        names = {"#type": "type"}
        av = to_av(values)
        if shards:
            av[":shards"] = {"NS": [str(x) for x in shards]}
        answer = self._ddb.update_item(
            TableName=self._table,
            Key=to_av(slot_timer_key(kind.value, slot)),
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=av,
            ReturnValues="ALL_NEW",
        )
        return bool(answer.get("Attributes", {}).get("started", {}).get("BOOL"))

    def set_started(self, kind: SlotKind, slot: int) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key=to_av(slot_timer_key(kind.value, slot)),
            UpdateExpression="SET started = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )

    def shards(self, kind: SlotKind, slot: int) -> list[int] | None:
        """The hold shards the slot's holds are in, or None: every shard (no mark, or one armed
        without shards: an execution not started by the hold stream)."""
        item = self._ddb.get_item(
            TableName=self._table, Key=to_av(slot_timer_key(kind.value, slot)), ConsistentRead=True
        ).get("Item")
        if item is None or item.get("allShards", {}).get("BOOL") or "shards" not in item:
            return None
        return sorted(int(x) for x in item["shards"]["NS"])


@dataclass
class _Known:
    """What a container knows of a slot: the shards it recorded, and whether it was started."""

    shards: set[int] = field(default_factory=set)
    started: bool = False


class SlotTimers:
    def __init__(
        self, sfn: Any, ddb: Any, table: str, state_machine_arn: str, clock: Callable[[], int] = now_ms
    ) -> None:
        self._sfn = sfn
        self._marks = SlotMarks(ddb, table, clock)
        self._arn = state_machine_arn
        self._clock = clock
        self._known: dict[tuple[SlotKind, int], _Known] = {}  # insertion-ordered: the oldest go first
        self._lock = threading.Lock()
        self.start_calls = 0  # every StartExecution call, including those that found the slot fired
        self.recorded = 0  # mark writes (shards recorded)

    def arm(self, kind: SlotKind, slot: int, shards: Iterable[int]) -> Armed:
        """Make sure a running execution will handle holds in ``shards`` (of the Sweep index)
        due in ``slot``: the slot's own, or a later one when the slot has fired already."""
        shards = set(shards)
        for hop in range(MAX_HOPS):
            armed = self._arm_one(kind, slot + hop, shards)
            if armed is not None:
                return armed
        raise SlotTimersStuck(f"{kind.value} slots {slot}..{slot + MAX_HOPS - 1} have all fired already")

    def _arm_one(self, kind: SlotKind, slot: int, shards: set[int]) -> Armed | None:
        """The slot armed, or None when it has fired."""
        fresh = slot * 1000 - self._clock() > TRUST_MS  # far enough ahead: a mark means it will still fire
        known = self._known.get((kind, slot))
        new = shards - known.shards if known is not None else shards
        if known is None or new or not shards:
            started = self._marks.record(kind, slot, new)  # before any survey of the slot reads them
            with self._lock:
                self.recorded += 1
            known = self._remember(kind, slot, new, started)
        if fresh and known.started:
            return Armed(slot, started=False)
        if not self._start(kind, slot):
            return None
        if fresh:
            self._marks.set_started(kind, slot)
            self._remember(kind, slot, set(), True)
        return Armed(slot, started=True)

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
        return True

    def _remember(self, kind: SlotKind, slot: int, shards: set[int], started: bool) -> _Known:
        with self._lock:
            known = self._known.setdefault((kind, slot), _Known())
            known.shards |= shards
            known.started = known.started or started
            while len(self._known) > _MEMO_LIMIT:
                del self._known[next(iter(self._known))]
            return known
