"""End-to-end races over HTTP: many shoppers at once, each on its own connection, against
the local stack. Whatever the interleaving, no unit is held twice and the counters add up.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import Http, HttpReply, Stack

pytestmark = pytest.mark.e2e

SHOPPERS = 32
RETRIES = 10


def stock_of(client: Http, sku: str) -> dict[str, Any]:
    reply = client.get(f"/stock/{sku}")
    assert reply.status == 200, reply.body
    s = dict(reply.body)
    assert min(s["available"], s["reserved"], s["allocated"], s["onHand"]) >= 0, s
    assert s["available"] + s["reserved"] + s["allocated"] == s["onHand"], s
    return s


def race(client: Http, bodies: list[dict[str, Any]]) -> list[HttpReply]:
    """POST /reservations with every body at once: one thread and one connection per shopper.

    Each shopper sends its own Idempotency-Key and, as a storefront should, retries with the
    same key and body when its connection is reset before an answer: API.md promises the
    first answer back and nothing held twice. (The local stack's HTTP server listens with a
    backlog of 5, so a burst of connections gets resets; see test_a_burst_of_connections_...)
    """
    start = threading.Barrier(len(bodies))

    def shop(body: dict[str, Any]) -> HttpReply:
        key = {"Idempotency-Key": f"race-{uuid.uuid4().hex}"}
        start.wait(timeout=30)
        for _ in range(RETRIES):
            try:
                return client.post("/reservations", body, headers=key)
            except ConnectionError:
                time.sleep(0.05)
        return client.post("/reservations", body, headers=key)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(shop, bodies))


def assert_short(reply: HttpReply) -> list[dict[str, Any]]:
    assert reply.status == 409, (reply.status, reply.body)
    assert set(reply.body) == {"error"}, reply.body
    err = reply.body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert err["code"] == "INSUFFICIENT_STOCK", err
    items = err["details"]["items"]
    assert items, err
    for item in items:
        assert item["available"] < item["requested"], item
    return list(items)


def test_32_shoppers_race_for_the_last_5_units(stack: Stack) -> None:
    sku = stack.unique_sku(20)
    # 15 of the 20 are already held by another cart: 5 are left.
    early = stack.storefront.post(
        "/reservations", {"cartId": f"early-{uuid.uuid4().hex[:8]}", "items": [{"sku": sku, "quantity": 15}]}
    )
    assert early.status == 201, early.body
    assert stock_of(stack.admin, sku)["available"] == 5
    run = uuid.uuid4().hex[:8]

    replies = race(
        stack.storefront,
        [{"cartId": f"race-{run}-{i}", "items": [{"sku": sku, "quantity": 1}]} for i in range(SHOPPERS)],
    )

    statuses = Counter(r.status for r in replies)
    assert statuses == {201: 5, 409: SHOPPERS - 5}, statuses
    for reply in replies:
        if reply.status == 201:
            assert reply.body["status"] == "ACTIVE" and reply.body["items"] == [{"sku": sku, "quantity": 1}]
        else:
            assert assert_short(reply) == [{"sku": sku, "requested": 1, "available": 0}]
    assert len({r.body["reservationId"] for r in replies if r.status == 201}) == 5
    s = stock_of(stack.admin, sku)
    assert (s["onHand"], s["reserved"], s["available"], s["allocated"]) == (20, 20, 0, 0)
    # The winners' reservations are really there, each on its own cart.
    for i, reply in enumerate(replies):
        got = stack.storefront.get(f"/carts/race-{run}-{i}/reservation")
        if reply.status == 201:
            assert (got.status, got.body) == (200, reply.body)
        else:
            assert got.status == 404, got.body


def test_32_shoppers_with_overlapping_carts_never_overbook(stack: Stack) -> None:
    on_hand = {stack.unique_sku(n): n for n in (6, 5, 4, 3)}
    skus = list(on_hand)
    rng = random.Random(20240611)
    run = uuid.uuid4().hex[:8]
    bodies = []
    for i in range(SHOPPERS):
        picked = rng.sample(skus, rng.choice((2, 3)))
        bodies.append(
            {"cartId": f"mix-{run}-{i}", "items": [{"sku": s, "quantity": rng.choice((1, 2))} for s in picked]}
        )

    replies = race(stack.storefront, bodies)

    held: Counter[str] = Counter()
    for body, reply in zip(bodies, replies, strict=True):
        if reply.status == 201:
            assert sorted(reply.body["items"], key=lambda x: x["sku"]) == sorted(body["items"], key=lambda x: x["sku"])
            for item in body["items"]:
                held[item["sku"]] += item["quantity"]
        else:
            short = assert_short(reply)
            asked = {x["sku"]: x["quantity"] for x in body["items"]}
            for item in short:
                assert item["requested"] == asked[item["sku"]], (item, body)
    assert any(r.status == 201 for r in replies)
    assert any(r.status == 409 for r in replies)  # 32 carts of 2-3 lines want far more than 18 units
    for sku, n in on_hand.items():
        s = stock_of(stack.admin, sku)
        assert s["onHand"] == n
        assert s["reserved"] == held[sku] <= n, (sku, s, held[sku])
        assert s["allocated"] == 0


def test_a_burst_of_connections_is_answered_without_retries(stack: Stack) -> None:
    sku = stack.unique_sku(SHOPPERS)
    start = threading.Barrier(SHOPPERS)

    def shop(i: int) -> HttpReply:
        start.wait(timeout=30)
        return stack.storefront.post(
            "/reservations", {"cartId": f"burst-{uuid.uuid4().hex}", "items": [{"sku": sku, "quantity": 1}]}
        )

    with ThreadPoolExecutor(max_workers=SHOPPERS) as pool:
        futures = [pool.submit(shop, i) for i in range(SHOPPERS)]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    assert Counter(f.result().status for f in futures) == {201: SHOPPERS}
    s = stock_of(stack.admin, sku)
    assert (s["reserved"], s["available"]) == (SHOPPERS, 0)
