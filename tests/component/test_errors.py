"""Every error code of API.md, reached through the API, with its status and details,
and the success paths that sit next to them (replace, idempotent replay, confirm and
release again). Every test that changes stock ends by checking the counters' invariant.
"""

from __future__ import annotations

import json
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from stockhold.domain import ids as service
from tests.helpers import (
    ApiClient,
    ApiResponse,
    LambdaContext,
    assert_error,
    assert_invariant,
    load_function,
    stock_view,
)
from tools import apigw

# --- helpers -----------------------------------------------------------------------------


def line(sku: str, quantity: int) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity}


def stock(admin: ApiClient, **on_hand: int) -> None:
    """Stock SKUs given as A_1=10 (underscores become dashes)."""
    for sku, n in on_hand.items():
        resp = admin.put(f"/stock/{sku.replace('_', '-')}", {"onHand": n})
        assert resp.status == 200, resp.body


def reserve(api: ApiClient, cart: str, *lines: tuple[str, int], **extra: Any) -> ApiResponse:
    return api.post("/reservations", {"cartId": cart, "items": [line(s, q) for s, q in lines], **extra})


def reserved_id(api: ApiClient, cart: str, *lines: tuple[str, int], **extra: Any) -> str:
    resp = reserve(api, cart, *lines, **extra)
    assert resp.status == 201, resp.body
    return str(resp.body["reservationId"])


def counters(client: ApiClient, *skus: str) -> dict[str, tuple[int, int, int, int]]:
    """(onHand, available, reserved, allocated) per SKU; the invariant is checked on every read."""
    view = stock_view(client, skus)
    assert_invariant(view)
    return {s: (v["onHand"], v["available"], v["reserved"], v["allocated"]) for s, v in view.items() if v}


def reservation(api: ApiClient, rid: str) -> dict[str, Any]:
    resp = api.get(f"/reservations/{rid}")
    assert resp.status == 200, resp.body
    return dict(resp.body)


class Clock:
    """The service's clock (stockhold.domain.ids.now_ms reads time.time_ns), frozen and moved by hand.

    Only the service's view of time moves: moto, botocore and Powertools keep the real clock."""

    def __init__(self) -> None:
        self.ns = time.time_ns()

    def time_ns(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1_000_000_000)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(service, "time", types.SimpleNamespace(time_ns=c.time_ns))
    return c


@pytest.fixture
def shop(api: ApiClient, admin: ApiClient) -> Iterator[None]:
    """A-1: 10, B-2: 5, C-3: 3 in store demo."""
    stock(admin, A_1=10, B_2=5, C_3=3)
    yield
    counters(admin, "A-1", "B-2", "C-3")  # invariant at the end of every test


# --- 401 / 403 ---------------------------------------------------------------------------

AUTH_ROUTES = [
    ("GET", "/stock/A-1", None),
    ("PUT", "/stock/A-1", {"onHand": 99}),
    ("POST", "/stock/A-1/adjustments", {"delta": 5, "reason": "found"}),
    ("POST", "/reservations", {"cartId": "c-401", "items": [line("A-1", 1)]}),
    ("GET", "/reservations/res_x", None),
    ("GET", "/carts/c-1/reservation", None),
]


@pytest.mark.parametrize(
    ("authorizer", "method", "path", "body"),
    [
        pytest.param(auth, m, p, b, id=f"{name}: {m} {p} -> 401 UNAUTHORIZED")
        for name, auth in [
            ("no-authorizer-context", None),
            ("empty-authorizer-context", {}),
            ("empty-store", {"storeId": "", "role": "admin", "principalId": ""}),
            ("unknown-role", {"storeId": "demo", "role": "superuser", "principalId": "demo"}),
        ]
        for m, p, b in AUTH_ROUTES
    ],
)
def test_unauthorized(
    admin: ApiClient, shop: None, authorizer: dict[str, Any] | None, method: str, path: str, body: Any
) -> None:
    before = stock_view(admin, ["A-1"])
    found = apigw.find_route(method, path)
    assert found
    route, params = found
    event = apigw.build_event(
        route,
        params,
        path=path,
        headers={"Content-Type": "application/json", "Idempotency-Key": "k-401"},
        body=json.dumps(body) if body is not None else None,
        authorizer=authorizer,
    )
    out = load_function("api").lambda_handler(event, LambdaContext())
    resp = ApiResponse(out["statusCode"], out.get("headers") or {}, json.loads(out["body"]))
    assert_error(resp, 401, "UNAUTHORIZED")
    assert stock_view(admin, ["A-1"]) == before
    assert admin.get("/carts/c-401/reservation").status == 404


