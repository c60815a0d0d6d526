"""Each intent as one TransactWriteItems action (or one plain conditional write): the only
code that builds the condition and update expressions of the items use cases change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stockhold.data.schema import (
    ALLOWANCE,
    allowance_key,
    cart_checkout_item,
    cart_key,
    cart_slot_item,
    cause_attributes,
    cause_update,
    cell_item,
    checkout_key,
    checkout_to_item,
    hold_sweep_keys,
    location_item,
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
    CountAllowance,
    CreateCell,
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
    PutLocation,
    PutOrder,
    RecountStock,
    RegisterCell,
    RequireActive,
    RestoreHold,
    SetStock,
    SkuSettings,
    TakeCart,
    WarnHold,
)
from stockhold.domain.models import DEFAULT_LOCATION, CheckoutStatus, OrderStatus, ReservationStatus, StockLevel
from stockhold.domain.rules import Deadline, StockMove

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
    move, key = i.move, to_av(stock_key(i.store_id, i.move.sku, i.move.location))
    if move.require_unlimited:
        # Planned without a read: only while the SKU has no purchase limit (they count unlimited units too).
        limits = " AND attribute_not_exists(maxPerCart) AND attribute_not_exists(maxPerCustomer)" if move.plain else ""
        limits += " AND attribute_not_exists(maxHoldSeconds)" if move.plain else ""
        return "ConditionCheck", {
            "Key": key,
            "ConditionExpression": "unlimited = :t" + limits,
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
        if delta < 0 and not (name == "available" and move.floor is not None):
            values[f":n{n}"] = -delta
            conditions.append(f"#c{n} >= :n{n}")
    if move.available < 0:
        # Units are taken from ``available``: the item must count them (not unlimited).
        values[":f"] = False
        conditions.append("unlimited = :f")
        if move.floor is not None:
            conditions.extend(_backorder_floor(move, values))
    if move.plain:
        conditions.append("attribute_not_exists(cells) AND attribute_not_exists(maxPerCart)")
        conditions.append("attribute_not_exists(maxPerCustomer) AND attribute_not_exists(maxHoldSeconds)")
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


def _backorder_floor(move: StockMove, values: dict[str, Any]) -> list[str]:
    """Taking units down to the backorder floor: the limit it relies on is pinned, and so is
    what the plan saw of available, so the line's ``backordered`` figure is exact."""
    assert move.floor is not None
    floor, taken = move.floor, -move.available
    values[":bl"] = floor.limit
    values[":bneed"] = taken - floor.limit
    conditions = ["backorderLimit = :bl", "available >= :bneed"]
    if floor.at_available is not None:
        values[":bat"] = floor.at_available
        conditions.append("available = :bat")
    elif floor.none_covered:
        values[":bz"] = 0
        conditions.append("available <= :bz")
    return conditions


