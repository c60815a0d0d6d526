"""A storefront's checkout journeys over HTTP against the local stack (make run's code):
every step through API Gateway's routes, the authorizer, the API function and DynamoDB
Local; the audit trail written from the table's stream tells each story afterwards."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from tests.e2e.conftest import Http, HttpReply, Stack, trail

SHOPPERS = 32


def stock(stack: Stack, sku: str) -> tuple[int, int, int, int]:
    body = stack.admin.get(f"/stock/{sku}").body
    return body["onHand"], body["available"], body["reserved"], body["allocated"]


def start(front: Http, cart: str, lines: dict[str, int], **headers: str) -> HttpReply:
    items = [{"sku": s, "quantity": q} for s, q in lines.items()]
    return front.post("/checkouts", {"cartId": cart, "customerId": "shopper-1", "items": items}, headers=headers)


def test_happy_path_three_skus_to_a_fulfilled_order(stack: Stack) -> None:
    front = stack.storefront
    skus = [stack.unique_sku(10), stack.unique_sku(4, lowStockThreshold=2), stack.unique_sku(1000)]
    cart = f"happy-{uuid.uuid4().hex[:8]}"
    made = start(front, cart, {skus[0]: 2, skus[1]: 2, skus[2]: 1})
    assert made.status == 201, made.body
    cid = made.body["checkoutId"]
    assert made.body["status"] == "checkout"
    assert [w["sku"] for w in made.body["warnings"]] == [skus[1]]  # 2 left, at its threshold
    address = {"line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "10117", "country": "DE"}
    assert front.patch(f"/checkouts/{cid}", {"shippingAddress": address, "step": "shipping"}).status == 200
    second = front.patch(f"/checkouts/{cid}", {"shippingMethodId": "dhl-express", "paymentMethod": "card"})
    assert second.status == 200, second.body
    paying = front.post(f"/checkouts/{cid}/payment")
    assert (paying.status, paying.body["step"]) == (200, "payment"), paying.body
    done = front.post(f"/checkouts/{cid}/complete", {"paymentReference": "psp-1"}, headers={"Idempotency-Key": cid})
    assert done.status == 201, done.body
    order_id = done.body["orderId"]
    assert front.get(f"/checkouts/{cid}").body["status"] == "completed"
    assert stock(stack, skus[1]) == (4, 2, 0, 2)
    shipped = stack.admin.post(f"/orders/{order_id}/fulfil")
    assert (shipped.status, shipped.body["status"]) == (200, "FULFILLED")
    assert [stock(stack, s) for s in skus] == [(8, 8, 0, 0), (2, 2, 0, 0), (999, 999, 0, 0)]
    # The trail tells the story, in order.
    rid = made.body["reservation"]["reservationId"]
    trail(stack, f"reservationId={rid}", ["reservation_created", "reservation_extended", "reservation_confirmed"])
    trail(stack, f"orderId={order_id}", ["order_created", "reservation_confirmed", "order_fulfilled"])
    entries = trail(
        stack, f"sku={skus[1]}", ["stock_set", "reservation_created", "reservation_confirmed", "order_fulfilled"]
    )
    assert [(e["before"] or {}).get("onHand") for e in reversed(entries)][1:] == [4, 4, 4]
    assert entries[0]["after"]["onHand"] == 2 and entries[0]["ref"] == order_id
    assert entries[0]["actor"].startswith("admin:") and entries[1]["actor"].startswith("storefront:")


def test_short_stock_at_start_holds_nothing_and_names_every_short_line(stack: Stack) -> None:
    plenty, scarce = stack.unique_sku(10), stack.unique_sku(1)
    reply = start(stack.storefront, f"short-{plenty}", {plenty: 2, scarce: 3, "E2E-NO-SUCH-SKU": 1})
    assert (reply.status, reply.error_code) == (409, "INSUFFICIENT_STOCK")
    short = {(x["sku"], x["requested"], x["available"]) for x in reply.body["error"]["details"]["items"]}
    assert short == {("E2E-NO-SUCH-SKU", 1, 0), (scarce, 3, 1)}
    assert stock(stack, plenty) == (10, 10, 0, 0) and stock(stack, scarce) == (1, 1, 0, 0)
    # The trail agrees: a refused start changed nothing.
    trail(stack, f"sku={plenty}", ["stock_set"])
    trail(stack, f"sku={scarce}", ["stock_set"])


def test_payment_failure_returns_stock_then_the_retry_succeeds(stack: Stack) -> None:
    front = stack.storefront
    sku = stack.unique_sku(3)
    cart = f"pf-{sku}"
    cid = start(front, cart, {sku: 3}).body["checkoutId"]
    assert front.post(f"/checkouts/{cid}/payment").status == 200
    failed = front.post(f"/checkouts/{cid}/cancel", {"reason": "payment_failed"})
    assert (failed.status, failed.body["status"]) == (200, "active")
    assert stock(stack, sku) == (3, 3, 0, 0)
    retry = start(front, cart, {sku: 3})
    assert (retry.status, retry.body["checkoutId"], retry.body["status"]) == (201, cid, "checkout")
    assert front.post(f"/checkouts/{cid}/payment").status == 200
    order = front.post(f"/checkouts/{cid}/complete", {"paymentReference": "psp-2"})
    assert order.status == 201, order.body
    assert stock(stack, sku) == (3, 0, 0, 3)
    # A checkout's trail holds its holds' entries too: each step, with what it did to the stock.
    trail(
        stack,
        f"checkoutId={cid}",
        [
            *("checkout_started", "reservation_created"),
            *("checkout_payment", "reservation_extended"),
            *("checkout_payment_failed", "reservation_released"),
            *("checkout_restarted", "reservation_created"),
            *("checkout_payment", "reservation_extended"),
            *("checkout_completed", "reservation_confirmed"),
        ],
    )


def test_32_shoppers_start_checkout_for_the_last_5_units(stack: Stack) -> None:
    sku = stack.unique_sku(5)
    barrier = threading.Barrier(SHOPPERS)
    replies: list[HttpReply | None] = [None] * SHOPPERS

    def shopper(i: int) -> None:
        barrier.wait()
        replies[i] = start(stack.storefront, f"crowd-{sku}-{i}", {sku: 1})

    threads = [threading.Thread(target=shopper, args=(i,)) for i in range(SHOPPERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [r for r in replies if r is not None and r.status == 201]
    refused = [r for r in replies if r is not None and r.status != 201]
    assert len(got) == 5, [r.status for r in replies if r]
    assert {(r.status, r.error_code) for r in refused} == {(409, "INSUFFICIENT_STOCK")}
    orders = [
        stack.storefront.post(f"/checkouts/{r.body['checkoutId']}/complete", {"paymentReference": f"p{i}"})
        for i, r in enumerate(got)
    ]
    assert [o.status for o in orders] == [201] * 5
    assert stock(stack, sku) == (5, 0, 0, 5)
    # A sixth order is not possible: nothing is left to hold.
    sixth = start(stack.storefront, f"crowd-{sku}-late", {sku: 1})
    assert (sixth.status, sixth.error_code) == (409, "INSUFFICIENT_STOCK")
    # The SKU's trail: five holds, then five confirmations - nothing for the 27 refused.
    trail(stack, f"sku={sku}", ["stock_set", *["reservation_created"] * 5, *["reservation_confirmed"] * 5])


def _send_and_hang_up(url: str, key: str, body: dict[str, Any], idem: str) -> None:
    """Send a POST /checkouts and close the connection without reading the answer."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    head = (
        f"POST /checkouts HTTP/1.1\r\nHost: {parts.hostname}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: {idem}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head.encode() + payload)