def test_unauthorized_through_api_client_with_an_empty_store(admin: ApiClient, shop: None) -> None:
    nobody = ApiClient(store="", role="storefront")
    before = stock_view(admin, ["A-1"])
    assert_error(nobody.get("/stock/A-1"), 401, "UNAUTHORIZED")
    assert_error(reserve(nobody, "c-401", ("A-1", 1)), 401, "UNAUTHORIZED")
    assert stock_view(admin, ["A-1"]) == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("PUT", "/stock/A-1", {"onHand": 99}, id="put-existing-sku -> 403 FORBIDDEN"),
        pytest.param("PUT", "/stock/N-1", {"onHand": 99}, id="put-new-sku -> 403 FORBIDDEN"),
        pytest.param("POST", "/stock/A-1/adjustments", {"delta": 5, "reason": "x"}, id="adjust-up -> 403 FORBIDDEN"),
        pytest.param("POST", "/stock/A-1/adjustments", {"delta": -5, "reason": "x"}, id="adjust-down -> 403 FORBIDDEN"),
    ],
)
def test_storefront_key_on_admin_route_is_forbidden(
    api: ApiClient, admin: ApiClient, shop: None, method: str, path: str, body: Any
) -> None:
    before = stock_view(admin, ["A-1", "N-1"])
    assert_error(api.call(method, path, body), 403, "FORBIDDEN")
    # With an Idempotency-Key too.
    assert_error(api.call(method, path, body, headers={"Idempotency-Key": "k-403"}), 403, "FORBIDDEN")
    assert stock_view(admin, ["A-1", "N-1"]) == before
    assert before["N-1"] is None


def test_storefront_and_admin_can_both_read_stock(api: ApiClient, admin: ApiClient, shop: None) -> None:
    assert api.get("/stock/A-1").status == 200
    assert admin.get("/stock/A-1").status == 200


# --- 404 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/reservations/res_nope", None, id="get-unknown-reservation -> 404"),
        pytest.param("POST", "/reservations/res_nope/extend", {"holdSeconds": 300}, id="extend-unknown -> 404"),
        pytest.param("POST", "/reservations/res_nope/confirm", {"orderId": "o-1"}, id="confirm-unknown -> 404"),
        pytest.param("POST", "/reservations/res_nope/release", {"reason": "cancelled"}, id="release-unknown -> 404"),
        pytest.param("GET", "/stock/Z-9", None, id="get-unknown-sku -> 404"),
        pytest.param("GET", "/carts/no-such-cart/reservation", None, id="unknown-cart -> 404"),
    ],
)
def test_not_found(api: ApiClient, admin: ApiClient, shop: None, method: str, path: str, body: Any) -> None:
    before = counters(admin, "A-1", "B-2", "C-3")
    assert_error(api.call(method, path, body), 404, "NOT_FOUND")
    assert counters(admin, "A-1", "B-2", "C-3") == before


def test_adjusting_an_unknown_sku_is_not_found_and_creates_nothing(admin: ApiClient, shop: None) -> None:
    assert_error(admin.post("/stock/Z-9/adjustments", {"delta": 5, "reason": "found"}), 404, "NOT_FOUND")
    assert_error(admin.get("/stock/Z-9"), 404, "NOT_FOUND")


def test_cart_without_an_active_reservation_is_not_found(api: ApiClient, admin: ApiClient, shop: None) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2))
    assert api.get("/carts/c-1/reservation").body["reservationId"] == rid
    assert api.post(f"/reservations/{rid}/release", {"reason": "cancelled"}).status == 200
    assert_error(api.get("/carts/c-1/reservation"), 404, "NOT_FOUND")
    assert counters(admin, "A-1")["A-1"] == (10, 10, 0, 0)


