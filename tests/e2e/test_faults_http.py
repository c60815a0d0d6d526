"""End-to-end with faults: function workers (Lambda execution environments) killed while
shoppers use the API over HTTP, and the HTTP methods no route has.

As on AWS, a request whose environment dies gets API Gateway's 502 and nothing else is
affected; a storefront resends it with the same Idempotency-Key. Whatever was killed, the
stock adds up, every request took effect once or was refused, and every hold ends.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Http, HttpReply, Stack

pytestmark = pytest.mark.e2e

RESEND_FOR = 25.0  # seconds a shopper keeps resending one request (an in-progress key clears in 10: the Lambda timeout)


def assert_gateway_502(reply: HttpReply) -> None:
    """API Gateway's answer to a function that failed or died, in API.md's error shape."""
    assert reply.status == 502, (reply.status, reply.body)
    assert reply.body == {"error": {"code": "INTERNAL_ERROR", "message": "Internal server error", "details": {}}}
    assert reply.headers.get("Content-Type") == "application/json"


def stock_of(client: Http, sku: str) -> dict[str, Any]:
    reply = client.get(f"/stock/{sku}")
    assert reply.status == 200, reply.body
    s = dict(reply.body)
    assert min(s["available"], s["reserved"], s["allocated"], s["onHand"]) >= 0, s
    assert s["available"] + s["reserved"] + s["allocated"] == s["onHand"], s
    return s


def send(client: Http, method: str, path: str, body: Any, key: str) -> tuple[HttpReply, int]:
    """One request with its Idempotency-Key, resent (same key, same body) while its answer was
    lost (502), its first attempt is still in progress, or it was too busy. Returns the final
    answer and how many 502s it took. A closed connection without an answer is not resent:
    it is a fault of the stack, and the test fails on it."""
    lost = 0
    give_up = time.monotonic() + RESEND_FOR
    while True:
        reply = client.request(method, path, body, headers={"Idempotency-Key": key})
        if reply.status == 502:
            assert_gateway_502(reply)
            lost += 1
        elif reply.error_code not in ("IDEMPOTENCY_KEY_IN_USE", "TOO_BUSY"):
            return reply, lost
        if time.monotonic() > give_up:
            return reply, lost
        time.sleep(0.1)


def test_a_killed_worker_answers_its_own_request_502_and_no_other(stack: Stack) -> None:
    """A SIGKILLed worker used to break its function for good: that request and every later
    one got a closed connection and no HTTP answer. Now only the request it was running
    fails (502), the other workers answer meanwhile, and a new worker takes its place."""
    pool = stack.stack.pools["ApiFunction"]
    pool.warm_up(4)
    sku = stack.unique_sku(10)
    lost_before = pool.environments_lost
    workers = pool.pids
    assert len(workers) >= 2
    cart = f"victim-{uuid.uuid4().hex[:8]}"
    body = {"cartId": cart, "items": [{"sku": sku, "quantity": 2}]}
    key = {"Idempotency-Key": f"victim-{uuid.uuid4().hex}"}
    for pid in workers:  # freeze them all, so the next request waits on a worker we can name
        os.kill(pid, signal.SIGSTOP)
    with ThreadPoolExecutor(4) as threads:
        try:
            victim_reply = threads.submit(stack.storefront.post, "/reservations", body, headers=key)
            deadline = time.monotonic() + 10
            while not pool.busy_pids and time.monotonic() < deadline:
                time.sleep(0.01)
            [victim] = pool.busy_pids
        finally:
            for pid in workers:
                if pid != victim:
                    os.kill(pid, signal.SIGCONT)
        others = [threads.submit(stack.storefront.get, f"/stock/{sku}") for _ in range(3)]
        for reply in others:  # answered by the other workers while the victim's request waits
            assert reply.result(timeout=30).status == 200
        os.kill(victim, signal.SIGKILL)
        assert_gateway_502(victim_reply.result(timeout=30))
    assert pool.environments_lost == lost_before + 1
    # It never ran (the worker was frozen before it read the request): the resend holds the units.
    retried = stack.storefront.post("/reservations", body, headers=key)
    assert retried.status == 201, retried.body
    assert stack.storefront.get(f"/carts/{cart}/reservation").body == retried.body
    assert stock_of(stack.admin, sku)["reserved"] == 2
    with ThreadPoolExecutor(4) as threads:  # the function is whole again: four at a time
        assert Counter(r.status for r in threads.map(lambda _: stack.storefront.get(f"/stock/{sku}"), range(8))) == {
            200: 8
        }


def _raw(stack: Stack, request: bytes, wait: float = 0.5) -> bytes:
    """Send raw bytes on one connection and return everything the server sent within ``wait`` s."""
    parts = urlsplit(stack.url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as conn:
        conn.sendall(request)
        conn.settimeout(wait)
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    return data


def test_head_answers_with_headers_only_and_the_connection_stays_usable(stack: Stack) -> None:
    """http.server wrote the body after a HEAD answer: on a kept-alive connection the client
    read it as the start of the next answer."""
    auth = f"Authorization: Bearer {stack.storefront.key}\r\n".encode()
    head = b"HEAD /stock/MUG HTTP/1.1\r\nHost: local\r\n" + auth + b"\r\n"
    get = b"GET /stock/MUG HTTP/1.1\r\nHost: local\r\n" + auth + b"Connection: close\r\n\r\n"
    data = _raw(stack, head + get, wait=2.0)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 404"), data  # no HEAD route: API Gateway's unknown-route answer
    assert rest.startswith(b"HTTP/1.1 200"), data  # nothing between the HEAD answer's headers and the next answer
    assert b'"sku": "MUG"' in rest or b'"sku":"MUG"' in rest


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "BREW"])
def test_trace_and_unknown_methods_get_the_gateways_json_answer(stack: Stack, method: str) -> None:
    """They got http.server's 501 HTML page; API Gateway answers a method no route has as an
    unknown route: the template's MISSING_AUTHENTICATION_TOKEN response, JSON."""
    reply = stack.storefront.request(method, "/stock/MUG")
    assert reply.status == 404, reply.body
    assert reply.body == {"error": {"code": "NOT_FOUND", "message": "no such route", "details": {}}}
    assert reply.headers.get("Content-Type") == "application/json"