def _create_stock(i: CreateStock) -> tuple[str, dict[str, Any]]:
    return "Put", {
        "Item": to_av(stock_item(i.store_id, i.level, Cause("stock_set"))),
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _set_stock(i: SetStock) -> tuple[str, dict[str, Any]]:
    delta = i.on_hand - i.expected_on_hand
    values: dict[str, Any] = {":old": i.expected_on_hand, ":new": i.on_hand, ":d": delta, ":now": i.now_ms}
    sets = ["#o = :new", "#a = #a + :d", "updatedAt = :now"]
    condition = "#o = :old"
    removes: list[str] = []
    floor = -i.floor_limit
    if i.settings is not None:
        floor = -i.settings.backorder_limit
        _set_settings(i.settings, values, sets, removes)
    elif i.floor_limit:
        values[":bl"] = i.floor_limit  # the limit the floor was decided on, still the SKU's
        condition += " AND backorderLimit = :bl"
    if delta < 0 or i.settings is not None:
        values[":need"] = floor - delta
        condition += " AND #a >= :need"
    if i.only_cell:
        condition += " AND attribute_not_exists(cells)"
    cause_update(Cause("stock_set"), values, sets, removes)
    return "Update", _stock_update(i.store_id, i.sku, i.location, sets, removes, values, condition)


def _set_settings(settings: SkuSettings, values: dict[str, Any], sets: list[str], removes: list[str]) -> None:
    fields = {
        "lowStockThreshold": settings.low_stock_threshold,
        "unlimited": settings.unlimited,
        "backorderLimit": settings.backorder_limit or None,
        "maxPerCart": settings.max_per_cart,
        "maxPerCustomer": settings.max_per_customer,
        "maxHoldSeconds": settings.max_hold_seconds,
    }
    for name, value in fields.items():
        if value is None:
            removes.append(name)
        else:
            values[f":set{name}"] = value
            sets.append(f"{name} = :set{name}")


def _create_cell(i: CreateCell) -> tuple[str, dict[str, Any]]:
    item = cell_item(i.store_id, i.sku, i.location, i.on_hand, i.now_ms, Cause("stock_set", ref=i.location))
    return "Put", {
        "Item": to_av(item),
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _register_cell(i: RegisterCell) -> tuple[str, dict[str, Any]]:
    head = stock_item(i.store_id, _empty_level(i.sku, i.now_ms), Cause("stock_set"))
    fresh = {k: v for k, v in head.items() if k not in ("pk", "sk", "updatedAt") and v is not None}
    values: dict[str, Any] = {":cell": {i.location}, ":now": i.now_ms, ":f": False}
    sets = ["updatedAt = :now"]
    names: dict[str, str] = {}
    for n, (name, value) in enumerate(fresh.items()):
        names[f"#h{n}"] = name
        values[f":h{n}"] = value
        sets.append(f"#h{n} = if_not_exists(#h{n}, :h{n})")
    return "Update", {
        "Key": to_av(stock_key(i.store_id, i.sku)),
        "UpdateExpression": "SET " + ", ".join(sets) + " ADD cells :cell",
        "ConditionExpression": "attribute_not_exists(unlimited) OR unlimited = :f",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": to_av(values),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _empty_level(sku: str, now_ms: int) -> StockLevel:
    return StockLevel(
        sku=sku,
        on_hand=0,
        reserved=0,
        allocated=0,
        available=0,
        low_stock_threshold=None,
        unlimited=False,
        updated_at=now_ms,
    )


def _adjust_stock(i: AdjustStock) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {":d": i.delta, ":now": i.now_ms}
    condition = "attribute_exists(pk)"
    if i.delta < 0:
        values[":need"] = -i.delta
        values[":aneed"] = -i.delta - i.floor_limit
        condition += " AND #a >= :aneed AND #o >= :need"
        if i.floor_limit:
            values[":bl"] = i.floor_limit
            condition += " AND backorderLimit = :bl"
    sets, removes = ["#o = #o + :d", "#a = #a + :d", "updatedAt = :now"], list[str]()
    cause_update(Cause("stock_adjusted", ref=_ref(i.location), reason=i.reason), values, sets, removes)
    return "Update", _stock_update(i.store_id, i.sku, i.location, sets, removes, values, condition)


def _ref(location: str) -> str | None:
    return None if location == DEFAULT_LOCATION else location


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
        "Key": to_av(stock_key(i.store_id, i.sku, seen.location_id)),
        "UpdateExpression": update_expression(sets, removes),
        "ConditionExpression": "updatedAt = :seen AND #r = :was",
        "ExpressionAttributeNames": {"#r": "reserved", "#a": "available"},
        "ExpressionAttributeValues": to_av(values),
    }


def _put_location(i: PutLocation) -> tuple[str, dict[str, Any]]:
    return "Put", {"Item": to_av(location_item(i.store_id, i.location))}


def _count_allowance(i: CountAllowance) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "Key": to_av(allowance_key(i.store_id, i.customer_id, i.sku)),
        "UpdateExpression": "SET #t = :t, storeId = :s, customerId = :c, sku = :k, updatedAt = :now ADD used :d",
        "ExpressionAttributeNames": {"#t": "type"},
        "ExpressionAttributeValues": to_av(
            {":t": ALLOWANCE, ":s": i.store_id, ":c": i.customer_id, ":k": i.sku, ":now": i.now_ms, ":d": i.delta}
        ),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if i.delta > 0 and i.limit is not None:
        room = i.limit - i.delta
        # No item yet means nothing used: it passes only when the delta alone fits the limit.
        params["ConditionExpression"] = "attribute_not_exists(used) OR used <= :room" if room >= 0 else "used <= :room"
        params["ExpressionAttributeValues"].update(to_av({":room": room}))
    return "Update", params


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
    store_id: str, sku: str, location: str, sets: list[str], removes: list[str], values: dict[str, Any], condition: str
) -> dict[str, Any]:
    return {
        "Key": to_av(stock_key(store_id, sku, location)),
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
    CreateCell: _create_cell,
    RegisterCell: _register_cell,
    AdjustStock: _adjust_stock,
    RecountStock: _recount_stock,
    PutLocation: _put_location,
    CountAllowance: _count_allowance,
    PutCheckout: _put_checkout,
    PointCart: _point_cart,
    FollowHold: _follow_hold,
    PutOrder: _put_order,
    MoveOrder: _move_order,
}