def _same_as_missing(real: ApiResponse, missing: ApiResponse, real_id: str, missing_id: str) -> None:
    """Another store's resource answers exactly what a resource that never existed answers."""
    err = assert_error(real, 404, "NOT_FOUND")
    other = assert_error(missing, 404, "NOT_FOUND")
    assert err["details"] == other["details"]
    assert err["message"].replace(real_id, missing_id) == other["message"]
    assert real.status == missing.status


def test_another_stores_reservation_is_not_found_and_untouched(api: ApiClient, admin: ApiClient, shop: None) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2), ("B-2", 1))
    before_res, before_stock = reservation(api, rid), counters(admin, "A-1", "B-2")
    intruder = api.as_(store="other")
    fake = "res_" + "z" * (len(rid) - 4)
    for method, suffix, body in [
        ("GET", "", None),
        ("POST", "/extend", {"holdSeconds": 600}),
        ("POST", "/confirm", {"orderId": "o-1"}),
        ("POST", "/release", {"reason": "cancelled"}),
    ]:
        real = intruder.call(method, f"/reservations/{rid}{suffix}", body)
        missing = intruder.call(method, f"/reservations/{fake}{suffix}", body)
        _same_as_missing(real, missing, rid, fake)
    _same_as_missing(intruder.get("/carts/c-1/reservation"), intruder.get("/carts/c-x/reservation"), "c-1", "c-x")
    assert reservation(api, rid) == before_res
    assert counters(admin, "A-1", "B-2") == before_stock


def test_another_stores_stock_is_not_found_and_untouched(api: ApiClient, admin: ApiClient, shop: None) -> None:
    before = counters(admin, "A-1")
    intruder, intruder_admin = api.as_(store="other"), admin.as_(store="other")
    _same_as_missing(intruder.get("/stock/A-1"), intruder.get("/stock/Z-9"), "A-1", "Z-9")
    _same_as_missing(
        intruder_admin.post("/stock/A-1/adjustments", {"delta": -3, "reason": "theft"}),
        intruder_admin.post("/stock/Z-9/adjustments", {"delta": -3, "reason": "theft"}),
        "A-1",
        "Z-9",
    )
    listing = intruder.get("/stock", query={"skus": "A-1,B-2"})
    assert listing.status == 200 and listing.body == {"items": [], "missing": ["A-1", "B-2"]}
    # Reserving demo's SKU from another store finds no stock there.
    short = assert_error(reserve(intruder, "c-1", ("A-1", 1)), 409, "INSUFFICIENT_STOCK")
    assert short["details"]["items"] == [{"sku": "A-1", "requested": 1, "available": 0}]
    assert counters(admin, "A-1") == before
    # The other store's own stock is its own.
    stock(intruder_admin, A_1=1)
    assert counters(admin, "A-1") == before
    assert counters(intruder_admin, "A-1")["A-1"] == (1, 1, 0, 0)


# --- 409 INSUFFICIENT_STOCK --------------------------------------------------------------


def test_insufficient_stock_lists_every_short_line_and_holds_nothing(
    api: ApiClient, admin: ApiClient, shop: None
) -> None:
    stock(admin, D_4=0, E_5=10)
    reserved_id(api, "c-other", ("E-5", 8))
    skus = ("A-1", "B-2", "C-3", "D-4", "E-5", "U-0")
    before = counters(admin, *skus)

    resp = reserve(api, "c-1", ("A-1", 2), ("B-2", 6), ("U-0", 1), ("C-3", 3), ("D-4", 1), ("E-5", 4))

    err = assert_error(resp, 409, "INSUFFICIENT_STOCK")
    assert sorted(err["details"]["items"], key=lambda x: x["sku"]) == [
        {"sku": "B-2", "requested": 6, "available": 5},
        {"sku": "D-4", "requested": 1, "available": 0},
        {"sku": "E-5", "requested": 4, "available": 2},
        {"sku": "U-0", "requested": 1, "available": 0},
    ]
    assert err["message"] == "4 items are short"
    assert counters(admin, *skus) == before
    assert_error(api.get("/carts/c-1/reservation"), 404, "NOT_FOUND")


