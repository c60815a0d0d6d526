"""A storefront's client, generated from docs/openapi.json with the pinned openapi-python-client,
drives the local stack: reserve -> confirm and checkout -> complete, through its typed models.

The client raises on any status the document does not declare and parses every body with the
document's schemas, so any drift between the document and the API fails here: a missing or
wrong status, a renamed or missing field, an enum value the document does not list, or a field
the API sends that the document does not name (``additional_properties``).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tools.template import ROOT

pytestmark = pytest.mark.e2e
PACKAGE = "stockhold_client"


class Generated:
    """The generated package: ``op("reservations", "create_reservation")`` and ``models``."""

    def __init__(self, package: ModuleType) -> None:
        self.package = package
        self.models = importlib.import_module(f"{PACKAGE}.models")
        self.types = importlib.import_module(f"{PACKAGE}.types")

    def op(self, tag: str, name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")

    def client(self, stack: Stack, key: str | None) -> Any:
        # raise_on_unexpected_status: a status the document does not declare is an error, not None.
        return self.package.AuthenticatedClient(
            base_url=stack.url, token=key or "", raise_on_unexpected_status=True, timeout=30.0
        )


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    """The client of the checked-in document, generated into a temporary folder and imported."""
    out = tmp_path_factory.mktemp("openapi-client")
    config = out / "config.yaml"
    config.write_text("post_hooks: []\n")  # leave the generated code as it is (no ruff run)
    cmd = [
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(ROOT / "docs" / "openapi.json"),
        "--meta",
        "none",
        "--output-path",
        str(out / PACKAGE),
        "--config",
        str(config),
        "--fail-on-warning",  # a part of the document it could not turn into code
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(out))
    try:
        yield Generated(importlib.import_module(PACKAGE))
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def exact(value: Any) -> Any:
    """``value`` after checking that no model in it got a field the document does not name
    (free-form objects, such as error details, have only ``additional_properties``)."""
    fields = getattr(type(value), "__attrs_attrs__", None)
    if fields is not None:
        named = [f.name for f in fields if f.name != "additional_properties"]
        if named:
            assert value.additional_properties == {}, (type(value).__name__, value.additional_properties)
        for name in named:
            exact(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            exact(item)
    return value


def parsed(response: Any, status: int, model: Any) -> Any:
    assert response.status_code == status, (response.status_code, response.content)
    assert isinstance(response.parsed, model), (type(response.parsed), response.content)
    return exact(response.parsed)


def error_code(response: Any, gen: Generated, status: int) -> str:
    err = parsed(response, status, gen.models.ErrorOut).error
    return str(err.code)


def new_sku(gen: Generated, stack: Stack, on_hand: int) -> str:
    sku = f"GEN-{uuid.uuid4().hex[:10]}"
    put = gen.op("stock", "put_stock").sync_detailed(
        sku, client=gen.client(stack, stack.admin.key), body=gen.models.StockIn(on_hand=on_hand)
    )
    level = parsed(put, 200, gen.models.StockOut)
    assert (level.sku, level.on_hand, level.available, level.reserved) == (sku, on_hand, on_hand, 0)
    return sku


def test_reserve_then_confirm_with_the_generated_client(stack: Stack, generated: Generated) -> None:
    m, op = generated.models, generated.op
    front = generated.client(stack, stack.storefront.key)
    sku = new_sku(generated, stack, 5)
    cart, key = f"cart-{uuid.uuid4().hex[:8]}", f"key-{uuid.uuid4().hex}"
    body = m.ReserveIn(cart_id=cart, customer_id="shopper-1", items=[m.LineIn(sku=sku, quantity=2)], hold_seconds=600)

    made = op("reservations", "create_reservation").sync_detailed(client=front, body=body, idempotency_key=key)
    res = parsed(made, 201, m.ReservationOut)
    assert res.status == m.ReservationOutStatus.ACTIVE
    assert (res.cart_id, res.customer_id, [(x.sku, x.quantity) for x in res.items]) == (cart, "shopper-1", [(sku, 2)])
    assert res.ended_at is None and res.order_id is None and res.extensions_left > 0

    again = op("reservations", "create_reservation").sync_detailed(client=front, body=body, idempotency_key=key)
    assert parsed(again, 201, m.ReservationOut).reservation_id == res.reservation_id
    assert again.headers["Idempotent-Replayed"] == "true"

    short = op("reservations", "create_reservation").sync_detailed(
        client=front, body=m.ReserveIn(cart_id=cart + "-b", items=[m.LineIn(sku=sku, quantity=4)])
    )
    assert error_code(short, generated, 409) == "INSUFFICIENT_STOCK"
    assert short.parsed.error.details.additional_properties["items"] == [{"sku": sku, "requested": 4, "available": 3}]

    read = op("reservations", "get_reservation").sync_detailed(res.reservation_id, client=front)
    assert parsed(read, 200, m.ReservationOut).reservation_id == res.reservation_id
    by_cart = op("reservations", "get_cart_reservation").sync_detailed(cart, client=front)
    assert parsed(by_cart, 200, m.ReservationOut).reservation_id == res.reservation_id

    extended = op("reservations", "extend_reservation").sync_detailed(
        res.reservation_id, client=front, body=m.ExtendIn(hold_seconds=900)
    )
    longer = parsed(extended, 200, m.ReservationOut)
    assert longer.expires_at > res.expires_at and longer.extensions_used == 1

    order_id = f"order-{uuid.uuid4().hex[:8]}"
    confirm = op("reservations", "confirm_reservation")
    done = parsed(
        confirm.sync_detailed(res.reservation_id, client=front, body=m.ConfirmIn(order_id=order_id)),
        200,
        m.ReservationOut,
    )
    assert (done.status, done.order_id, done.end_reason) == (m.ReservationOutStatus.CONFIRMED, order_id, "confirmed")
    same = confirm.sync_detailed(res.reservation_id, client=front, body=m.ConfirmIn(order_id=order_id))
    assert parsed(same, 200, m.ReservationOut).to_dict() == done.to_dict()

    release = op("reservations", "release_reservation").sync_detailed(
        res.reservation_id, client=front, body=m.ReleaseIn(reason=m.ReleaseInReason.CANCELLED)
    )
    assert error_code(release, generated, 409) == "RESERVATION_NOT_ACTIVE"

    order = parsed(op("orders", "get_order").sync_detailed(order_id, client=front), 200, m.OrderOut)
    assert (order.status, order.reservation_id, order.checkout_id) == (
        m.OrderOutStatus.PLACED,
        res.reservation_id,
        None,
    )
    level = parsed(op("stock", "get_stock").sync_detailed(sku, client=front), 200, m.StockOut)
    assert (level.on_hand, level.reserved, level.allocated, level.available) == (5, 0, 2, 3)


def test_checkout_then_complete_with_the_generated_client(stack: Stack, generated: Generated) -> None:
    m, op = generated.models, generated.op
    front = generated.client(stack, stack.storefront.key)
    sku = new_sku(generated, stack, 3)
    cart = f"cart-{uuid.uuid4().hex[:8]}"
    start = op("checkout", "create_checkout")
    body = m.CheckoutIn(cart_id=cart, customer_id="shopper-2", items=[m.LineIn(sku=sku, quantity=1)])

    chk = parsed(start.sync_detailed(client=front, body=body), 201, m.CheckoutOut)
    assert chk.status == m.CheckoutOutStatus.CHECKOUT and chk.expires_at is not None
    assert chk.reservation is not None and chk.reservation.status == m.CheckoutHoldOutStatus.ACTIVE
    assert [w.code for w in chk.warnings] == [m.WarningOutCode.LOW_STOCK]  # 2 left of 3: low stock
    resumed = parsed(start.sync_detailed(client=front, body=body), 200, m.CheckoutOut)
    assert resumed.checkout_id == chk.checkout_id

    address = m.AddressIn(first_name="Ada", line1="1 Main St", city="Leeds", country="GB")
    update = op("checkout", "update_checkout").sync_detailed(
        chk.checkout_id, client=front, body=m.CheckoutUpdateIn(shipping_address=address, step="shipping")
    )
    saved = parsed(update, 200, m.CheckoutOut)
    assert saved.step == "shipping" and saved.shipping_address is not None
    assert saved.shipping_address.additional_properties == {
        "firstName": "Ada",
        "line1": "1 Main St",
        "city": "Leeds",
        "country": "GB",
    }

    paying = op("checkout", "enter_checkout_payment").sync_detailed(chk.checkout_id, client=front)
    assert parsed(paying, 200, m.CheckoutOut).step == "payment"

    complete = op("checkout", "complete_checkout").sync_detailed(
        chk.checkout_id, client=front, body=m.CompleteIn(payment_reference="pay-1")
    )
    order = parsed(complete, 201, m.OrderOut)
    assert (order.status, order.checkout_id, order.payment_reference) == (
        m.OrderOutStatus.PLACED,
        chk.checkout_id,
        "pay-1",
    )
    assert [(x.sku, x.quantity, x.unlimited) for x in order.items] == [(sku, 1, False)]

    after = parsed(op("checkout", "get_checkout").sync_detailed(chk.checkout_id, client=front), 200, m.CheckoutOut)
    assert (after.status, after.order_id) == (m.CheckoutOutStatus.COMPLETED, order.order_id)
    assert after.reservation is not None and after.reservation.status == m.CheckoutHoldOutStatus.CONFIRMED
    cancel = op("checkout", "cancel_checkout").sync_detailed(
        chk.checkout_id, client=front, body=m.CheckoutCancelIn(reason=m.CheckoutCancelInReason.CANCELLED)
    )
    assert error_code(cancel, generated, 409) == "CHECKOUT_NOT_OPEN"

    level = parsed(op("stock", "get_stock").sync_detailed(sku, client=front), 200, m.StockOut)
    assert (level.on_hand, level.reserved, level.allocated, level.available) == (3, 0, 1, 2)


def test_the_generated_client_reads_the_declared_errors(stack: Stack, generated: Generated) -> None:
    m, op = generated.models, generated.op
    front = generated.client(stack, stack.storefront.key)
    missing = op("reservations", "get_reservation").sync_detailed("res_nothing_here", client=front)
    assert error_code(missing, generated, 404) == "NOT_FOUND"
    forbidden = op("stock", "put_stock").sync_detailed("GEN-X", client=front, body=m.StockIn(on_hand=1))
    assert error_code(forbidden, generated, 403) == "FORBIDDEN"
    nobody = op("stock", "get_stock").sync_detailed("GEN-X", client=generated.client(stack, "not-a-key"))
    assert error_code(nobody, generated, 401) == "UNAUTHORIZED"
    bad = op("stock", "list_stock").sync_detailed(client=front, skus=" , ")
    assert error_code(bad, generated, 400) == "VALIDATION_ERROR"
    assert Path(generated.package.__file__).parent.name == PACKAGE
