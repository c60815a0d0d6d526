"""End-to-end, over HTTP: every endpoint and error of API.md's Stock and Reservations
sections, driven as a storefront developer would against the local stack.

The stack is shared for the session, so every test makes its own SKUs and cart ids.
Every error is checked against API.md's one error shape, and every refused request is
checked to have changed nothing.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import Http, HttpReply, Stack

pytestmark = pytest.mark.e2e

STOCK_FIELDS = {"sku", "onHand", "reserved", "allocated", "available", "lowStock", "unlimited", "updatedAt"}
RESERVATION_FIELDS = {
    "reservationId",
    "cartId",
    "customerId",
    "status",
    "items",
    "createdAt",
    "expiresAt",
    "extensionsUsed",
    "extensionsLeft",
    "endedAt",
    "endReason",
    "orderId",
}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")


# --- helpers -----------------------------------------------------------------------------


def assert_error(reply: HttpReply, status: int, code: str) -> dict[str, Any]:
    """API.md's error shape, exactly: {"error": {"code", "message", "details"}}."""
    assert reply.status == status, (reply.status, reply.body)
    assert isinstance(reply.body, dict) and set(reply.body) == {"error"}, reply.body
    err = reply.body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["details"], dict), err
    return dict(err)


def ts(value: str) -> datetime:
    """An RFC 3339 UTC timestamp, parsed."""
    assert isinstance(value, str) and RFC3339_UTC.match(value), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    return parsed


def cart_id() -> str:
    return f"cart-{uuid.uuid4().hex[:12]}"


def line(sku: str, quantity: Any) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity}


def stock_of(client: Http, sku: str) -> dict[str, Any]:
    reply = client.get(f"/stock/{sku}")
    assert reply.status == 200, reply.body
    s = dict(reply.body)
    assert s["available"] + s["reserved"] + s["allocated"] == s["onHand"], s
    assert min(s["available"], s["reserved"], s["allocated"], s["onHand"]) >= 0, s
    return s


def counters(client: Http, *skus: str) -> dict[str, tuple[int, int, int, int]]:
    """(onHand, available, reserved, allocated) per SKU; the invariant is checked on every read."""
    out = {}
    for sku in skus:
        s = stock_of(client, sku)
        out[sku] = (s["onHand"], s["available"], s["reserved"], s["allocated"])
    return out


def reserve(client: Http, cart: str, *lines: tuple[str, int], **extra: Any) -> HttpReply:
    return client.post("/reservations", {"cartId": cart, "items": [line(s, q) for s, q in lines], **extra})


def reserved(client: Http, cart: str, *lines: tuple[str, int], **extra: Any) -> dict[str, Any]:
    reply = reserve(client, cart, *lines, **extra)
    assert reply.status == 201, reply.body
    return dict(reply.body)


def reservation(client: Http, rid: str) -> dict[str, Any]:
    reply = client.get(f"/reservations/{rid}")
    assert reply.status == 200, reply.body
    return dict(reply.body)


def assert_reservation_shape(res: dict[str, Any]) -> None:
    assert set(res) == RESERVATION_FIELDS, set(res) ^ RESERVATION_FIELDS
    assert isinstance(res["reservationId"], str) and res["reservationId"]
    assert res["status"] in {"ACTIVE", "CONFIRMED", "RELEASED", "EXPIRED"}
    for item in res["items"]:
        assert set(item) == {"sku", "quantity"}, item
    assert ts(res["expiresAt"]) > ts(res["createdAt"])
    if res["endedAt"] is not None:
        ts(res["endedAt"])
    assert isinstance(res["extensionsUsed"], int) and isinstance(res["extensionsLeft"], int)


# --- stock -------------------------------------------------------------------------------


