"""End-to-end, over HTTP: API.md's "Stock in many places" (locations, allocation, purchase
limits) driven as a storefront and its admin would, against the local stack.

Each test makes its own store (``stack.new_store()``) and defines every location before it
reads or reserves anything: a running API container reserves on its copy of the store's
locations for up to LOCATIONS_CACHE_SECONDS, and a fresh store has no copy anywhere yet.
Every refused request is checked against API.md's error shape and to have changed nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Http, HttpReply, Stack
from tests.e2e.test_storefront_http import STOCK_FIELDS, assert_error

pytestmark = pytest.mark.e2e

DEFAULT = {"locationId": "default", "name": "Default", "priority": 0, "active": True}
Cell = tuple[int, int, int, int]  # (onHand, reserved, allocated, available)


# --- helpers -----------------------------------------------------------------------------


def new_sku() -> str:
    return f"LOC-{uuid.uuid4().hex[:10]}"


def new_cart() -> str:
    return f"cart-{uuid.uuid4().hex[:12]}"


def items(lines: dict[str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()]


def define(admin: Http, **priorities: int) -> None:
    """PUT /locations/{id} for each ``id=priority``; each answer is the Location it set."""
    for location_id, priority in priorities.items():
        name = location_id.replace("_", "-")
        reply = admin.put(f"/locations/{name}", {"name": f"{name} (e2e)", "priority": priority})
        assert reply.status == 200, reply.body
        assert reply.body == {"locationId": name, "name": f"{name} (e2e)", "priority": priority, "active": True}


def stock_at(admin: Http, sku: str, **on_hand: int) -> None:
    """PUT /stock/{sku}/locations/{id} for each ``id=onHand`` (underscores spell dashes)."""
    for location_id, units in on_hand.items():
        reply = admin.put(f"/stock/{sku}/locations/{location_id.replace('_', '-')}", {"onHand": units})
        assert reply.status == 200, reply.body


def totals(body: dict[str, Any]) -> Cell:
    return body["onHand"], body["reserved"], body["allocated"], body["available"]


def cells_of(body: dict[str, Any]) -> dict[str, Cell]:
    """A Stock body's per-location cells (the ``default`` cell left out while it is empty), after
    checking API.md's rule that the top-level counters are the sums over the locations."""
    listed = body.get("locations")
    assert isinstance(listed, list) and listed, body
    cells = {c["locationId"]: (c["onHand"], c["reserved"], c["allocated"], c["available"]) for c in listed}
    assert len(cells) == len(listed), listed  # each location at most once
    sums = tuple(sum(cell[i] for cell in cells.values()) for i in range(4))
    assert sums == totals(body), (sums, body)
    for on_hand, reserved, allocated, available in cells.values():
        assert available == on_hand - reserved - allocated, body
    return {k: v for k, v in cells.items() if not (k == "default" and v == (0, 0, 0, 0))}


def cells(client: Http, sku: str) -> dict[str, Cell]:
    """GET /stock/{sku}'s cells; GET /stock?skus= must answer the same counters."""
    one = client.get(f"/stock/{sku}")
    assert one.status == 200, one.body
    listed = client.get(f"/stock?skus={sku}")
    assert listed.status == 200 and listed.body["missing"] == [], listed.body
    (many,) = listed.body["items"]
    assert {k: v for k, v in many.items() if k != "updatedAt"} == {
        k: v for k, v in one.body.items() if k != "updatedAt"
    }
    return cells_of(one.body)


def allocations(line: dict[str, Any]) -> dict[str, int]:
    """A line's allocations as {locationId: quantity}; their quantities add up to the line's."""
    parts = line["allocations"]
    where = {a["locationId"]: a["quantity"] for a in parts}
    assert len(where) == len(parts) and sum(where.values()) == line["quantity"], line
    assert all(q > 0 for q in where.values()), line
    return where


def reserve(front: Http, cart: str, lines: dict[str, int], **fields: Any) -> HttpReply:
    return front.post("/reservations", {"cartId": cart, "items": items(lines), **fields})


