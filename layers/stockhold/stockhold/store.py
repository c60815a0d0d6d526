"""Data access: the only module that builds DynamoDB keys, conditions and updates.

Every stock change is one conditional write or one TransactWriteItems. When a
transaction is cancelled, the reasons (with ``ReturnValuesOnConditionCheckFailure:
ALL_OLD``) are turned into a structured rejection; the domain decides what it means.
``TransactionConflict`` (two transactions meeting on a hot item) is retried here with
jittered, bounded backoff.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from stockhold import actor
from stockhold.errors import TooBusy
from stockhold.models import (
    Checkout,
    CheckoutStatus,
    HeldLine,
    Line,
    Order,
    OrderStatus,
    RequestKey,
    Reservation,
    ReservationStatus,
    StockLevel,
)

DEFAULT_LOCATION = "_"
# The sparse "Sweep" index: active holds by deadline, and stock items, spread over
# shards so no index partition runs hot. Reconciliation reads it; requests never do.
SWEEP_INDEX = "Sweep"
SWEEP_SHARDS = 4
# A transaction holds at most 100 actions (DynamoDB's limit); see docs/decisions.md.
MAX_TRANSACTION_ACTIONS = 100

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

Item = dict[str, Any]


# --- keys -------------------------------------------------------------------------


def stock_key(store_id: str, sku: str, location: str = DEFAULT_LOCATION) -> dict[str, str]:
    return {"pk": f"STORE#{store_id}#SKU#{sku}", "sk": f"STOCK#{location}"}


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


def _shard(value: str) -> int:
    return int(hashlib.sha256(value.encode()).hexdigest()[:8], 16) % SWEEP_SHARDS


def hold_sweep_keys(reservation_id: str, expires_at_ms: int) -> dict[str, str]:
    return {"sweepPk": f"HOLD#{_shard(reservation_id)}", "sweepSk": f"{expires_at_ms:015d}"}


def stock_sweep_keys(store_id: str, sku: str) -> dict[str, str]:
    return {"sweepPk": f"STOCK#{_shard(store_id + sku)}", "sweepSk": f"{store_id}#{sku}"}


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


def stock_from_item(item: Item) -> StockLevel:
    return StockLevel(
        sku=item["sku"],
        on_hand=item["onHand"],
        reserved=item["reserved"],
        allocated=item["allocated"],
        available=item["available"],
        low_stock_threshold=item.get("lowStockThreshold"),
        unlimited=bool(item.get("unlimited", False)),
        updated_at=item["updatedAt"],
    )


def reservation_from_item(item: Item) -> Reservation:
    return Reservation(
        reservation_id=item["reservationId"],
        store_id=item["storeId"],
        cart_id=item["cartId"],
        customer_id=item.get("customerId"),
        status=ReservationStatus(item["status"]),
        lines=tuple(HeldLine(sku=x["sku"], quantity=x["quantity"], held=x["held"]) for x in item["lines"]),
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
    )


def reservation_to_item(res: Reservation, purge_at: int) -> Item:
    return {
        **reservation_key(res.store_id, res.reservation_id),
        "type": "RESERVATION",
        "storeId": res.store_id,
        "reservationId": res.reservation_id,
        "cartId": res.cart_id,
        "customerId": res.customer_id,
        "status": res.status.value,
        "lines": [{"sku": x.sku, "quantity": x.quantity, "held": x.held} for x in res.lines],
        "createdAt": res.created_at,
        "expiresAt": res.expires_at,
        "extensionsUsed": res.extensions_used,
        "maxExtensions": res.max_extensions,
        "purgeAt": purge_at,
        "checkoutId": res.checkout_id,
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
        "type": "CHECKOUT",
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
        lines=tuple(HeldLine(sku=x["sku"], quantity=x["quantity"], held=x["held"]) for x in item["lines"]),
        status=OrderStatus(item["status"]),
        payment_reference=item.get("paymentReference"),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
    )


def order_to_item(order: Order) -> Item:
    return {
        **order_key(order.store_id, order.order_id),
        "type": "ORDER",
        "storeId": order.store_id,
        "orderId": order.order_id,
        "checkoutId": order.checkout_id,
        "reservationId": order.reservation_id,
        "cartId": order.cart_id,
        "customerId": order.customer_id,
        "lines": [{"sku": x.sku, "quantity": x.quantity, "held": x.held} for x in order.lines],
        "status": order.status.value,
        "paymentReference": order.payment_reference,
        "createdAt": order.created_at,
        "updatedAt": order.updated_at,
    }


# --- who and why (docs/data-model.md) ---------------------------------------------------


@dataclass(frozen=True)
class Cause:
    """Why an item is written: ``lastAction``/``lastRef``/``lastReason`` plus the current actor."""

    action: str
    ref: str | None = None
    reason: str | None = None

    def attributes(self) -> Item:
        """For a Put: the attributes to add to the item."""
        return {"lastAction": self.action, "lastActor": actor.current(), "lastRef": self.ref, "lastReason": self.reason}

    def update(self, values: dict[str, Any], sets: list[str], removes: list[str]) -> None:
        """For an Update: add the SET/REMOVE clauses (placeholders ``:cz*``)."""
        for name, value in self.attributes().items():
            if value is None:
                removes.append(name)
            else:
                values[f":cz{name}"] = value
                sets.append(f"{name} = :cz{name}")


def update_expression(sets: list[str], removes: list[str]) -> str:
    return "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")


# --- outcomes ------------------------------------------------------------------------


@dataclass
class ReserveRejected(Exception):
    """Why a reserve transaction was cancelled. Every failed condition is listed."""

    reservation_exists: bool = False
    cart_holder: str | None = None  # reservation id holding the cart, when the slot was taken
    cart_holder_expires_at: int | None = None
    replaced_changed: bool = False  # the reservation being replaced ended meanwhile
    unknown_skus: list[str] = field(default_factory=list)
    unlimited_skus: list[str] = field(default_factory=list)
    limited_skus: list[str] = field(default_factory=list)  # believed unlimited, but are not
    short: dict[str, int] = field(default_factory=dict)  # sku -> available at the time
    extra_failed: bool = False  # an extra action's condition failed (the checkout changed)


@dataclass
class TransitionRejected(Exception):
    """A conditional transition of a reservation failed; ``current`` is its stored state."""

    current: Reservation | None
    stock_conflict: list[str] = field(default_factory=list)
    extra_failed: list[int] = field(default_factory=list)  # indexes of failed extra actions


@dataclass
class OrderRejected(Exception):
    """A conditional order transition failed; ``current`` is the stored order."""

    current: Order | None
    stock_conflict: list[str] = field(default_factory=list)


@dataclass
class StockWriteRejected(Exception):
    current: StockLevel | None


@dataclass
class KeyAlreadyUsed(Exception):
    """The request's Idempotency-Key already made a change (its mark is in the table), so
    nothing was written. ``same_request``: the mark's fingerprint is this request's."""

    same_request: bool


@dataclass(frozen=True)
class StockMove:
    """Units moving between counters of one SKU in one write.

    ``available``/``reserved``/``allocated``/``on_hand`` are signed deltas. Conditions
    keep every counter >= 0; ``require_limited`` / ``require_unlimited`` check the flag.
    """

    sku: str
    available: int = 0
    reserved: int = 0
    allocated: int = 0
    on_hand: int = 0
    require_unlimited: bool = False


# --- the store -------------------------------------------------------------------------


class DynamoStore:
    """Reads and conditional writes on the stockhold table."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        conflict_retries: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        mark_ttl_seconds: int = 86400,
    ) -> None:
        self._client = client
        self._table = table_name
        self._mark_ttl_seconds = mark_ttl_seconds
        self._conflict_retries = conflict_retries
        self._sleep = sleep

    # ----- plain reads

    def get_stock(self, store_id: str, sku: str) -> StockLevel | None:
        item = self._get(stock_key(store_id, sku))
        return stock_from_item(item) if item else None

    def get_stocks(self, store_id: str, skus: Sequence[str]) -> dict[str, StockLevel]:
        """Strongly consistent reads of up to 100 SKUs (one BatchGetItem, plus any unprocessed keys)."""
        found: dict[str, StockLevel] = {}
        pending: list[dict[str, Any]] = [to_av(stock_key(store_id, sku)) for sku in dict.fromkeys(skus)]
        attempt = 0
        while pending:
            resp = self._client.batch_get_item(RequestItems={self._table: {"Keys": pending, "ConsistentRead": True}})
            for raw in resp.get("Responses", {}).get(self._table, []):
                level = stock_from_item(from_av(raw))
                found[level.sku] = level
            pending = resp.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
            if pending:
                attempt += 1
                self._backoff(attempt)
        return found

    def get_reservation(self, store_id: str, reservation_id: str) -> Reservation | None:
        item = self._get(reservation_key(store_id, reservation_id))
        return reservation_from_item(item) if item else None

    def get_cart_holder(self, store_id: str, cart_id: str) -> str | None:
        item = self._get(cart_key(store_id, cart_id))
        return item["reservationId"] if item else None

    def get_item(self, key: Mapping[str, str]) -> Item | None:
        return self._get(key)

    def put_item(self, item: Mapping[str, Any], *, only_if_new: bool = False) -> bool:
        """Plain put (tenancy records). Returns False when ``only_if_new`` and it existed."""
        kwargs: dict[str, Any] = {"TableName": self._table, "Item": to_av(item)}
        if only_if_new:
            kwargs["ConditionExpression"] = "attribute_not_exists(pk)"
        try:
            self._client.put_item(**kwargs)
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ----- stock writes

    def create_stock(self, store_id: str, level: StockLevel, mark: RequestKey | None = None) -> None:
        """Put a new stock item; raises StockWriteRejected(current) if it already exists."""
        item = {
            **stock_key(store_id, level.sku),
            "type": "STOCK",
            "storeId": store_id,
            "sku": level.sku,
            "location": DEFAULT_LOCATION,
            "onHand": level.on_hand,
            "reserved": level.reserved,
            "allocated": level.allocated,
            "available": level.available,
            "lowStockThreshold": level.low_stock_threshold,
            "unlimited": level.unlimited,
            "updatedAt": level.updated_at,
            **stock_sweep_keys(store_id, level.sku),
            **Cause("stock_set").attributes(),
        }
        put = {
            "TableName": self._table,
            "Item": to_av(item),
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if mark is not None:
            try:
                self._transact([{"Put": put}], mark, level.updated_at)
            except _Cancelled as cancelled:
                old = cancelled.items[0]
                raise StockWriteRejected(stock_from_item(old) if old else None) from None
            return
        try:
            self._client.put_item(**put)
        except ClientError as exc:
            raise self._stock_rejection(exc) from exc

    def set_stock(
        self,
        store_id: str,
        sku: str,
        *,
        expected_on_hand: int,
        on_hand: int,
        low_stock_threshold: int | None,
        unlimited: bool,
        now_ms: int,
        mark: RequestKey | None = None,
    ) -> StockLevel:
        """Set onHand (moving ``available`` by the same delta) if onHand is still ``expected_on_hand``."""
        delta = on_hand - expected_on_hand
        names = {"#a": "available", "#o": "onHand"}
        values: dict[str, Any] = {
            ":old": expected_on_hand,
            ":new": on_hand,
            ":d": delta,
            ":u": unlimited,
            ":now": now_ms,
        }
        sets = ["#o = :new", "#a = #a + :d", "unlimited = :u", "updatedAt = :now"]
        condition = "#o = :old"
        if delta < 0:
            values[":need"] = -delta
            condition += " AND #a >= :need"
        removes = []
        if low_stock_threshold is None:
            removes.append("lowStockThreshold")
        else:
            values[":t"] = low_stock_threshold
            sets.append("lowStockThreshold = :t")
        Cause("stock_set").update(values, sets, removes)
        update = update_expression(sets, removes)
        return self._update_stock(store_id, sku, update, condition, names, values, mark, now_ms)

    def adjust_stock(
        self,
        store_id: str,
        sku: str,
        delta: int,
        now_ms: int,
        mark: RequestKey | None = None,
        reason: str | None = None,
    ) -> StockLevel:
        """onHand and available move by ``delta``; neither may go below zero."""
        names = {"#a": "available", "#o": "onHand"}
        values: dict[str, Any] = {":d": delta, ":now": now_ms}
        condition = "attribute_exists(pk)"
        if delta < 0:
            values[":need"] = -delta
            condition += " AND #a >= :need AND #o >= :need"
        sets, removes = ["#o = #o + :d", "#a = #a + :d", "updatedAt = :now"], list[str]()
        Cause("stock_adjusted", reason=reason).update(values, sets, removes)
        update = update_expression(sets, removes)
        return self._update_stock(store_id, sku, update, condition, names, values, mark, now_ms)

    def _update_stock(
        self,
        store_id: str,
        sku: str,
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        mark: RequestKey | None,
        now_ms: int,
    ) -> StockLevel:
        """One conditional update of a stock item. With an Idempotency-Key it is a transaction
        with the key's mark, so a re-run of the request (its answer lost in a crash) changes
        nothing and raises KeyAlreadyUsed."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "Key": to_av(stock_key(store_id, sku)),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_av(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if mark is not None:
            try:
                self._transact([{"Update": params}], mark, now_ms)
            except _Cancelled as cancelled:
                old = cancelled.items[0]
                raise StockWriteRejected(stock_from_item(old) if old else None) from None
            level = self.get_stock(store_id, sku)
            if level is None:
                raise StockWriteRejected(None)
            return level
        try:
            resp = self._client.update_item(**params, ReturnValues="ALL_NEW")
        except ClientError as exc:
            raise self._stock_rejection(exc) from exc
        return stock_from_item(from_av(resp["Attributes"]))

    @staticmethod
    def _stock_rejection(exc: ClientError) -> Exception:
        if _code(exc) != "ConditionalCheckFailedException":
            return exc
        old = exc.response.get("Item")
        return StockWriteRejected(stock_from_item(from_av(old)) if old else None)

    # ----- reservations

    def create_reservation(
        self,
        res: Reservation,
        *,
        purge_at: int,
        moves: Sequence[StockMove],
        replacing: Reservation | None,
        replaced_status: ReservationStatus = ReservationStatus.RELEASED,
        ended_purge_at: int,
        now_ms: int,
        extra: Sequence[dict[str, Any]] = (),
    ) -> None:
        """One transaction: the reservation, the cart's slot, every stock move (and, when
        replacing, the old reservation ended as RELEASED), plus ``extra`` actions (a
        checkout's write). Raises ReserveRejected."""
        created = Cause("reservation_created", reason="checkout" if res.checkout_id else None)
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_av({**reservation_to_item(res, purge_at), **created.attributes()}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        slot = {
            **cart_key(res.store_id, res.cart_id),
            "type": "CART_HOLD",
            "storeId": res.store_id,
            "cartId": res.cart_id,
            "reservationId": res.reservation_id,
            "expiresAt": res.expires_at,
            # No TTL: every transition out of ACTIVE deletes the slot, and a stale one is
            # cleared when met (see docs/decisions.md, "Cart slots").
        }
        slot_put: dict[str, Any] = {
            "TableName": self._table,
            "Item": to_av(slot),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if replacing is None:
            slot_put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            slot_put["ConditionExpression"] = "reservationId = :old"
            slot_put["ExpressionAttributeValues"] = to_av({":old": replacing.reservation_id})
        actions.append({"Put": slot_put})
        if replacing is not None:
            replaced = replaced_status is ReservationStatus.RELEASED
            actions.append(
                self._end_action(
                    replacing,
                    replaced_status,
                    now_ms=now_ms,
                    cause=Cause(
                        "reservation_released" if replaced else "reservation_expired",
                        reason="replaced" if replaced else "expired",
                    ),
                    order_id=None,
                    purge_at=ended_purge_at,
                    deadline=None,
                )
            )
        first_move = len(actions)
        move_cause = Cause("reservation_created", ref=res.reservation_id)
        actions.extend(self._move_action(res.store_id, move, now_ms, move_cause) for move in moves)
        first_extra = len(actions)
        actions.extend(extra)
        try:
            self._transact(actions)
        except _Cancelled as cancelled:
            rejected = ReserveRejected()
            reasons = cancelled.codes
            if reasons[0] == "ConditionalCheckFailed":
                rejected.reservation_exists = True
            if reasons[1] == "ConditionalCheckFailed":
                holder = cancelled.items[1]
                if replacing is not None:
                    rejected.replaced_changed = True
                elif holder:
                    rejected.cart_holder = holder["reservationId"]
                    rejected.cart_holder_expires_at = holder.get("expiresAt")
            if replacing is not None and reasons[2] == "ConditionalCheckFailed":
                rejected.replaced_changed = True
            for move, code, old in zip(
                moves, reasons[first_move:first_extra], cancelled.items[first_move:first_extra], strict=True
            ):
                if code != "ConditionalCheckFailed":
                    continue
                if not old:
                    rejected.unknown_skus.append(move.sku)
                elif move.require_unlimited and not old.get("unlimited"):
                    rejected.limited_skus.append(move.sku)
                elif not move.require_unlimited and old.get("unlimited"):
                    rejected.unlimited_skus.append(move.sku)
                else:
                    rejected.short[move.sku] = old["available"]
            rejected.extra_failed = "ConditionalCheckFailed" in reasons[first_extra:]
            raise rejected from None

    def end_reservation(
        self,
        res: Reservation,
        to_status: ReservationStatus,
        *,
        moves: Sequence[StockMove],
        now_ms: int,
        reason: str,
        order_id: str | None,
        purge_at: int,
        deadline: str | None,
        mark: RequestKey | None = None,
        expired_by: str | None = None,
        extra: Sequence[dict[str, Any]] = (),
    ) -> Reservation:
        """ACTIVE -> ``to_status`` with the counter moves and the cart slot freed, in one
        transaction, with ``extra`` actions (the checkout following its hold, an order).
        ``deadline`` adds a condition: "before" (confirm/release: only while not yet due)
        or "due" (expire: only once due). Raises TransitionRejected."""
        action = f"reservation_{to_status.value.lower()}"
        actions = [
            self._end_action(
                res,
                to_status,
                now_ms=now_ms,
                cause=Cause(action, reason=reason),
                order_id=order_id,
                purge_at=purge_at,
                deadline=deadline,
                expired_by=expired_by,
            ),
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": to_av(cart_key(res.store_id, res.cart_id)),
                    "ConditionExpression": "attribute_not_exists(pk) OR reservationId = :rid",
                    "ExpressionAttributeValues": to_av({":rid": res.reservation_id}),
                }
            },
        ]
        move_cause = Cause(action, ref=res.reservation_id, reason=reason)
        actions.extend(self._move_action(res.store_id, move, now_ms, move_cause) for move in moves)
        actions.extend(extra)
        try:
            self._transact(actions, mark, now_ms)
        except _Cancelled as cancelled:
            codes = cancelled.codes
            # The hold's own condition passed when only an extra action failed: it is as given.
            current = cancelled.items[0] if codes[0] == "ConditionalCheckFailed" else reservation_to_item(res, purge_at)
            stock = [
                m.sku
                for m, code in zip(moves, codes[2 : 2 + len(moves)], strict=True)
                if code == "ConditionalCheckFailed"
            ]
            raise TransitionRejected(
                reservation_from_item(current) if current else None,
                stock,
                extra_failed=[i for i, c in enumerate(codes[2 + len(moves) :]) if c == "ConditionalCheckFailed"],
            ) from None
        return res.model_copy(
            update={
                "status": to_status,
                "ended_at": now_ms,
                "end_reason": reason,
                "order_id": order_id,
                "expired_by": expired_by,
            }
        )

    def extend_reservation(
        self,
        res: Reservation,
        *,
        new_expires_at: int,
        purge_at: int,
        now_ms: int,
        counts: bool = True,
        extra: Sequence[dict[str, Any]] = (),
        mark: RequestKey | None = None,
    ) -> Reservation:
        """Move the deadline later, using one extension (``counts``) or, once per hold, the
        checkout's payment window (``counts=False``). Raises TransitionRejected(current), or
        KeyAlreadyUsed when ``mark``'s key already made a change."""
        values: dict[str, Any] = {
            ":new": new_expires_at,
            ":purge": purge_at,
            ":active": "ACTIVE",
            ":now": now_ms,
            ":sweep": hold_sweep_keys(res.reservation_id, new_expires_at)["sweepSk"],
        }
        sets = ["expiresAt = :new", "purgeAt = :purge", "sweepSk = :sweep", "updatedAt = :now"]
        condition = "#s = :active AND expiresAt > :now AND expiresAt < :new"
        if counts:
            values[":one"] = 1
            sets.append("extensionsUsed = extensionsUsed + :one")
            condition += " AND extensionsUsed < maxExtensions"
        else:
            sets.append("paymentWindowAt = :now")
            condition += " AND attribute_not_exists(paymentWindowAt)"
        removes: list[str] = []
        Cause("reservation_extended", reason=None if counts else "payment").update(values, sets, removes)
        update = {
            "TableName": self._table,
            "Key": to_av(reservation_key(res.store_id, res.reservation_id)),
            "UpdateExpression": update_expression(sets, removes),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": to_av(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if extra or mark is not None:
            try:
                self._transact([{"Update": update}, *extra], mark, now_ms)
            except _Cancelled as cancelled:
                old = cancelled.items[0]
                raise TransitionRejected(
                    reservation_from_item(old) if old else self.get_reservation(res.store_id, res.reservation_id),
                    extra_failed=[i for i, c in enumerate(cancelled.codes[1:]) if c == "ConditionalCheckFailed"],
                ) from None
            current = self.get_reservation(res.store_id, res.reservation_id)
            if current is None:
                raise TransitionRejected(None)
            return current
        try:
            resp = self._client.update_item(**update, ReturnValues="ALL_NEW")
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            raise TransitionRejected(reservation_from_item(from_av(old)) if old else None) from None
        return reservation_from_item(from_av(resp["Attributes"]))

    def restore_as_expired(
        self,
        res: Reservation,
        *,
        moves: Sequence[StockMove],
        now_ms: int,
        purge_at: int,
        path: str,
        extra: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """The TTL service deleted a hold that was still ACTIVE: put it back as EXPIRED and
        return its units, in one transaction. False (and no change) if that was done already.
        ``extra`` actions must not be able to fail for any other reason than a stale checkout:
        the service retries without them (stock comes back first)."""
        ended = res.model_copy(
            update={"status": ReservationStatus.EXPIRED, "ended_at": now_ms, "end_reason": "expired"}
        )
        cause = Cause("reservation_expired", reason="expired")
        item = {
            **reservation_to_item(ended, purge_at),
            "endedAt": now_ms,
            "endReason": "expired",
            "expiredBy": path,
            **cause.attributes(),
        }
        move_cause = Cause("reservation_expired", ref=res.reservation_id, reason="expired")
        actions = [
            {"Put": {"TableName": self._table, "Item": to_av(item), "ConditionExpression": "attribute_not_exists(pk)"}},
            *(self._move_action(res.store_id, move, now_ms, move_cause) for move in moves),
            *extra,
        ]
        try:
            self._transact(actions)
        except _Cancelled as cancelled:
            if cancelled.codes[0] == "ConditionalCheckFailed":
                return False
            raise TransitionRejected(
                None,
                [m.sku for m, c in zip(moves, cancelled.codes[1 : 1 + len(moves)], strict=True) if c != "None"],
                extra_failed=[
                    i for i, c in enumerate(cancelled.codes[1 + len(moves) :]) if c == "ConditionalCheckFailed"
                ],
            ) from None
        self.clear_cart_slot(res.store_id, res.cart_id, res.reservation_id)
        return True

    def clear_cart_slot(self, store_id: str, cart_id: str, reservation_id: str) -> bool:
        """Delete the cart's slot if it still names this (ended) reservation."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=to_av(cart_key(store_id, cart_id)),
                ConditionExpression="reservationId = :rid",
                ExpressionAttributeValues=to_av({":rid": reservation_id}),
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ----- checkouts and orders

    def get_checkout(self, store_id: str, checkout_id: str) -> Checkout | None:
        item = self._get(checkout_key(store_id, checkout_id))
        return checkout_from_item(item) if item else None

    def get_cart_checkout(self, store_id: str, cart_id: str) -> str | None:
        """The id of the cart's latest checkout (whatever its status), if it ever had one."""
        item = self._get(cart_checkout_key(store_id, cart_id))
        return item["checkoutId"] if item else None

    def get_order(self, store_id: str, order_id: str) -> Order | None:
        item = self._get(order_key(store_id, order_id))
        return order_from_item(item) if item else None

    def checkout_put_action(
        self, chk: Checkout, *, expected_version: int | None, cause: Cause, purge_at: int | None = None
    ) -> dict[str, Any]:
        """Write the whole checkout: new (``expected_version`` None) or only if nobody wrote it since it was read."""
        put: dict[str, Any] = {
            "TableName": self._table,
            "Item": to_av({**checkout_to_item(chk), **cause.attributes(), "purgeAt": purge_at}),
        }
        if expected_version is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = to_av({":v": expected_version})
        return {"Put": put}

    def cart_checkout_action(self, chk: Checkout) -> dict[str, Any]:
        """Point the cart at this checkout (a cart's latest checkout wins; the cart's hold slot serialises starts)."""
        item = {
            **cart_checkout_key(chk.store_id, chk.cart_id),
            "type": "CART_CHECKOUT",
            "storeId": chk.store_id,
            "cartId": chk.cart_id,
            "checkoutId": chk.checkout_id,
        }
        return {"Put": {"TableName": self._table, "Item": to_av(item)}}

    def checkout_follow_action(
        self,
        res: Reservation,
        to: CheckoutStatus,
        *,
        now_ms: int,
        cause: Cause,
        purge_at: int | None,
    ) -> dict[str, Any]:
        """The checkout follows its hold's end (expired, released): only while it is still in
        checkout on this very hold."""
        values: dict[str, Any] = {":to": to.value, ":now": now_ms, ":one": 1, ":rid": res.reservation_id}
        values[":open"] = CheckoutStatus.CHECKOUT.value
        sets = ["#s = :to", "updatedAt = :now", "version = version + :one"]
        removes: list[str] = []
        if cause.reason:
            values[":why"] = cause.reason
            sets.append("endReason = :why")
        if purge_at is not None:
            values[":purge"] = purge_at
            sets.append("purgeAt = :purge")
        cause.update(values, sets, removes)
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_av(checkout_key(res.store_id, res.checkout_id or "")),
                "UpdateExpression": update_expression(sets, removes),
                "ConditionExpression": "reservationId = :rid AND #s = :open",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": to_av(values),
            }
        }

    def order_put_action(self, order: Order, cause: Cause) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": to_av({**order_to_item(order), **cause.attributes()}),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def save_checkout(
        self,
        chk: Checkout,
        *,
        expected_version: int,
        cause: Cause,
        purge_at: int | None = None,
        mark: RequestKey | None = None,
    ) -> bool:
        """One conditional Put of the whole checkout; False if it changed since it was read.
        With ``mark``, a transaction with the key's mark (raises KeyAlreadyUsed)."""
        put = self.checkout_put_action(chk, expected_version=expected_version, cause=cause, purge_at=purge_at)["Put"]
        if mark is not None:
            try:
                self._transact([{"Put": put}], mark, chk.updated_at)
            except _Cancelled:
                return False
            return True
        try:
            self._client.put_item(**put)
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def transition_order(self, order: Order, to: OrderStatus, *, moves: Sequence[StockMove], now_ms: int) -> Order:
        """PLACED -> ``to`` with the counter moves, in one transaction. Raises OrderRejected."""
        action = f"order_{to.value.lower()}"
        values: dict[str, Any] = {":to": to.value, ":placed": OrderStatus.PLACED.value, ":now": now_ms}
        sets, removes = ["#s = :to", "updatedAt = :now"], list[str]()
        Cause(action).update(values, sets, removes)
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": to_av(order_key(order.store_id, order.order_id)),
                    "UpdateExpression": update_expression(sets, removes),
                    "ConditionExpression": "#s = :placed",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": to_av(values),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            *(self._move_action(order.store_id, m, now_ms, Cause(action, ref=order.order_id)) for m in moves),
        ]
        try:
            self._transact(actions)
        except _Cancelled as cancelled:
            old = cancelled.items[0]
            stock = [m.sku for m, c in zip(moves, cancelled.codes[1:], strict=True) if c == "ConditionalCheckFailed"]
            raise OrderRejected(order_from_item(old) if old else None, stock) from None
        return order.model_copy(update={"status": to, "updated_at": now_ms})

    def overdue_holds(self, before_ms: int) -> list[Item]:
        """Active holds whose deadline is before ``before_ms``, from the (eventually consistent) Sweep index."""
        out: list[Item] = []
        for shard in range(SWEEP_SHARDS):
            out.extend(
                self._query_sweep("sweepPk = :p AND sweepSk < :t", {":p": f"HOLD#{shard}", ":t": f"{before_ms:015d}"})
            )
        return out

    def active_holds(self) -> list[Item]:
        return [
            item for shard in range(SWEEP_SHARDS) for item in self._query_sweep("sweepPk = :p", {":p": f"HOLD#{shard}"})
        ]

    def stock_with_units_held(self) -> list[Item]:
        return [
            item
            for shard in range(SWEEP_SHARDS)
            for item in self._query_sweep("sweepPk = :p", {":p": f"STOCK#{shard}"}, "reserved > :z", {":z": 0})
        ]

    def _query_sweep(
        self, key: str, values: dict[str, Any], filter_: str | None = None, filter_values: dict[str, Any] | None = None
    ) -> list[Item]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": SWEEP_INDEX,
            "KeyConditionExpression": key,
            "ExpressionAttributeValues": to_av({**values, **(filter_values or {})}),
        }
        if filter_:
            kwargs["FilterExpression"] = filter_
        out: list[Item] = []
        while True:
            page = self._client.query(**kwargs)
            out.extend(from_av(x) for x in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def correct_reserved(self, store_id: str, seen: StockLevel, *, reserved: int, holds: Sequence[Reservation]) -> bool:
        """Set ``reserved`` to the recount (``available`` follows) only if the stock item is
        exactly as ``seen`` and every counted hold is still ACTIVE. False if anything moved."""
        available = seen.on_hand - seen.allocated - reserved
        if available < 0:
            return False
        values: dict[str, Any] = {":r": reserved, ":a": available, ":seen": seen.updated_at, ":was": seen.reserved}
        sets, removes = ["#a = :a", "#r = :r"], list[str]()
        Cause("stock_reconciled", reason=f"reserved recounted: {seen.reserved} -> {reserved}").update(
            values, sets, removes
        )
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": to_av(stock_key(store_id, seen.sku)),
                    "UpdateExpression": update_expression(sets, removes),
                    "ConditionExpression": "updatedAt = :seen AND #r = :was",
                    "ExpressionAttributeNames": {"#r": "reserved", "#a": "available"},
                    "ExpressionAttributeValues": to_av(values),
                }
            },
            *(
                {
                    "ConditionCheck": {
                        "TableName": self._table,
                        "Key": to_av(reservation_key(h.store_id, h.reservation_id)),
                        "ConditionExpression": "#s = :active",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": to_av({":active": "ACTIVE"}),
                    }
                }
                for h in holds
            ),
        ]
        try:
            self._transact(actions)
        except _Cancelled:
            return False
        return True

    # ----- building blocks

    def _end_action(
        self,
        res: Reservation,
        to_status: ReservationStatus,
        *,
        now_ms: int,
        cause: Cause,
        order_id: str | None,
        purge_at: int,
        deadline: str | None,
        expired_by: str | None = None,
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            ":to": to_status.value,
            ":active": "ACTIVE",
            ":now": now_ms,
            ":reason": cause.reason or to_status.value.lower(),
            ":purge": purge_at,
        }
        sets = ["#s = :to", "endedAt = :now", "endReason = :reason", "purgeAt = :purge"]
        if order_id is not None:
            values[":order"] = order_id
            sets.append("orderId = :order")
        if expired_by is not None:
            values[":by"] = expired_by
            sets.append("expiredBy = :by")
        removes = ["sweepPk", "sweepSk"]
        cause.update(values, sets, removes)
        condition = "#s = :active"
        if deadline == "before":
            condition += " AND expiresAt > :now"
        elif deadline == "due":
            condition += " AND expiresAt <= :now"
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_av(reservation_key(res.store_id, res.reservation_id)),
                "UpdateExpression": update_expression(sets, removes),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": to_av(values),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _move_action(self, store_id: str, move: StockMove, now_ms: int, cause: Cause) -> dict[str, Any]:
        key = to_av(stock_key(store_id, move.sku))
        if move.require_unlimited:
            return {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": key,
                    "ConditionExpression": "unlimited = :t",
                    "ExpressionAttributeValues": to_av({":t": True}),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        counters = {
            "available": move.available,
            "reserved": move.reserved,
            "allocated": move.allocated,
            "onHand": move.on_hand,
        }
        names: dict[str, str] = {}
        values: dict[str, Any] = {":now": now_ms}
        sets, conditions = ["updatedAt = :now"], ["attribute_exists(pk)"]
        for i, (name, delta) in enumerate(counters.items()):
            if delta == 0:
                continue
            names[f"#c{i}"] = name
            values[f":d{i}"] = delta
            sets.append(f"#c{i} = #c{i} + :d{i}")
            if delta < 0:
                values[f":n{i}"] = -delta
                conditions.append(f"#c{i} >= :n{i}")
        if move.available < 0:
            # Units are taken from ``available``: the item must count them (not unlimited).
            values[":f"] = False
            conditions.append("unlimited = :f")
        removes: list[str] = []
        cause.update(values, sets, removes)
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": key,
            "UpdateExpression": update_expression(sets, removes),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeValues": to_av(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if names:
            update["ExpressionAttributeNames"] = names
        return {"Update": update}

    def _get(self, key: Mapping[str, str]) -> Item | None:
        resp = self._client.get_item(TableName=self._table, Key=to_av(key), ConsistentRead=True)
        raw = resp.get("Item")
        return from_av(raw) if raw else None

    def _transact(self, actions: list[dict[str, Any]], mark: RequestKey | None = None, now_ms: int = 0) -> None:
        """TransactWriteItems, retrying TransactionConflict with full-jitter backoff.

        With ``mark`` (a request's Idempotency-Key) the key's mark is written as one more
        action, only if the key has made no change yet: a re-run of a request whose change
        committed (its answer lost in a crash, however long ago within the key's lifetime)
        raises KeyAlreadyUsed and writes nothing. Every attempt carries the same mark, so
        whichever attempt commits, a later re-run finds it. No ClientRequestToken of our
        own: botocore fills one per call (the same across its retries of that call), and
        the mark and the items' own conditions outlive DynamoDB's 10-minute token window."""
        if mark is not None:
            actions = [*actions, self._mark_action(mark, now_ms)]
        if len(actions) > MAX_TRANSACTION_ACTIONS:
            raise ValueError(f"{len(actions)} actions exceed DynamoDB's {MAX_TRANSACTION_ACTIONS} per transaction")
        for attempt in range(self._conflict_retries + 1):
            try:
                self._client.transact_write_items(TransactItems=actions)
                return
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons") or [{}] * len(actions)
                codes = [r.get("Code", "None") for r in reasons]
                items = [from_av(r["Item"]) if r.get("Item") else None for r in reasons]
                if mark is not None:
                    if codes[-1] == "ConditionalCheckFailed":
                        old = items[-1] or {}
                        raise KeyAlreadyUsed(same_request=old.get("fingerprint") == mark.fingerprint) from None
                    codes, items = codes[:-1], items[:-1]
                if "ConditionalCheckFailed" in codes:
                    raise _Cancelled(codes, items) from None
                if "TransactionConflict" not in codes:
                    raise
            if attempt < self._conflict_retries:
                self._backoff(attempt + 1)
        raise TooBusy("the stock is being changed by many requests at once; retry shortly", {"retryAfterSeconds": 1})

    def key_used(self, key: RequestKey) -> bool | None:
        """Whether ``key`` has made a change: None (no live mark), True (by this very request:
        the same fingerprint) or False (by another request)."""
        item = self._get(request_mark_key(key.store_id, key.value))
        if item is None or item.get("purgeAt", 0) < int(time.time()):
            return None
        return bool(item.get("fingerprint") == key.fingerprint)

    def _mark_action(self, mark: RequestKey, now_ms: int) -> dict[str, Any]:
        """Put the key's mark unless a live one is there (a mark outlives its TTL until DynamoDB deletes it)."""
        now_s = (now_ms or int(time.time() * 1000)) // 1000
        item = {
            **request_mark_key(mark.store_id, mark.value),
            "type": "REQUEST_MARK",
            "storeId": mark.store_id,
            "fingerprint": mark.fingerprint,
            "purgeAt": now_s + self._mark_ttl_seconds,
        }
        return {
            "Put": {
                "TableName": self._table,
                "Item": to_av(item),
                "ConditionExpression": "attribute_not_exists(pk) OR purgeAt < :now",
                "ExpressionAttributeValues": to_av({":now": now_s}),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _backoff(self, attempt: int) -> None:
        self._sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))

    # ----- expiry notice of a checkout's hold (docs/events.md)

    def mark_expiring(self, store_id: str, reservation_id: str, *, deadline: int, now_ms: int) -> bool:
        """``warnedFor = deadline``, ``warnedAt = now`` (the stream carries it to the events
        publisher as ReservationExpiring) only while the hold is ACTIVE on that very deadline
        and not yet warned for it. False (nothing written) otherwise."""
        values: dict[str, Any] = {":active": "ACTIVE", ":deadline": deadline, ":now": now_ms}
        sets: list[str] = ["warnedFor = :deadline", "warnedAt = :now"]
        removes: list[str] = []
        Cause("reservation_expiring").update(values, sets, removes)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_av(reservation_key(store_id, reservation_id)),
                UpdateExpression=update_expression(sets, removes),
                ConditionExpression=(
                    "#s = :active AND expiresAt = :deadline"
                    " AND (attribute_not_exists(warnedFor) OR warnedFor <> :deadline)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=to_av(values),
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


@dataclass
class _Cancelled(Exception):
    codes: list[str]
    items: list[Item | None]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
