"""Checkout and orders through the real API handler (moto): the storefront's journey from
start to a fulfilled or cancelled order, what each step answers, and what each bad input
gets (a 4xx in the API.md shape that changes nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import ApiClient, ApiResponse

ON_HAND = {"A-1": 10, "B-2": 6, "C-3": 3}


def stock(admin: ApiClient, sku: str) -> dict[str, Any]:
    resp = admin.get(f"/stock/{sku}")
    assert resp.status == 200, resp.body
    return {k: resp.body[k] for k in ("onHand", "reserved", "allocated", "available")}


def error(resp: ApiResponse, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, (resp.status, resp.body)
    assert set(resp.body) == {"error"}, resp.body
    assert resp.body["error"]["code"] == code, resp.body
    return dict(resp.body["error"])


@pytest.fixture
def shop(api: ApiClient, admin: ApiClient) -> tuple[ApiClient, ApiClient]:
    for sku, n in ON_HAND.items():
        assert admin.put(f"/stock/{sku}", {"onHand": n, "lowStockThreshold": 2}).status == 200
    assert admin.put("/stock/EBOOK-1", {"onHand": 0, "unlimited": True}).status == 200
    return api, admin


def start(api: ApiClient, cart: str = "cart-1", **items: int) -> ApiResponse:
    lines = [{"sku": s.replace("_", "-"), "quantity": q} for s, q in (items or {"A_1": 2, "B_2": 1}).items()]
    return api.post("/checkouts", {"cartId": cart, "customerId": "u-9", "items": lines})


def test_happy_path_start_update_pay_complete_fulfil(shop: tuple[ApiClient, ApiClient]) -> None:
    api, admin = shop
    made = start(api, A_1=2, B_2=1, C_3=2)
    assert made.status == 201, made.body
    chk = made.body
    assert chk["status"] == "checkout"
    assert chk["reservation"]["status"] == "ACTIVE"
    assert chk["expiresAt"] == chk["reservation"]["expiresAt"]
    # C-3 has 1 left after the hold, at or below its threshold of 2: a warning, not a refusal.
    assert [(w["code"], w["sku"], w["available"]) for w in chk["warnings"]] == [("LOW_STOCK", "C-3", 1)]
    assert stock(admin, "C-3") == {"onHand": 3, "reserved": 2, "allocated": 0, "available": 1}

    cid = chk["checkoutId"]
    patched = api.patch(
        f"/checkouts/{cid}",
        {"shippingAddress": {"line1": "1 Main St", "city": "Berlin", "country": "DE"}, "step": "shipping"},
    )
    assert patched.status == 200, patched.body
    assert patched.body["shippingAddress"] == {"line1": "1 Main St", "city": "Berlin", "country": "DE"}
    assert patched.body["step"] == "shipping"
    # Plenty of time left (5 min > 2 min threshold): no extension used.
    assert patched.body["reservation"]["extensionsLeft"] == 3
    assert patched.body["expiresAt"] == chk["expiresAt"]

    paying = api.post(f"/checkouts/{cid}/payment")
    assert paying.status == 200, paying.body
    assert paying.body["step"] == "payment"
    assert paying.body["expiresAt"] > chk["expiresAt"]  # the payment window (15 min)
    assert paying.body["reservation"]["extensionsLeft"] == 3  # entering payment uses no extension

    done = api.post(f"/checkouts/{cid}/complete", {"paymentReference": "pay-123"})
    assert done.status == 201, done.body
    order = done.body
    assert order["status"] == "PLACED"
    assert order["checkoutId"] == cid
    assert order["paymentReference"] == "pay-123"
    assert {(x["sku"], x["quantity"]) for x in order["items"]} == {("A-1", 2), ("B-2", 1), ("C-3", 2)}
    after = api.get(f"/checkouts/{cid}").body
    assert (after["status"], after["orderId"], after["reservation"]["status"]) == (
        "completed",
        order["orderId"],
        "CONFIRMED",
    )
    assert stock(admin, "C-3") == {"onHand": 3, "reserved": 0, "allocated": 2, "available": 1}

    assert error(api.post(f"/orders/{order['orderId']}/fulfil"), 403, "FORBIDDEN")
    shipped = admin.post(f"/orders/{order['orderId']}/fulfil")
    assert shipped.status == 200, shipped.body
    assert shipped.body["status"] == "FULFILLED"
    assert stock(admin, "C-3") == {"onHand": 1, "reserved": 0, "allocated": 0, "available": 1}
    # Again: unchanged, nothing moves twice.
    assert admin.post(f"/orders/{order['orderId']}/fulfil").body["status"] == "FULFILLED"
    assert stock(admin, "C-3") == {"onHand": 1, "reserved": 0, "allocated": 0, "available": 1}
    err = error(api.post(f"/orders/{order['orderId']}/cancel"), 409, "ORDER_NOT_OPEN")
    assert err["details"] == {"status": "FULFILLED"}


def test_short_stock_at_start_lists_every_short_line_and_holds_nothing(shop: tuple[ApiClient, ApiClient]) -> None:
    api, admin = shop
    resp = start(api, A_1=2, B_2=7, C_3=4, Z_9=1)
    err = error(resp, 409, "INSUFFICIENT_STOCK")
    assert sorted((x["sku"], x["requested"], x["available"]) for x in err["details"]["items"]) == [
        ("B-2", 7, 6),
        ("C-3", 4, 3),
        ("Z-9", 1, 0),
    ]
    assert stock(admin, "A-1") == {"onHand": 10, "reserved": 0, "allocated": 0, "available": 10}
    assert api.get("/carts/cart-1/reservation").status == 404
    # The cart can still check out what there is.
    assert start(api, A_1=2).status == 201


def test_starting_again_resumes_the_open_checkout_and_a_changed_cart_swaps_its_hold(
    shop: tuple[ApiClient, ApiClient],
) -> None:
    api, admin = shop
    first = start(api, A_1=2).body
    again = start(api, A_1=2)
    assert again.status == 200  # resumed, not created
    assert again.body["checkoutId"] == first["checkoutId"]
    assert again.body["reservation"]["reservationId"] == first["reservation"]["reservationId"]
    assert stock(admin, "A-1")["reserved"] == 2  # no second hold

    changed = start(api, A_1=1, B_2=2)
    assert changed.status == 201, changed.body
    assert changed.body["checkoutId"] == first["checkoutId"]
    assert changed.body["reservation"]["reservationId"] != first["reservation"]["reservationId"]
    assert stock(admin, "A-1")["reserved"] == 1
    assert stock(admin, "B-2")["reserved"] == 2
    old = api.get(f"/reservations/{first['reservation']['reservationId']}").body
    assert (old["status"], old["endReason"]) == ("RELEASED", "replaced")


def test_a_plain_reservation_of_the_cart_is_taken_over_by_its_checkout(shop: tuple[ApiClient, ApiClient]) -> None:
    api, admin = shop
    held = api.post("/reservations", {"cartId": "cart-1", "items": [{"sku": "A-1", "quantity": 3}]}).body
    chk = start(api, A_1=2)
    assert chk.status == 201, chk.body
    assert stock(admin, "A-1")["reserved"] == 2
    assert api.get(f"/reservations/{held['reservationId']}").body["status"] == "RELEASED"
    # The checkout's hold is the checkout's: the reservation API will not end or swap it behind its back.
    rid = chk.body["reservation"]["reservationId"]
    err = error(api.post(f"/reservations/{rid}/confirm", {"orderId": "o-1"}), 409, "RESERVATION_HELD_BY_CHECKOUT")
    assert err["details"] == {"checkoutId": chk.body["checkoutId"]}
    replace = {"cartId": "cart-1", "items": [{"sku": "B-2", "quantity": 1}], "replace": True}
    error(api.post("/reservations", replace), 409, "RESERVATION_HELD_BY_CHECKOUT")
    assert stock(admin, "A-1")["reserved"] == 2
    assert stock(admin, "B-2")["reserved"] == 0


def test_payment_failure_returns_the_stock_and_the_checkout_to_active_then_retry_succeeds(
    shop: tuple[ApiClient, ApiClient],
) -> None:
    api, admin = shop
    chk = start(api, A_1=2).body
    cid = chk["checkoutId"]
    failed = api.post(f"/checkouts/{cid}/cancel", {"reason": "payment_failed"})
    assert failed.status == 200, failed.body
    assert failed.body["status"] == "active"
    assert failed.body["expiresAt"] is None
    assert stock(admin, "A-1") == {"onHand": 10, "reserved": 0, "allocated": 0, "available": 10}
    # Saying it again changes nothing; completing or paying needs a hold first.
    assert api.post(f"/checkouts/{cid}/cancel", {"reason": "payment_failed"}).body["status"] == "active"
    error(api.post(f"/checkouts/{cid}/complete", {"paymentReference": "p"}), 409, "CHECKOUT_NOT_OPEN")
    error(api.post(f"/checkouts/{cid}/payment"), 409, "CHECKOUT_NOT_OPEN")
    # Details may still be saved while active.
    assert api.patch(f"/checkouts/{cid}", {"paymentMethod": "card"}).status == 200

    retry = start(api, A_1=2)
    assert retry.status == 201, retry.body
    assert retry.body["checkoutId"] == cid
    assert retry.body["status"] == "checkout"
    assert retry.body["reservation"]["reservationId"] != chk["reservation"]["reservationId"]
    assert retry.body["paymentMethod"] == "card"
    order = api.post(f"/checkouts/{cid}/complete", {"paymentReference": "pay-2"})
    assert order.status == 201, order.body
    assert stock(admin, "A-1") == {"onHand": 10, "reserved": 0, "allocated": 2, "available": 8}


def test_cancel_releases_at_once_and_abandons(shop: tuple[ApiClient, ApiClient]) -> None:
    api, admin = shop
    cid = start(api, A_1=2).body["checkoutId"]
    gone = api.post(f"/checkouts/{cid}/cancel", {"reason": "cancelled"})
    assert gone.status == 200, gone.body
    assert (gone.body["status"], gone.body["endReason"]) == ("abandoned", "cancelled")
    assert stock(admin, "A-1")["available"] == 10
    assert api.post(f"/checkouts/{cid}/cancel", {"reason": "cancelled"}).body["status"] == "abandoned"
    error(api.post(f"/checkouts/{cid}/complete", {"paymentReference": "p"}), 409, "CHECKOUT_NOT_OPEN")
    error(api.patch(f"/checkouts/{cid}", {"step": "review"}), 409, "CHECKOUT_NOT_OPEN")
    # A new start for the cart is a new checkout.
    again = start(api, A_1=1)
    assert again.status == 201
    assert again.body["checkoutId"] != cid


def test_complete_retried_gives_one_order_and_one_allocation(shop: tuple[ApiClient, ApiClient]) -> None:
    api, admin = shop
    cid = start(api, A_1=2).body["checkoutId"]
    orders = [api.post(f"/checkouts/{cid}/complete", {"paymentReference": "pay-1"}) for _ in range(3)]
    assert [o.status for o in orders] == [201, 201, 201]
    assert len({o.body["orderId"] for o in orders}) == 1
    assert stock(admin, "A-1") == {"onHand": 10, "reserved": 0, "allocated": 2, "available": 8}
    # With an Idempotency-Key, the first answer is replayed as it was.
    keyed = api.post(f"/checkouts/{cid}/complete", {"paymentReference": "pay-1"}, headers={"Idempotency-Key": "k1"})
    assert keyed.body == orders[0].body
    err = error(api.post(f"/checkouts/{cid}/complete", {"paymentReference": "pay-OTHER"}), 409, "CHECKOUT_NOT_OPEN")
    assert err["details"] == {"status": "completed"}
    assert stock(admin, "A-1")["allocated"] == 2


def test_order_cancel_returns_allocated_units_exactly_once(shop: tuple[ApiClient, ApiClient]) -> None:
    api, admin = shop
    cid = start(api, B_2=4).body["checkoutId"]
    oid = api.post(f"/checkouts/{cid}/complete", {"paymentReference": "p"}).body["orderId"]
    assert api.get(f"/orders/{oid}").body["status"] == "PLACED"
    for _ in range(2):
        resp = api.post(f"/orders/{oid}/cancel")
        assert (resp.status, resp.body["status"]) == (200, "CANCELLED")
    assert stock(admin, "B-2") == {"onHand": 6, "reserved": 0, "allocated": 0, "available": 6}
    error(admin.post(f"/orders/{oid}/fulfil"), 409, "ORDER_NOT_OPEN")


def test_a_plain_confirm_creates_the_order_it_names(shop: tuple[ApiClient, ApiClient]) -> None:
    api, admin = shop
    rid = api.post("/reservations", {"cartId": "c-9", "items": [{"sku": "A-1", "quantity": 3}]}).body["reservationId"]
    assert api.post(f"/reservations/{rid}/confirm", {"orderId": "web-1001"}).status == 200
    order = api.get("/orders/web-1001").body
    assert (order["status"], order["reservationId"], order["checkoutId"]) == ("PLACED", rid, None)
    assert admin.post("/orders/web-1001/fulfil").body["status"] == "FULFILLED"
    assert stock(admin, "A-1") == {"onHand": 7, "reserved": 0, "allocated": 0, "available": 7}
    # Another hold cannot be confirmed into an existing order.
    other = api.post("/reservations", {"cartId": "c-8", "items": [{"sku": "A-1", "quantity": 1}]}).body
    err = error(
        api.post(f"/reservations/{other['reservationId']}/confirm", {"orderId": "web-1001"}), 409, "ORDER_ID_TAKEN"
    )
    assert err["details"]["of"] == rid
    assert api.get(f"/reservations/{other['reservationId']}").body["status"] == "ACTIVE"
    assert stock(admin, "A-1")["reserved"] == 1


def test_unlimited_items_pass_through_checkout_and_orders_without_counters(shop: tuple[ApiClient, ApiClient]) -> None:
    api, admin = shop
    chk = api.post(
        "/checkouts",
        {"cartId": "c-dl", "items": [{"sku": "EBOOK-1", "quantity": 5}, {"sku": "A-1", "quantity": 1}]},
    )
    assert chk.status == 201, chk.body
    assert chk.body["warnings"] == []
    order = api.post(f"/checkouts/{chk.body['checkoutId']}/complete", {"paymentReference": "p"}).body
    assert {x["sku"]: x["unlimited"] for x in order["items"]} == {"EBOOK-1": True, "A-1": False}
    assert stock(admin, "EBOOK-1") == {"onHand": 0, "reserved": 0, "allocated": 0, "available": 0}
    assert admin.post(f"/orders/{order['orderId']}/fulfil").status == 200
    assert stock(admin, "EBOOK-1") == {"onHand": 0, "reserved": 0, "allocated": 0, "available": 0}
    assert stock(admin, "A-1") == {"onHand": 9, "reserved": 0, "allocated": 0, "available": 9}


def test_unknown_and_other_stores_checkouts_and_orders_are_404(shop: tuple[ApiClient, ApiClient]) -> None:
    api, _ = shop
    cid = start(api).body["checkoutId"]
    other = api.as_(store="acme")
    error(other.get(f"/checkouts/{cid}"), 404, "NOT_FOUND")
    error(other.post(f"/checkouts/{cid}/complete", {"paymentReference": "p"}), 404, "NOT_FOUND")
    error(api.get("/checkouts/chk_nope"), 404, "NOT_FOUND")
    error(api.get("/orders/nope"), 404, "NOT_FOUND")
    error(api.post("/orders/nope/cancel"), 404, "NOT_FOUND")


# --- bad input: 400 in the API.md shape, nothing changes -----------------------------------

CHK = "/checkouts/{cid}"
BAD = [
    ("start-no-cart", "POST", "/checkouts", {"items": [{"sku": "A-1", "quantity": 1}]}, ("cartId",)),
    ("start-no-items", "POST", "/checkouts", {"cartId": "c"}, ("items",)),
    ("start-empty-items", "POST", "/checkouts", {"cartId": "c", "items": []}, ("items",)),
    ("start-quantity-zero", "POST", "/checkouts", {"cartId": "c", "items": [{"sku": "A-1", "quantity": 0}]}, ()),
    (
        "start-duplicate-sku",
        "POST",
        "/checkouts",
        {"cartId": "c", "items": [{"sku": "A-1", "quantity": 1}, {"sku": "A-1", "quantity": 1}]},
        ("items",),
    ),
    ("start-typo", "POST", "/checkouts", {"cartId": "c", "items": [{"sku": "A-1", "quantiy": 1}]}, ()),
    ("start-holdSeconds-not-accepted", "POST", "/checkouts", {"cartId": "c", "items": [], "holdSeconds": 9}, ()),
    ("patch-empty", "PATCH", CHK, {}, ("body",)),
    ("patch-unknown-field", "PATCH", CHK, {"coupon": "X"}, ("coupon",)),
    ("patch-bad-country", "PATCH", CHK, {"shippingAddress": {"country": "Germany"}}, ("shippingAddress.country",)),
    ("patch-address-typo", "PATCH", CHK, {"billingAddress": {"zip": "1"}}, ("billingAddress.zip",)),
    ("patch-step-upper", "PATCH", CHK, {"step": "Review"}, ("step",)),
    ("patch-status-is-not-writable", "PATCH", CHK, {"status": "completed"}, ("status",)),
    ("payment-body-field", "POST", CHK + "/payment", {"amount": 5}, ("amount",)),
    ("complete-no-reference", "POST", CHK + "/complete", {}, ("paymentReference",)),
    ("complete-empty-reference", "POST", CHK + "/complete", {"paymentReference": ""}, ("paymentReference",)),
    ("cancel-bad-reason", "POST", CHK + "/cancel", {"reason": "manual"}, ("reason",)),
    ("cancel-no-body", "POST", CHK + "/cancel", None, ()),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "fields"), BAD, ids=[b[0] for b in BAD])
def test_bad_checkout_input_is_a_400_and_changes_nothing(
    shop: tuple[ApiClient, ApiClient], name: str, method: str, path: str, body: Any, fields: tuple[str, ...]
) -> None:
    api, admin = shop
    cid = start(api, cart="cart-x", A_1=1).body["checkoutId"]
    before = (api.get(f"/checkouts/{cid}").body, stock(admin, "A-1"))
    err = error(api.call(method, path.format(cid=cid), body), 400, "VALIDATION_ERROR")
    named = {f["field"] for f in err["details"]["fields"]}
    for f in fields:
        assert any(n == f or n.endswith("." + f) or n.startswith(f) for n in named), (f, named)
    assert (api.get(f"/checkouts/{cid}").body, stock(admin, "A-1")) == before
