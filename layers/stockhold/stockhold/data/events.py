"""Stock events on EventBridge (docs/events.md): what one change of a table item means
(publishing lives in ``stockhold.data.event_bus``).

``decide`` is pure: one stream record (its old and new image) in, zero or more events
out. An event is emitted when a *state* changes (in stock -> low, -> out, out -> back
in; a hold -> expired; a checkout's hold warned; an order made), never merely because an
item was written, so a write that crosses nothing emits nothing. Each event carries an
``eventId`` derived from the stream record's ``eventID`` and the event's type: a record
delivered twice yields the same id, which ``EventPublisher`` and consumers dedupe on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

from stockhold.data.schema import HEAD_CELL, ORDER, RESERVATION, STOCK, Item, StreamChange
from stockhold.domain.models import ReservationStatus, rfc3339

SOURCE = "stockhold"
MAX_ENTRIES_PER_CALL = 10  # PutEvents' limit


class DetailType(StrEnum):
    STOCK_LOW = "StockLow"
    STOCK_OUT = "StockOut"
    STOCK_BACK_IN = "StockBackIn"
    RESERVATION_EXPIRING = "ReservationExpiring"
    RESERVATION_EXPIRED = "ReservationExpired"
    ORDER_CREATED = "OrderCreated"


Event = TypedDict("Event", {"source": str, "detail-type": str, "detail": dict[str, Any]})


def event_id(stream_event_id: str, detail_type: str) -> str:
    """Stable across redeliveries of the same stream record; distinct per event type."""
    return "evt_" + hashlib.sha256(f"{stream_event_id}\x1f{detail_type}".encode()).hexdigest()[:32]


def _event(record_id: str, detail_type: DetailType, detail: dict[str, Any]) -> Event:
    return {
        "source": SOURCE,
        "detail-type": detail_type.value,
        "detail": {"eventId": event_id(record_id, detail_type.value), **detail},
    }


# --- the decision ----------------------------------------------------------------------


def decide(change: StreamChange, default_threshold: int, now_ms: int | None = None) -> list[Event]:
    """The events one change of an item (a stream record, plain images) stands for.

    ``default_threshold`` is LOW_STOCK_THRESHOLD, for SKUs that set none. ``now_ms`` is
    only used for a warning that carries no ``warnedAt`` when the record carries no
    ``ApproximateCreationDateTime`` either (which is coarse: seconds on AWS, minutes on
    DynamoDB Local)."""
    name, new, old = change.event_name, change.new, change.old
    if new is None or name not in ("INSERT", "MODIFY"):
        return []
    record_id = change.record_id
    if not record_id:
        raise ValueError("a stream record without an eventID cannot be deduplicated")
    kind = new.get("type")
    if kind == STOCK:
        return _stock_events(record_id, old if name == "MODIFY" else None, new, default_threshold)
    if kind == RESERVATION:
        at_ms = change.approximate_at if change.approximate_at is not None else now_ms
        return _reservation_events(record_id, name, old, new, at_ms)
    if kind == ORDER and name == "INSERT":
        return [_order_created(record_id, new)]
    return []


@dataclass(frozen=True)
class StockState:
    out: bool
    low: bool

    @property
    def name(self) -> str:
        return "out" if self.out else "low" if self.low else "ok"

    @classmethod
    def named(cls, name: str) -> StockState:
        return cls(out=name == "out", low=name in ("out", "low"))


def _threshold(item: Item, default: int) -> int:
    value = item.get("lowStockThreshold")
    return default if value is None else int(value)


def judge(available: int, threshold: int) -> StockState:
    """Out when nothing is left to sell (zero, or below zero once backorders are taken)."""
    return StockState(out=available <= 0, low=available <= threshold)


def _stock_state(item: Item | None, default: int) -> StockState:
    """No earlier image (a new SKU) or an unlimited one counts as neither out nor low."""
    if item is None or item.get("unlimited"):
        return StockState(out=False, low=False)
    return judge(int(item["available"]), _threshold(item, default))


def crossing(before: StockState, after: StockState) -> DetailType | None:
    """The one stock event a change of state stands for, if any."""
    if after.out and not before.out:
        return DetailType.STOCK_OUT
    if before.out and not after.out:
        return DetailType.STOCK_BACK_IN
    if after.low and not before.low and not after.out:
        return DetailType.STOCK_LOW
    return None


def is_multi_cell(item: Item) -> bool:
    """A stock item of a SKU kept in more than one cell: its events are judged on the SKU's
    total (stockhold.data.stock_totals), never on one cell's image."""
    return item.get("location", HEAD_CELL) != HEAD_CELL or bool(item.get("cells"))


