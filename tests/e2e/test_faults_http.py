"""End-to-end with faults: function workers (Lambda execution environments) killed while
shoppers use the API over HTTP, and the HTTP methods no route has.

As on AWS, a request whose environment dies gets API Gateway's 502 and nothing else is
affected; a storefront resends it with the same Idempotency-Key. Whatever was killed, the
stock adds up, every request took effect once or was refused, and every hold ends.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
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