def test_put_stock_returns_the_whole_stock_shape(stack: Stack) -> None:
    sku = f"E2E-{uuid.uuid4().hex[:10]}"
    before = datetime.now(UTC)
    reply = stack.admin.put(f"/stock/{sku}", {"onHand": 10, "lowStockThreshold": 2, "unlimited": False})
    assert reply.status == 200, reply.body
    body = reply.body
    assert set(body) >= STOCK_FIELDS, STOCK_FIELDS - set(body)
    assert {k: body[k] for k in STOCK_FIELDS - {"updatedAt"}} == {
        "sku": sku,
        "onHand": 10,
        "reserved": 0,
        "allocated": 0,
        "available": 10,
        "lowStock": False,
        "unlimited": False,
    }
    assert ts(body["updatedAt"]) >= before.replace(microsecond=0)
    # Any role reads it, the same.
    for client in (stack.admin, stack.storefront):
        got = client.get(f"/stock/{sku}")
        assert (got.status, got.body) == (200, body)
    # PUT again replaces onHand.
    again = stack.admin.put(f"/stock/{sku}", {"onHand": 3, "lowStockThreshold": 2})
    assert again.status == 200, again.body
    assert (again.body["onHand"], again.body["available"], again.body["lowStock"]) == (3, 3, False)


def test_adjustments_move_on_hand_and_available(stack: Stack) -> None:
    sku = stack.unique_sku(10)
    up = stack.admin.post(f"/stock/{sku}/adjustments", {"delta": 5, "reason": "received"})
    assert up.status == 200, up.body
    assert set(up.body) >= STOCK_FIELDS
    assert (up.body["onHand"], up.body["available"]) == (15, 15)
    down = stack.admin.post(f"/stock/{sku}/adjustments", {"delta": -2, "reason": "damaged"})
    assert down.status == 200, down.body
    assert (down.body["onHand"], down.body["available"]) == (13, 13)
    assert counters(stack.admin, sku) == {sku: (13, 13, 0, 0)}
    # Below zero is a conflict, and changes nothing.
    err = assert_error(
        stack.admin.post(f"/stock/{sku}/adjustments", {"delta": -14, "reason": "theft"}), 409, "STOCK_CONFLICT"
    )
    assert err["details"]["sku"] == sku
    assert counters(stack.admin, sku) == {sku: (13, 13, 0, 0)}
    # An unknown SKU is not found, and is not created.
    ghost = f"E2E-{uuid.uuid4().hex[:10]}"
    assert_error(stack.admin.post(f"/stock/{ghost}/adjustments", {"delta": 1, "reason": "found"}), 404, "NOT_FOUND")
    assert_error(stack.admin.get(f"/stock/{ghost}"), 404, "NOT_FOUND")


def test_list_stock_with_missing(stack: Stack) -> None:
    a, b = stack.unique_sku(4), stack.unique_sku(7)
    ghost = f"E2E-{uuid.uuid4().hex[:10]}"
    reply = stack.storefront.get(f"/stock?skus={a},{ghost},{b}")
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"items", "missing"}
    assert reply.body["missing"] == [ghost]
    by_sku = {s["sku"]: s for s in reply.body["items"]}
    assert set(by_sku) == {a, b}
    for s in by_sku.values():
        assert set(s) >= STOCK_FIELDS
    assert (by_sku[a]["onHand"], by_sku[b]["onHand"]) == (4, 7)


def test_validate_statuses_and_holds_nothing(stack: Stack) -> None:
    plenty = stack.unique_sku(50, lowStockThreshold=2)
    low = stack.unique_sku(3, lowStockThreshold=5)
    few = stack.unique_sku(1)
    ghost = f"E2E-{uuid.uuid4().hex[:10]}"
    before = counters(stack.admin, plenty, low, few)
    reply = stack.storefront.post(
        "/stock/validate",
        {"items": [line(plenty, 2), line(low, 1), line(few, 2), line(ghost, 1)]},
    )
    assert reply.status == 200, reply.body
    got = {x["sku"]: {k: x[k] for k in ("sku", "requested", "available", "status")} for x in reply.body["items"]}
    assert got == {
        plenty: {"sku": plenty, "requested": 2, "available": 50, "status": "IN_STOCK"},
        low: {"sku": low, "requested": 1, "available": 3, "status": "LOW_STOCK"},
        few: {"sku": few, "requested": 2, "available": 1, "status": "OUT_OF_STOCK"},
        ghost: {"sku": ghost, "requested": 1, "available": 0, "status": "OUT_OF_STOCK"},
    }
    assert counters(stack.admin, plenty, low, few) == before