def no_hold(front: Http, cart: str) -> None:
    reply = front.get(f"/carts/{cart}/reservation")
    assert_error(reply, 404, "NOT_FOUND")


def shop_store(stack: Stack) -> tuple[Http, Http, str]:
    """A store with a warehouse (allocates first) and a shop, and one SKU stocked in both:
    leeds-dc 10, leeds-shop 3. Returns (admin, storefront, sku)."""
    admin, front = stack.new_store()
    define(admin, leeds_dc=10, leeds_shop=20)
    sku = new_sku()
    stock_at(admin, sku, leeds_dc=10, leeds_shop=3)
    return admin, front, sku


# --- journeys ----------------------------------------------------------------------------


def test_click_and_collect_holds_at_the_chosen_shop_only_and_the_order_keeps_where_from(stack: Stack) -> None:
    """locationIds=["leeds-shop"] takes every unit from the shop, although the warehouse has the
    lower priority (and so would allocate first): the answer, GET /stock's per-location
    breakdown, the confirmed reservation and the order lines all say leeds-shop."""
    admin, front, sku = shop_store(stack)
    listed = front.get("/locations")  # any role reads, in allocation order
    assert listed.status == 200, listed.body
    assert [(x["locationId"], x["priority"], x["active"]) for x in listed.body["items"]] == [
        ("default", 0, True),
        ("leeds-dc", 10, True),
        ("leeds-shop", 20, True),
    ]
    stocked = {"leeds-dc": (10, 0, 0, 10), "leeds-shop": (3, 0, 0, 3)}
    assert cells(front, sku) == stocked

    # More than the shop has: refused, with what the shop could have given; nothing spills to the DC.
    cart = new_cart()
    short = reserve(front, cart, {sku: 4}, customerId="shopper-1", locationIds=["leeds-shop"])
    err = assert_error(short, 409, "INSUFFICIENT_STOCK")
    assert err["details"]["items"] == [{"sku": sku, "requested": 4, "available": 3}]
    assert cells(admin, sku) == stocked
    no_hold(front, cart)

    made = reserve(front, cart, {sku: 2}, customerId="shopper-1", locationIds=["leeds-shop"])
    assert made.status == 201, made.body
    (held,) = made.body["items"]
    assert (held["sku"], held["quantity"], allocations(held), held["backordered"]) == (sku, 2, {"leeds-shop": 2}, 0)
    rid = made.body["reservationId"]
    assert cells(front, sku) == {"leeds-dc": (10, 0, 0, 10), "leeds-shop": (3, 2, 0, 1)}
    stock = admin.get(f"/stock/{sku}").body
    assert totals(stock) == (13, 2, 0, 11)

    # The same line without locationIds comes from the warehouse, the lower priority; its
    # release gives the units back there.
    other = reserve(front, new_cart(), {sku: 2})
    assert other.status == 201, other.body
    assert allocations(other.body["items"][0]) == {"leeds-dc": 2}
    assert cells(admin, sku) == {"leeds-dc": (10, 2, 0, 8), "leeds-shop": (3, 2, 0, 1)}
    gone = front.post(f"/reservations/{other.body['reservationId']}/release", {"reason": "cancelled"})
    assert (gone.status, gone.body["status"]) == (200, "RELEASED"), gone.body
    assert cells(admin, sku) == {"leeds-dc": (10, 0, 0, 10), "leeds-shop": (3, 2, 0, 1)}

    # Confirm: the shop's units move from reserved to allocated; the order remembers the shop.
    order_id = f"ord-cc-{uuid.uuid4().hex[:8]}"
    confirmed = front.post(f"/reservations/{rid}/confirm", {"orderId": order_id})
    assert (confirmed.status, confirmed.body["status"], confirmed.body["orderId"]) == (200, "CONFIRMED", order_id)
    assert [allocations(x) for x in confirmed.body["items"]] == [{"leeds-shop": 2}]
    assert cells(admin, sku) == {"leeds-dc": (10, 0, 0, 10), "leeds-shop": (3, 0, 2, 1)}
    order = front.get(f"/orders/{order_id}")
    assert (order.status, order.body["status"], order.body["reservationId"]) == (200, "PLACED", rid), order.body
    (ordered,) = order.body["items"]
    assert (ordered["sku"], ordered["quantity"], ordered["unlimited"]) == (sku, 2, False)
    assert (allocations(ordered), ordered["backordered"]) == ({"leeds-shop": 2}, 0)


