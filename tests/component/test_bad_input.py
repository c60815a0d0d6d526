"""Bad input: every request API.md says must be refused is refused with a 4xx in the
error shape, names the bad field where there is one, and changes nothing.

Each case runs against a store with two stocked SKUs and one active reservation, and
compares the whole Stock body (except ``updatedAt``) and the reservation before and after.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from stockhold.domain import rules as service
from tests.helpers import (
    ApiClient,
    ApiResponse,
    assert_error,
    assert_invariant,
    field_names,
    load_function,
    names_field,
    stock_view,
)
from tools import apigw
from tools.local.context import LambdaContext

SKUS = ("A-1", "B-2")
ON_HAND = {"A-1": 10, "B-2": 5}
HELD = {"A-1": 2, "B-2": 1}
NO_BODY = object()


# --- helpers -----------------------------------------------------------------------------


def line(sku: str = "A-1", quantity: Any = 1) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity}


def cart(**overrides: Any) -> dict[str, Any]:
    """A valid reservation body for a cart other than the fixture's: accepted, it would hold A-1."""
    body: dict[str, Any] = {"cartId": "cart-2", "items": [line()]}
    body.update(overrides)
    return body


@dataclass
class World:
    api: ApiClient
    admin: ApiClient
    rid: str

    def snapshot(self) -> tuple[dict[str, Any], Any]:
        res = self.api.get(f"/reservations/{self.rid}")
        assert res.status == 200, res.body
        return stock_view(self.admin, SKUS), res.body


@pytest.fixture
def world(api: ApiClient, admin: ApiClient) -> World:
    for sku, n in ON_HAND.items():
        assert admin.put(f"/stock/{sku}", {"onHand": n}).status == 200
    made = api.post("/reservations", {"cartId": "cart-1", "items": [line(s, q) for s, q in HELD.items()]})
    assert made.status == 201, made.body
    w = World(api, admin, made.body["reservationId"])
    view, _ = w.snapshot()
    assert {s: (v["reserved"], v["available"]) for s, v in view.items()} == {"A-1": (2, 8), "B-2": (1, 4)}
    return w


# --- the cases ---------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    method: str
    path: str
    body: Any = NO_BODY
    raw: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] | None = None
    status: int = 400
    code: str = "VALIDATION_ERROR"
    fields: tuple[str, ...] = ()  # each must be named in details.fields
    role: str = "storefront"
    xfail: str | None = None  # a known product bug: the reason, with the symptom
    raises: type[BaseException] | None = None  # what the bug raises, if it raises

    @property
    def label(self) -> str:
        return f"{self.id} -> {self.status} {self.code}"


RES = "/reservations"
EXTEND = "/reservations/{rid}/extend"
CONFIRM = "/reservations/{rid}/confirm"
RELEASE = "/reservations/{rid}/release"
Q = "items[0].quantity"
MANY = [f"X-{i:03d}" for i in range(200)]
HUGE = "7" * 4301  # one digit past sys.get_int_max_str_digits()'s default


def _with(body: dict[str, Any], name: str, raw_value: str) -> str:
    """``body`` as JSON text with field ``name`` set to the literal JSON ``raw_value``."""
    return json.dumps({**body, name: None}).replace(f'"{name}": null', f'"{name}": {raw_value}')