def test_put_below_reserved_plus_allocated_is_a_stock_conflict(stack: Stack) -> None:
    sku = stack.unique_sku(10)
    reserved(stack.storefront, cart_id(), (sku, 3))
    confirmed = reserved(stack.storefront, cart_id(), (sku, 2))
    assert (
        stack.storefront.post(
            f"/reservations/{confirmed['reservationId']}/confirm", {"orderId": f"o-{confirmed['reservationId']}"}
        ).status
        == 200
    )
    assert counters(stack.admin, sku) == {sku: (10, 5, 3, 2)}

    err = assert_error(stack.admin.put(f"/stock/{sku}", {"onHand": 4}), 409, "STOCK_CONFLICT")
    assert err["details"]["sku"] == sku
    assert counters(stack.admin, sku) == {sku: (10, 5, 3, 2)}

    ok = stack.admin.put(f"/stock/{sku}", {"onHand": 5})  # exactly what is committed is allowed
    assert ok.status == 200, ok.body
    assert counters(stack.admin, sku) == {sku: (5, 0, 3, 2)}


# --- reservations ------------------------------------------------------------------------


def test_create_get_and_find_by_cart(stack: Stack) -> None:
    a, b = stack.unique_sku(10), stack.unique_sku(5)
    cart = cart_id()
    started = datetime.now(UTC).replace(microsecond=0)
    reply = stack.storefront.post(
        "/reservations",
        {"cartId": cart, "customerId": "u-9", "items": [line(a, 2), line(b, 1)], "holdSeconds": 900, "replace": False},
    )
    assert reply.status == 201, reply.body
    res = reply.body
    assert_reservation_shape(res)
    assert res["cartId"] == cart and res["customerId"] == "u-9"
    assert res["status"] == "ACTIVE"
    assert sorted(res["items"], key=lambda x: x["sku"]) == sorted([line(a, 2), line(b, 1)], key=lambda x: x["sku"])
    assert (res["extensionsUsed"], res["extensionsLeft"]) == (0, 3)
    assert (res["endedAt"], res["endReason"], res["orderId"]) == (None, None, None)
    created, expires = ts(res["createdAt"]), ts(res["expiresAt"])
    assert created >= started
    assert abs((expires - created).total_seconds() - 900) < 2
    assert counters(stack.admin, a, b) == {a: (10, 8, 2, 0), b: (5, 4, 1, 0)}

    assert reservation(stack.storefront, res["reservationId"]) == res
    by_cart = stack.storefront.get(f"/carts/{cart}/reservation")
    assert (by_cart.status, by_cart.body) == (200, res)

    released = stack.storefront.post(f"/reservations/{res['reservationId']}/release", {"reason": "cancelled"})
    assert released.status == 200, released.body
    assert_error(stack.storefront.get(f"/carts/{cart}/reservation"), 404, "NOT_FOUND")
    assert counters(stack.admin, a, b) == {a: (10, 10, 0, 0), b: (5, 5, 0, 0)}


def test_default_hold_is_the_store_default(stack: Stack) -> None:
    sku = stack.unique_sku(1)
    res = reserved(stack.storefront, cart_id(), (sku, 1))
    assert abs((ts(res["expiresAt"]) - ts(res["createdAt"])).total_seconds() - 900) < 2


def test_extend_three_times_then_the_limit(stack: Stack) -> None:
    sku = stack.unique_sku(5)
    res = reserved(stack.storefront, cart_id(), (sku, 2), holdSeconds=60)
    rid, last = res["reservationId"], res
    for n, hold in enumerate((120, 180, 240), start=1):
        reply = stack.storefront.post(f"/reservations/{rid}/extend", {"holdSeconds": hold})
        assert reply.status == 200, reply.body
        assert_reservation_shape(reply.body)
        assert (reply.body["extensionsUsed"], reply.body["extensionsLeft"]) == (n, 3 - n)
        assert ts(reply.body["expiresAt"]) > ts(last["expiresAt"])
        last = reply.body
    err = assert_error(
        stack.storefront.post(f"/reservations/{rid}/extend", {"holdSeconds": 300}), 409, "EXTENSION_LIMIT_REACHED"
    )
    assert err["details"].get("extensionsUsed") == 3
    assert reservation(stack.storefront, rid) == last
    assert counters(stack.admin, sku) == {sku: (5, 3, 2, 0)}


