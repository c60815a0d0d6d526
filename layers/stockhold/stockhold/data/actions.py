"""Each intent as one TransactWriteItems action (or one plain conditional write): the only
code that builds the condition and update expressions of the items use cases change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stockhold.data.schema import (
    cart_checkout_item,
    cart_key,
    cart_slot_item,
    cause_attributes,
    cause_update,
    checkout_key,
    checkout_to_item,
    hold_sweep_keys,
    order_key,
    order_to_item,
    reservation_key,
    reservation_to_item,
    stock_item,
    stock_key,
    to_av,
    update_expression,
)
from stockhold.domain.intents import (
    AdjustStock,
    Cause,
    CreateStock,
    EndHold,
    ExtendHold,
    FollowHold,
    FreeCart,
    MoveOrder,
    MoveStock,
    PointCart,
    PutCheckout,
    PutHold,
    PutOrder,
    RecountStock,
    RequireActive,
    RestoreHold,
    SetStock,
    TakeCart,
    WarnHold,
)
from stockhold.domain.models import CheckoutStatus, OrderStatus, ReservationStatus
from stockhold.domain.rules import Deadline

_ACTIVE = ReservationStatus.ACTIVE.value


def _put_hold(i: PutHold) -> tuple[str, dict[str, Any]]:
    created = Cause("reservation_created", reason="checkout" if i.res.checkout_id else None)
    item = {**reservation_to_item(i.res, i.purge_at), **cause_attributes(created)}
    return "Put", {"Item": to_av(item), "ConditionExpression": "attribute_not_exists(pk)"}


def _restore_hold(i: RestoreHold) -> tuple[str, dict[str, Any]]:
    ended = i.res.model_copy(
        update={"status": ReservationStatus.EXPIRED, "ended_at": i.now_ms, "end_reason": "expired"}
    )
    item = {
        **reservation_to_item(ended, i.purge_at),
        "endedAt": i.now_ms,
        "endReason": "expired",
        "expiredBy": i.path,
        **cause_attributes(Cause("reservation_expired", reason="expired")),
    }
    return "Put", {"Item": to_av(item), "ConditionExpression": "attribute_not_exists(pk)"}


def _take_cart(i: TakeCart) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "Item": to_av(cart_slot_item(i.res)),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if i.replacing is None:
        params["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        params["ConditionExpression"] = "reservationId = :old"
        params["ExpressionAttributeValues"] = to_av({":old": i.replacing})
    return "Put", params


def _free_cart(i: FreeCart) -> tuple[str, dict[str, Any]]:
    return "Delete", {
        "Key": to_av(cart_key(i.res.store_id, i.res.cart_id)),
        "ConditionExpression": "attribute_not_exists(pk) OR reservationId = :rid",
        "ExpressionAttributeValues": to_av({":rid": i.res.reservation_id}),
    }


def _end_hold(i: EndHold) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {
        ":to": i.to.value,
        ":active": _ACTIVE,
        ":now": i.now_ms,
        ":reason": i.cause.reason or i.to.value.lower(),
        ":purge": i.purge_at,
    }
    sets = ["#s = :to", "endedAt = :now", "endReason = :reason", "purgeAt = :purge"]
    if i.order_id is not None:
        values[":order"] = i.order_id
        sets.append("orderId = :order")
    if i.expired_by is not None:
        values[":by"] = i.expired_by
        sets.append("expiredBy = :by")
    removes = ["sweepPk", "sweepSk"]
    cause_update(i.cause, values, sets, removes)
    condition = "#s = :active"
    if i.deadline is Deadline.BEFORE:
        condition += " AND expiresAt > :now"
    elif i.deadline is Deadline.DUE:
        condition += " AND expiresAt <= :now"
    return "Update", _update(reservation_key(i.res.store_id, i.res.reservation_id), sets, removes, values, condition)


def _extend_hold(i: ExtendHold) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {
        ":new": i.new_expires_at,
        ":purge": i.purge_at,
        ":active": _ACTIVE,
        ":now": i.now_ms,
        ":sweep": hold_sweep_keys(i.res.reservation_id, i.new_expires_at)["sweepSk"],
    }
    sets = ["expiresAt = :new", "purgeAt = :purge", "sweepSk = :sweep", "updatedAt = :now"]
    condition = "#s = :active AND expiresAt > :now AND expiresAt < :new"
    if i.counts:
        values[":one"] = 1
        sets.append("extensionsUsed = extensionsUsed + :one")
        condition += " AND extensionsUsed < maxExtensions"
    else:
        sets.append("paymentWindowAt = :now")
        condition += " AND attribute_not_exists(paymentWindowAt)"
    removes: list[str] = []
    cause_update(Cause("reservation_extended", reason=None if i.counts else "payment"), values, sets, removes)
    return "Update", _update(reservation_key(i.res.store_id, i.res.reservation_id), sets, removes, values, condition)


def _warn_hold(i: WarnHold) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {":active": _ACTIVE, ":deadline": i.deadline, ":now": i.now_ms}
    sets, removes = ["warnedFor = :deadline", "warnedAt = :now"], list[str]()
    cause_update(Cause("reservation_expiring"), values, sets, removes)
    condition = "#s = :active AND expiresAt = :deadline AND (attribute_not_exists(warnedFor) OR warnedFor <> :deadline)"
    params = _update(reservation_key(i.res.store_id, i.res.reservation_id), sets, removes, values, condition)
    del params["ReturnValuesOnConditionCheckFailure"]
    return "Update", params


def _require_active(i: RequireActive) -> tuple[str, dict[str, Any]]:
    return "ConditionCheck", {
        "Key": to_av(reservation_key(i.res.store_id, i.res.reservation_id)),
        "ConditionExpression": "#s = :active",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": to_av({":active": _ACTIVE}),
    }


def _move_stock(i: MoveStock) -> tuple[str, dict[str, Any]]:
    move, key = i.move, to_av(stock_key(i.store_id, i.move.sku))
    if move.require_unlimited:
        return "ConditionCheck", {
            "Key": key,
            "ConditionExpression": "unlimited = :t",
            "ExpressionAttributeValues": to_av({":t": True}),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    counters = {
        "available": move.available,
        "reserved": move.reserved,
        "allocated": move.allocated,
        "onHand": move.on_hand,
    }
    names: dict[str, str] = {}
    values: dict[str, Any] = {":now": i.now_ms}
    sets, conditions = ["updatedAt = :now"], ["attribute_exists(pk)"]
    for n, (name, delta) in enumerate(counters.items()):
        if delta == 0:
            continue
        names[f"#c{n}"] = name
        values[f":d{n}"] = delta
        sets.append(f"#c{n} = #c{n} + :d{n}")
        if delta < 0:
            values[f":n{n}"] = -delta
            conditions.append(f"#c{n} >= :n{n}")
    if move.available < 0:
        # Units are taken from ``available``: the item must count them (not unlimited).
        values[":f"] = False
        conditions.append("unlimited = :f")
    removes: list[str] = []
    cause_update(i.cause, values, sets, removes)
    params: dict[str, Any] = {
        "Key": key,
        "UpdateExpression": update_expression(sets, removes),
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeValues": to_av(values),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if names:
        params["ExpressionAttributeNames"] = names
    return "Update", params


def _create_stock(i: CreateStock) -> tuple[str, dict[str, Any]]:
    return "Put", {
        "Item": to_av(stock_item(i.store_id, i.level, Cause("stock_set"))),
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _set_stock(i: SetStock) -> tuple[str, dict[str, Any]]:
    delta = i.on_hand - i.expected_on_hand
    values: dict[str, Any] = {
        ":old": i.expected_on_hand,
        ":new": i.on_hand,
        ":d": delta,
        ":u": i.unlimited,
        ":now": i.now_ms,
    }
    sets = ["#o = :new", "#a = #a + :d", "unlimited = :u", "updatedAt = :now"]
    condition = "#o = :old"
    if delta < 0:
        values[":need"] = -delta
        condition += " AND #a >= :need"
    removes: list[str] = []
    if i.low_stock_threshold is None:
        removes.append("lowStockThreshold")
    else:
        values[":t"] = i.low_stock_threshold
        sets.append("lowStockThreshold = :t")
    cause_update(Cause("stock_set"), values, sets, removes)
    return "Update", _stock_update(i.store_id, i.sku, sets, removes, values, condition)


def _adjust_stock(i: AdjustStock) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {":d": i.delta, ":now": i.now_ms}
    condition = "attribute_exists(pk)"
    if i.delta < 0:
        values[":need"] = -i.delta
        condition += " AND #a >= :need AND #o >= :need"
    sets, removes = ["#o = #o + :d", "#a = #a + :d", "updatedAt = :now"], list[str]()
    cause_update(Cause("stock_adjusted", reason=i.reason), values, sets, removes)
    return "Update", _stock_update(i.store_id, i.sku, sets, removes, values, condition)


def _recount_stock(i: RecountStock) -> tuple[str, dict[str, Any]]:
    seen = i.seen
    values: dict[str, Any] = {
        ":r": i.reserved,
        ":a": seen.on_hand - seen.allocated - i.reserved,
        ":seen": seen.updated_at,
        ":was": seen.reserved,
    }
    sets, removes = ["#a = :a", "#r = :r"], list[str]()
    cause_update(
        Cause("stock_reconciled", reason=f"reserved recounted: {seen.reserved} -> {i.reserved}"),
        values,
        sets,
        removes,
    )
    return "Update", {
        "Key": to_av(stock_key(i.store_id, seen.sku)),
        "UpdateExpression": update_expression(sets, removes),
        "ConditionExpression": "updatedAt = :seen AND #r = :was",
        "ExpressionAttributeNames": {"#r": "reserved", "#a": "available"},
        "ExpressionAttributeValues": to_av(values),
    }


def _put_checkout(i: PutCheckout) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "Item": to_av({**checkout_to_item(i.chk), **cause_attributes(i.cause), "purgeAt": i.purge_at})
    }
    if i.expected_version is None:
        params["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        params["ConditionExpression"] = "version = :v"
        params["ExpressionAttributeValues"] = to_av({":v": i.expected_version})
    return "Put", params


def _point_cart(i: PointCart) -> tuple[str, dict[str, Any]]:
    return "Put", {"Item": to_av(cart_checkout_item(i.chk))}


def _follow_hold(i: FollowHold) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {":to": i.to.value, ":now": i.now_ms, ":one": 1, ":rid": i.res.reservation_id}
    values[":open"] = CheckoutStatus.CHECKOUT.value
    sets = ["#s = :to", "updatedAt = :now", "version = version + :one"]
    removes: list[str] = []
    if i.cause.reason:
        values[":why"] = i.cause.reason
        sets.append("endReason = :why")
    if i.purge_at is not None:
        values[":purge"] = i.purge_at
        sets.append("purgeAt = :purge")
    cause_update(i.cause, values, sets, removes)
    params = _update(
        checkout_key(i.res.store_id, i.res.checkout_id or ""),
        sets,
        removes,
        values,
        "reservationId = :rid AND #s = :open",
    )
    del params["ReturnValuesOnConditionCheckFailure"]
    return "Update", params


def _put_order(i: PutOrder) -> tuple[str, dict[str, Any]]:
    return "Put", {
        "Item": to_av({**order_to_item(i.order), **cause_attributes(i.cause)}),
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _move_order(i: MoveOrder) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {":to": i.to.value, ":placed": OrderStatus.PLACED.value, ":now": i.now_ms}
    sets, removes = ["#s = :to", "updatedAt = :now"], list[str]()
    cause_update(Cause(f"order_{i.to.value.lower()}"), values, sets, removes)
    return "Update", _update(order_key(i.order.store_id, i.order.order_id), sets, removes, values, "#s = :placed")


def _update(
    key: dict[str, str], sets: list[str], removes: list[str], values: dict[str, Any], condition: str
) -> dict[str, Any]:
    """An update of a record with a ``status`` (``#s``)."""
    return {
        "Key": to_av(key),
        "UpdateExpression": update_expression(sets, removes),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": to_av(values),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _stock_update(
    store_id: str, sku: str, sets: list[str], removes: list[str], values: dict[str, Any], condition: str
) -> dict[str, Any]:
    return {
        "Key": to_av(stock_key(store_id, sku)),
        "UpdateExpression": update_expression(sets, removes),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#a": "available", "#o": "onHand"},
        "ExpressionAttributeValues": to_av(values),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


BUILDERS: dict[type, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    PutHold: _put_hold,
    RestoreHold: _restore_hold,
    TakeCart: _take_cart,
    FreeCart: _free_cart,
    EndHold: _end_hold,
    ExtendHold: _extend_hold,
    WarnHold: _warn_hold,
    RequireActive: _require_active,
    MoveStock: _move_stock,
    CreateStock: _create_stock,
    SetStock: _set_stock,
    AdjustStock: _adjust_stock,
    RecountStock: _recount_stock,
    PutCheckout: _put_checkout,
    PointCart: _point_cart,
    FollowHold: _follow_hold,
    PutOrder: _put_order,
    MoveOrder: _move_order,
}