def test_insufficient_stock_on_one_line_holds_none_of_the_others(api: ApiClient, admin: ApiClient, shop: None) -> None:
    before = counters(admin, "A-1", "B-2", "C-3")
    err = assert_error(reserve(api, "c-1", ("A-1", 10), ("B-2", 5), ("C-3", 4)), 409, "INSUFFICIENT_STOCK")
    assert err["details"]["items"] == [{"sku": "C-3", "requested": 4, "available": 3}]
    assert counters(admin, "A-1", "B-2", "C-3") == before
    # Exactly what is there can be held.
    reserved_id(api, "c-1", ("A-1", 10), ("B-2", 5), ("C-3", 3))
    assert counters(admin, "C-3")["C-3"] == (3, 0, 3, 0)


# --- 409 CART_ALREADY_RESERVED and replace -----------------------------------------------


def test_cart_already_reserved_names_the_reservation(api: ApiClient, admin: ApiClient, shop: None) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2))
    before = counters(admin, "A-1", "B-2")
    for replace in ({}, {"replace": False}):
        err = assert_error(reserve(api, "c-1", ("B-2", 1), **replace), 409, "CART_ALREADY_RESERVED")
        assert err["details"] == {"reservationId": rid}
    assert counters(admin, "A-1", "B-2") == before
    assert reservation(api, rid)["status"] == "ACTIVE"


def test_replace_swaps_atomically(api: ApiClient, admin: ApiClient, shop: None) -> None:
    old = reserved_id(api, "c-1", ("A-1", 2), ("B-2", 1))
    assert counters(admin, "A-1", "B-2", "C-3") == {
        "A-1": (10, 8, 2, 0),
        "B-2": (5, 4, 1, 0),
        "C-3": (3, 3, 0, 0),
    }
    new = reserve(api, "c-1", ("A-1", 5), ("C-3", 1), replace=True)
    assert new.status == 201, new.body
    assert new.body["reservationId"] != old
    assert new.body["status"] == "ACTIVE"
    ended = reservation(api, old)
    assert ended["status"] == "RELEASED"
    assert ended["endReason"] == "replaced"
    assert api.get("/carts/c-1/reservation").body["reservationId"] == new.body["reservationId"]
    # A-1 is shared: old 2 returned, new 5 held. B-2 only old: returned. C-3 only new: held.
    assert counters(admin, "A-1", "B-2", "C-3") == {
        "A-1": (10, 5, 5, 0),
        "B-2": (5, 5, 0, 0),
        "C-3": (3, 2, 1, 0),
    }


def test_replace_may_use_the_units_the_old_hold_returns(api: ApiClient, admin: ApiClient, shop: None) -> None:
    """A-1: 10 on hand, the old hold has 8 and another cart 2: the new cart may take all 8 again plus none more."""
    old = reserved_id(api, "c-1", ("A-1", 8))
    reserved_id(api, "c-2", ("A-1", 2))
    before = counters(admin, "A-1", "B-2")

    err = assert_error(reserve(api, "c-1", ("A-1", 9), replace=True), 409, "INSUFFICIENT_STOCK")
    assert err["details"]["items"] == [{"sku": "A-1", "requested": 9, "available": 8}]
    assert reservation(api, old)["status"] == "ACTIVE"  # a refused swap leaves the old hold as it was
    assert counters(admin, "A-1", "B-2") == before

    new = reserve(api, "c-1", ("A-1", 8), ("B-2", 1), replace=True)
    assert new.status == 201, new.body
    assert reservation(api, old)["status"] == "RELEASED"
    assert counters(admin, "A-1", "B-2") == {"A-1": (10, 0, 10, 0), "B-2": (5, 4, 1, 0)}


def test_replace_without_an_active_reservation_just_reserves(api: ApiClient, admin: ApiClient, shop: None) -> None:
    resp = reserve(api, "c-new", ("A-1", 1), replace=True)
    assert resp.status == 201, resp.body
    assert counters(admin, "A-1")["A-1"] == (10, 9, 1, 0)