def test_confirm_moves_reserved_to_allocated_and_is_idempotent_by_order(stack: Stack) -> None:
    a, b = stack.unique_sku(10), stack.unique_sku(5)
    rid = reserved(stack.storefront, cart_id(), (a, 2), (b, 1))["reservationId"]
    assert counters(stack.admin, a, b) == {a: (10, 8, 2, 0), b: (5, 4, 1, 0)}

    order_id = f"o-{rid}"  # order ids are unique per store: a confirm creates the order
    first = stack.storefront.post(f"/reservations/{rid}/confirm", {"orderId": order_id})
    assert first.status == 200, first.body
    assert_reservation_shape(first.body)
    assert (first.body["status"], first.body["orderId"]) == ("CONFIRMED", order_id)
    ts(first.body["endedAt"])
    assert counters(stack.admin, a, b) == {a: (10, 8, 0, 2), b: (5, 4, 0, 1)}

    again = stack.storefront.post(f"/reservations/{rid}/confirm", {"orderId": order_id})
    assert (again.status, again.body) == (200, first.body)
    assert counters(stack.admin, a, b) == {a: (10, 8, 0, 2), b: (5, 4, 0, 1)}

    # A different order for it, releasing it, extending it: not active any more.
    for path, body in (
        ("confirm", {"orderId": "o-2"}),
        ("release", {"reason": "cancelled"}),
        ("extend", {"holdSeconds": 300}),
    ):
        err = assert_error(stack.storefront.post(f"/reservations/{rid}/{path}", body), 409, "RESERVATION_NOT_ACTIVE")
        assert err["details"] == {"status": "CONFIRMED"}
    assert reservation(stack.storefront, rid) == first.body
    assert counters(stack.admin, a, b) == {a: (10, 8, 0, 2), b: (5, 4, 0, 1)}


def test_release_then_release_again_is_unchanged(stack: Stack) -> None:
    sku = stack.unique_sku(4)
    rid = reserved(stack.storefront, cart_id(), (sku, 3))["reservationId"]
    first = stack.storefront.post(f"/reservations/{rid}/release", {"reason": "payment_failed"})
    assert first.status == 200, first.body
    assert_reservation_shape(first.body)
    assert (first.body["status"], first.body["endReason"]) == ("RELEASED", "payment_failed")
    ts(first.body["endedAt"])
    assert counters(stack.admin, sku) == {sku: (4, 4, 0, 0)}

    again = stack.storefront.post(f"/reservations/{rid}/release", {"reason": "manual"})
    assert (again.status, again.body) == (200, first.body)
    assert counters(stack.admin, sku) == {sku: (4, 4, 0, 0)}

    err = assert_error(
        stack.storefront.post(f"/reservations/{rid}/confirm", {"orderId": "o-1"}), 409, "RESERVATION_NOT_ACTIVE"
    )
    assert err["details"] == {"status": "RELEASED"}
    assert counters(stack.admin, sku) == {sku: (4, 4, 0, 0)}


def test_insufficient_stock_lists_every_short_line_and_holds_nothing(stack: Stack) -> None:
    ok, short, empty = stack.unique_sku(10), stack.unique_sku(5), stack.unique_sku(0)
    partly = stack.unique_sku(10)
    reserved(stack.storefront, cart_id(), (partly, 8))
    ghost = f"E2E-{uuid.uuid4().hex[:10]}"
    skus = (ok, short, empty, partly)
    before = counters(stack.admin, *skus)
    cart = cart_id()

    reply = reserve(stack.storefront, cart, (ok, 2), (short, 6), (ghost, 1), (empty, 1), (partly, 4))

    err = assert_error(reply, 409, "INSUFFICIENT_STOCK")
    assert sorted(err["details"]["items"], key=lambda x: x["sku"]) == sorted(
        [
            {"sku": short, "requested": 6, "available": 5},
            {"sku": ghost, "requested": 1, "available": 0},
            {"sku": empty, "requested": 1, "available": 0},
            {"sku": partly, "requested": 4, "available": 2},
        ],
        key=lambda x: x["sku"],
    )
    assert counters(stack.admin, *skus) == before
    assert_error(stack.storefront.get(f"/carts/{cart}/reservation"), 404, "NOT_FOUND")


