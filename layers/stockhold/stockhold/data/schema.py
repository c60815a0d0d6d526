"""The item schema: key formats, attribute names, type and status literals, and the
conversion between items and domain values. The stream readers (hold stream, change feed,
audit, events) read items through this module too, and a template test checks the
stream FilterCriteria against its literals (docs/data-model.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, ConfigDict

from stockhold import actor
from stockhold.domain.intents import Cause
from stockhold.domain.models import (
    DEFAULT_LOCATION,
    CellLevel,
    Checkout,
    CheckoutStatus,
    HeldLine,
    Line,
    LineAllocation,
    Location,
    Order,
    OrderStatus,
    Reservation,
    ReservationStatus,
    StockLevel,
)

# Item types (the ``type`` attribute) and the statuses stream filters match on.
STOCK = "STOCK"
RESERVATION = "RESERVATION"
CART_HOLD = "CART_HOLD"
CART_CHECKOUT = "CART_CHECKOUT"
CHECKOUT = "CHECKOUT"
ORDER = "ORDER"
REQUEST_MARK = "REQUEST_MARK"
STORE = "STORE"
LOCATION = "LOCATION"
ALLOWANCE = "ALLOWANCE"
APIKEY = "APIKEY"
AUDIT = "AUDIT"
EVENT_SENT = "EVENT_SENT"
SLOT_TIMER = "SLOT_TIMER"
ITEM_TYPES = (
    STOCK,
    RESERVATION,
    CART_HOLD,
    CART_CHECKOUT,
    CHECKOUT,
    ORDER,
    REQUEST_MARK,
    STORE,
    LOCATION,
    ALLOWANCE,
    APIKEY,
    AUDIT,
    EVENT_SENT,
    SLOT_TIMER,
)
AUDITED_TYPES = (RESERVATION, STOCK, CHECKOUT, ORDER)
HOLD_STATUSES = tuple(s.value for s in ReservationStatus)
TYPE, STATUS, EXPIRES_AT = "type", "status", "expiresAt"

# A SKU's cells: one stock item per location, all under the SKU's partition key. The
# ``default`` location's item (sort key ``STOCK#_``) is the SKU's head: it also carries the
# SKU's settings (threshold, unlimited, backorder limit, purchase limits) and ``cells``, the
# other locations the SKU has a cell in.
HEAD_CELL = "_"
# The sparse "Sweep" index: active holds by deadline, and stock cells, spread over many
# partition keys, so that no index partition runs hot (docs/flash-sales.md, "The Sweep
# index"): every hold's start, end and extension, and every change of a cell's
# ``reserved``, is a write there. Holds over HOLD_SHARDS keys by their id; cells over
# CELL_SHARDS keys by store, SKU and location (more: a hot SKU's many holds all land on its
# cells). Reconciliation reads it, and a refused reserve (overdue holds) at most once a
# second per container and store; the queries over the shards run in parallel. Keys
# written with fewer shards (4, before) stay readable: they are among the shards read.
SWEEP_INDEX = "Sweep"
HOLD_SHARDS = 256
CELL_SHARDS = 512

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

Item = dict[str, Any]


# --- keys -------------------------------------------------------------------------


def cell_of(location_id: str) -> str:
    """A location id (``default`` or an admin's id) as a stock item's ``location``."""
    return HEAD_CELL if location_id == DEFAULT_LOCATION else location_id


def location_of(cell: str) -> str:
    return DEFAULT_LOCATION if cell == HEAD_CELL else cell


def stock_pk(store_id: str, sku: str) -> str:
    return f"STORE#{store_id}#SKU#{sku}"


def stock_key(store_id: str, sku: str, location_id: str = DEFAULT_LOCATION) -> dict[str, str]:
    return {"pk": stock_pk(store_id, sku), "sk": f"STOCK#{cell_of(location_id)}"}


def location_key(store_id: str, location_id: str) -> dict[str, str]:
    return {"pk": f"STORE#{store_id}#LOCATIONS", "sk": f"LOCATION#{location_id}"}


def allowance_key(store_id: str, customer_id: str, sku: str) -> dict[str, str]:
    """What one customer has of a SKU with ``maxPerCustomer``: held plus ordered units."""
    return {"pk": f"STORE#{store_id}#CUST#{customer_id}", "sk": f"ALLOWANCE#{sku}"}


def reservation_key(store_id: str, reservation_id: str) -> dict[str, str]:
    return {"pk": f"STORE#{store_id}#RES#{reservation_id}", "sk": "RESERVATION"}


def cart_key(store_id: str, cart_id: str) -> dict[str, str]:
    return {"pk": f"STORE#{store_id}#CART#{cart_id}", "sk": "HOLD"}


def cart_checkout_key(store_id: str, cart_id: str) -> dict[str, str]:
    return {"pk": f"STORE#{store_id}#CART#{cart_id}", "sk": "CHECKOUT"}


def checkout_key(store_id: str, checkout_id: str) -> dict[str, str]:
    return {"pk": f"STORE#{store_id}#CHK#{checkout_id}", "sk": "CHECKOUT"}


def order_key(store_id: str, order_id: str) -> dict[str, str]:
    return {"pk": f"STORE#{store_id}#ORD#{order_id}", "sk": "ORDER"}


def _shard(value: str, shards: int) -> int:
    return int(hashlib.sha256(value.encode()).hexdigest()[:8], 16) % shards


def hold_sweep_keys(reservation_id: str, expires_at_ms: int) -> dict[str, str]:
    return {"sweepPk": f"HOLD#{_shard(reservation_id, HOLD_SHARDS)}", "sweepSk": f"{expires_at_ms:015d}"}


def stock_sweep_keys(store_id: str, sku: str, location_id: str = DEFAULT_LOCATION) -> dict[str, str]:
    cell = "" if location_id == DEFAULT_LOCATION else f"#{location_id}"
    # Each cell on its own shard: a SKU's cells (its locations, later its shards) spread out.
    return {"sweepPk": f"STOCK#{_shard(store_id + sku + cell, CELL_SHARDS)}", "sweepSk": f"{store_id}#{sku}{cell}"}


def slot_timer_key(kind: str, slot: int) -> dict[str, str]:
    """The mark that a slot's timer (one second of deadlines, all stores) has been armed."""
    return {"pk": f"TIMER#{kind}#{slot}", "sk": "TIMER"}


def request_mark_key(store_id: str, key: str) -> dict[str, str]:
    """The mark an ``Idempotency-Key`` leaves in the transaction of the change it made."""
    return {"pk": f"STORE#{store_id}#KEY#{hashlib.sha256(key.encode()).hexdigest()[:32]}", "sk": "REQUEST"}


def store_key(store_id: str) -> dict[str, str]:
    return {"pk": f"STORE#{store_id}", "sk": "STORE"}


def api_key_key(key_hash: str) -> dict[str, str]:
    return {"pk": f"APIKEY#{key_hash}", "sk": "APIKEY"}


# --- (de)serialisation ----------------------------------------------------------------


def to_av(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in value.items() if v is not None}


def from_av(item: Mapping[str, Any]) -> Item:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def cell_from_item(item: Item) -> CellLevel:
    return CellLevel(
        location_id=location_of(item.get("location", HEAD_CELL)),
        on_hand=item["onHand"],
        reserved=item["reserved"],
        allocated=item["allocated"],
        available=item["available"],
        updated_at=item.get("updatedAt", 0),
    )


def stock_from_item(item: Item, others: Sequence[Item] = ()) -> StockLevel:
    """A SKU's stock from its cells' items: ``item`` (its head, or the one cell a refused
    write returned) and ``others`` (the rest). The counters are the sums over the cells."""
    cells = [cell_from_item(item), *(cell_from_item(x) for x in others)]
    cells.sort(key=lambda c: (c.location_id != DEFAULT_LOCATION, c.location_id))
    return StockLevel(
        sku=item["sku"],
        on_hand=sum(c.on_hand for c in cells),
        reserved=sum(c.reserved for c in cells),
        allocated=sum(c.allocated for c in cells),
        available=sum(c.available for c in cells),
        low_stock_threshold=item.get("lowStockThreshold"),
        unlimited=bool(item.get("unlimited", False)),
        updated_at=max(x["updatedAt"] for x in (item, *others)),
        backorder_limit=item.get("backorderLimit", 0),
        max_per_cart=item.get("maxPerCart"),
        max_per_customer=item.get("maxPerCustomer"),
        max_hold_seconds=item.get("maxHoldSeconds"),
        locations=tuple(cells),
        cell_ids=tuple(sorted({DEFAULT_LOCATION, *item.get("cells", ())})) if item.get("location") == HEAD_CELL else (),
    )


def line_from_item(x: Mapping[str, Any]) -> HeldLine:
    return HeldLine(
        sku=x["sku"],
        quantity=x["quantity"],
        held=x["held"],
        allocations=tuple(
            LineAllocation(location_id=a["locationId"], quantity=a["quantity"]) for a in x.get("allocations", ())
        ),
        backordered=x.get("backordered", 0),
        counted=x.get("counted", False),
    )


def line_to_item(x: HeldLine) -> Item:
    item: Item = {"sku": x.sku, "quantity": x.quantity, "held": x.held}
    if x.allocations:
        item["allocations"] = [{"locationId": a.location_id, "quantity": a.quantity} for a in x.allocations]
    if x.backordered:
        item["backordered"] = x.backordered
    if x.counted:
        item["counted"] = True
    return item


def location_from_item(item: Item) -> Location:
    return Location(
        location_id=item["locationId"],
        name=item["name"],
        priority=item["priority"],
        active=item["active"],
        updated_at=item.get("updatedAt", 0),
    )


def location_item(store_id: str, loc: Location) -> Item:
    return {
        **location_key(store_id, loc.location_id),
        "type": LOCATION,
        "storeId": store_id,
        "locationId": loc.location_id,
        "name": loc.name,
        "priority": loc.priority,
        "active": loc.active,
        "updatedAt": loc.updated_at,
    }


def reservation_from_item(item: Item) -> Reservation:
    return Reservation(
        reservation_id=item["reservationId"],
        store_id=item["storeId"],
        cart_id=item["cartId"],
        customer_id=item.get("customerId"),
        status=ReservationStatus(item["status"]),
        lines=tuple(line_from_item(x) for x in item["lines"]),
        created_at=item["createdAt"],
        expires_at=item["expiresAt"],
        extensions_used=item["extensionsUsed"],
        max_extensions=item["maxExtensions"],
        ended_at=item.get("endedAt"),
        end_reason=item.get("endReason"),
        order_id=item.get("orderId"),
        expired_by=item.get("expiredBy"),
        checkout_id=item.get("checkoutId"),
        payment_window_at=item.get("paymentWindowAt"),
        max_hold_seconds=item.get("maxHoldSeconds"),
    )


def reservation_to_item(res: Reservation, purge_at: int) -> Item:
    return {
        **reservation_key(res.store_id, res.reservation_id),
        "type": RESERVATION,
        "storeId": res.store_id,
        "reservationId": res.reservation_id,
        "cartId": res.cart_id,
        "customerId": res.customer_id,
        "status": res.status.value,
        "lines": [line_to_item(x) for x in res.lines],
        "createdAt": res.created_at,
        "expiresAt": res.expires_at,
        "extensionsUsed": res.extensions_used,
        "maxExtensions": res.max_extensions,
        "purgeAt": purge_at,
        "checkoutId": res.checkout_id,
        "maxHoldSeconds": res.max_hold_seconds,
        **(hold_sweep_keys(res.reservation_id, res.expires_at) if res.status is ReservationStatus.ACTIVE else {}),
    }


def checkout_from_item(item: Item) -> Checkout:
    return Checkout(
        checkout_id=item["checkoutId"],
        store_id=item["storeId"],
        cart_id=item["cartId"],
        customer_id=item.get("customerId"),
        status=CheckoutStatus(item["status"]),
        items=tuple(Line(sku=x["sku"], quantity=x["quantity"]) for x in item["items"]),
        reservation_id=item.get("reservationId"),
        order_id=item.get("orderId"),
        shipping_address=item.get("shippingAddress"),
        billing_address=item.get("billingAddress"),
        payment_method=item.get("paymentMethod"),
        shipping_method_id=item.get("shippingMethodId"),
        step=item.get("step"),
        end_reason=item.get("endReason"),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
        version=item.get("version", 0),
    )


def checkout_to_item(chk: Checkout) -> Item:
    return {
        **checkout_key(chk.store_id, chk.checkout_id),
        "type": CHECKOUT,
        "storeId": chk.store_id,
        "checkoutId": chk.checkout_id,
        "cartId": chk.cart_id,
        "customerId": chk.customer_id,
        "status": chk.status.value,
        "items": [{"sku": x.sku, "quantity": x.quantity} for x in chk.items],
        "reservationId": chk.reservation_id,
        "orderId": chk.order_id,
        "shippingAddress": chk.shipping_address,
        "billingAddress": chk.billing_address,
        "paymentMethod": chk.payment_method,
        "shippingMethodId": chk.shipping_method_id,
        "step": chk.step,
        "endReason": chk.end_reason,
        "createdAt": chk.created_at,
        "updatedAt": chk.updated_at,
        "version": chk.version,
    }


def order_from_item(item: Item) -> Order:
    return Order(
        order_id=item["orderId"],
        store_id=item["storeId"],
        checkout_id=item.get("checkoutId"),
        reservation_id=item["reservationId"],
        cart_id=item["cartId"],
        customer_id=item.get("customerId"),
        lines=tuple(line_from_item(x) for x in item["lines"]),
        status=OrderStatus(item["status"]),
        payment_reference=item.get("paymentReference"),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
    )


def order_to_item(order: Order) -> Item:
    return {
        **order_key(order.store_id, order.order_id),
        "type": ORDER,
        "storeId": order.store_id,
        "orderId": order.order_id,
        "checkoutId": order.checkout_id,
        "reservationId": order.reservation_id,
        "cartId": order.cart_id,
        "customerId": order.customer_id,
        "lines": [line_to_item(x) for x in order.lines],
        "status": order.status.value,
        "paymentReference": order.payment_reference,
        "createdAt": order.created_at,
        "updatedAt": order.updated_at,
    }


# --- who and why (docs/data-model.md) ---------------------------------------------------


def cause_attributes(cause: Cause) -> Item:
    """For a Put: the attributes naming what the write was, and the current actor."""
    return {"lastAction": cause.action, "lastActor": actor.current(), "lastRef": cause.ref, "lastReason": cause.reason}


def cause_update(cause: Cause, values: dict[str, Any], sets: list[str], removes: list[str]) -> None:
    """For an Update: add the SET/REMOVE clauses of ``cause_attributes`` (placeholders ``:cz*``)."""
    for name, value in cause_attributes(cause).items():
        if value is None:
            removes.append(name)
        else:
            values[f":cz{name}"] = value
            sets.append(f"{name} = :cz{name}")


def update_expression(sets: list[str], removes: list[str]) -> str:
    return "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")