def stock_event(record_id: str, detail_type: DetailType, detail: dict[str, Any]) -> Event:
    return _event(record_id, detail_type, detail)


def _stock_events(record_id: str, old: Item | None, new: Item, default: int) -> list[Event]:
    if new.get("unlimited") or is_multi_cell(new):
        return []  # unlimited items are never out, never low; several cells: judged on the total
    found = crossing(_stock_state(old, default), _stock_state(new, default))
    if found is None:
        return []
    detail = {
        "storeId": new["storeId"],
        "sku": new["sku"],
        "available": new["available"],
        "onHand": new["onHand"],
        "reserved": new["reserved"],
        "allocated": new["allocated"],
        "threshold": _threshold(new, default),
        "at": rfc3339(int(new["updatedAt"])),
        "cause": {"action": new.get("lastAction"), "ref": new.get("lastRef")},
    }
    return [_event(record_id, found, detail)]


def _items(item: Item) -> list[dict[str, Any]]:
    return [{"sku": x["sku"], "quantity": x["quantity"]} for x in item.get("lines", [])]


def _reservation_events(record_id: str, name: str, old: Item | None, new: Item, at_ms: int | None) -> list[Event]:
    status = new.get("status")
    was = old.get("status") if old else None
    if status == ReservationStatus.EXPIRED and (name == "INSERT" or was == ReservationStatus.ACTIVE):
        # MODIFY: the timer, reconciliation or a request ended it. INSERT: the TTL backstop
        # put back, as EXPIRED, a hold that DynamoDB's TTL had deleted while still ACTIVE.
        return [
            _event(
                record_id,
                DetailType.RESERVATION_EXPIRED,
                {
                    "storeId": new["storeId"],
                    "reservationId": new["reservationId"],
                    "cartId": new.get("cartId"),
                    "customerId": new.get("customerId"),
                    "checkoutId": new.get("checkoutId"),
                    "items": _items(new),
                    "expiresAt": rfc3339(int(new["expiresAt"])),
                    "expiredBy": new.get("expiredBy"),
                },
            )
        ]
    warned = new.get("warnedFor")
    if (
        name == "MODIFY"
        and status == ReservationStatus.ACTIVE
        and warned is not None
        and warned != (old or {}).get("warnedFor")
        and warned == new.get("expiresAt")
    ):
        expires_at = int(new["expiresAt"])
        at = new.get("warnedAt", at_ms)
        left = max(0, round((expires_at - int(at)) / 1000)) if at is not None else None
        return [
            _event(
                record_id,
                DetailType.RESERVATION_EXPIRING,
                {
                    "storeId": new["storeId"],
                    "reservationId": new["reservationId"],
                    "checkoutId": new.get("checkoutId"),
                    "cartId": new.get("cartId"),
                    "customerId": new.get("customerId"),
                    "expiresAt": rfc3339(expires_at),
                    "secondsLeft": left,
                },
            )
        ]
    return []


def _order_created(record_id: str, new: Item) -> Event:
    return _event(
        record_id,
        DetailType.ORDER_CREATED,
        {
            "storeId": new["storeId"],
            "orderId": new["orderId"],
            "checkoutId": new.get("checkoutId"),
            "reservationId": new.get("reservationId"),
            "customerId": new.get("customerId"),
            "items": _items(new),
            "paymentReference": new.get("paymentReference"),
            "createdAt": rfc3339(int(new["createdAt"])),
        },
    )


def summary(event: Mapping[str, Any]) -> str:
    """One readable line for logs: the type and the fields a person looks for."""
    d = event.get("detail") or {}
    kind = event.get("detail-type", "?")
    if "sku" in d:
        what = f"{d.get('storeId')}/{d['sku']} available={d.get('available')} threshold={d.get('threshold')}"
    elif "orderId" in d:
        what = f"{d.get('storeId')}/{d['orderId']} reservation={d.get('reservationId')} checkout={d.get('checkoutId')}"
    else:
        what = (
            f"{d.get('storeId')}/{d.get('reservationId')} checkout={d.get('checkoutId')} expiresAt={d.get('expiresAt')}"
        )
        if "secondsLeft" in d:
            what += f" secondsLeft={d['secondsLeft']}"
        if "expiredBy" in d:
            what += f" by={d['expiredBy']}"
    return f"{kind} {what}"
