"""A hold ends by itself on the local stack: the hold timer (moto's interpreter) expires it."""

from __future__ import annotations

import time

from tests.e2e.conftest import Stack


def test_a_two_second_hold_gives_its_stock_back_by_itself(stack: Stack) -> None:
    sku = stack.unique_sku(3)
    made = stack.storefront.post(
        "/reservations", {"cartId": f"walk-away-{sku}", "items": [{"sku": sku, "quantity": 3}], "holdSeconds": 2}
    )
    assert made.status == 201, made.body
    rid = made.body["reservationId"]
    assert stack.storefront.get(f"/stock/{sku}").body["available"] == 0
    # Nobody touches the hold again: the timer must return the units, only reads here.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and stack.storefront.get(f"/stock/{sku}").body["available"] != 3:
        time.sleep(0.25)
    stock = stack.storefront.get(f"/stock/{sku}").body
    assert (stock["available"], stock["reserved"]) == (3, 0)
    hold = stack.storefront.get(f"/reservations/{rid}").body
    assert hold["status"] == "EXPIRED" and hold["endReason"] == "expired" and hold["endedAt"] is not None
    late = stack.storefront.post(f"/reservations/{rid}/confirm", {"orderId": "too-late"})
    assert (late.status, late.error_code) == (410, "RESERVATION_EXPIRED")
    assert stack.storefront.get(f"/stock/{sku}").body["available"] == 3