def stock_item(store_id: str, level: StockLevel, cause: Cause) -> Item:
    return {
        **stock_key(store_id, level.sku),
        "type": STOCK,
        "storeId": store_id,
        "sku": level.sku,
        "location": HEAD_CELL,
        "onHand": level.on_hand,
        "reserved": level.reserved,
        "allocated": level.allocated,
        "available": level.available,
        "lowStockThreshold": level.low_stock_threshold,
        "unlimited": level.unlimited,
        "updatedAt": level.updated_at,
        "backorderLimit": level.backorder_limit or None,
        "maxPerCart": level.max_per_cart,
        "maxPerCustomer": level.max_per_customer,
        "maxHoldSeconds": level.max_hold_seconds,
        **stock_sweep_keys(store_id, level.sku),
        **cause_attributes(cause),
    }


def cell_item(store_id: str, sku: str, location_id: str, on_hand: int, now_ms: int, cause: Cause) -> Item:
    """A new cell of a SKU at a location other than ``default`` (counters only)."""
    return {
        **stock_key(store_id, sku, location_id),
        "type": STOCK,
        "storeId": store_id,
        "sku": sku,
        "location": cell_of(location_id),
        "onHand": on_hand,
        "reserved": 0,
        "allocated": 0,
        "available": on_hand,
        "unlimited": False,
        "updatedAt": now_ms,
        **stock_sweep_keys(store_id, sku, location_id),
        **cause_attributes(cause),
    }