# --- 409 RESERVATION_NOT_ACTIVE ----------------------------------------------------------


def test_confirming_a_released_reservation_is_not_active(api: ApiClient, admin: ApiClient, shop: None) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2))
    assert api.post(f"/reservations/{rid}/release", {"reason": "payment_failed"}).status == 200
    before, before_res = counters(admin, "A-1"), reservation(api, rid)
    err = assert_error(api.post(f"/reservations/{rid}/confirm", {"orderId": "o-1"}), 409, "RESERVATION_NOT_ACTIVE")
    assert err["details"] == {"status": "RELEASED"}
    err = assert_error(api.post(f"/reservations/{rid}/extend", {"holdSeconds": 600}), 409, "RESERVATION_NOT_ACTIVE")
    assert err["details"] == {"status": "RELEASED"}
    assert counters(admin, "A-1") == before == {"A-1": (10, 10, 0, 0)}
    assert reservation(api, rid) == before_res


def test_releasing_a_confirmed_reservation_is_not_active(api: ApiClient, admin: ApiClient, shop: None) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2))
    assert api.post(f"/reservations/{rid}/confirm", {"orderId": "o-1"}).status == 200
    before, before_res = counters(admin, "A-1"), reservation(api, rid)
    assert before == {"A-1": (10, 8, 0, 2)}
    err = assert_error(api.post(f"/reservations/{rid}/release", {"reason": "cancelled"}), 409, "RESERVATION_NOT_ACTIVE")
    assert err["details"] == {"status": "CONFIRMED"}
    err = assert_error(api.post(f"/reservations/{rid}/extend", {"holdSeconds": 600}), 409, "RESERVATION_NOT_ACTIVE")
    assert err["details"] == {"status": "CONFIRMED"}
    # A different order for a confirmed reservation is refused too.
    err = assert_error(api.post(f"/reservations/{rid}/confirm", {"orderId": "o-2"}), 409, "RESERVATION_NOT_ACTIVE")
    assert err["details"] == {"status": "CONFIRMED"}
    assert counters(admin, "A-1") == before
    assert reservation(api, rid) == before_res


def test_confirm_twice_with_the_same_order_is_the_same_answer(api: ApiClient, admin: ApiClient, shop: None) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2), ("B-2", 1))
    first = api.post(f"/reservations/{rid}/confirm", {"orderId": "o-1"})
    assert first.status == 200, first.body
    assert first.body["status"] == "CONFIRMED" and first.body["orderId"] == "o-1"
    assert first.body["extensionsLeft"] == 0
    after_first = counters(admin, "A-1", "B-2")
    assert after_first == {"A-1": (10, 8, 0, 2), "B-2": (5, 4, 0, 1)}
    again = api.post(f"/reservations/{rid}/confirm", {"orderId": "o-1"})
    assert (again.status, again.body) == (200, first.body)
    assert counters(admin, "A-1", "B-2") == after_first


def test_release_twice_is_unchanged(api: ApiClient, admin: ApiClient, shop: None) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2))
    first = api.post(f"/reservations/{rid}/release", {"reason": "cancelled"})
    assert first.status == 200, first.body
    assert first.body["status"] == "RELEASED" and first.body["endReason"] == "cancelled"
    assert counters(admin, "A-1") == {"A-1": (10, 10, 0, 0)}
    again = api.post(f"/reservations/{rid}/release", {"reason": "manual"})
    assert (again.status, again.body) == (200, first.body)
    assert counters(admin, "A-1") == {"A-1": (10, 10, 0, 0)}


# --- 409 EXTENSION_LIMIT_REACHED ---------------------------------------------------------


def test_extension_limit(api: ApiClient, admin: ApiClient, shop: None, clock: Clock) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2), holdSeconds=60)
    created = reservation(api, rid)
    assert (created["extensionsUsed"], created["extensionsLeft"]) == (0, 3)
    last = created
    for n in range(1, 4):
        clock.advance(30)
        resp = api.post(f"/reservations/{rid}/extend", {"holdSeconds": 60})
        assert resp.status == 200, resp.body
        assert (resp.body["extensionsUsed"], resp.body["extensionsLeft"]) == (n, 3 - n)
        assert resp.body["expiresAt"] > last["expiresAt"]
        last = resp.body
    clock.advance(30)
    err = assert_error(api.post(f"/reservations/{rid}/extend", {"holdSeconds": 60}), 409, "EXTENSION_LIMIT_REACHED")
    assert err["details"] == {"extensionsUsed": 3, "maxExtensions": 3}
    assert reservation(api, rid) == last
    assert counters(admin, "A-1")["A-1"] == (10, 8, 2, 0)