def test_a_line_larger_than_any_location_is_split_by_priority_and_fulfil_takes_each_part_where_it_was(
    stack: Stack,
) -> None:
    """12 units when no location has more than 6: the checkout's hold takes north 4, south 5 and
    york 3 (by priority, not by most available: york has the most); split=false for the same
    line is refused. After payment, complete and fulfil, each location's onHand went down by
    exactly its part, and the totals are the sums."""
    admin, front = stack.new_store()
    define(admin, north_dc=10, south_dc=20, york_shop=30)
    big, small = new_sku(), new_sku()
    stock_at(admin, big, north_dc=4, south_dc=5, york_shop=6)
    stock_at(admin, small, york_shop=7)
    before_big = {"north-dc": (4, 0, 0, 4), "south-dc": (5, 0, 0, 5), "york-shop": (6, 0, 0, 6)}
    assert cells(admin, big) == before_big

    whole = front.post("/checkouts", {"cartId": new_cart(), "items": items({big: 12}), "split": False})
    err = assert_error(whole, 409, "INSUFFICIENT_STOCK")
    assert err["details"]["items"] == [{"sku": big, "requested": 12, "available": 6}]  # the most one location has
    assert cells(admin, big) == before_big

    cart = new_cart()
    started = front.post("/checkouts", {"cartId": cart, "customerId": "shopper-2", "items": items({big: 12, small: 2})})
    assert started.status == 201, started.body
    cid, rid = started.body["checkoutId"], started.body["reservation"]["reservationId"]
    hold = front.get(f"/reservations/{rid}")
    assert hold.status == 200, hold.body
    parts = {x["sku"]: allocations(x) for x in hold.body["items"]}
    assert parts == {big: {"north-dc": 4, "south-dc": 5, "york-shop": 3}, small: {"york-shop": 2}}
    assert cells(admin, big) == {"north-dc": (4, 4, 0, 0), "south-dc": (5, 5, 0, 0), "york-shop": (6, 3, 0, 3)}

    paying = front.post(f"/checkouts/{cid}/payment")
    assert paying.status == 200, paying.body
    done = front.post(f"/checkouts/{cid}/complete", {"paymentReference": "psp-split"})
    assert done.status == 201, done.body
    order_id = done.body["orderId"]
    assert {x["sku"]: allocations(x) for x in done.body["items"]} == parts
    assert cells(admin, big) == {"north-dc": (4, 0, 4, 0), "south-dc": (5, 0, 5, 0), "york-shop": (6, 0, 3, 3)}

    shipped = admin.post(f"/orders/{order_id}/fulfil")
    assert (shipped.status, shipped.body["status"]) == (200, "FULFILLED"), shipped.body
    assert {x["sku"]: allocations(x) for x in shipped.body["items"]} == parts
    after_big, after_small = cells(admin, big), cells(admin, small)
    for location_id, (on_hand, *_) in before_big.items():
        assert after_big[location_id][0] == on_hand - parts[big][location_id], (location_id, after_big)
    assert after_big == {"north-dc": (0, 0, 0, 0), "south-dc": (0, 0, 0, 0), "york-shop": (3, 0, 0, 3)}
    assert after_small == {"york-shop": (5, 0, 0, 5)}
    listed = admin.get(f"/stock?skus={big},{small}")
    assert {x["sku"]: totals(x) for x in listed.body["items"]} == {big: (3, 0, 0, 3), small: (5, 0, 0, 5)}
    assert front.get(f"/orders/{order_id}").body["status"] == "FULFILLED"


# --- bad inputs: a clear 4xx in API.md's error shape, and nothing changed ------------------