def cart_slot_item(res: Reservation) -> Item:
    # No TTL: every transition out of ACTIVE deletes the slot, and a stale one is cleared
    # when met (docs/decisions.md, "Cart slots").
    return {
        **cart_key(res.store_id, res.cart_id),
        "type": CART_HOLD,
        "storeId": res.store_id,
        "cartId": res.cart_id,
        "reservationId": res.reservation_id,
        "expiresAt": res.expires_at,
    }


def cart_checkout_item(chk: Checkout) -> Item:
    return {
        **cart_checkout_key(chk.store_id, chk.cart_id),
        "type": CART_CHECKOUT,
        "storeId": chk.store_id,
        "cartId": chk.cart_id,
        "checkoutId": chk.checkout_id,
    }


# --- stream records -------------------------------------------------------------------


class StreamChange(BaseModel):
    """One change of one item, as the table's stream reports it (images as plain values)."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    event_name: Literal["INSERT", "MODIFY", "REMOVE"]
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    by_ttl_service: bool = False  # userIdentity: the DynamoDB TTL service deleted the item
    approximate_at: int | None = None  # the stream's ApproximateCreationDateTime, epoch ms


def by_ttl_service(record: Mapping[str, Any]) -> bool:
    """The record is a deletion by DynamoDB's TTL service (its ``userIdentity``)."""
    identity = record.get("userIdentity") or {}
    return identity.get("type") == "Service" and identity.get("principalId") == "dynamodb.amazonaws.com"


def stream_change(record: Mapping[str, Any]) -> StreamChange:
    """A DynamoDB stream record as Lambda delivers it -> the plain change the readers decide on."""
    ddb = record.get("dynamodb") or {}
    approx = ddb.get("ApproximateCreationDateTime")
    return StreamChange(
        record_id=str(record.get("eventID") or ""),
        event_name=record["eventName"],
        old=from_av(ddb["OldImage"]) if ddb.get("OldImage") else None,
        new=from_av(ddb["NewImage"]) if ddb.get("NewImage") else None,
        by_ttl_service=by_ttl_service(record),
        approximate_at=int(float(approx) * 1000) if isinstance(approx, int | float | str) and approx != "" else None,
    )