def test_extend_never_moves_the_deadline_earlier(api: ApiClient, shop: None, clock: Clock) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2), holdSeconds=1800)
    before = reservation(api, rid)
    resp = api.post(f"/reservations/{rid}/extend", {"holdSeconds": 60})
    assert resp.status == 200, resp.body
    assert resp.body == before  # no earlier deadline, no extension used


# --- 409 STOCK_CONFLICT ------------------------------------------------------------------


def test_stock_conflict_on_put_below_committed(api: ApiClient, admin: ApiClient, shop: None) -> None:
    reserved_id(api, "c-1", ("A-1", 3))
    confirmed = reserved_id(api, "c-2", ("A-1", 2))
    assert api.post(f"/reservations/{confirmed}/confirm", {"orderId": "o-1"}).status == 200
    before = counters(admin, "A-1")
    assert before == {"A-1": (10, 5, 3, 2)}

    err = assert_error(admin.put("/stock/A-1", {"onHand": 4}), 409, "STOCK_CONFLICT")
    assert err["details"] == {"sku": "A-1", "onHand": 4, "reserved": 3, "allocated": 2, "minimum": 5}
    assert counters(admin, "A-1") == before

    resp = admin.put("/stock/A-1", {"onHand": 5})  # exactly the committed units is allowed
    assert resp.status == 200, resp.body
    assert counters(admin, "A-1") == {"A-1": (5, 0, 3, 2)}


def test_stock_conflict_on_adjustment_below_available(api: ApiClient, admin: ApiClient, shop: None) -> None:
    reserved_id(api, "c-1", ("A-1", 3))
    before = counters(admin, "A-1")
    assert before == {"A-1": (10, 7, 3, 0)}

    err = assert_error(admin.post("/stock/A-1/adjustments", {"delta": -8, "reason": "damaged"}), 409, "STOCK_CONFLICT")
    assert err["details"] == {"sku": "A-1", "delta": -8, "available": 7, "onHand": 10}
    assert counters(admin, "A-1") == before

    resp = admin.post("/stock/A-1/adjustments", {"delta": -7, "reason": "damaged"})
    assert resp.status == 200, resp.body
    assert counters(admin, "A-1") == {"A-1": (3, 0, 3, 0)}


# --- Idempotency-Key ---------------------------------------------------------------------


def test_idempotent_replay_returns_the_first_answer_and_holds_once(
    api: ApiClient, admin: ApiClient, shop: None
) -> None:
    body = {"cartId": "c-1", "items": [line("A-1", 2)]}
    key = {"Idempotency-Key": "k-1"}
    first = api.post("/reservations", body, headers=key)
    assert first.status == 201, first.body
    assert first.headers.get("Idempotent-Replayed") is None
    after_first = counters(admin, "A-1")
    assert after_first == {"A-1": (10, 8, 2, 0)}

    again = api.post("/reservations", body, headers=key)
    assert (again.status, again.body) == (201, first.body)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert counters(admin, "A-1") == after_first


def test_idempotency_key_reused_with_a_different_body(api: ApiClient, admin: ApiClient, shop: None) -> None:
    key = {"Idempotency-Key": "k-1"}
    first = api.post("/reservations", {"cartId": "c-1", "items": [line("A-1", 2)]}, headers=key)
    assert first.status == 201, first.body
    before, before_res = counters(admin, "A-1", "B-2"), reservation(api, first.body["reservationId"])

    for body in (
        {"cartId": "c-1", "items": [line("A-1", 3)]},
        {"cartId": "c-9", "items": [line("B-2", 1)]},
    ):
        assert_error(api.post("/reservations", body, headers=key), 409, "IDEMPOTENCY_KEY_REUSED")
    # Same body, another route: still a different request.
    path = f"/reservations/{first.body['reservationId']}/release"
    assert_error(api.post(path, {"reason": "cancelled"}, headers=key), 409, "IDEMPOTENCY_KEY_REUSED")

    assert counters(admin, "A-1", "B-2") == before
    assert reservation(api, first.body["reservationId"]) == before_res
    assert_error(api.get("/carts/c-9/reservation"), 404, "NOT_FOUND")