def test_cart_already_reserved_and_replace(stack: Stack) -> None:
    a, b, c = stack.unique_sku(10), stack.unique_sku(5), stack.unique_sku(3)
    cart = cart_id()
    old = reserved(stack.storefront, cart, (a, 2), (b, 1))
    before = counters(stack.admin, a, b, c)

    for extra in ({}, {"replace": False}):
        err = assert_error(reserve(stack.storefront, cart, (c, 1), **extra), 409, "CART_ALREADY_RESERVED")
        assert err["details"] == {"reservationId": old["reservationId"]}
    assert counters(stack.admin, a, b, c) == before

    new = reserve(stack.storefront, cart, (a, 5), (c, 1), replace=True)
    assert new.status == 201, new.body
    assert new.body["reservationId"] != old["reservationId"]
    assert new.body["status"] == "ACTIVE"
    ended = reservation(stack.storefront, old["reservationId"])
    assert (ended["status"], ended["endReason"]) == ("RELEASED", "replaced")
    assert stack.storefront.get(f"/carts/{cart}/reservation").body == new.body
    assert counters(stack.admin, a, b, c) == {a: (10, 5, 5, 0), b: (5, 5, 0, 0), c: (3, 2, 1, 0)}


def test_not_found_for_unknown_ids(stack: Stack) -> None:
    for method, path, body in (
        ("GET", "/reservations/res_nope", None),
        ("POST", "/reservations/res_nope/extend", {"holdSeconds": 300}),
        ("POST", "/reservations/res_nope/confirm", {"orderId": "o-1"}),
        ("POST", "/reservations/res_nope/release", {"reason": "cancelled"}),
        ("GET", f"/carts/{cart_id()}/reservation", None),
        ("GET", f"/stock/E2E-{uuid.uuid4().hex[:10]}", None),
    ):
        assert_error(stack.storefront.request(method, path, body), 404, "NOT_FOUND")


# --- the deadline ------------------------------------------------------------------------


def test_after_the_deadline_reads_expired_and_is_gone(stack: Stack) -> None:
    sku = stack.unique_sku(10)
    carts = [cart_id() for _ in range(3)]
    made = [reserved(stack.storefront, c, (sku, 2), holdSeconds=1) for c in carts]
    assert counters(stack.admin, sku) == {sku: (10, 4, 6, 0)}
    deadline = max(ts(r["expiresAt"]) for r in made)
    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.2)

    read, to_confirm, to_extend = (r["reservationId"] for r in made)
    res = reservation(stack.storefront, read)
    assert res["status"] == "EXPIRED"
    assert res["extensionsLeft"] == 0
    assert_error(stack.storefront.get(f"/carts/{carts[0]}/reservation"), 404, "NOT_FOUND")

    err = assert_error(
        stack.storefront.post(f"/reservations/{to_confirm}/confirm", {"orderId": "o-late"}), 410, "RESERVATION_EXPIRED"
    )
    assert err["details"].get("status") == "EXPIRED"
    err = assert_error(
        stack.storefront.post(f"/reservations/{to_extend}/extend", {"holdSeconds": 300}), 410, "RESERVATION_EXPIRED"
    )
    assert err["details"].get("status") == "EXPIRED"
    assert reservation(stack.storefront, to_confirm)["orderId"] is None

    # The confirm and extend attempts ended their holds: those 4 units are back, never allocated.
    # (The hold that was only read may or may not have been returned by the expiry timer yet.)
    s = stock_of(stack.admin, sku)
    assert (s["onHand"], s["allocated"]) == (10, 0), s
    assert (s["available"], s["reserved"]) in {(8, 2), (10, 0)}, s
    # An expired hold does not block its cart.
    again = reserve(stack.storefront, carts[0], (sku, 1))
    assert again.status == 201, again.body


# --- authentication and routes -----------------------------------------------------------


