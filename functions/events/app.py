"""Publishes stock events (docs/events.md) from the table's stream to the stockhold bus.

FilterCriteria admit only records that can mean an event: limited STOCK items written,
reservations turning EXPIRED or warned (``lastAction = reservation_expiring``), ORDERs
created. ``stockhold.events.decide`` turns a record into its events (none when nothing
crossed); the publisher skips events already sent (dedupe marker), calls PutEvents and
fails the record when EventBridge refuses an entry, so Lambda retries it. After a failed
record the rest of the batch is failed unprocessed: events leave in stream order.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockhold.event_store import EventMarkers
from stockhold.events import EventPublisher, decide, summary
from stockhold.observability import count, logger, metrics, tracer
from stockhold.runtime import dynamodb_client, events_client, services
from stockhold.service import now_ms

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class EarlierRecordFailed(RuntimeError):
    """Not tried: a record before it in the batch failed (Lambda retries from that one)."""


def _publisher() -> EventPublisher:
    settings = services().settings
    if not settings.EVENT_BUS_NAME:
        raise RuntimeError("EVENT_BUS_NAME is not set")
    markers = EventMarkers(dynamodb_client(), settings.TABLE_NAME)
    return EventPublisher(events_client(), markers, settings.EVENT_BUS_NAME, now_ms)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    publisher = _publisher()
    threshold = services().settings.LOW_STOCK_THRESHOLD
    failed = False

    def publish_record(record: DynamoDBRecord) -> None:
        nonlocal failed
        if failed:
            raise EarlierRecordFailed(record.event_id)
        try:
            for published in publisher.publish(decide(record.raw_event, threshold, now_ms())):
                count("EventsPublished")
                logger.info("event published", event=summary(published), event_id=published["detail"]["eventId"])
        except Exception:
            failed = True
            raise

    return process_partial_response(event=event, record_handler=publish_record, processor=processor, context=context)
