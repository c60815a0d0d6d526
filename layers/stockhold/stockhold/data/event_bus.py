"""Publishing stock events on EventBridge, at most once per ``eventId`` as far as this side
can tell (docs/events.md)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stockhold.data.event_store import EventMarkers
from stockhold.data.events import MAX_ENTRIES_PER_CALL, Event


@dataclass
class PublishFailed(Exception):
    """EventBridge refused some entries (``FailedEntryCount`` > 0): the record must be retried."""

    failures: list[dict[str, Any]]

    def __str__(self) -> str:
        return f"EventBridge refused {len(self.failures)} event(s): {self.failures}"


class EventPublisher:
    """PutEvents, at most once per ``eventId`` as far as this side can tell.

    Before publishing, a marker ``EVENT#{eventId}`` is looked up (a record redelivered
    after a successful publish sends nothing); after EventBridge accepted an entry, the
    marker is written. A crash between the two sends the event again on redelivery, so
    consumers dedupe on ``eventId`` too (docs/events.md)."""

    def __init__(self, client: Any, markers: EventMarkers, bus_name: str, clock: Callable[[], int]) -> None:
        self._client = client
        self._markers = markers
        self._bus = bus_name
        self._clock = clock

    def publish(self, events: Sequence[Event]) -> list[Event]:
        """Publish the events not sent before; returns those published now. Raises PublishFailed."""
        pending = [e for e in events if not self._markers.is_sent(e["detail"]["eventId"])]
        published: list[Event] = []
        failures: list[dict[str, Any]] = []
        for start in range(0, len(pending), MAX_ENTRIES_PER_CALL):
            chunk = pending[start : start + MAX_ENTRIES_PER_CALL]
            resp = self._client.put_events(Entries=[self._entry(e) for e in chunk])
            results = resp.get("Entries") or []
            for i, event in enumerate(chunk):
                result = results[i] if i < len(results) else {"ErrorCode": "MissingResult"}
                if result.get("ErrorCode") or not result.get("EventId"):
                    failures.append(
                        {
                            "eventId": event["detail"]["eventId"],
                            "detailType": event["detail-type"],
                            "errorCode": result.get("ErrorCode"),
                            "errorMessage": result.get("ErrorMessage"),
                        }
                    )
                    continue
                self._markers.mark_sent(
                    event["detail"]["eventId"],
                    store_id=str(event["detail"].get("storeId", "")),
                    detail_type=event["detail-type"],
                    now_ms=self._clock(),
                )
                published.append(event)
            if int(resp.get("FailedEntryCount") or 0) > 0 and not failures:
                failures.append({"errorCode": "FailedEntryCount", "count": resp["FailedEntryCount"]})
        if failures:
            raise PublishFailed(failures)
        return published

    def _entry(self, event: Event) -> dict[str, Any]:
        return {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event["detail"], separators=(",", ":")),
            "EventBusName": self._bus,
        }
