"""The change feed: the audit trail and the stock events, from the table's stream.

One of the stream's two readers (docs/decisions.md, "Two readers per stream shard").
FilterCriteria admit INSERT/MODIFY records of RESERVATION, STOCK, CHECKOUT and ORDER
items, never the AUDIT and EVENT_SENT items this function writes into the same table.
Per record, in stream order:

1. its audit entries (stockhold.data.audit) are written, each only if absent (docs/audit.md);
2. its events (stockhold.data.events.decide, and for a SKU kept in several cells
   stockhold.data.stock_totals, judged on the SKU's total; none when nothing crossed) are published,
   skipping those already sent (the dedupe marker), failing the record when EventBridge
   refuses an entry (docs/events.md).

A record that fails is retried whole: its audit write is then a no-op. After a failed
record, the later ones in the batch still get their audit entries but are failed without
publishing, so Lambda retries from the failed one and events leave in stream order.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockhold.data.audit import entries_for
from stockhold.data.event_bus import EventPublisher
from stockhold.data.event_store import EventMarkers
from stockhold.data.events import decide, summary
from stockhold.data.schema import stream_change
from stockhold.data.stock_totals import SkuTotals
from stockhold.domain.ids import now_ms
from stockhold.observability import count, logger, metrics, tracer
from stockhold.wiring import dynamodb_client, events_client, services

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class EarlierRecordFailed(RuntimeError):
    """Not published: a record before it in the batch failed (Lambda retries from that one)."""


def _publisher() -> EventPublisher:
    settings = services().settings
    if not settings.EVENT_BUS_NAME:
        raise RuntimeError("EVENT_BUS_NAME is not set")
    markers = EventMarkers(dynamodb_client(), settings.TABLE_NAME)
    return EventPublisher(events_client(), markers, settings.EVENT_BUS_NAME, now_ms)


def _totals() -> SkuTotals:
    return SkuTotals(dynamodb_client(), services().settings.TABLE_NAME)


def write_audit(record: DynamoDBRecord) -> None:
    entries = entries_for(stream_change(record.raw_event))
    written = services().audit.put(entries)
    if written:
        count("AuditEntriesWritten", written)
    elif entries:
        logger.info("audit entries already written", event_id=record.event_id)


def publish_events(record: DynamoDBRecord, publisher: EventPublisher, threshold: int) -> None:
    change = stream_change(record.raw_event)
    events = decide(change, threshold, now_ms()) + _totals().events_for(change, threshold)
    for published in publisher.publish(events):
        count("EventsPublished")
        logger.info("event published", event=summary(published), event_id=published["detail"]["eventId"])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    publisher = _publisher()
    threshold = services().settings.LOW_STOCK_THRESHOLD
    failed = False

    def record_change(record: DynamoDBRecord) -> None:
        nonlocal failed
        try:
            write_audit(record)
            if failed:
                raise EarlierRecordFailed(record.event_id)
            publish_events(record, publisher, threshold)
        except Exception:
            failed = True
            raise

    return process_partial_response(event=event, record_handler=record_change, processor=processor, context=context)
