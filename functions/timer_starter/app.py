"""Starts one hold-timer execution per new hold, from the table's stream.

Its FilterCriteria admit only INSERTs of ACTIVE reservations. The execution is named
after the store and hold, so a redelivered record starts nothing new. A checkout's hold
also gets ``warnAt`` (EXPIRING_NOTICE_SECONDS before its deadline, when still ahead): the
timer wakes then to have ReservationExpiring published (docs/events.md).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from stockhold.models import timer_deadline
from stockhold.observability import count, logger, metrics, tracer
from stockhold.runtime import services, stepfunctions_client
from stockhold.store import from_av, reservation_from_item

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def execution_name(store_id: str, reservation_id: str) -> str:
    return f"{store_id}--{reservation_id}"[:80]


def start_timer(record: DynamoDBRecord) -> None:
    res = reservation_from_item(from_av(record.raw_event["dynamodb"]["NewImage"]))
    payload: dict[str, Any] = {
        "storeId": res.store_id,
        "reservationId": res.reservation_id,
        "expiresAt": timer_deadline(res.expires_at),
        "loop": 0,
    }
    warn_at = services().reservations.expiring_notice_at(res)  # a checkout's hold: ReservationExpiring first
    if warn_at is not None:
        payload["warnAt"] = timer_deadline(warn_at)
    try:
        stepfunctions_client().start_execution(
            stateMachineArn=services().settings.HOLD_TIMER_ARN,
            name=execution_name(res.store_id, res.reservation_id),
            input=json.dumps(payload),
        )
        count("HoldTimersStarted")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
        logger.info("hold timer already running", reservation_id=res.reservation_id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=start_timer, processor=processor, context=context)
