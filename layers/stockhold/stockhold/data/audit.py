"""The audit trail's rules: one change of a table item -> zero or more audit entries.

Pure: no AWS calls and no DynamoDB attribute-value shapes. ``audit_store.stream_change``
turns a stream record into a ``StreamChange`` (plain old/new images); ``entries_for``
decides what the change means (docs/audit.md):

- a RESERVATION's action comes from its status transition (created, extended,
  confirmed, released, expired); a write that changes neither status nor deadline (the
  ``warnedFor`` mark of ``ReservationExpiring``) and every REMOVE (TTL, retention purge)
  leave no entry: the TTL backstop's re-put of the hold as EXPIRED makes its own.
- STOCK, CHECKOUT and ORDER writes say what they were in ``lastAction``
  (docs/data-model.md), with a fallback while an item has none.

Every entry of one record carries the record's id, so a record processed twice maps
to the same keys and the store writes it once.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from stockhold.data.schema import AUDITED_TYPES, CHECKOUT, HEAD_CELL, RESERVATION, STOCK, StreamChange
from stockhold.domain.models import ReservationStatus, rfc3339

TTL_SERVICE_ACTOR = "system:ttl"
UNKNOWN_ACTOR = "unknown"
# Attributes whose change alone is not a change anyone audits (index keys, retention).
_ACTIVE = ReservationStatus.ACTIVE.value
_BOOKKEEPING = frozenset({"sweepPk", "sweepSk", "purgeAt", "version"})


class Trail(StrEnum):
    """What a trail is listed by (``GET /audit?reservationId=|sku=|orderId=|checkoutId=``)."""

    RESERVATION = "reservation"
    SKU = "sku"
    ORDER = "order"
    CHECKOUT = "checkout"


class AuditEntity(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["reservation", "stock", "checkout", "order"]
    id: str


class AuditEntry(BaseModel):
    """One change of one entity, listed on one trail (``trail``/``trail_id``).

    ``at`` is the write's own time (epoch ms); ``record_id`` is the stream record's
    ``eventID``: together with the trail they are the entry's key.
    """

    model_config = ConfigDict(frozen=True)

    store_id: str
    trail: Trail
    trail_id: str
    record_id: str
    at: int
    action: str
    entity: AuditEntity
    ref: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    actor: str
    reason: str | None = None


def entries_for(change: StreamChange) -> list[AuditEntry]:
    """The audit entries one change leaves (none for REMOVEs, AUDIT items and no-op writes)."""
    if change.event_name == "REMOVE" or not change.new:
        return []
    kind = change.new.get("type")
    if kind not in AUDITED_TYPES or not change.new.get("storeId"):
        return []
    if change.event_name == "MODIFY" and change.old is not None and _same(change.old, change.new):
        return []
    if kind == RESERVATION:
        return _reservation(change, change.new, change.old)
    if kind == STOCK:
        return _stock(change, change.new, change.old)
    if kind == CHECKOUT:
        return _checkout(change, change.new, change.old)
    return _order(change, change.new, change.old)


# --- per type --------------------------------------------------------------------------

_ENDED_BY = {
    ReservationStatus.ACTIVE.value: "reservation_created",
    ReservationStatus.CONFIRMED.value: "reservation_confirmed",
    ReservationStatus.RELEASED.value: "reservation_released",
    ReservationStatus.EXPIRED.value: "reservation_expired",
}


def _reservation(change: StreamChange, new: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[AuditEntry]:
    status = new.get("status")
    if change.event_name == "INSERT" or old is None:
        action = _ENDED_BY.get(str(status))
        before = None
    elif old.get("status") == _ACTIVE and status != _ACTIVE:
        action = _ENDED_BY.get(str(status))
        before = _reservation_view(old)
    elif status == _ACTIVE == old.get("status") and _int(new.get("expiresAt")) > _int(old.get("expiresAt")):
        action, before = "reservation_extended", _reservation_view(old)
    else:
        return []  # e.g. only warnedFor (ReservationExpiring was published) or an ended hold touched
    if action is None:
        return []
    rid = str(new["reservationId"])
    trails = [(Trail.RESERVATION, rid)]
    # Also listed on its order's and checkout's trails: "what happened to this order's hold".
    if new.get("orderId"):
        trails.append((Trail.ORDER, str(new["orderId"])))
    if new.get("checkoutId"):
        trails.append((Trail.CHECKOUT, str(new["checkoutId"])))
    reason = new.get("lastReason") or (new.get("endReason") if status != _ACTIVE else None)
    return _entries(
        change,
        trails,
        action=action,
        entity=AuditEntity(type="reservation", id=rid),
        ref=new.get("lastRef") or new.get("orderId"),
        before=before,
        after=_reservation_view(new),
        reason=reason,
    )


def _stock(change: StreamChange, new: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[AuditEntry]:
    sku = str(new["sku"])
    inserted = change.event_name == "INSERT" or old is None
    return _entries(
        change,
        [(Trail.SKU, sku)],
        action=str(new.get("lastAction") or ("stock_set" if inserted else "stock_changed")),
        entity=AuditEntity(type="stock", id=sku),
        ref=new.get("lastRef"),
        before=None if old is None or inserted else _stock_view(old),
        after=_stock_view(new),
        reason=new.get("lastReason"),
    )


def _checkout(change: StreamChange, new: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[AuditEntry]:
    cid = str(new["checkoutId"])
    inserted = change.event_name == "INSERT" or old is None
    return _entries(
        change,
        [(Trail.CHECKOUT, cid)],
        action=str(new.get("lastAction") or "checkout_updated"),
        entity=AuditEntity(type="checkout", id=cid),
        ref=new.get("lastRef"),
        before=None if old is None or inserted else _checkout_view(old),
        after=_checkout_view(new),
        reason=new.get("lastReason") or new.get("endReason"),
    )


def _order(change: StreamChange, new: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[AuditEntry]:
    oid = str(new["orderId"])
    inserted = change.event_name == "INSERT" or old is None
    return _entries(
        change,
        [(Trail.ORDER, oid)],
        action=str(new.get("lastAction") or "order_updated"),
        entity=AuditEntity(type="order", id=oid),
        ref=new.get("lastRef"),
        before=None if old is None or inserted else _order_view(old),
        after=_order_view(new),
        reason=new.get("lastReason"),
    )


# --- projections: the few fields that say what changed (no addresses or payment data) ---------


def _items(lines: Any) -> list[dict[str, Any]]:
    """Each line's SKU and quantity, with the cells it took from (``allocations``) and its
    ``backordered`` units when it has them (a store with no locations: exactly as before)."""
    out = []
    for x in lines or []:
        if not isinstance(x, Mapping):
            continue
        line = {"sku": x.get("sku"), "quantity": x.get("quantity")}
        if x.get("allocations"):
            line["allocations"] = [
                {"locationId": a.get("locationId"), "quantity": a.get("quantity")} for a in x["allocations"]
            ]
        if x.get("backordered"):
            line["backordered"] = x["backordered"]
        out.append(line)
    return out


def _time(value: Any) -> str | None:
    return rfc3339(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _compact(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if v is not None}


def _reservation_view(item: Mapping[str, Any]) -> dict[str, Any]:
    return _compact(
        {
            "status": item.get("status"),
            "expiresAt": _time(item.get("expiresAt")),
            "extensionsUsed": item.get("extensionsUsed"),
            "items": _items(item.get("lines")),
            "endReason": item.get("endReason"),
            "orderId": item.get("orderId"),
            "checkoutId": item.get("checkoutId"),
            "expiredBy": item.get("expiredBy"),
        }
    )


def _stock_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """The counters, always all six keys (``lowStockThreshold`` null when the store default
    applies); a cell at another location than ``default`` adds its ``locationId``, and a
    SKU's settings from "Stock in many places" are added when set."""
    view = {
        "onHand": item.get("onHand"),
        "reserved": item.get("reserved"),
        "allocated": item.get("allocated"),
        "available": item.get("available"),
        "unlimited": bool(item.get("unlimited", False)),
        "lowStockThreshold": item.get("lowStockThreshold"),
    }
    location = item.get("location", HEAD_CELL)
    if location != HEAD_CELL:
        view["locationId"] = location
    for name in ("backorderLimit", "maxPerCart", "maxPerCustomer", "maxHoldSeconds"):
        if item.get(name) is not None:
            view[name] = item[name]
    return view