def test_missing_unknown_or_malformed_key_is_401(stack: Stack) -> None:
    sku = stack.unique_sku(3)
    before = counters(stack.admin, sku)
    cart = cart_id()
    for client, headers in (
        (stack.anonymous, {}),
        (stack.storefront.with_key("no-such-key"), {}),
        (stack.anonymous, {"Authorization": "Basic x"}),
        (stack.anonymous, {"Authorization": "Bearer "}),
    ):
        assert_error(client.get(f"/stock/{sku}", headers=headers), 401, "UNAUTHORIZED")
        reply = client.post("/reservations", {"cartId": cart, "items": [line(sku, 1)]}, headers=headers)
        assert_error(reply, 401, "UNAUTHORIZED")
        assert_error(client.put(f"/stock/{sku}", {"onHand": 99}, headers=headers), 401, "UNAUTHORIZED")
    assert counters(stack.admin, sku) == before
    assert_error(stack.storefront.get(f"/carts/{cart}/reservation"), 404, "NOT_FOUND")


def test_storefront_key_on_admin_routes_is_403(stack: Stack) -> None:
    sku = stack.unique_sku(5)
    ghost = f"E2E-{uuid.uuid4().hex[:10]}"
    before = counters(stack.admin, sku)
    for method, path, body in (
        ("PUT", f"/stock/{sku}", {"onHand": 99}),
        ("PUT", f"/stock/{ghost}", {"onHand": 99}),
        ("POST", f"/stock/{sku}/adjustments", {"delta": 5, "reason": "found"}),
        ("POST", f"/stock/{sku}/adjustments", {"delta": -5, "reason": "lost"}),
    ):
        assert_error(stack.storefront.request(method, path, body), 403, "FORBIDDEN")
    assert counters(stack.admin, sku) == before
    assert_error(stack.admin.get(f"/stock/{ghost}"), 404, "NOT_FOUND")


def test_openapi_document_needs_no_key(stack: Stack) -> None:
    reply = stack.anonymous.get("/openapi.json")
    assert reply.status == 200
    assert isinstance(reply.body, dict) and "paths" in reply.body
    assert any(p.startswith("/reservations") for p in reply.body["paths"])


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("DELETE", "/stock/X-1"), ("PUT", "/reservations")])
def test_a_route_not_in_the_template_is_404(stack: Stack, method: str, path: str) -> None:
    for client in (stack.admin, stack.anonymous):
        assert_error(client.request(method, path), 404, "NOT_FOUND")


# --- tenancy -----------------------------------------------------------------------------


def _same_as_missing(real: HttpReply, missing: HttpReply, real_id: str, missing_id: str) -> None:
    """Another store's resource answers exactly what a resource that never existed answers."""
    err = assert_error(real, 404, "NOT_FOUND")
    other = assert_error(missing, 404, "NOT_FOUND")
    assert json.dumps(real.body).replace(real_id, missing_id) == json.dumps(missing.body)
    assert err["details"] == other["details"]


def test_another_store_sees_nothing_and_changes_nothing(stack: Stack) -> None:
    sku = stack.unique_sku(10)
    cart = cart_id()
    res = reserved(stack.storefront, cart, (sku, 3))
    rid = res["reservationId"]
    before_res, before_stock = reservation(stack.storefront, rid), counters(stack.admin, sku)
    other_admin, other_front = stack.new_store()
    fake_rid = "res_" + "z" * (len(rid) - 4)
    fake_sku = "E2E-" + "z" * (len(sku) - 4)
    fake_cart = "cart-" + "z" * (len(cart) - 5)

    for method, suffix, body in (
        ("GET", "", None),
        ("POST", "/extend", {"holdSeconds": 600}),
        ("POST", "/confirm", {"orderId": "o-1"}),
        ("POST", "/release", {"reason": "cancelled"}),
    ):
        real = other_front.request(method, f"/reservations/{rid}{suffix}", body)
        missing = other_front.request(method, f"/reservations/{fake_rid}{suffix}", body)
        _same_as_missing(real, missing, rid, fake_rid)
    _same_as_missing(
        other_front.get(f"/carts/{cart}/reservation"),
        other_front.get(f"/carts/{fake_cart}/reservation"),
        cart,
        fake_cart,
    )
    for client in (other_front, other_admin):
        _same_as_missing(client.get(f"/stock/{sku}"), client.get(f"/stock/{fake_sku}"), sku, fake_sku)
    _same_as_missing(
        other_admin.post(f"/stock/{sku}/adjustments", {"delta": -3, "reason": "theft"}),
        other_admin.post(f"/stock/{fake_sku}/adjustments", {"delta": -3, "reason": "theft"}),
        sku,
        fake_sku,
    )
    listing = other_front.get(f"/stock?skus={sku}")
    assert (listing.status, listing.body) == (200, {"items": [], "missing": [sku]})
    # Reserving the first store's SKU finds no stock in the second store.
    err = assert_error(reserve(other_front, cart_id(), (sku, 1)), 409, "INSUFFICIENT_STOCK")
    assert err["details"]["items"] == [{"sku": sku, "requested": 1, "available": 0}]

    assert reservation(stack.storefront, rid) == before_res
    assert counters(stack.admin, sku) == before_stock

    # The second store's own stock of the same name is its own.
    assert other_admin.put(f"/stock/{sku}", {"onHand": 1}).status == 200
    assert counters(other_admin, sku) == {sku: (1, 1, 0, 0)}
    assert counters(stack.admin, sku) == before_stock