def test_an_unknown_location_in_location_ids_is_404_not_found_and_holds_nothing(stack: Stack) -> None:
    """A reservation or checkout naming a location the store never defined: 404 NOT_FOUND with
    details.locationIds naming it (also next to a known one); no units held anywhere."""
    admin, front, sku = shop_store(stack)
    before = cells(admin, sku)
    cart = new_cart()
    for ids in (["nowhere"], ["leeds-shop", "nowhere"]):
        for path in ("/reservations", "/checkouts"):
            reply = front.post(path, {"cartId": cart, "items": items({sku: 1}), "locationIds": ids})
            err = assert_error(reply, 404, "NOT_FOUND")
            assert err["details"]["locationIds"] == ["nowhere"], err
    assert cells(admin, sku) == before
    no_hold(front, cart)


def test_a_bad_priority_is_400_validation_error_and_leaves_the_locations_as_they_were(stack: Stack) -> None:
    """PUT /locations/{id} with a priority the schema refuses (not an integer, a string, a
    boolean, null, outside -1000000..1000000): 400 VALIDATION_ERROR naming priority, for an
    existing location (unchanged) and a new one (not made). A negative priority in range is valid."""
    admin, front, sku = shop_store(stack)
    before = front.get("/locations").body
    stocked = cells(admin, sku)
    for bad in (1.5, "10", True, None, 1_000_001, -1_000_001, 10**20):
        for location_id in ("leeds-shop", "ghost"):
            reply = admin.put(f"/locations/{location_id}", {"name": "Changed", "priority": bad})
            err = assert_error(reply, 400, "VALIDATION_ERROR")
            assert [f["field"] for f in err["details"]["fields"]] == ["priority"], (bad, err)
    missing = admin.put("/locations/ghost", {"name": "Ghost"})
    assert [f["field"] for f in assert_error(missing, 400, "VALIDATION_ERROR")["details"]["fields"]] == ["priority"]
    assert front.get("/locations").body == before
    assert cells(admin, sku) == stocked
    assert_error(front.put("/locations/ghost", {"name": "Ghost", "priority": 1}), 403, "FORBIDDEN")
    # The schema's range includes negatives: one sorts before default (priority 0).
    outlet = admin.put("/locations/outlet", {"name": "Outlet", "priority": -5, "active": False})
    assert (outlet.status, outlet.body["priority"]) == (200, -5), outlet.body
    assert [x["locationId"] for x in front.get("/locations").body["items"]][:2] == ["outlet", "default"]


def test_duplicate_location_ids_are_400_validation_error_and_hold_nothing(stack: Stack) -> None:
    """locationIds naming one location twice (the schema says uniqueItems): 400 VALIDATION_ERROR
    naming locationIds, on a reservation and a checkout; no units held."""
    admin, front, sku = shop_store(stack)
    before = cells(admin, sku)
    cart = new_cart()
    for ids in (["leeds-shop", "leeds-shop"], ["leeds-dc", "leeds-shop", "leeds-dc"]):
        for path in ("/reservations", "/checkouts"):
            reply = front.post(path, {"cartId": cart, "items": items({sku: 1}), "locationIds": ids})
            err = assert_error(reply, 400, "VALIDATION_ERROR")
            assert [f["field"] for f in err["details"]["fields"]] == ["locationIds"], err
    empty = reserve(front, cart, {sku: 1}, locationIds=[])
    assert [f["field"] for f in assert_error(empty, 400, "VALIDATION_ERROR")["details"]["fields"]] == ["locationIds"]
    assert cells(admin, sku) == before
    no_hold(front, cart)


