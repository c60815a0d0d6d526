"""A flash sale over HTTP, as a storefront runs one (docs/flash-sales.md): many shoppers
race for a few units of a SKU with a per-customer limit and a short hold cap. The
winners complete checkout, the rest are refused cleanly (409, never 5xx), nobody passes
the limit, and the holds of those who walk away come back by themselves, fast.

Not yet: the SKU is one cell (no shards: issue 13), so this proves the rules, not the rate."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from tests.e2e.conftest import HttpReply, Stack

UNITS, CUSTOMERS, CARTS_EACH, LIMIT = 6, 12, 2, 2
HOLD_CAP = 12  # seconds: short, yet long enough for the winners to pay on a loaded CI machine


def _ms(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000


def test_a_flash_sale_sells_exactly_the_units_within_limits_and_abandoned_holds_return(stack: Stack) -> None:
    front, admin = stack.storefront, stack.admin
    sku = stack.unique_sku(UNITS, maxPerCustomer=LIMIT, maxHoldSeconds=HOLD_CAP, lowStockThreshold=0)
    sale = uuid.uuid4().hex[:6]
    shoppers = [(f"cust-{sale}-{c}", f"cart-{sale}-{c}-{k}") for c in range(CUSTOMERS) for k in range(CARTS_EACH)]
    gate = threading.Barrier(len(shoppers))

    def rush(who: tuple[str, str]) -> HttpReply:
        customer, cart = who
        body = {"cartId": cart, "customerId": customer, "items": [{"sku": sku, "quantity": 1}]}
        gate.wait()
        return front.post("/checkouts", body, headers={"Idempotency-Key": f"start-{cart}"})

    # Before the sale: a line above the limit is refused, and holds nothing.
    greedy = front.post(
        "/checkouts",
        {"cartId": f"greedy-{sale}", "customerId": f"greedy-{sale}", "items": [{"sku": sku, "quantity": 3}]},
    )
    assert (greedy.status, greedy.error_code) == (409, "PURCHASE_LIMIT_REACHED")

    started = time.time() * 1000
    with ThreadPoolExecutor(max_workers=len(shoppers)) as pool:
        replies = list(pool.map(rush, shoppers))

    won = [(who, r) for who, r in zip(shoppers, replies, strict=True) if r.status == 201]
    lost = [r for r in replies if r.status != 201]
    assert len(won) == UNITS, [(r.status, r.body) for r in replies]
    assert {(r.status, r.error_code) for r in lost} <= {(409, "INSUFFICIENT_STOCK"), (409, "PURCHASE_LIMIT_REACHED")}
    per_customer: dict[str, int] = {}
    for (customer, _), _r in won:
        per_customer[customer] = per_customer.get(customer, 0) + 1
    assert max(per_customer.values()) <= LIMIT, per_customer
    for _, r in won:  # the SKU's cap, whatever a checkout would get otherwise (30 s here)
        assert _ms(r.body["expiresAt"]) <= started + HOLD_CAP * 1000 + 2000, r.body["expiresAt"]

    # Half the winners pay at once; the others walk away.
    paid, walked = won[: UNITS // 2], won[UNITS // 2 :]
    for (_, cart), r in paid:
        done = front.post(f"/checkouts/{r.body['checkoutId']}/complete", {"paymentReference": f"pay-{cart}"})
        assert done.status in (200, 201), done.body
    level = admin.get(f"/stock/{sku}").body
    assert (level["available"], level["allocated"], level["reserved"]) == (0, len(paid), len(walked))

    # The walked-away holds come back by themselves (the timer), within the cap and the bound.
    deadline = time.monotonic() + HOLD_CAP + 15
    while time.monotonic() < deadline and admin.get(f"/stock/{sku}").body["available"] != len(walked):
        time.sleep(0.25)
    level = admin.get(f"/stock/{sku}").body
    assert (level["available"], level["reserved"], level["allocated"]) == (len(walked), 0, len(paid)), level
    for _, r in walked:
        assert front.get(f"/checkouts/{r.body['checkoutId']}").body["status"] == "abandoned"

    # Units back are reachable again within about a second, even by a container that saw the sale sold out;
    # and a customer who walked away has their allowance back.
    (customer, _), _ = walked[0]
    again_deadline = time.monotonic() + 5
    while True:
        again = front.post(
            "/checkouts",
            {"cartId": f"again-{sale}", "customerId": customer, "items": [{"sku": sku, "quantity": 1}]},
        )
        if again.status == 201 or time.monotonic() > again_deadline:
            break
        time.sleep(0.2)
    assert again.status == 201, again.body