# --- bad input ---------------------------------------------------------------------------


def _cart(sku: str, cart: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"cartId": cart, "items": [line(sku, 1)]}
    body.update(overrides)
    return body


BAD_INPUTS: list[tuple[str, Any, dict[str, Any], int, str]] = [
    # id, body builder ((sku, cartId) -> body | bytes), extra headers, status, code
    ("quantity-0", lambda s, c: _cart(s, c, items=[line(s, 0)]), {}, 400, "VALIDATION_ERROR"),
    ("quantity-string-'2'", lambda s, c: _cart(s, c, items=[line(s, "2")]), {}, 400, "VALIDATION_ERROR"),
    ("quantity-2.5", lambda s, c: _cart(s, c, items=[line(s, 2.5)]), {}, 400, "VALIDATION_ERROR"),
    ("unknown-field-quantiy", lambda s, c: _cart(s, c, items=[{"sku": s, "quantiy": 1}]), {}, 400, "VALIDATION_ERROR"),
    ("unknown-top-level-field", lambda s, c: _cart(s, c, coupon="X"), {}, 400, "VALIDATION_ERROR"),
    ("duplicate-sku", lambda s, c: _cart(s, c, items=[line(s, 1), line(s, 1)]), {}, 400, "VALIDATION_ERROR"),
    (
        "97-lines",
        lambda s, c: _cart(s, c, items=[line(s, 1), *(line(f"X-{i:03d}", 1) for i in range(96))]),
        {},
        400,
        "VALIDATION_ERROR",
    ),
    ("empty-items", lambda s, c: _cart(s, c, items=[]), {}, 400, "VALIDATION_ERROR"),
    (
        "malformed-json",
        lambda s, c: ('{"cartId": "' + c + '", "items": [{"sku": "' + s).encode(),
        {},
        400,
        "VALIDATION_ERROR",
    ),
    ("body-70KiB", lambda s, c: _cart(s, c, customerId="x" * 70 * 1024), {}, 413, "PAYLOAD_TOO_LARGE"),
    ("binary-body", lambda s, c: b"\xff\xfe\x00{\x80\x81", {}, 400, "VALIDATION_ERROR"),
    (
        "content-type-text-plain",
        lambda s, c: _cart(s, c),
        {"Content-Type": "text/plain"},
        400,
        "VALIDATION_ERROR",
    ),
    ("holdSeconds-5000", lambda s, c: _cart(s, c, holdSeconds=5000), {}, 400, "VALIDATION_ERROR"),
    ("holdSeconds-0", lambda s, c: _cart(s, c, holdSeconds=0), {}, 400, "VALIDATION_ERROR"),
]


@pytest.fixture(scope="module")
def held(stack: Stack) -> tuple[str, str]:
    """One SKU with an active reservation on it: (sku, reservationId)."""
    sku = stack.unique_sku(10)
    return sku, reserved(stack.storefront, cart_id(), (sku, 2))["reservationId"]


