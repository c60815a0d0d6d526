"""End-to-end, over HTTP: the bad inputs of issue 9 section 2 get a 4xx in API.md's error
shape from the local stack, and change nothing.

Each fault was found by a fuzzer against the running stack; each test sends the request
that showed it, then checks the counters (and the hold, where there is one) are as before.
"""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Http, HttpReply, Stack
from tests.e2e.test_storefront_http import assert_error, stock_of

pytestmark = pytest.mark.e2e


def counters(client: Http, sku: str) -> dict[str, Any]:
    return {k: v for k, v in stock_of(client, sku).items() if k != "updatedAt"}


def held(stack: Stack, sku: str, quantity: int) -> str:
    made = stack.storefront.post(
        "/reservations", {"cartId": f"cart-{uuid.uuid4().hex[:12]}", "items": [{"sku": sku, "quantity": quantity}]}
    )
    assert made.status == 201, made.body
    return str(made.body["reservationId"])


def fields(reply: HttpReply) -> list[str]:
    return [f["field"] for f in reply.body["error"]["details"].get("fields", [])]


def test_an_integer_of_more_than_4300_digits_is_400_not_502(stack: Stack) -> None:
    """Python's int-parsing limit raised a ValueError the resolver did not expect: API Gateway's 502."""
    sku = stack.unique_sku(5)
    before = counters(stack.admin, sku)
    huge = "7" * 4301

    put = stack.admin.put(f"/stock/{sku}", raw=f'{{"onHand": {huge}}}'.encode())
    assert_error(put, 400, "VALIDATION_ERROR")
    assert fields(put) == ["onHand"]
    reserve = stack.storefront.post(
        "/reservations", raw=f'{{"cartId": "c-huge", "items": [{{"sku": "{sku}", "quantity": {huge}}}]}}'.encode()
    )
    assert_error(reserve, 400, "VALIDATION_ERROR")
    assert fields(reserve) == ["items[0].quantity"]

    assert counters(stack.admin, sku) == before
    assert stack.storefront.get("/carts/c-huge/reservation").status == 404


def test_a_path_ending_in_newline_matches_no_route(stack: Stack) -> None:
    """``PUT /stock/MUG%0A`` wrote MUG (``$`` matches before a final newline); the same for reservations."""
    sku = stack.unique_sku(5)
    rid = held(stack, sku, 2)
    before, hold = counters(stack.admin, sku), stack.storefront.get(f"/reservations/{rid}").body
    fresh = f"E2E-{uuid.uuid4().hex[:10]}"

    for client, method, path, body in [
        (stack.admin, "PUT", f"/stock/{sku}%0A", {"onHand": 50}),
        (stack.admin, "PUT", f"/stock/{fresh}%0A", {"onHand": 50}),
        (stack.admin, "POST", f"/stock/{sku}/adjustments%0A", {"delta": 50, "reason": "fuzz"}),
        (stack.admin, "POST", f"/stock/{sku}%0A/adjustments", {"delta": 50, "reason": "fuzz"}),
        (stack.storefront, "GET", f"/reservations/{rid}%0A", None),
        (stack.storefront, "POST", f"/reservations/{rid}%0A/release", {}),
        (stack.storefront, "POST", f"/reservations/{rid}/release%0A", {}),
        (stack.storefront, "POST", f"/reservations/{rid}/extend%0D%0A", {}),
    ]:
        reply = client.request(method, path, body)
        assert_error(reply, 404, "NOT_FOUND")

    assert counters(stack.admin, sku) == before
    assert stack.storefront.get(f"/reservations/{rid}").body == hold
    assert stack.admin.get(f"/stock/{fresh}").status == 404


def test_a_storefront_key_on_an_admin_route_is_403_whatever_the_body(stack: Stack) -> None:
    """A bad body used to get 400 first, showing a storefront key the admin routes' rules."""
    sku = stack.unique_sku(5)
    before = counters(stack.admin, sku)

    for method, path, body, raw in [
        ("PUT", f"/stock/{sku}", {"onHand": -1, "bogus": True}, None),
        ("PUT", f"/stock/{sku}", None, b'{"onHand": '),
        ("POST", f"/stock/{sku}/adjustments", {"delta": 0}, None),
        ("POST", "/orders/no-such-order/fulfil", {"carrier": "x"}, None),
        ("GET", "/audit?bogus=1", None, None),
    ]:
        reply = stack.storefront.request(method, path, body, raw=raw)
        err = assert_error(reply, 403, "FORBIDDEN")
        assert err["details"] == {}, err

    assert counters(stack.admin, sku) == before


def test_duplicate_keys_and_an_unknown_content_encoding_are_refused(stack: Stack) -> None:
    """``{"onHand": 7, "onHand": 3}`` set 3 (the last key won); ``Content-Encoding: gzip`` was ignored."""
    sku = stack.unique_sku(5)
    before = counters(stack.admin, sku)

    dup = stack.admin.put(f"/stock/{sku}", raw=b'{"onHand": 7, "onHand": 3}')
    assert_error(dup, 400, "VALIDATION_ERROR")
    assert fields(dup) == ["onHand"]

    plain = stack.admin.put(f"/stock/{sku}", {"onHand": 3}, headers={"Content-Encoding": "gzip"})
    assert_error(plain, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert {k.lower(): v for k, v in plain.headers.items()}.get("accept-encoding") == "identity"
    packed = stack.admin.put(f"/stock/{sku}", raw=gzip.compress(b'{"onHand": 3}'), headers={"Content-Encoding": "gzip"})
    assert_error(packed, 415, "UNSUPPORTED_MEDIA_TYPE")

    assert counters(stack.admin, sku) == before
    ok = stack.admin.put(f"/stock/{sku}", {"onHand": 6}, headers={"Content-Encoding": "identity"})
    assert ok.status == 200 and ok.body["onHand"] == 6, ok.body