def _checkout_view(item: Mapping[str, Any]) -> dict[str, Any]:
    return _compact(
        {
            "status": item.get("status"),
            "step": item.get("step"),
            "reservationId": item.get("reservationId"),
            "orderId": item.get("orderId"),
            "items": _items(item.get("items")),
            "endReason": item.get("endReason"),
        }
    )


def _order_view(item: Mapping[str, Any]) -> dict[str, Any]:
    return _compact(
        {
            "status": item.get("status"),
            "reservationId": item.get("reservationId"),
            "checkoutId": item.get("checkoutId"),
            "paymentReference": item.get("paymentReference"),
            "items": _items(item.get("lines")),
        }
    )


# --- shared --------------------------------------------------------------------------


def _entries(
    change: StreamChange,
    trails: list[tuple[Trail, str]],
    *,
    action: str,
    entity: AuditEntity,
    ref: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: Any,
) -> list[AuditEntry]:
    new = change.new or {}
    common = {
        "store_id": str(new["storeId"]),
        "record_id": change.record_id,
        "at": written_at(change),
        "action": action,
        "entity": entity,
        "ref": str(ref) if ref else None,
        "before": before,
        "after": after,
        "actor": actor_of(change),
        "reason": str(reason) if reason else None,
    }
    return [AuditEntry(trail=trail, trail_id=trail_id, **common) for trail, trail_id in dict.fromkeys(trails)]


def actor_of(change: StreamChange) -> str:
    """``lastActor`` of the write; else the TTL service, or the path that expired a hold; else unknown."""
    new = change.new or {}
    if new.get("lastActor"):
        return str(new["lastActor"])
    if change.by_ttl_service:
        return TTL_SERVICE_ACTOR
    if new.get("type") == RESERVATION and new.get("expiredBy"):
        return f"system:{new['expiredBy']}"
    return UNKNOWN_ACTOR


_STAMPS = ("updatedAt", "endedAt", "createdAt", "paymentWindowAt")


def written_at(change: StreamChange) -> int:
    """The write's own time (epoch ms): the latest of the item's time stamps (``updatedAt``,
    ``endedAt``, ``createdAt``, ``paymentWindowAt``) that this write set. A write that set none of them (an extension) takes the stream's
    approximate time, but never earlier than the item's latest stamp + 1 ms, so an
    item's own trail stays in the order of its writes."""
    new, old = change.new or {}, change.old or {}
    written = [_int(new.get(n)) for n in _STAMPS if _int(new.get(n)) and new.get(n) != old.get(n)]
    if written:
        return max(written)
    latest = max((_int(new.get(n)) for n in _STAMPS), default=0)
    return max(change.approximate_at or 0, latest + 1 if latest else 0)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Nothing but bookkeeping changed (index keys, TTL)."""
    keys = (set(old) | set(new)) - _BOOKKEEPING
    return all(old.get(k) == new.get(k) for k in keys)
