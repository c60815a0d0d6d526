"""The audit trail, written from the table's stream.

FilterCriteria admit only INSERT/MODIFY records of RESERVATION, STOCK, CHECKOUT and
ORDER items (never the AUDIT items this function writes into the same table). Each
record maps to its entries (stockhold.audit) and they are written only if absent, so a
record delivered again leaves nothing new (docs/audit.md).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockhold.audit import entries_for
from stockhold.audit_store import audit_store, stream_change
from stockhold.observability import count, logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_change(record: DynamoDBRecord) -> None:
    entries = entries_for(stream_change(record.raw_event))
    written = audit_store().put(entries)
    if written:
        count("AuditEntriesWritten", written)
    elif entries:
        logger.info("audit entries already written", event_id=record.event_id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_change, processor=processor, context=context)
