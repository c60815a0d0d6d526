"""A shopper walks away mid-checkout, on a local stack whose checkout deadline is 2 s
(CHECKOUT_HOLD_SECONDS=4, the same override an operator passes to `make run`): the hold
timer ends the hold by itself, the checkout reads abandoned, the stock is back, paying
late gets 410 and no order. The storefront hears about it on the bus: ReservationExpiring
before the deadline (EXPIRING_NOTICE_SECONDS=2), then ReservationExpired, once each."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import E2E_OVERRIDES, Http, Stack, trail
from tools.local.stack import LocalStack, StackConfig


@pytest.fixture(scope="module")
def short_stack() -> Iterator[Stack]:
    overrides = {
        **E2E_OVERRIDES,
        "CHECKOUT_HOLD_SECONDS": "4",
        "EXTEND_THRESHOLD_SECONDS": "1",
        "EXPIRING_NOTICE_SECONDS": "2",
    }
    config = StackConfig(port=0, concurrency=2, overrides=overrides)
    local = LocalStack(config).start()
    try:
        url = local.url
        yield Stack(local, url, Http(url, config.admin_key), Http(url, config.storefront_key), Http(url, None))
    finally:
        local.stop()


def test_hold_expiry_during_checkout_abandons_it_and_returns_the_stock(short_stack: Stack) -> None:
    stack, front = short_stack, short_stack.storefront
    sku = stack.unique_sku(2)
    made = front.post("/checkouts", {"cartId": f"gone-{sku}", "items": [{"sku": sku, "quantity": 2}]})
    assert made.status == 201, made.body
    cid, rid = made.body["checkoutId"], made.body["reservation"]["reservationId"]
    assert stack.admin.get(f"/stock/{sku}").body["available"] == 0
    # Only reads from here on: the timer has to do it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and stack.admin.get(f"/stock/{sku}").body["available"] != 2:
        time.sleep(0.25)
    body = stack.admin.get(f"/stock/{sku}").body
    assert (body["available"], body["reserved"]) == (2, 0)
    chk = front.get(f"/checkouts/{cid}").body
    assert (chk["status"], chk["endReason"], chk["expiresAt"]) == ("abandoned", "expired", None)
    assert chk["reservation"]["status"] == "EXPIRED"
    assert front.get(f"/reservations/{rid}").body["status"] == "EXPIRED"
    late = front.post(f"/checkouts/{cid}/complete", {"paymentReference": "too-late"})
    assert (late.status, late.error_code) == (410, "RESERVATION_EXPIRED")
    assert front.get(f"/checkouts/{cid}").body["orderId"] is None
    assert stack.admin.get(f"/stock/{sku}").body["allocated"] == 0
    # The shopper comes back: a new checkout, a fresh hold.
    again = front.post("/checkouts", {"cartId": f"gone-{sku}", "items": [{"sku": sku, "quantity": 2}]})
    assert again.status == 201 and again.body["checkoutId"] != cid
    # What the bus carried for the walked-away hold, in order, once each.
    published = stack.stack.event_buses.wait_for(lambda e: e["detail"].get("reservationId") == rid, count=2)
    time.sleep(1)  # anything more would be a duplicate
    published = stack.stack.event_buses.wait_for(lambda e: e["detail"].get("reservationId") == rid, count=99, timeout=0)
    assert [e["detail-type"] for e in published] == ["ReservationExpiring", "ReservationExpired"]
    warning, expired = (e["detail"] for e in published)
    assert warning["checkoutId"] == expired["checkoutId"] == cid
    assert 0 <= warning["secondsLeft"] <= 4
    assert expired["expiredBy"] == "timer"
    # And the audit trail tells it: started, then abandoned as its hold expired, by the timer.
    entries = trail(
        stack,
        f"checkoutId={cid}",
        ["checkout_started", "reservation_created", "checkout_abandoned", "reservation_expired"],
    )
    assert {e["actor"] for e in entries if e["action"] in ("checkout_abandoned", "reservation_expired")} == {
        "system:timer"
    }
