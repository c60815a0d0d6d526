"""The TTL backstop: DynamoDB's TTL deleted a hold that was still ACTIVE.

FilterCriteria admit only REMOVE records made by the TTL service (userIdentity
Service / dynamodb.amazonaws.com) whose old image is an ACTIVE reservation. Each
returns its units and leaves an EXPIRED record in one transaction, which is a no-op
when the record is delivered again.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockhold import actor
from stockhold.observability import logger, metrics, tracer
from stockhold.runtime import services
from stockhold.store import from_av, reservation_from_item

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def release_deleted_hold(record: DynamoDBRecord) -> None:
    res = reservation_from_item(from_av(record.raw_event["dynamodb"]["OldImage"]))
    with actor.acting_as(actor.TTL):
        restored = services().reservations.restore_after_ttl(res)
    if not restored:
        logger.info("TTL record already handled", reservation_id=res.reservation_id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=release_deleted_hold, processor=processor, context=context
    )