def test_idempotency_keys_belong_to_one_store(api: ApiClient, admin: ApiClient, shop: None) -> None:
    body, key = {"cartId": "c-1", "items": [line("A-1", 1)]}, {"Idempotency-Key": "shared"}
    mine = api.post("/reservations", body, headers=key)
    assert mine.status == 201, mine.body
    stock(admin.as_(store="other"), A_1=4)
    theirs = api.as_(store="other").post("/reservations", body, headers=key)
    assert theirs.status == 201, theirs.body
    assert theirs.headers.get("Idempotent-Replayed") is None
    assert theirs.body["reservationId"] != mine.body["reservationId"]
    assert counters(admin, "A-1")["A-1"] == (10, 9, 1, 0)
    assert counters(admin.as_(store="other"), "A-1")["A-1"] == (4, 3, 1, 0)


def test_idempotent_adjustment_applies_once(admin: ApiClient, shop: None) -> None:
    key = {"Idempotency-Key": "adj-1"}
    first = admin.post("/stock/A-1/adjustments", {"delta": 5, "reason": "received"}, headers=key)
    assert first.status == 200, first.body
    again = admin.post("/stock/A-1/adjustments", {"delta": 5, "reason": "received"}, headers=key)
    assert (again.status, again.body) == (200, first.body)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert counters(admin, "A-1")["A-1"] == (15, 15, 0, 0)


def test_a_refused_request_can_be_retried_with_its_key(api: ApiClient, admin: ApiClient, shop: None) -> None:
    """A 4xx answer is the answer: the same key and body replay it, even after stock arrives."""
    key, body = {"Idempotency-Key": "k-short"}, {"cartId": "c-1", "items": [line("C-3", 4)]}
    first = api.post("/reservations", body, headers=key)
    assert_error(first, 409, "INSUFFICIENT_STOCK")
    again = api.post("/reservations", body, headers=key)
    assert (again.status, again.body) == (409, first.body)
    assert counters(admin, "C-3")["C-3"] == (3, 3, 0, 0)


# --- 410 RESERVATION_EXPIRED and reading an expired hold -----------------------------------


