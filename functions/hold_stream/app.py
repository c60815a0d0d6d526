"""The hold stream: the lives of holds, from the table's stream (docs/expiry.md).

One of the stream's two readers (docs/decisions.md, "Two readers per stream shard").
Its FilterCriteria admit three kinds of record:

* INSERT of an ACTIVE reservation: arm the hold timer's slot of its deadline (one
  execution per second of deadlines, shared by every hold of that second); a checkout's
  hold also gets its warn slot, EXPIRING_NOTICE_SECONDS before the deadline, or is
  warned at once when that is now (docs/events.md);
* MODIFY of an ACTIVE reservation that stays ACTIVE with a new deadline (an extension,
  the payment step): arm the slots of the new deadline. The old slot finds it not due;
* REMOVE by the TTL service of an ACTIVE reservation (the TTL backstop): return its units
  and put it back EXPIRED in one transaction, a no-op when delivered again.

Slots are armed for the whole batch first (``arm_batch``: one arming per slot with the
hold shards of its holds), then each record is handled by its own small function.
A hold confirmed or released needs nothing here: it leaves the Sweep index, and its
slot finds nothing to do for it. With HOLD_TIMER_ARN empty, no slot is armed (a warning
is logged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockhold import actor
from stockhold.data.schema import (
    EXPIRES_AT,
    RESERVATION,
    STATUS,
    TYPE,
    from_av,
    hold_sweep_keys,
    reservation_from_item,
    stream_change,
)
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Reservation, ReservationStatus
from stockhold.domain.rules import SlotKind, expiry_slot, warn_slot
from stockhold.observability import count, logger, metrics, tracer
from stockhold.wiring import services

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
_ARM_PARALLEL = 8  # slots of one batch armed at once


class Change(StrEnum):
    NEW_HOLD = "new_hold"
    EXTENDED = "extended"
    TTL_DELETED = "ttl_deleted"


def change_of(raw: Mapping[str, Any]) -> Change | None:
    """Which of the three a record is: the FilterCriteria again, as a second guard."""
    change = stream_change(raw)
    was = change.old.get(STATUS) if change.old and change.old.get(TYPE) == RESERVATION else None
    now = change.new.get(STATUS) if change.new and change.new.get(TYPE) == RESERVATION else None
    if change.event_name == "INSERT" and now == ReservationStatus.ACTIVE:
        return Change.NEW_HOLD
    if change.event_name == "REMOVE" and change.by_ttl_service and was == ReservationStatus.ACTIVE:
        return Change.TTL_DELETED
    if change.event_name == "MODIFY" and was == now == ReservationStatus.ACTIVE and change.old and change.new:
        if change.old.get(EXPIRES_AT) != change.new.get(EXPIRES_AT):
            return Change.EXTENDED
    return None


def hold_shard(image: Mapping[str, Any], reservation_id: str, expires_at: int) -> int:
    """The Sweep index's hold shard the hold is listed in (its item says; else its key rule)."""
    sweep = str(image.get("sweepPk") or hold_sweep_keys(reservation_id, expires_at)["sweepPk"])
    return int(sweep.split("#", 1)[1])


def slots_of(res: Reservation, now: int) -> list[tuple[SlotKind, int]]:
    """The slots that end (and, for a checkout's hold, warn of) the hold at its deadline."""
    slots = [(SlotKind.EXPIRE, expiry_slot(res.expires_at, now))]
    warn_at = services().expiry.expiring_notice_at(res)
    slot = warn_slot(warn_at, now) if warn_at is not None else None
    if slot is not None:
        slots.append((SlotKind.WARN, slot))
    return slots


def arm_batch(records: list[dict[str, Any]]) -> None:
    """Arm every slot the batch's new and extended holds need, once per slot, with the hold
    shards of its holds (what the slot's survey will read). Before the records are handled
    one by one: an error here fails the batch (retried, halved), and arming again is
    harmless. A record it cannot read is left to its own handler to report."""
    now = now_ms()
    wanted: dict[tuple[SlotKind, int], set[int]] = {}
    for raw in records:
        try:
            if change_of(raw) not in (Change.NEW_HOLD, Change.EXTENDED):
                continue
            image = from_av(raw["dynamodb"]["NewImage"])
            res = reservation_from_item(image)
            shard = hold_shard(image, res.reservation_id, res.expires_at)
        except Exception:  # its handler raises the same and reports the record
            logger.exception("hold stream record unreadable", event_id=raw.get("eventID"))
            continue
        for kind_slot in slots_of(res, now):
            wanted.setdefault(kind_slot, set()).add(shard)
    if not wanted:
        return
    timers = services().slot_timers
    if timers is None:
        logger.warning("HOLD_TIMER_ARN is empty: hold timers are off", slots=len(wanted))
        return

    def arm(item: tuple[tuple[SlotKind, int], set[int]]) -> bool:
        (kind, slot), shards = item
        return timers.arm(kind, slot, shards).started

    # The slots of a batch (its holds' seconds, expire and warn) are armed at once: each is a
    # write of its mark, and at times a StartExecution.
    with ThreadPoolExecutor(max_workers=min(_ARM_PARALLEL, len(wanted))) as pool:
        started = sum(pool.map(arm, sorted(wanted.items())))
    if started:
        count("SlotTimersStarted", started)


def warn_if_due(record: DynamoDBRecord) -> None:
    """A checkout's hold already inside its notice (a short hold, a stream running late) is
    warned at once: late is better than never. Its slots were armed for the whole batch."""
    res = reservation_from_item(from_av(record.raw_event["dynamodb"]["NewImage"]))
    expiry = services().expiry
    warn_at = expiry.expiring_notice_at(res)
    if warn_at is not None and warn_slot(warn_at, now_ms()) is None:
        with actor.acting_as(actor.TIMER):
            expiry.warn_expiring(res.store_id, res.reservation_id)


def release_deleted_hold(record: DynamoDBRecord) -> None:
    res = reservation_from_item(from_av(record.raw_event["dynamodb"]["OldImage"]))
    with actor.acting_as(actor.TTL):
        restored = services().expiry.restore_after_ttl(res)
    if not restored:
        logger.info("TTL record already handled", reservation_id=res.reservation_id)


HANDLERS: dict[Change, Callable[[DynamoDBRecord], None]] = {
    Change.NEW_HOLD: warn_if_due,
    Change.EXTENDED: warn_if_due,
    Change.TTL_DELETED: release_deleted_hold,
}


def handle(record: DynamoDBRecord) -> None:
    change = change_of(record.raw_event)
    if change is None:
        logger.warning("record not for the hold stream: ignored", event_id=record.event_id)
        return
    HANDLERS[change](record)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    arm_batch(event.get("Records") or [])
    return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
