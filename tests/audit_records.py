"""Item images and stream records for the audit-trail tests (unit and component)."""

from __future__ import annotations

from typing import Any

from stockhold.data.audit import AuditEntry
from stockhold.data.schema import StreamChange, to_av

T0 = 1_795_420_000_000  # epoch ms
RID = "res_abc"


# --- images -----------------------------------------------------------------------------------


def reservation(**over: Any) -> dict[str, Any]:
    item = {
        "pk": f"STORE#demo#RES#{RID}",
        "sk": "RESERVATION",
        "type": "RESERVATION",
        "storeId": "demo",
        "reservationId": RID,
        "cartId": "c-1",
        "customerId": "u-9",
        "status": "ACTIVE",
        "lines": [{"sku": "A-1", "quantity": 2, "held": True}],
        "createdAt": T0,
        "expiresAt": T0 + 900_000,
        "extensionsUsed": 0,
        "maxExtensions": 3,
        "purgeAt": (T0 + 900_000) // 1000 + 3600,
        "sweepPk": "HOLD#1",
        "sweepSk": f"{T0 + 900_000:015d}",
        "lastAction": "reservation_created",
        "lastActor": "storefront:5e1f0c2a",
    }
    item.update(over)
    return {k: v for k, v in item.items() if v is not None}


def stock(**over: Any) -> dict[str, Any]:
    item = {
        "pk": "STORE#demo#SKU#A-1",
        "sk": "STOCK#_",
        "type": "STOCK",
        "storeId": "demo",
        "sku": "A-1",
        "location": "_",
        "onHand": 10,
        "reserved": 0,
        "allocated": 0,
        "available": 10,
        "unlimited": False,
        "updatedAt": T0,
        "lastAction": "stock_set",
        "lastActor": "admin:1a2b3c4d",
    }
    item.update(over)
    return {k: v for k, v in item.items() if v is not None}


def checkout(**over: Any) -> dict[str, Any]:
    item = {
        "pk": "STORE#demo#CHK#chk_1",
        "sk": "CHECKOUT",
        "type": "CHECKOUT",
        "storeId": "demo",
        "checkoutId": "chk_1",
        "cartId": "c-1",
        "status": "checkout",
        "items": [{"sku": "A-1", "quantity": 2}],
        "reservationId": RID,
        "shippingAddress": {"line1": "1 Main St", "city": "Springfield"},
        "paymentMethod": "card",
        "createdAt": T0,
        "updatedAt": T0,
        "version": 1,
        "lastAction": "checkout_started",
        "lastActor": "storefront:5e1f0c2a",
    }
    item.update(over)
    return {k: v for k, v in item.items() if v is not None}


def order(**over: Any) -> dict[str, Any]:
    item = {
        "pk": "STORE#demo#ORD#o-1",
        "sk": "ORDER",
        "type": "ORDER",
        "storeId": "demo",
        "orderId": "o-1",
        "checkoutId": "chk_1",
        "reservationId": RID,
        "cartId": "c-1",
        "lines": [{"sku": "A-1", "quantity": 2, "held": True}],
        "status": "PLACED",
        "paymentReference": "pay-1",
        "createdAt": T0,
        "updatedAt": T0,
        "lastAction": "order_created",
        "lastActor": "storefront:5e1f0c2a",
    }
    item.update(over)
    return {k: v for k, v in item.items() if v is not None}


def change(
    event: str, new: dict[str, Any] | None, old: dict[str, Any] | None = None, rid: str = "ev-1", **kw: Any
) -> StreamChange:
    return StreamChange(record_id=rid, event_name=event, new=new, old=old, **kw)  # type: ignore[arg-type]


def record(
    event: str, new: dict[str, Any] | None, old: dict[str, Any] | None = None, event_id: str = "ev-1", **extra: Any
) -> dict[str, Any]:
    """A stream record as Lambda delivers it."""
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": T0 // 1000,
        "Keys": to_av({"pk": (new or old or {})["pk"], "sk": (new or old or {})["sk"]}),
        "SequenceNumber": str(abs(hash(event_id)) % 10**12),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        ddb["NewImage"] = to_av(new)
    if old is not None:
        ddb["OldImage"] = to_av(old)
    return {"eventID": event_id, "eventName": event, "eventSource": "aws:dynamodb", "dynamodb": ddb, **extra}


def only(entries: list[AuditEntry]) -> AuditEntry:
    assert len(entries) == 1, entries
    return entries[0]


# --- reservations -----------------------------------------------------------------------------
