"""Stock events on the local stack: HTTP changes -> table stream -> events function ->
EventBridge (the stack's moto server) -> the stack's tap, which keeps every event."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Stack


def _of(stack: Stack, key: str, value: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    found = stack.stack.event_buses.wait_for(lambda e: e["detail"].get(key) == value, count=count, timeout=timeout)
    return found


def test_stock_crossings_are_published_once_each(stack: Stack) -> None:
    sku = stack.unique_sku(8)  # above the default threshold (5): no event
    held = stack.storefront.post("/reservations", {"cartId": f"ev-a-{sku}", "items": [{"sku": sku, "quantity": 3}]})
    assert held.status == 201, held.body  # 5: low
    assert (
        stack.storefront.post("/reservations", {"cartId": f"ev-b-{sku}", "items": [{"sku": sku, "quantity": 1}]}).status
        == 201
    )  # 4: still low, no event
    assert stack.admin.post(f"/stock/{sku}/adjustments", {"delta": -4, "reason": "damaged"}).status == 200  # 0: out
    released = stack.storefront.post(f"/reservations/{held.body['reservationId']}/release", {"reason": "cancelled"})
    assert released.status == 200  # 3: back in
    events = _of(stack, "sku", sku, count=3)
    assert [(e["detail-type"], e["detail"]["available"]) for e in events] == [
        ("StockLow", 5),
        ("StockOut", 0),
        ("StockBackIn", 3),
    ]
    assert all(e["source"] == "stockhold" for e in events)
    assert len({e["detail"]["eventId"] for e in events}) == 3
    assert stack.stack.events("StockLow") and all(
        e["detail-type"] == "StockLow" for e in stack.stack.events("StockLow")
    )


def test_an_expired_hold_and_an_order_are_published(stack: Stack) -> None:
    sku = stack.unique_sku(50)
    short = stack.storefront.post(
        "/reservations", {"cartId": f"ev-x-{sku}", "items": [{"sku": sku, "quantity": 1}], "holdSeconds": 1}
    )
    paid = stack.storefront.post("/reservations", {"cartId": f"ev-o-{sku}", "items": [{"sku": sku, "quantity": 2}]})
    assert short.status == paid.status == 201
    order_id = f"ord-{sku}"
    assert (
        stack.storefront.post(f"/reservations/{paid.body['reservationId']}/confirm", {"orderId": order_id}).status
        == 200
    )
    (expired,) = _of(stack, "reservationId", short.body["reservationId"], count=1)
    assert expired["detail-type"] == "ReservationExpired"
    assert expired["detail"]["items"] == [{"sku": sku, "quantity": 1}] and expired["detail"]["expiredBy"] == "timer"
    (order,) = _of(stack, "orderId", order_id, count=1)
    assert order["detail-type"] == "OrderCreated" and order["detail"]["reservationId"] == paid.body["reservationId"]