def test_resume_after_a_dropped_connection(stack: Stack) -> None:
    sku = stack.unique_sku(4)
    cart = f"drop-{sku}"
    body = {"cartId": cart, "items": [{"sku": sku, "quantity": 2}]}
    idem = f"start-{cart}"
    _send_and_hang_up(stack.url, stack.stack.config.storefront_key, body, idem)
    # The shopper's browser retries with the same key until it gets an answer.
    deadline = time.monotonic() + 20
    while True:
        again = stack.storefront.post("/checkouts", body, headers={"Idempotency-Key": idem})
        if again.error_code != "IDEMPOTENCY_KEY_IN_USE" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.status == 201, again.body
    cid = again.body["checkoutId"]
    # A reload without the key resumes the same checkout; nothing is held twice.
    resumed = stack.storefront.post("/checkouts", body)
    assert (resumed.status, resumed.body["checkoutId"]) == (200, cid)
    assert stack.storefront.get(f"/checkouts/{cid}").body["status"] == "checkout"
    assert stock(stack, sku) == (4, 2, 2, 0)
    trail(stack, f"checkoutId={cid}", ["checkout_started", "reservation_created"])


def test_complete_retried_three_times_gives_one_order_and_one_allocation(stack: Stack) -> None:
    sku = stack.unique_sku(6)
    cid = start(stack.storefront, f"retry-{sku}", {sku: 2}).body["checkoutId"]
    answers = [stack.storefront.post(f"/checkouts/{cid}/complete", {"paymentReference": "psp-9"}) for _ in range(3)]
    assert [a.status for a in answers] == [201, 201, 201]
    assert len({a.body["orderId"] for a in answers}) == 1
    assert stock(stack, sku) == (6, 4, 0, 2)
    order_id = answers[0].body["orderId"]
    trail(stack, f"orderId={order_id}", ["order_created", "reservation_confirmed"])
    trail(stack, f"sku={sku}", ["stock_set", "reservation_created", "reservation_confirmed"])