def test_a_sku_with_max_per_customer_without_customer_id_is_400_validation_error(stack: Stack) -> None:
    """A store without locations (the one-request path, re-planned when the SKU shows a limit):
    a reserve or checkout of a SKU with maxPerCustomer and no customerId (left out or null) is
    400 VALIDATION_ERROR naming customerId; nothing held. With a customerId the same line holds."""
    admin, front = stack.new_store()
    sku, plain = new_sku(), new_sku()
    assert admin.put(f"/stock/{sku}", {"onHand": 10, "maxPerCustomer": 3}).status == 200
    assert admin.put(f"/stock/{plain}", {"onHand": 10}).status == 200
    before = {s: totals(admin.get(f"/stock/{s}").body) for s in (sku, plain)}
    cart = new_cart()
    for path in ("/reservations", "/checkouts"):
        for who in ({}, {"customerId": None}):
            reply = front.post(path, {"cartId": cart, "items": items({plain: 1, sku: 1}), **who})
            err = assert_error(reply, 400, "VALIDATION_ERROR")
            assert [f["field"] for f in err["details"]["fields"]] == ["customerId"], err
    assert {s: totals(admin.get(f"/stock/{s}").body) for s in (sku, plain)} == before
    no_hold(front, cart)
    made = reserve(front, cart, {plain: 1, sku: 1}, customerId="shopper-3")
    assert made.status == 201, made.body
    assert totals(admin.get(f"/stock/{sku}").body) == (10, 1, 0, 9)


def test_stock_at_an_unknown_location_is_404_not_found_and_creates_nothing(stack: Stack) -> None:
    """PUT /stock/{sku}/locations/{id} and an adjustment with locationId, for a location the
    store never defined: 404 NOT_FOUND (API.md: unknown location), for an existing SKU
    (unchanged) and a new one (not created)."""
    admin, front, sku = shop_store(stack)
    before = cells(admin, sku)
    fresh = new_sku()
    for target in (sku, fresh):
        put = admin.put(f"/stock/{target}/locations/nowhere", {"onHand": 5})
        assert_error(put, 404, "NOT_FOUND")
        adjusted = admin.post(f"/stock/{target}/adjustments", {"delta": 5, "reason": "found", "locationId": "nowhere"})
        assert_error(adjusted, 404, "NOT_FOUND")
    assert cells(admin, sku) == before
    assert_error(admin.get(f"/stock/{fresh}"), 404, "NOT_FOUND")
    # PUT /stock/{sku} with onHand sets default: on a SKU stocked elsewhere that is 409 STOCK_CONFLICT.
    assert_error(admin.put(f"/stock/{sku}", {"onHand": 50}), 409, "STOCK_CONFLICT")
    assert cells(front, sku) == before


def test_purchase_limits_are_409_purchase_limit_reached_and_hold_nothing(stack: Stack) -> None:
    """A line over maxPerCart (reservation, checkout, click and collect): 409
    PURCHASE_LIMIT_REACHED, details.items {sku, requested, limit, used}; a customer's second cart
    over maxPerCustomer: the same code, used = what the first cart holds. Nothing held by either."""
    admin, front, sku = shop_store(stack)
    limited = admin.put(f"/stock/{sku}", {"maxPerCart": 2, "maxPerCustomer": 3})
    assert limited.status == 200, limited.body
    assert (limited.body["maxPerCart"], limited.body["maxPerCustomer"]) == (2, 3)
    before = cells(admin, sku)
    cart = new_cart()
    over_cart = [{"sku": sku, "requested": 3, "limit": 2, "used": 0}]
    for path, extra in [
        ("/reservations", {}),
        ("/checkouts", {}),
        ("/reservations", {"locationIds": ["leeds-shop"]}),
    ]:
        reply = front.post(path, {"cartId": cart, "customerId": "shopper-4", "items": items({sku: 3}), **extra})
        err = assert_error(reply, 409, "PURCHASE_LIMIT_REACHED")
        assert err["details"]["items"] == over_cart, (path, err)
    assert cells(admin, sku) == before
    no_hold(front, cart)

    first = reserve(front, cart, {sku: 2}, customerId="shopper-4", locationIds=["leeds-shop"])
    assert first.status == 201, first.body
    held = cells(admin, sku)
    second_cart = new_cart()
    second = reserve(front, second_cart, {sku: 2}, customerId="shopper-4")
    err = assert_error(second, 409, "PURCHASE_LIMIT_REACHED")
    assert err["details"]["items"] == [{"sku": sku, "requested": 2, "limit": 3, "used": 2}]
    assert cells(admin, sku) == held
    no_hold(front, second_cart)
    # Another customer is not counted against shopper-4.
    assert reserve(front, second_cart, {sku: 2}, customerId="shopper-5").status == 201


