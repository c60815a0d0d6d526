"""Stream records as Lambda delivers them, for the stock-event tests (unit and component)."""

from __future__ import annotations

from typing import Any

from stockhold.data.events import decide as decide_change
from stockhold.data.schema import stream_change, to_av

THRESHOLD = 5  # LOW_STOCK_THRESHOLD's default
NOW_MS = 1_795_420_000_000


# --- records as Lambda delivers them ---------------------------------------------------


def stream_record(
    name: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    *,
    record_id: str = "rec-1",
    seq: str = "100",
    at_s: float | None = NOW_MS / 1000,
) -> dict[str, Any]:
    image = new or old or {}
    ddb: dict[str, Any] = {
        "Keys": to_av({"pk": image.get("pk", "PK"), "sk": image.get("sk", "SK")}),
        "SequenceNumber": seq,
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if at_s is not None:
        ddb["ApproximateCreationDateTime"] = at_s
    if old is not None:
        ddb["OldImage"] = to_av(old)
    if new is not None:
        ddb["NewImage"] = to_av(new)
    return {"eventID": record_id, "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": ddb}


def stock(available: int, *, threshold: int | None = None, unlimited: bool = False, **extra: Any) -> dict[str, Any]:
    reserved = extra.pop("reserved", 0)
    return {
        "pk": "STORE#demo#SKU#MUG",
        "sk": "STOCK#_",
        "type": "STOCK",
        "storeId": "demo",
        "sku": "MUG",
        "location": "_",
        "onHand": available + reserved,
        "reserved": reserved,
        "allocated": 0,
        "available": available,
        "lowStockThreshold": threshold,
        "unlimited": unlimited,
        "updatedAt": NOW_MS,
        "lastAction": "stock_adjusted",
        **extra,
    }


def hold(status: str = "ACTIVE", **extra: Any) -> dict[str, Any]:
    return {
        "pk": "STORE#demo#RES#res_1",
        "sk": "RESERVATION",
        "type": "RESERVATION",
        "storeId": "demo",
        "reservationId": "res_1",
        "cartId": "cart-1",
        "customerId": "u-9",
        "checkoutId": "chk_1",
        "status": status,
        "lines": [{"sku": "MUG", "quantity": 2, "held": True}],
        "createdAt": NOW_MS - 240_000,
        "expiresAt": NOW_MS + 60_000,
        "extensionsUsed": 0,
        "maxExtensions": 3,
        **extra,
    }


def order(**extra: Any) -> dict[str, Any]:
    return {
        "pk": "STORE#demo#ORD#ord_1",
        "sk": "ORDER",
        "type": "ORDER",
        "storeId": "demo",
        "orderId": "ord_1",
        "checkoutId": "chk_1",
        "reservationId": "res_1",
        "cartId": "cart-1",
        "customerId": "u-9",
        "lines": [{"sku": "MUG", "quantity": 2, "held": True}, {"sku": "EBOOK", "quantity": 1, "held": False}],
        "status": "PLACED",
        "paymentReference": "pay-1",
        "createdAt": NOW_MS,
        "updatedAt": NOW_MS,
        **extra,
    }


def decide(record: dict[str, Any], threshold: int, now_ms: int | None = None) -> list[Any]:
    """The events of a stream record as Lambda delivers it (the change feed's own conversion)."""
    return decide_change(stream_change(record), threshold, now_ms)


def kinds(record: dict[str, Any]) -> list[str]:
    return [e["detail-type"] for e in decide(record, THRESHOLD)]
