"""Hypothesis interleaves reserve, extend, confirm, release, expire (timer), time passing,
TTL deletion (+ the backstop), reconciliation, checkouts (start, update, payment,
complete, cancel) and orders (fulfil, cancel); after every step the counters add up and
equal what the records themselves say: reserved = units of ACTIVE holds, allocated =
units of CONFIRMED holds whose order is still PLACED; and a checkout is ``checkout``
exactly while its hold is ACTIVE."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule
from moto import mock_aws

from stockhold import wiring
from stockhold.data.schema import from_av, reservation_from_item
from stockhold.domain.errors import (
    CartAlreadyReserved,
    CheckoutNotOpen,
    ExtensionLimitReached,
    HeldByCheckout,
    InsufficientStock,
    NotFound,
    OrderNotOpen,
    ReservationExpired,
    ReservationNotActive,
)
from stockhold.domain.models import CheckoutStatus, Line, OrderStatus, ReservationStatus
from stockhold.domain.rules import ExpirePath
from stockhold.settings import Settings
from stockhold.wiring import build
from tools.template import create_tables

SKUS = ("A", "B", "C")
TABLE = "StockholdTable"
EXPECTED = (
    CartAlreadyReserved,
    ExtensionLimitReached,
    InsufficientStock,
    NotFound,
    ReservationExpired,
    ReservationNotActive,
    HeldByCheckout,
    CheckoutNotOpen,
    OrderNotOpen,
)


class HoldLifecycle(RuleBasedStateMachine):
    reservations = Bundle("reservations")
    checkouts = Bundle("checkouts")
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self._mock = mock_aws()
        self._mock.start()
        wiring.reset()
        self.client = boto3.client("dynamodb")
        create_tables(self.client)
        self.now = 1_800_000_000_000
        cfg = Settings(
            TABLE_NAME=TABLE,
            MIN_HOLD_SECONDS=1,
            DEFAULT_HOLD_SECONDS=10,
            MAX_HOLD_SECONDS=60,
            CHECKOUT_HOLD_SECONDS=30,
            PAYMENT_HOLD_SECONDS=60,
            MAX_EXTENSIONS=2,
            TTL_GRACE_SECONDS=5,
            SWEEP_GRACE_SECONDS=3,
            RECONCILE_QUIET_SECONDS=0,
        )
        svc = build(self.client, cfg, lambda: self.now, sleep=lambda _: None)
        self.svc = svc
        self.stock, self.reconciler, self.checkout, self.order = svc.stock, svc.reconciler, svc.checkouts, svc.orders
        for sku in SKUS:
            self.stock.set("demo", sku, on_hand=6, low_stock_threshold=None, unlimited=False)

    def teardown(self) -> None:
        self._mock.stop()
        wiring.reset()

    @rule(
        target=reservations,
        cart=st.sampled_from(["c1", "c2", "c3", "c4"]),
        lines=st.lists(
            st.tuples(st.sampled_from(SKUS), st.integers(1, 4)), min_size=1, max_size=3, unique_by=lambda t: t[0]
        ),
        hold=st.integers(1, 30),
        replace=st.booleans(),
    )
    def reserve(self, cart: str, lines: list[tuple[str, int]], hold: int, replace: bool) -> Any:
        try:
            res = self.svc.reserving.reserve(
                "demo",
                cart_id=cart,
                customer_id=None,
                lines=[Line(sku=s, quantity=q) for s, q in lines],
                hold_seconds=hold,
                replace=replace,
            )
        except EXPECTED:
            return multiple()
        return res.reservation_id

    @rule(rid=reservations, hold=st.integers(1, 60))
    def extend(self, rid: str, hold: int) -> None:
        try:
            self.svc.holds.extend("demo", rid, hold)
        except EXPECTED:
            pass

    @rule(rid=reservations)
    def confirm(self, rid: str) -> None:
        try:
            self.svc.holds.confirm("demo", rid, f"o-{rid}")
        except EXPECTED:
            pass

    @rule(rid=reservations, reason=st.sampled_from(["cancelled", "payment_failed", "manual"]))
    def release(self, rid: str, reason: str) -> None:
        try:
            self.svc.holds.release("demo", rid, reason)
        except EXPECTED:
            pass

    @rule(rid=reservations)
    def timer_fires(self, rid: str) -> None:
        self.svc.expiry.expire("demo", rid, ExpirePath.TIMER)

    @rule(seconds=st.integers(0, 40))
    def time_passes(self, seconds: int) -> None:
        self.now += seconds * 1000

    @rule()
    def ttl_deletes_what_is_due(self) -> None:
        """The TTL service deletes due items; the backstop restores the ACTIVE ones."""
        for item in self._reservation_items():
            if item["purgeAt"] > self.now // 1000:
                continue
            old = self.client.delete_item(
                TableName=TABLE, Key={"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}}, ReturnValues="ALL_OLD"
            )["Attributes"]
            if old["status"]["S"] == "ACTIVE":
                self.svc.expiry.restore_after_ttl(reservation_from_item(from_av(old)))

    @rule()
    def reconcile(self) -> None:
        self.reconciler.run()

    @rule(
        target=checkouts,
        cart=st.sampled_from(["c3", "c4", "k1", "k2"]),
        lines=st.lists(
            st.tuples(st.sampled_from(SKUS), st.integers(1, 3)), min_size=1, max_size=2, unique_by=lambda t: t[0]
        ),
    )
    def start_checkout(self, cart: str, lines: list[tuple[str, int]]) -> Any:
        try:
            view = self.checkout.start(
                "demo", cart_id=cart, customer_id=None, lines=[Line(sku=s, quantity=q) for s, q in lines]
            )
        except EXPECTED:
            return multiple()
        return view.checkout.checkout_id

    @rule(cid=checkouts, step=st.sampled_from(["shipping", "review"]))
    def update_checkout(self, cid: str, step: str) -> None:
        try:
            self.checkout.update("demo", cid, {"step": step})
        except EXPECTED:
            pass

    @rule(cid=checkouts)
    def pay(self, cid: str) -> None:
        try:
            self.checkout.payment("demo", cid)
        except EXPECTED:
            pass

    @rule(target=orders, cid=checkouts)
    def complete(self, cid: str) -> Any:
        try:
            return self.checkout.complete("demo", cid, f"pay-{cid}").order_id
        except EXPECTED:
            return multiple()

    @rule(cid=checkouts, reason=st.sampled_from(["payment_failed", "cancelled"]))
    def cancel_checkout(self, cid: str, reason: str) -> None:
        try:
            self.checkout.cancel("demo", cid, reason)
        except EXPECTED:
            pass

    @rule(oid=orders, fulfil=st.booleans())
    def finish_order(self, oid: str, fulfil: bool) -> None:
        try:
            (self.order.fulfil if fulfil else self.order.cancel)("demo", oid)
        except EXPECTED:
            pass

    def _reservation_items(self) -> list[dict[str, Any]]:
        items = self.client.scan(TableName=TABLE, ConsistentRead=True)["Items"]
        return [from_av(i) for i in items if i["type"]["S"] == "RESERVATION"]

    @invariant()
    def counters_and_checkouts_equal_what_the_holds_say(self) -> None:
        every = [from_av(i) for i in self.client.scan(TableName=TABLE, ConsistentRead=True)["Items"]]
        of = {kind: [i for i in every if i["type"] == kind] for kind in ("RESERVATION", "CHECKOUT", "ORDER")}
        holds = {i["reservationId"]: i["status"] for i in of["RESERVATION"]}
        for chk in of["CHECKOUT"]:
            held = holds.get(chk.get("reservationId", ""))
            if chk["status"] == CheckoutStatus.CHECKOUT.value:
                assert held == "ACTIVE", (chk, held)
            else:
                assert held != "ACTIVE", ("an active hold of a checkout that is not in checkout", chk)
        reserved: Counter[str] = Counter()
        allocated: Counter[str] = Counter()
        open_orders = {o["orderId"] for o in of["ORDER"] if o["status"] == OrderStatus.PLACED.value}
        for item in of["RESERVATION"]:
            res = reservation_from_item(item)
            for line in res.held_lines:
                if res.status is ReservationStatus.ACTIVE:
                    reserved[line.sku] += line.quantity
                elif res.status is ReservationStatus.CONFIRMED and res.order_id in open_orders:
                    allocated[line.sku] += line.quantity
        for sku in SKUS:
            level = self.stock.get("demo", sku)
            assert min(level.on_hand, level.reserved, level.allocated, level.available) >= 0, level
            assert level.available + level.reserved + level.allocated == level.on_hand, level
            # TTL may delete an ended hold's history only after retention, which this run never reaches.
            assert level.reserved == reserved[sku], (sku, level, reserved)
            assert level.allocated == allocated[sku], (sku, level, allocated)


TestHoldLifecycle = HoldLifecycle.TestCase
TestHoldLifecycle.settings = settings(
    max_examples=12, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
