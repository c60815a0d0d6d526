"""Data access for published events: the dedupe marker ``EVENT#{eventId}`` / ``SENT``.

A marker says "EventBridge accepted this event": the publisher reads it before
publishing and writes it (only if absent) after. It lives a day (``purgeAt``, DynamoDB
TTL), far longer than a stream record can be redelivered (24 h retention, bounded retries).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stockhold.data.schema import to_av
from stockhold.data.transactions import condition_failed

MARKER_TTL_SECONDS = 86400


def event_sent_key(event_id: str) -> dict[str, str]:
    return {"pk": f"EVENT#{event_id}", "sk": "SENT"}


class EventMarkers:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def is_sent(self, event_id: str) -> bool:
        resp = self._client.get_item(
            TableName=self._table,
            Key=to_av(event_sent_key(event_id)),
            ConsistentRead=True,
            ProjectionExpression="pk",
        )
        return "Item" in resp

    def mark_sent(self, event_id: str, *, store_id: str, detail_type: str, now_ms: int) -> bool:
        """Write the marker if absent; False when another delivery wrote it first."""
        item = {
            **event_sent_key(event_id),
            "type": "EVENT_SENT",
            "storeId": store_id,
            "eventId": event_id,
            "detailType": detail_type,
            "sentAt": now_ms,
            "purgeAt": now_ms // 1000 + MARKER_TTL_SECONDS,
        }
        try:
            self._client.put_item(
                TableName=self._table, Item=to_av(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True
