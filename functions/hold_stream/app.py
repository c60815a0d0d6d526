"""The hold stream: the lives of holds, from the table's stream (docs/expiry.md).

One of the stream's two readers (docs/decisions.md, "Two readers per stream shard").
Its FilterCriteria admit three kinds of record, each handled by its own small function:

* INSERT of an ACTIVE reservation: start the hold's timer (named after the store and
  hold, so a redelivered record starts nothing new); a checkout's hold also gets
  ``warnAt``, EXPIRING_NOTICE_SECONDS before its deadline (docs/events.md);
* REMOVE by the TTL service of an ACTIVE reservation (the TTL backstop): return its units
  and put it back EXPIRED in one transaction, a no-op when delivered again;
* MODIFY of a reservation from ACTIVE to CONFIRMED or RELEASED: stop its timer, which
  would otherwise wake at the deadline only to find the hold ended.

With HOLD_TIMER_ARN empty, timers are neither started nor stopped (a warning is logged).
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
from stockhold.data.hold_timer import HoldTimers
from stockhold.data.schema import RESERVATION, STATUS, TYPE, from_av, reservation_from_item, stream_change
from stockhold.domain.models import ReservationStatus
from stockhold.observability import count, logger, metrics, tracer
from stockhold.wiring import services, stepfunctions_client

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class Change(StrEnum):
    NEW_HOLD = "new_hold"
    TTL_DELETED = "ttl_deleted"
    ENDED_EARLY = "ended_early"


def change_of(raw: Mapping[str, Any]) -> Change | None:
    """Which of the three a record is: the FilterCriteria again, as a second guard."""
    change = stream_change(raw)
    was = change.old.get(STATUS) if change.old and change.old.get(TYPE) == RESERVATION else None
    now = change.new.get(STATUS) if change.new and change.new.get(TYPE) == RESERVATION else None
    if change.event_name == "INSERT" and now == ReservationStatus.ACTIVE:
        return Change.NEW_HOLD
    if change.event_name == "REMOVE" and change.by_ttl_service and was == ReservationStatus.ACTIVE:
        return Change.TTL_DELETED
    if change.event_name == "MODIFY" and was == ReservationStatus.ACTIVE and now in _ENDED_EARLY:
        return Change.ENDED_EARLY
    return None


_ENDED_EARLY = (ReservationStatus.CONFIRMED, ReservationStatus.RELEASED)


def _timers(what: str, reservation_id: str) -> HoldTimers | None:
    arn = services().settings.HOLD_TIMER_ARN
    if not arn:
        logger.warning("HOLD_TIMER_ARN is empty: hold timers are off", skipped=what, reservation_id=reservation_id)
        return None
    return HoldTimers(stepfunctions_client(), arn)


def start_timer(record: DynamoDBRecord) -> None:
    res = reservation_from_item(from_av(record.raw_event["dynamodb"]["NewImage"]))
    timers = _timers("start", res.reservation_id)
    if timers is None:
        return
    if timers.start(res, warn_at=services().expiry.expiring_notice_at(res)):
        count("HoldTimersStarted")
    else:
        logger.info("hold timer already running", reservation_id=res.reservation_id)


def release_deleted_hold(record: DynamoDBRecord) -> None:
    res = reservation_from_item(from_av(record.raw_event["dynamodb"]["OldImage"]))
    with actor.acting_as(actor.TTL):
        restored = services().expiry.restore_after_ttl(res)
    if not restored:
        logger.info("TTL record already handled", reservation_id=res.reservation_id)


def stop_timer(record: DynamoDBRecord) -> None:
    new = from_av(record.raw_event["dynamodb"]["NewImage"])
    store_id, reservation_id, status = str(new["storeId"]), str(new["reservationId"]), str(new["status"])
    timers = _timers("stop", reservation_id)
    if timers is None:
        return
    if timers.stop(store_id, reservation_id, cause=f"reservation {status}"):
        count("HoldTimersStopped")
    else:
        logger.info("no hold timer to stop", reservation_id=reservation_id)


HANDLERS: dict[Change, Callable[[DynamoDBRecord], None]] = {
    Change.NEW_HOLD: start_timer,
    Change.TTL_DELETED: release_deleted_hold,
    Change.ENDED_EARLY: stop_timer,
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
