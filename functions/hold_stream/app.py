"""The hold stream: the lives of holds, from the table's stream (docs/expiry.md).

One of the stream's two readers (docs/decisions.md, "Two readers per stream shard").
Its FilterCriteria admit three kinds of record, each handled by its own small function:

* INSERT of an ACTIVE reservation: arm the hold timer's slot of its deadline (one
  execution per second of deadlines, shared by every hold of that second); a checkout's
  hold also gets its warn slot, EXPIRING_NOTICE_SECONDS before the deadline, or is
  warned at once when that is now (docs/events.md);
* MODIFY of an ACTIVE reservation that stays ACTIVE with a new deadline (an extension,
  the payment step): arm the slots of the new deadline. The old slot finds it not due;
* REMOVE by the TTL service of an ACTIVE reservation (the TTL backstop): return its units
  and put it back EXPIRED in one transaction, a no-op when delivered again.

A hold confirmed or released needs nothing here: it leaves the Sweep index, and its
slot finds nothing to do for it. With HOLD_TIMER_ARN empty, no slot is armed (a warning
is logged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockhold import actor
from stockhold.data.schema import EXPIRES_AT, RESERVATION, STATUS, TYPE, from_av, reservation_from_item, stream_change
from stockhold.domain.ids import now_ms
from stockhold.domain.models import ReservationStatus
from stockhold.domain.rules import SlotKind, expiry_slot, warn_slot
from stockhold.observability import count, logger, metrics, tracer
from stockhold.wiring import services

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


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


def arm_slots(record: DynamoDBRecord) -> None:
    """Arm the slots that end (and, for a checkout's hold, warn of) the hold at its deadline."""
    res = reservation_from_item(from_av(record.raw_event["dynamodb"]["NewImage"]))
    svc = services()
    timers = svc.slot_timers
    if timers is None:
        logger.warning("HOLD_TIMER_ARN is empty: hold timers are off", reservation_id=res.reservation_id)
        return
    now = now_ms()
    if timers.arm(SlotKind.EXPIRE, expiry_slot(res.expires_at, now)).started:
        count("SlotTimersStarted")
    warn_at = svc.expiry.expiring_notice_at(res)
    if warn_at is None:
        return
    slot = warn_slot(warn_at, now)
    if slot is None:  # inside the notice already: late is better than never
        with actor.acting_as(actor.TIMER):
            svc.expiry.warn_expiring(res.store_id, res.reservation_id)
    elif timers.arm(SlotKind.WARN, slot).started:
        count("SlotTimersStarted")


def release_deleted_hold(record: DynamoDBRecord) -> None:
    res = reservation_from_item(from_av(record.raw_event["dynamodb"]["OldImage"]))
    with actor.acting_as(actor.TTL):
        restored = services().expiry.restore_after_ttl(res)
    if not restored:
        logger.info("TTL record already handled", reservation_id=res.reservation_id)


HANDLERS: dict[Change, Callable[[DynamoDBRecord], None]] = {
    Change.NEW_HOLD: arm_slots,
    Change.EXTENDED: arm_slots,
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
    return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