def test_expired_but_unreleased_reads_expired(api: ApiClient, admin: ApiClient, shop: None, clock: Clock) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2), holdSeconds=60)
    clock.advance(59.999)
    assert reservation(api, rid)["status"] == "ACTIVE"
    clock.advance(0.001)  # exactly at the deadline
    res = reservation(api, rid)
    assert res["status"] == "EXPIRED"
    assert res["extensionsLeft"] == 0
    # Nothing has returned the units yet, and the counters still add up.
    assert counters(admin, "A-1")["A-1"] == (10, 8, 2, 0)
    assert_error(api.get("/carts/c-1/reservation"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("action", "body"),
    [
        pytest.param("confirm", {"orderId": "o-1"}, id="confirm-after-deadline -> 410 RESERVATION_EXPIRED"),
        pytest.param("extend", {"holdSeconds": 600}, id="extend-after-deadline -> 410 RESERVATION_EXPIRED"),
    ],
)
def test_after_the_deadline_is_gone(
    api: ApiClient, admin: ApiClient, shop: None, clock: Clock, action: str, body: dict[str, Any]
) -> None:
    rid = reserved_id(api, "c-1", ("A-1", 2), ("B-2", 1), holdSeconds=60)
    expires_at = reservation(api, rid)["expiresAt"]
    clock.advance(61)

    err = assert_error(api.post(f"/reservations/{rid}/{action}", body), 410, "RESERVATION_EXPIRED")
    assert err["details"] == {"status": "EXPIRED", "expiresAt": expires_at}
    # Asking again says the same (now that the hold has ended as EXPIRED).
    err = assert_error(api.post(f"/reservations/{rid}/{action}", body), 410, "RESERVATION_EXPIRED")
    assert err["details"] == {"status": "EXPIRED", "expiresAt": expires_at}

    res = reservation(api, rid)
    assert res["status"] == "EXPIRED"
    assert res["orderId"] is None and res["expiresAt"] == expires_at
    # The units are back (the expired hold was ended), never allocated.
    assert counters(admin, "A-1", "B-2") == {"A-1": (10, 10, 0, 0), "B-2": (5, 5, 0, 0)}


def test_an_expired_hold_does_not_block_its_cart(api: ApiClient, admin: ApiClient, shop: None, clock: Clock) -> None:
    old = reserved_id(api, "c-1", ("A-1", 2), holdSeconds=60)
    clock.advance(61)
    new = reserve(api, "c-1", ("A-1", 3))
    assert new.status == 201, new.body
    assert reservation(api, old)["status"] == "EXPIRED"
    assert counters(admin, "A-1")["A-1"] == (10, 7, 3, 0)


def test_a_cart_is_free_again_after_its_reservation_ends(api: ApiClient, admin: ApiClient, shop: None) -> None:
    released = reserved_id(api, "c-1", ("A-1", 2))
    assert api.post(f"/reservations/{released}/release", {"reason": "cancelled"}).status == 200
    confirmed = reserved_id(api, "c-1", ("A-1", 3))
    assert api.post(f"/reservations/{confirmed}/confirm", {"orderId": "o-1"}).status == 200
    again = reserve(api, "c-1", ("A-1", 1))
    assert again.status == 201, again.body
    assert counters(admin, "A-1")["A-1"] == (10, 6, 1, 3)


def test_replace_with_the_same_lines_swaps_and_keeps_the_counters(api: ApiClient, admin: ApiClient, shop: None) -> None:
    old = reserved_id(api, "c-1", ("A-1", 2), ("B-2", 1))
    before = counters(admin, "A-1", "B-2")
    new = reserve(api, "c-1", ("A-1", 2), ("B-2", 1), replace=True)
    assert new.status == 201, new.body
    assert reservation(api, old)["status"] == "RELEASED"
    assert counters(admin, "A-1", "B-2") == before
    # The new hold really holds: releasing it returns every unit.
    assert api.post(f"/reservations/{new.body['reservationId']}/release", {"reason": "cancelled"}).status == 200
    assert counters(admin, "A-1", "B-2") == {"A-1": (10, 10, 0, 0), "B-2": (5, 5, 0, 0)}


def test_replace_of_an_expired_unreleased_hold(api: ApiClient, admin: ApiClient, shop: None, clock: Clock) -> None:
    old = reserved_id(api, "c-1", ("A-1", 2), holdSeconds=60)
    clock.advance(61)
    new = reserve(api, "c-1", ("A-1", 4), replace=True)
    assert new.status == 201, new.body
    assert reservation(api, old)["status"] == "EXPIRED"
    assert counters(admin, "A-1")["A-1"] == (10, 6, 4, 0)


# --- Idempotency-Key and roles: a key is scoped by store and role ---------------


def test_a_storefront_403_is_not_replayed_to_the_admin(api: ApiClient, admin: ApiClient, shop: None) -> None:
    key = {"Idempotency-Key": "k-role"}
    assert_error(api.put("/stock/A-1", {"onHand": 20}, headers=key), 403, "FORBIDDEN")
    resp = admin.put("/stock/A-1", {"onHand": 20}, headers=key)
    assert resp.status == 200, resp.body
    assert counters(admin, "A-1")["A-1"] == (20, 20, 0, 0)


def test_a_storefront_key_cannot_replay_an_admin_request(api: ApiClient, admin: ApiClient, shop: None) -> None:
    key = {"Idempotency-Key": "k-role"}
    assert admin.put("/stock/A-1", {"onHand": 20}, headers=key).status == 200
    assert_error(api.put("/stock/A-1", {"onHand": 20}, headers=key), 403, "FORBIDDEN")