@pytest.mark.parametrize(
    ("make", "headers", "status", "code"),
    [pytest.param(m, h, s, c, id=f"{i} -> {s} {c}") for i, m, h, s, c in BAD_INPUTS],
)
def test_bad_reservation_input_is_refused_and_changes_nothing(
    stack: Stack, held: tuple[str, str], make: Any, headers: dict[str, str], status: int, code: str
) -> None:
    sku, rid = held
    before_stock, before_res = stock_of(stack.admin, sku), reservation(stack.storefront, rid)
    cart = cart_id()
    made = make(sku, cart)
    if isinstance(made, bytes):
        reply = stack.storefront.post("/reservations", raw=made, headers=headers)
    else:
        reply = stack.storefront.request("POST", "/reservations", raw=json.dumps(made).encode(), headers=headers)
    assert_error(reply, status, code)
    assert stock_of(stack.admin, sku) == before_stock
    assert reservation(stack.storefront, rid) == before_res
    assert_error(stack.storefront.get(f"/carts/{cart}/reservation"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("extend", {"holdSeconds": 5000}),
        ("extend", {"holdSeconds": "300"}),
        ("confirm", {}),
        ("release", {"reason": "bored"}),
    ],
)
def test_bad_action_input_is_refused_and_changes_nothing(
    stack: Stack, held: tuple[str, str], action: str, body: dict[str, Any]
) -> None:
    sku, rid = held
    before_stock, before_res = stock_of(stack.admin, sku), reservation(stack.storefront, rid)
    assert_error(stack.storefront.post(f"/reservations/{rid}/{action}", body), 400, "VALIDATION_ERROR")
    assert stock_of(stack.admin, sku) == before_stock
    assert reservation(stack.storefront, rid) == before_res


def test_bad_stock_input_is_refused_and_changes_nothing(stack: Stack, held: tuple[str, str]) -> None:
    sku, _ = held
    before = stock_of(stack.admin, sku)
    for method, path, body in (
        ("PUT", f"/stock/{sku}", {"onHand": -1}),
        ("PUT", f"/stock/{sku}", {"onHand": "7"}),
        ("PUT", f"/stock/{sku}", {"onHand": 7, "onhand": 7}),
        ("POST", f"/stock/{sku}/adjustments", {"delta": 0, "reason": "r"}),
        ("POST", f"/stock/{sku}/adjustments", {"delta": 1.5, "reason": "r"}),
    ):
        assert_error(stack.admin.request(method, path, body), 400, "VALIDATION_ERROR")
    assert_error(stack.storefront.post("/stock/validate", {"items": [line(sku, 0)]}), 400, "VALIDATION_ERROR")
    assert_error(stack.storefront.get("/stock?skus=" + ",".join(f"X-{i}" for i in range(101))), 400, "VALIDATION_ERROR")
    assert stock_of(stack.admin, sku) == before


# --- idempotency -------------------------------------------------------------------------


def test_idempotent_replay_over_http(stack: Stack) -> None:
    a, b = stack.unique_sku(10), stack.unique_sku(10)
    cart = cart_id()
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    body = {"cartId": cart, "items": [line(a, 2)]}

    first = stack.storefront.post("/reservations", body, headers=key)
    assert first.status == 201, first.body
    assert "Idempotent-Replayed" not in first.headers
    assert counters(stack.admin, a) == {a: (10, 8, 2, 0)}

    again = stack.storefront.post("/reservations", body, headers=key)
    assert (again.status, again.body) == (201, first.body)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert counters(stack.admin, a) == {a: (10, 8, 2, 0)}  # held once

    for other in ({"cartId": cart, "items": [line(a, 3)]}, {"cartId": cart_id(), "items": [line(b, 1)]}):
        assert_error(stack.storefront.post("/reservations", other, headers=key), 409, "IDEMPOTENCY_KEY_REUSED")
    assert counters(stack.admin, a, b) == {a: (10, 8, 2, 0), b: (10, 10, 0, 0)}
    assert reservation(stack.storefront, first.body["reservationId"]) == first.body


def test_idempotent_adjustment_applies_once_over_http(stack: Stack) -> None:
    sku = stack.unique_sku(10)
    key = {"Idempotency-Key": f"adj-{uuid.uuid4().hex}"}
    first = stack.admin.post(f"/stock/{sku}/adjustments", {"delta": 5, "reason": "received"}, headers=key)
    assert first.status == 200, first.body
    again = stack.admin.post(f"/stock/{sku}/adjustments", {"delta": 5, "reason": "received"}, headers=key)
    assert (again.status, again.body) == (200, first.body)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert counters(stack.admin, sku) == {sku: (15, 15, 0, 0)}