# --- shoppers racing while workers die -------------------------------------------------------

ON_HAND = 5  # few: confirmed holds use it up, so some shoppers are refused (even when a loaded machine makes few)
KILLS = {"ApiFunction": 5, "HoldStreamFunction": 2, "ExpireFunction": 2, "ChangeFeedFunction": 1}
RACE_SECONDS = 5.0
WALK_AWAY_HOLD = 2  # seconds: these holds must end by themselves, through their timers


@dataclass
class Hold:
    cart: str
    quantity: int
    plan: str  # "confirm" | "release" | "walk away"
    reply: dict[str, Any]
    ended: dict[str, Any] | None = None  # the confirm / release answer


@dataclass
class Outcome:
    holds: list[Hold] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # carts refused for short stock
    lost: int = 0  # answers lost (502) and then resent
    unexpected: list[tuple[str, int, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _shopper(stack: Stack, sku: str, run: str, n: int, stop: threading.Event, out: Outcome) -> None:
    rng = random.Random(f"{run}-{n}")
    client = stack.storefront
    i = 0
    while not stop.is_set():
        i += 1
        cart = f"fault-{run}-{n}-{i}"
        plan = rng.choice(["confirm", "release", "walk away"])
        quantity = rng.randint(1, 2)
        body = {
            "cartId": cart,
            "customerId": f"shopper-{n}",
            "items": [{"sku": sku, "quantity": quantity}],
            "holdSeconds": WALK_AWAY_HOLD if plan == "walk away" else 120,
        }
        reply, lost = send(client, "POST", "/reservations", body, f"hold-{cart}")
        with out.lock:
            out.lost += lost
        if reply.status == 409 and reply.error_code == "INSUFFICIENT_STOCK":
            with out.lock:
                out.refused.append(cart)
            continue
        if reply.status != 201:
            with out.lock:
                out.unexpected.append((f"POST /reservations {cart}", reply.status, reply.body))
            continue
        hold = Hold(cart, quantity, plan, dict(reply.body))
        rid = hold.reply["reservationId"]
        if plan != "walk away":
            action, payload = (
                ("confirm", {"orderId": f"o-{cart}"}) if plan == "confirm" else ("release", {"reason": "cancelled"})
            )
            ended, lost = send(client, "POST", f"/reservations/{rid}/{action}", payload, f"{action}-{cart}")
            with out.lock:
                out.lost += lost
            if ended.status == 200:
                hold.ended = dict(ended.body)
            else:
                with out.lock:
                    out.unexpected.append((f"{action} {cart}", ended.status, ended.body))
        with out.lock:
            out.holds.append(hold)


def _killer(stack: Stack, stop: threading.Event, killed: Counter[str]) -> None:
    """SIGKILL a random live worker of each function in KILLS, in random order, one every
    ~0.3 s (waiting for a function that has none alive: its workers are being replaced)."""
    rng = random.Random()
    todo = [name for name, n in KILLS.items() for _ in range(n)]
    rng.shuffle(todo)
    for name in todo:
        if stop.wait(rng.uniform(0.2, 0.45)):
            return
        while not stop.is_set():
            pids = stack.stack.pools[name].pids
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    killed[name] += 1
                    break
                except ProcessLookupError:
                    pass
            stop.wait(0.05)


def test_shoppers_racing_while_workers_are_killed_keep_every_promise(stack: Stack) -> None:
    sku = stack.unique_sku(ON_HAND)
    run = uuid.uuid4().hex[:6]
    out = Outcome()
    killed: Counter[str] = Counter()
    stop, race_over = threading.Event(), threading.Event()
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    marks: dict[str, float] = {}

    def mark(what: str) -> None:
        marks[what] = round(time.monotonic() - started, 1)

    def watch() -> None:  # the counters, sampled throughout: never oversold, always adding up
        while not race_over.wait(0.2):
            reply = stack.admin.get(f"/stock/{sku}")
            if reply.status == 200:
                samples.append(reply.body)

    for name in KILLS:  # workers to kill from the start
        stack.stack.pools[name].warm_up(4 if name == "ApiFunction" else 2)
    mark("warm")
    with ThreadPoolExecutor(8) as threads:
        shoppers = [threads.submit(_shopper, stack, sku, run, n, stop, out) for n in range(6)]
        watcher = threads.submit(watch)
        killer = threads.submit(_killer, stack, stop, killed)
        time.sleep(RACE_SECONDS)
        wait([killer], timeout=20)  # every kill done (each waits for a live worker)
        stop.set()
        mark("killed")
        for shopper in shoppers:
            shopper.result(timeout=60)  # re-raises a dropped connection (no HTTP answer)
        mark("shopped")
        killer.result(timeout=5)
        race_over.set()
        watcher.result(timeout=30)

    assert killed == KILLS  # the faults did happen
    assert out.unexpected == []
    assert out.holds and out.refused, (len(out.holds), len(out.refused))  # contention: some held, some refused
    for s in samples:
        assert min(s["available"], s["reserved"], s["allocated"]) >= 0, s
        assert s["available"] + s["reserved"] + s["allocated"] == s["onHand"] == ON_HAND, s

    # Every answer agrees with what a GET reads now: a hold took effect once, a refusal not at all.
    assert len({h.reply["reservationId"] for h in out.holds}) == len(out.holds)
    for hold in out.holds:
        got = stack.storefront.get(f"/reservations/{hold.reply['reservationId']}")
        assert got.status == 200, got.body
        assert got.body["cartId"] == hold.cart and [(x["sku"], x["quantity"]) for x in got.body["items"]] == [
            (sku, hold.quantity)
        ]
        want = {"confirm": {"CONFIRMED"}, "release": {"RELEASED"}, "walk away": {"ACTIVE", "EXPIRED"}}[hold.plan]
        assert got.body["status"] in want, (hold, got.body)
        if hold.ended is not None:
            assert hold.ended["status"] == got.body["status"], (hold.ended, got.body)
    for cart in out.refused:
        assert stack.storefront.get(f"/carts/{cart}/reservation").status == 404, cart

    # No hold is left without a way to end: the walked-away ones end by themselves (their
    # timers), and then nothing is reserved; what was confirmed is allocated, exactly once.
    last_deadline = started + RACE_SECONDS + 30
    settled = stock_of(stack.admin, sku)
    while settled["reserved"] and time.monotonic() < last_deadline:
        time.sleep(0.25)
        settled = stock_of(stack.admin, sku)
    mark("settled")
    confirmed = sum(h.quantity for h in out.holds if h.plan == "confirm")
    assert (settled["onHand"], settled["reserved"], settled["allocated"]) == (ON_HAND, 0, confirmed), settled
    for hold in out.holds:
        if hold.plan == "walk away":
            got = stack.storefront.get(f"/reservations/{hold.reply['reservationId']}")
            assert got.body["status"] == "EXPIRED", got.body
    for name in KILLS:  # each function serves again: a call finds (or starts) a live worker
        stack.stack.pools[name].warm_up(1)
        assert stack.stack.pools[name].pids, name
    print(
        f"faults: {dict(killed)}; {len(out.holds)} holds, {len(out.refused)} refused, {out.lost} answers lost; timings {marks}"
    )
    assert time.monotonic() - started < 55