# --- defect: POST /stock/validate ignores how a reservation would allocate ----------------


def test_validate_answers_what_a_reservation_of_the_same_line_would_get(stack: Stack) -> None:
    """POST /stock/validate ("Could these lines be held now?") must agree with POST /reservations
    of the same line: stock sitting only in an inactive location cannot be held (API.md: never
    allocated from), and a line a backorderLimit covers can. Fails today: validate sums every
    cell's available (inactive ones included) and ignores the backorder limit."""
    admin, front = stack.new_store()
    closed = admin.put("/locations/closed-dc", {"name": "Closed DC", "priority": 10, "active": False})
    assert closed.status == 200, closed.body
    define(admin, leeds_shop=20)
    idle, backorderable = new_sku(), new_sku()
    stock_at(admin, idle, closed_dc=10, leeds_shop=1)
    stock_at(admin, backorderable, leeds_shop=3)
    assert admin.put(f"/stock/{backorderable}", {"backorderLimit": 5}).status == 200

    checked = front.post("/stock/validate", {"items": items({idle: 5, backorderable: 6})})
    assert checked.status == 200, checked.body
    says = {x["sku"]: x for x in checked.body["items"]}
    idle_hold = reserve(front, new_cart(), {idle: 5})
    assert_error(idle_hold, 409, "INSUFFICIENT_STOCK")
    assert idle_hold.body["error"]["details"]["items"] == [{"sku": idle, "requested": 5, "available": 1}]
    backorder_hold = reserve(front, new_cart(), {backorderable: 6})
    assert backorder_hold.status == 201, backorder_hold.body
    assert backorder_hold.body["items"][0]["backordered"] == 3

    could_hold = {sku: says[sku]["status"] != "OUT_OF_STOCK" for sku in (idle, backorderable)}
    assert could_hold == {idle: False, backorderable: True}, checked.body
    assert says[idle]["available"] == 1, checked.body  # what the reservation's refusal says it could use


# --- a store that never defines locations: the answers of before -------------------------


def test_a_store_without_locations_lists_only_default_and_answers_without_allocation_fields(stack: Stack) -> None:
    """GET /locations is just the implicit default; Stock, reservation, confirmation and order
    answers carry none of the new fields (locations, allocations, backordered, limits), even for
    a request that names locationIds=["default"]."""
    admin, front = stack.new_store()
    listed = front.get("/locations")
    assert (listed.status, listed.body) == (200, {"items": [DEFAULT]})
    sku = new_sku()
    put = admin.put(f"/stock/{sku}", {"onHand": 5})
    assert put.status == 200, put.body
    assert set(put.body) == STOCK_FIELDS | {"lowStockThreshold"}, put.body

    made = reserve(front, new_cart(), {sku: 2}, customerId="shopper-6")
    assert made.status == 201, made.body
    assert made.body["items"] == [{"sku": sku, "quantity": 2}]
    named = reserve(front, new_cart(), {sku: 1}, locationIds=["default"])
    assert named.status == 201, named.body
    assert named.body["items"] == [{"sku": sku, "quantity": 1}]
    stock = admin.get(f"/stock/{sku}").body
    assert set(stock) == STOCK_FIELDS | {"lowStockThreshold"}, stock
    assert totals(stock) == (5, 3, 0, 2)

    order_id = f"ord-plain-{uuid.uuid4().hex[:8]}"
    confirmed = front.post(f"/reservations/{made.body['reservationId']}/confirm", {"orderId": order_id})
    assert confirmed.status == 200, confirmed.body
    assert confirmed.body["items"] == [{"sku": sku, "quantity": 2}]
    order = front.get(f"/orders/{order_id}")
    assert order.status == 200, order.body
    assert order.body["items"] == [{"sku": sku, "quantity": 2, "unlimited": False}]
    assert front.get("/locations").body == {"items": [DEFAULT]}