CASES = [
    # quantities
    Case("quantity-zero", "POST", RES, cart(items=[line(quantity=0)]), fields=(Q,)),
    Case("quantity-negative", "POST", RES, cart(items=[line(quantity=-1)]), fields=(Q,)),
    Case("quantity-fractional-2.5", "POST", RES, cart(items=[line(quantity=2.5)]), fields=(Q,)),
    Case("quantity-float-2.0", "POST", RES, cart(items=[line(quantity=2.0)]), fields=(Q,)),
    Case("quantity-string-'2'", "POST", RES, cart(items=[line(quantity="2")]), fields=(Q,)),
    Case("quantity-boolean-true", "POST", RES, cart(items=[line(quantity=True)]), fields=(Q,)),
    Case("quantity-null", "POST", RES, cart(items=[line(quantity=None)]), fields=(Q,)),
    Case("quantity-missing", "POST", RES, cart(items=[{"sku": "A-1"}]), fields=(Q,)),
    Case("quantity-huge-10**12", "POST", RES, cart(items=[line(quantity=10**12)]), fields=(Q,)),
    Case("quantity-bad-on-2nd-line", "POST", RES, cart(items=[line(), line("B-2", 0)]), fields=("items[1].quantity",)),
    # lines
    Case("items-empty", "POST", RES, cart(items=[]), fields=("items",)),
    Case("items-missing", "POST", RES, {"cartId": "cart-2"}, fields=("items",)),
    Case("items-not-a-list", "POST", RES, cart(items=line()), fields=("items",)),
    Case(
        "items-97-lines",
        "POST",
        RES,
        cart(items=[line("A-1"), line("B-2"), *(line(s) for s in MANY[: service.MAX_LINES - 1])]),
        fields=("items",),
    ),
    Case("items-duplicate-sku", "POST", RES, cart(items=[line(), line("B-2"), line()]), fields=("items",)),
    Case("sku-invalid-in-line", "POST", RES, cart(items=[line("A 1")]), fields=("items[0].sku",)),
    Case("sku-with-hash-in-line", "POST", RES, cart(items=[line("A#1")]), fields=("items[0].sku",)),
    # unknown fields
    Case("unknown-top-level-field", "POST", RES, cart(coupon="X"), fields=("coupon",)),
    Case("typo-quantiy-in-line", "POST", RES, cart(items=[{"sku": "A-1", "quantiy": 1}]), fields=("items[0].quantiy",)),
    Case("snake-case-hold_seconds", "POST", RES, cart(hold_seconds=120), fields=("hold_seconds",)),
    # bodies
    Case("malformed-json", "POST", RES, raw='{"cartId": "cart-2", "items": [', fields=("body",)),
    Case(
        "json-list-of-one-cart",
        "POST",
        RES,
        raw=json.dumps([cart()]),
        fields=("body",),
    ),
    Case("json-list-empty", "POST", RES, raw="[]", fields=("body",)),
    Case(
        "json-nested-20000-deep",
        "POST",
        RES,
        raw='{"cartId": "cart-2", "items": ' + "[" * 20_000 + "]" * 20_000 + "}",
        fields=("body",),
    ),
    Case(
        "json-nested-20000-deep-with-Idempotency-Key",
        "POST",
        RES,
        raw='{"cartId": "cart-2", "items": ' + "[" * 20_000 + "]" * 20_000 + "}",
        headers={"Idempotency-Key": "k-deep"},
        fields=("body",),
    ),
    Case(
        "body-lone-surrogate-not-utf8",
        "POST",
        RES,
        raw=json.dumps(cart())[:-1] + ', "customerId": "\ud800"}',
        fields=("body",),
    ),
    Case(
        "customerId-json-escaped-lone-surrogate",
        "POST",
        RES,
        raw=json.dumps(cart())[:-1] + ', "customerId": "\\ud800"}',
        fields=("customerId",),
    ),
    Case("json-number", "POST", RES, raw="5", fields=("body",)),
    Case("json-string", "POST", RES, raw=json.dumps("cart-2"), fields=("body",)),
    Case("json-null", "POST", RES, raw="null"),
    Case("body-missing", "POST", RES),
    Case("body-over-64KiB", "POST", RES, cart(customerId="x" * 70_000), status=413, code="PAYLOAD_TOO_LARGE"),
    Case(
        "body-over-64KiB-in-bytes-not-chars",
        "POST",
        RES,
        raw=json.dumps(cart(customerId="é" * 40_000), ensure_ascii=False),
        status=413,
        code="PAYLOAD_TOO_LARGE",
    ),
    Case("body-binary-not-utf8", "POST", RES, raw=b"\xff\xfe\x00{\x80\x81", fields=("body",)),
    Case("content-type-text-plain", "POST", RES, cart(), headers={"Content-Type": "text/plain"}),
    Case(
        "content-type-form",
        "POST",
        RES,
        raw="cartId=cart-2&items=A-1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case("idempotency-key-over-255-chars", "POST", RES, cart(), headers={"Idempotency-Key": "k" * 256}),
    # hold time
    Case("holdSeconds-59-below-min", "POST", RES, cart(holdSeconds=59), fields=("holdSeconds",)),
    Case("holdSeconds-1801-above-max", "POST", RES, cart(holdSeconds=1801), fields=("holdSeconds",)),
    Case("holdSeconds-zero", "POST", RES, cart(holdSeconds=0), fields=("holdSeconds",)),
    Case("holdSeconds-string", "POST", RES, cart(holdSeconds="900"), fields=("holdSeconds",)),
    Case("holdSeconds-float", "POST", RES, cart(holdSeconds=900.0), fields=("holdSeconds",)),
    Case("replace-string", "POST", RES, cart(replace="true"), fields=("replace",)),
    # ids
    Case("cartId-empty", "POST", RES, cart(cartId=""), fields=("cartId",)),
    Case("cartId-129-chars", "POST", RES, cart(cartId="c" * 129), fields=("cartId",)),
    Case("cartId-with-space", "POST", RES, cart(cartId="cart 2"), fields=("cartId",)),
    Case("cartId-missing", "POST", RES, {"items": [line()]}, fields=("cartId",)),
    Case("cartId-number", "POST", RES, cart(cartId=2), fields=("cartId",)),
    Case("customerId-with-space", "POST", RES, cart(customerId="u 9"), fields=("customerId",)),
    # SKU in the path
    Case("get-stock-sku-with-space", "GET", "/stock/A%201", fields=("sku",)),
    Case("get-stock-sku-with-hash", "GET", "/stock/A%231", fields=("sku",)),
    Case("get-stock-sku-101-chars", "GET", "/stock/" + "A" * 101, fields=("sku",)),
    Case("put-stock-sku-with-space", "PUT", "/stock/A%201", {"onHand": 3}, fields=("sku",), role="admin"),
    Case(
        "adjust-sku-with-hash",
        "POST",
        "/stock/A%231/adjustments",
        {"delta": 1, "reason": "r"},
        fields=("sku",),
        role="admin",
    ),
    # GET /stock?skus=
    Case("list-stock-101-skus", "GET", "/stock", query={"skus": ",".join(MANY[:101])}, fields=("skus",)),
    Case("list-stock-empty-skus", "GET", "/stock", query={"skus": ""}, fields=("skus",)),
    Case("list-stock-only-commas", "GET", "/stock", query={"skus": " , ,"}, fields=("skus",)),
    Case("list-stock-no-skus-param", "GET", "/stock", fields=("skus",)),
    Case("list-stock-invalid-sku", "GET", "/stock", query={"skus": "A-1,bad sku"}, fields=("skus",)),
    # PUT /stock
    Case("put-stock-onHand-negative", "PUT", "/stock/A-1", {"onHand": -1}, fields=("onHand",), role="admin"),
    Case("put-stock-onHand-fractional", "PUT", "/stock/A-1", {"onHand": 2.5}, fields=("onHand",), role="admin"),
    Case("put-stock-onHand-string", "PUT", "/stock/A-1", {"onHand": "7"}, fields=("onHand",), role="admin"),
    Case("put-stock-nothing-to-set", "PUT", "/stock/A-1", {}, role="admin"),
    Case("put-stock-onHand-null", "PUT", "/stock/A-1", {"onHand": None}, role="admin"),
    Case(
        "put-stock-backorderLimit-negative",
        "PUT",
        "/stock/A-1",
        {"backorderLimit": -1},
        fields=("backorderLimit",),
        role="admin",
    ),
    Case("put-stock-maxPerCart-zero", "PUT", "/stock/A-1", {"maxPerCart": 0}, fields=("maxPerCart",), role="admin"),
    *(
        Case(
            f"put-stock-maxHoldSeconds-{name}",
            "PUT",
            "/stock/A-1",
            {"maxHoldSeconds": v},
            fields=("maxHoldSeconds",),
            role="admin",
        )
        for name, v in (("zero", 0), ("negative", -60), ("fractional", 90.5), ("string", "120"), ("over-a-day", 86_401))
    ),
    Case(
        "put-stock-at-unknown-location",
        "PUT",
        "/stock/A-1/locations/nowhere",
        {"onHand": 3},
        status=404,
        code="NOT_FOUND",
        role="admin",
    ),
    Case(
        "put-stock-at-location-onHand-missing",
        "PUT",
        "/stock/A-1/locations/default",
        {},
        fields=("onHand",),
        role="admin",
    ),
    Case(
        "put-location-priority-string",
        "PUT",
        "/locations/leeds",
        {"name": "Leeds", "priority": "high"},
        fields=("priority",),
        role="admin",
    ),
    Case("put-location-name-missing", "PUT", "/locations/leeds", {"priority": 1}, fields=("name",), role="admin"),
    Case(
        "put-location-bad-id",
        "PUT",
        "/locations/-x",
        {"name": "X", "priority": 1},
        fields=("path.locationId",),
        role="admin",
    ),
    Case(
        "adjust-at-unknown-location",
        "POST",
        "/stock/A-1/adjustments",
        {"delta": 1, "reason": "r", "locationId": "nowhere"},
        status=404,
        code="NOT_FOUND",
        role="admin",
    ),
    Case(
        "reserve-duplicate-locationIds",
        "POST",
        "/reservations",
        {"cartId": "c", "items": [{"sku": "A-1", "quantity": 1}], "locationIds": ["default", "default"]},
        fields=("locationIds",),
    ),
    Case(
        "reserve-unknown-location",
        "POST",
        "/reservations",
        {"cartId": "c", "items": [{"sku": "A-1", "quantity": 1}], "locationIds": ["nowhere"]},
        status=404,
        code="NOT_FOUND",
    ),
    Case(
        "reserve-split-not-bool",
        "POST",
        "/reservations",
        {"cartId": "c", "items": [{"sku": "A-1", "quantity": 1}], "split": "no"},
        fields=("split",),
    ),
    Case("put-stock-unknown-field", "PUT", "/stock/A-1", {"onHand": 7, "onhand": 7}, fields=("onhand",), role="admin"),
    Case("put-stock-malformed-json", "PUT", "/stock/A-1", raw='{"onHand": ', fields=("body",), role="admin"),
    Case("put-stock-new-sku-negative", "PUT", "/stock/N-1", {"onHand": -5}, fields=("onHand",), role="admin"),
    # adjustments
    Case(
        "adjust-delta-zero",
        "POST",
        "/stock/A-1/adjustments",
        {"delta": 0, "reason": "r"},
        fields=("delta",),
        role="admin",
    ),
    Case(
        "adjust-delta-fractional",
        "POST",
        "/stock/A-1/adjustments",
        {"delta": 1.5, "reason": "r"},
        fields=("delta",),
        role="admin",
    ),
    Case("adjust-reason-missing", "POST", "/stock/A-1/adjustments", {"delta": 2}, fields=("reason",), role="admin"),
    Case(
        "adjust-reason-empty",
        "POST",
        "/stock/A-1/adjustments",
        {"delta": 2, "reason": ""},
        fields=("reason",),
        role="admin",
    ),
    # release / confirm / extend
    Case("release-unknown-reason", "POST", RELEASE, {"reason": "bored"}, fields=("reason",)),
    Case("release-reason-replaced-is-internal", "POST", RELEASE, {"reason": "replaced"}, fields=("reason",)),
    Case("release-no-body", "POST", RELEASE),
    Case("confirm-without-orderId", "POST", CONFIRM, {}, fields=("orderId",)),
    Case("confirm-orderId-with-space", "POST", CONFIRM, {"orderId": "o 1"}, fields=("orderId",)),
    Case("confirm-unknown-field", "POST", CONFIRM, {"orderId": "o-1", "amount": 5}, fields=("amount",)),
    Case("extend-holdSeconds-59", "POST", EXTEND, {"holdSeconds": 59}, fields=("holdSeconds",)),
    Case("extend-holdSeconds-1801", "POST", EXTEND, {"holdSeconds": 1801}, fields=("holdSeconds",)),
    Case("extend-holdSeconds-string", "POST", EXTEND, {"holdSeconds": "300"}, fields=("holdSeconds",)),
    # validate holds nothing, but must refuse the same carts
    Case("validate-quantity-zero", "POST", "/stock/validate", {"items": [line(quantity=0)]}, fields=(Q,)),
    Case("validate-duplicate-sku", "POST", "/stock/validate", {"items": [line(), line()]}, fields=("items",)),
    # issue 9: an integer literal past Python's int-parsing limit (4300 digits) was a 502
    Case("int-4301-digits-onHand", "PUT", "/stock/A-1", raw=f'{{"onHand": {HUGE}}}', fields=("onHand",), role="admin"),
    Case(
        "int-4301-digits-negative", "PUT", "/stock/A-1", raw=f'{{"onHand": -{HUGE}}}', fields=("onHand",), role="admin"
    ),
    Case(
        "int-4301-digits-quantity",
        "POST",
        RES,
        raw=_with(cart(), "items", f'[{{"sku": "A-1", "quantity": {HUGE}}}]'),
        fields=(Q,),
    ),
    Case("int-4301-digits-unknown-field", "POST", RES, raw=_with(cart(), "note", f"[1, {HUGE}]"), fields=("note[1]",)),
    Case(
        "int-4301-digits-with-Idempotency-Key",
        "POST",
        "/stock/A-1/adjustments",
        raw=f'{{"delta": {HUGE}, "reason": "r"}}',
        headers={"Idempotency-Key": "k-huge"},
        fields=("delta",),
        role="admin",
    ),
    Case(
        "float-5000-digits-quantity",
        "POST",
        RES,
        raw=_with(cart(), "items", f'[{{"sku": "A-1", "quantity": {HUGE}.5}}]'),
        fields=(Q,),
    ),
    # issue 9: duplicate keys mean two things at once; the last one used to win silently
    Case(
        "duplicate-key-onHand", "PUT", "/stock/A-1", raw='{"onHand": 7, "onHand": 3}', fields=("onHand",), role="admin"
    ),
    Case(
        "duplicate-key-same-value",
        "PUT",
        "/stock/A-1",
        raw='{"onHand": 3, "onHand": 3}',
        fields=("onHand",),
        role="admin",
    ),
    Case(
        "duplicate-key-in-a-line",
        "POST",
        RES,
        raw='{"cartId": "cart-2", "items": [{"sku": "A-1", "quantity": 1, "quantity": 5}]}',
        fields=("items[0].quantity",),
    ),
    Case(
        "duplicate-key-cartId",
        "POST",
        RES,
        raw='{"cartId": "cart-2", "items": [{"sku": "A-1", "quantity": 1}], "cartId": "cart-1"}',
        fields=("cartId",),
    ),
    Case(
        "duplicate-key-with-Idempotency-Key",
        "POST",
        "/stock/A-1/adjustments",
        raw='{"delta": 1, "reason": "r", "delta": 100}',
        headers={"Idempotency-Key": "k-dup"},
        fields=("delta",),
        role="admin",
    ),
    # issue 9: a Content-Encoding stockhold cannot decode was ignored, the body read as if plain
    Case(
        "content-encoding-gzip-on-plain-json",
        "PUT",
        "/stock/A-1",
        {"onHand": 3},
        headers={"Content-Encoding": "gzip"},
        status=415,
        code="UNSUPPORTED_MEDIA_TYPE",
        fields=("Content-Encoding",),
        role="admin",
    ),
    Case(
        "content-encoding-gzip-on-gzip-bytes",
        "PUT",
        "/stock/A-1",
        raw=gzip.compress(b'{"onHand": 3}'),
        headers={"Content-Encoding": "gzip"},
        status=415,
        code="UNSUPPORTED_MEDIA_TYPE",
        fields=("Content-Encoding",),
        role="admin",
    ),
    Case(
        "content-encoding-br-then-identity",
        "POST",
        RES,
        cart(),
        headers={"Content-Encoding": "br, identity"},
        status=415,
        code="UNSUPPORTED_MEDIA_TYPE",
        fields=("Content-Encoding",),
    ),
    # issue 9: a storefront key on an admin route is 403 whatever its body or query,
    # before validation (which would show it the admin routes' rules)
    *(
        Case(
            f"storefront-on-admin-{name}",
            method,
            path,
            body,
            raw=raw,
            headers=headers or {},
            query=query,
            status=403,
            code="FORBIDDEN",
        )
        for name, method, path, body, raw, headers, query in [
            ("put-stock-valid-body", "PUT", "/stock/A-1", {"onHand": 3}, None, None, None),
            ("put-stock-onHand-negative", "PUT", "/stock/A-1", {"onHand": -1}, None, None, None),
            ("put-stock-unknown-field", "PUT", "/stock/A-1", {"onHand": 3, "onhand": 3}, None, None, None),
            ("put-stock-malformed-json", "PUT", "/stock/A-1", NO_BODY, '{"onHand": ', None, None),
            ("put-stock-no-body", "PUT", "/stock/A-1", NO_BODY, None, None, None),
            ("put-stock-bad-sku-in-path", "PUT", "/stock/A%201", {"onHand": 3}, None, None, None),
            ("put-stock-over-64KiB", "PUT", "/stock/A-1", {"onHand": 3, "x": "x" * 70_000}, None, None, None),
            ("put-stock-text-plain", "PUT", "/stock/A-1", {"onHand": 3}, None, {"Content-Type": "text/plain"}, None),
            ("put-stock-gzip", "PUT", "/stock/A-1", {"onHand": 3}, None, {"Content-Encoding": "gzip"}, None),
            ("put-stock-duplicate-key", "PUT", "/stock/A-1", NO_BODY, '{"onHand": 7, "onHand": 3}', None, None),
            ("put-stock-4301-digits", "PUT", "/stock/A-1", NO_BODY, f'{{"onHand": {HUGE}}}', None, None),
            (
                "put-stock-long-Idempotency-Key",
                "PUT",
                "/stock/A-1",
                {"onHand": 3},
                None,
                {"Idempotency-Key": "k" * 256},
                None,
            ),
            ("adjust-delta-zero", "POST", "/stock/A-1/adjustments", {"delta": 0, "reason": "r"}, None, None, None),
            ("adjust-no-reason", "POST", "/stock/A-1/adjustments", {"delta": 1}, None, None, None),
            ("fulfil-unknown-field", "POST", "/orders/o-1/fulfil", {"carrier": "x"}, None, None, None),
            ("fulfil-json-list", "POST", "/orders/o-1/fulfil", NO_BODY, "[]", None, None),
            ("audit-no-query", "GET", "/audit", NO_BODY, None, None, None),
            ("audit-unknown-query", "GET", "/audit", NO_BODY, None, None, {"bogus": "1"}),
            ("audit-limit-0", "GET", "/audit", NO_BODY, None, None, {"sku": "A-1", "limit": "0"}),
        ]
    ),
]


PARAMS = [
    pytest.param(
        c, id=c.label, marks=[pytest.mark.xfail(strict=True, reason=c.xfail, raises=c.raises)] if c.xfail else []
    )
    for c in CASES
]


@pytest.mark.parametrize("case", PARAMS)
def test_bad_input_is_refused_and_changes_nothing(world: World, case: Case) -> None:
    before_stock, before_res = world.snapshot()
    client = world.admin if case.role == "admin" else world.api
    kw: dict[str, Any] = {"headers": case.headers, "query": case.query}
    if case.raw is not None:
        kw["raw"] = case.raw
    body = None if case.body is NO_BODY else case.body

    resp = client.call(case.method, case.path.format(rid=world.rid), body, **kw)

    err = assert_error(resp, case.status, case.code)
    for name in case.fields:
        assert names_field(err, name), (name, err)
    after_stock, after_res = world.snapshot()
    assert after_stock == before_stock
    assert after_res == before_res
    assert_invariant(after_stock)
    # No reservation was made for the other cart either.
    assert world.api.get("/carts/cart-2/reservation").status == 404


def test_payload_too_large_details_give_the_limit(world: World) -> None:
    resp = world.api.post(RES, cart(customerId="x" * 70_000))
    err = assert_error(resp, 413, "PAYLOAD_TOO_LARGE")
    assert err["details"] == {"limit": 64 * 1024}


def test_body_of_exactly_64KiB_is_not_too_large(world: World) -> None:
    """The limit is 'over 64 KiB': a body of exactly 65536 bytes reaches validation (customerId too long)."""
    base = json.dumps(cart(customerId=""))
    raw = json.dumps(cart(customerId="x" * (64 * 1024 - len(base))))
    assert len(raw.encode()) == 64 * 1024
    before = world.snapshot()
    err = assert_error(world.api.post(RES, raw=raw), 400, "VALIDATION_ERROR")
    assert "customerId" in field_names(err)
    assert world.snapshot() == before


def test_max_lines_is_96_and_a_full_cart_of_stocked_skus_is_held(api: ApiClient, admin: ApiClient) -> None:
    """97 lines are refused even when every SKU is stocked; 96 is the transaction-bounded maximum and works."""
    assert service.MAX_LINES == 96
    skus = [f"L-{i:03d}" for i in range(service.MAX_LINES + 1)]
    for sku in skus:
        assert admin.put(f"/stock/{sku}", {"onHand": 3}).status == 200
    listing = api.get("/stock", query={"skus": ",".join(skus)})
    assert listing.status == 200 and listing.body["missing"] == []
    before = {s["sku"]: {k: v for k, v in s.items() if k != "updatedAt"} for s in listing.body["items"]}

    too_many = api.post(RES, {"cartId": "big", "items": [line(s, 1) for s in skus]})
    err = assert_error(too_many, 400, "VALIDATION_ERROR")
    assert "items" in field_names(err)
    after = api.get("/stock", query={"skus": ",".join(skus)}).body["items"]
    assert {s["sku"]: {k: v for k, v in s.items() if k != "updatedAt"} for s in after} == before

    full = api.post(RES, {"cartId": "big", "items": [line(s, 2) for s in skus[: service.MAX_LINES]]})
    assert full.status == 201, full.body
    assert len(full.body["items"]) == service.MAX_LINES
    after = {s["sku"]: s for s in api.get("/stock", query={"skus": ",".join(skus)}).body["items"]}
    for sku in skus[: service.MAX_LINES]:
        assert (after[sku]["reserved"], after[sku]["available"]) == (2, 1), after[sku]
    assert (after[skus[-1]]["reserved"], after[skus[-1]]["available"]) == (0, 3)
    assert_invariant(after)


def test_validate_also_refuses_97_lines(world: World) -> None:
    items = [line(s) for s in MANY[: service.MAX_LINES + 1]]
    err = assert_error(world.api.post("/stock/validate", {"items": items}), 400, "VALIDATION_ERROR")
    assert "items" in field_names(err)


# --- issue 9: a control character in the path matches no route ----------------------------
#
# Python's ``$`` also matches before a final "\n", so Powertools' route regexes took
# ``PUT /stock/MUG%0A`` for ``PUT /stock/MUG`` and wrote MUG. On AWS, API Gateway hands
# such a path to the function, so the function itself must refuse it; the local gateway
# must not match it either.

# A value for each path parameter the template uses: the fixture's own records where it has them.
PARAM_VALUES = {
    "sku": "A-1",
    "reservationId": "{rid}",
    "cartId": "cart-1",
    "checkoutId": "co-1",
    "orderId": "o-1",
    "locationId": "default",
}
TEMPLATE_ROUTES = [r for r in apigw.routes() if r.function == "ApiFunction" and r.resource != "/openapi.json"]


def concrete(resource: str, rid: str) -> str:
    path = resource
    for name, value in PARAM_VALUES.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path.replace("{rid}", ""), f"no test value for a parameter of {resource}"
    return path.format(rid=rid)


def forwarded(client: ApiClient, method: str, path: str, body: Any = None) -> ApiResponse:
    """Call the handler with ``path`` as API Gateway could forward it: under the template route
    that the path minus its control characters names (the local gateway would not match it)."""
    clean = "".join(ch for ch in path if ch.isprintable())
    found = apigw.find_route(method, clean)
    assert found, (method, clean)
    route, params = found
    event = apigw.build_event(
        route,
        params,
        path=path,
        headers={"Content-Type": "application/json"},
        body=json.dumps(body) if body is not None else None,
        authorizer={"storeId": client.store, "role": client.role, "principalId": client.store},
    )
    out = client.handler(event, LambdaContext())
    return ApiResponse(
        out["statusCode"], out.get("headers") or {}, json.loads(out["body"]) if out.get("body") else None
    )


def assert_no_route(resp: ApiResponse) -> None:
    err = assert_error(resp, 404, "NOT_FOUND")
    assert err["message"] == "no such route", err  # refused before any handler, not an unknown record


@pytest.mark.parametrize("route", TEMPLATE_ROUTES, ids=lambda r: f"{r.method} {r.resource}")
def test_every_route_refuses_a_path_ending_in_newline(world: World, route: apigw.Route) -> None:
    """Every template route: its path plus a final newline is no route, and changes nothing."""
    before = world.snapshot()
    path = concrete(route.resource, world.rid) + "\n"
    body = {"onHand": 3} if route.resource == "/stock/{sku}" else {"delta": 1, "reason": "r"}
    resp = forwarded(world.admin, route.method, path, body if route.method in ("PUT", "POST", "PATCH") else None)
    assert_no_route(resp)
    assert world.snapshot() == before


@pytest.mark.parametrize(
    "path",
    [
        "/stock/NEW-1\n",
        "/stock/NEW-1\r\n",
        "/stock/NEW-1\x00",
        "/stock/NEW-1\t",
        "/stock/NEW\n-1",
        "/stock/NEW-1\x7f",
        "/stock/NEW-1\x85",
        "/stock/NEW-1%0A",
    ],
    ids=repr,
)
def test_put_stock_with_a_control_character_in_the_sku_creates_no_record(admin: ApiClient, path: str) -> None:
    """``PUT /stock/MUG%0A`` wrote SKU ``MUG``: now no SKU is made, whatever the gateway decoded."""
    assert_no_route(forwarded(admin, "PUT", path, {"onHand": 3}))
    assert admin.get("/stock/NEW-1").status == 404
    assert admin.get("/stock/NEW").status == 404


def test_reservation_path_ending_in_newline_is_no_route_and_the_hold_stays(world: World) -> None:
    before = world.snapshot()
    assert_no_route(world.api.get(f"/reservations/{world.rid}\n"))
    for step in ("release", "confirm", "extend"):
        body = {"orderId": "o-1"} if step == "confirm" else {}
        assert_no_route(forwarded(world.api, "POST", f"/reservations/{world.rid}/{step}\n", body))
        assert_no_route(forwarded(world.api, "POST", f"/reservations/{world.rid}\n/{step}", body))
    assert world.snapshot() == before
    assert before[1]["status"] == "ACTIVE"


def test_the_local_gateway_matches_no_route_for_a_literal_segment_ending_in_newline() -> None:
    """tools/apigw.py matches the whole path, as API Gateway does: ``/adjustments\\n`` is not ``/adjustments``."""
    assert apigw.find_route("POST", "/stock/MUG/adjustments\n") is None
    assert apigw.find_route("POST", "/reservations/r-1/release\n") is None
    assert apigw.find_route("GET", "/audit\n") is None
    assert apigw.find_route("POST", "/stock/MUG/adjustments") is not None


# --- issue 9: which routes are admin is decided once -------------------------------------


def test_the_admin_routes_are_the_ones_api_md_names() -> None:
    """Derived from the handlers (``caller(..., admin=True)``); API.md names these."""
    app = load_function("api")
    assert {(r.method, r.openapi_path) for r in app.ACCESS.admin_routes} == {
        ("PUT", "/stock/{sku}"),
        ("PUT", "/stock/{sku}/locations/{locationId}"),
        ("PUT", "/locations/{locationId}"),
        ("POST", "/stock/{sku}/adjustments"),
        ("POST", "/orders/{orderId}/fulfil"),
        ("GET", "/audit"),
    }


def test_an_admin_key_still_gets_validation_errors_on_admin_routes(world: World) -> None:
    before = world.snapshot()
    err = assert_error(world.admin.put("/stock/A-1", {"onHand": -1}), 400, "VALIDATION_ERROR")
    assert "onHand" in field_names(err)
    assert world.snapshot() == before


def test_a_storefront_403_on_an_admin_route_names_no_field(world: World) -> None:
    """The refusal shows a storefront key nothing of the admin route's rules."""
    err = assert_error(world.api.put("/stock/A-1", {"onHand": -1, "bogus": 1}), 403, "FORBIDDEN")
    assert err["details"] == {}
    assert "onHand" not in err["message"] and "bogus" not in err["message"]


def test_a_storefront_key_on_an_admin_route_spends_no_idempotency_key(world: World) -> None:
    """The 403 comes before the Idempotency-Key is recorded: the admin may use the same key afterwards."""
    headers = {"Idempotency-Key": "k-shared"}
    assert_error(world.api.put("/stock/A-1", {"onHand": 4}, headers=headers), 403, "FORBIDDEN")
    assert world.admin.put("/stock/A-1", {"onHand": 12}, headers=headers).status == 200
    assert world.admin.get("/stock/A-1").body["onHand"] == 12


# --- issue 9: Content-Encoding identity is plain --------------------------------------------


@pytest.mark.parametrize("value", ["identity", "Identity", " identity "])
def test_content_encoding_identity_is_accepted(world: World, value: str) -> None:
    resp = world.admin.put("/stock/A-1", {"onHand": 12}, headers={"Content-Encoding": value})
    assert resp.status == 200, resp.body
    assert resp.body["onHand"] == 12


def test_unsupported_content_encoding_says_what_is_accepted(world: World) -> None:
    resp = world.admin.put("/stock/A-1", {"onHand": 3}, headers={"Content-Encoding": "gzip"})
    err = assert_error(resp, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert {k.lower(): v for k, v in resp.headers.items()}.get("accept-encoding") == "identity", resp.headers
    assert "gzip" in err["message"]


def test_an_int_of_exactly_4300_digits_is_a_plain_validation_error(world: World) -> None:
    """At the limit the body parses; the value is then simply out of range for onHand."""
    before = world.snapshot()
    err = assert_error(world.admin.put("/stock/A-1", raw='{"onHand": ' + "7" * 4300 + "}"), 400, "VALIDATION_ERROR")
    assert "onHand" in field_names(err)
    assert world.snapshot() == before
