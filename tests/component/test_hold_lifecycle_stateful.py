"""Hypothesis interleaves reserve, extend, confirm, release, expire (timer), time passing,
TTL deletion (+ the backstop), reconciliation, checkouts (start, update, payment,
complete, cancel) and orders (fulfil, cancel), on a store whose stock may sit in several
locations (priorities, an inactive one), with backorders and purchase limits, and admins
placing, adjusting and re-setting stock and locations in between. Reserves and checkouts
draw a customer, ``split`` and ``locationIds``.

After every step, per cell (a SKU at one location): the counters add up, never go below
their floor (0; the ``default`` cell: -backorderLimit) and equal what the records
themselves say: reserved = units of ACTIVE holds on that cell, allocated = units of
CONFIRMED holds whose order is still PLACED. Each customer's allowance ``used`` equals the
counted units of their ACTIVE holds plus their PLACED or FULFILLED orders (released,
expired and cancelled give theirs back), and a checkout is ``checkout`` exactly while its
hold is ACTIVE. Each reserve is also judged against the rules of "Stock in many places"
as read just before it (which cells a line takes, why it may be refused).

At most three cells per SKU (``default`` and two locations): moto caps a transaction at
25 actions, and a replacing checkout touches the old and new holds' cells together."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import boto3
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule
from moto import mock_aws

from stockhold import wiring
from stockhold.data.schema import ALLOWANCE, STOCK, from_av, location_of, reservation_from_item, to_av
from stockhold.domain.allocation import Rules
from stockhold.domain.errors import (
    CartAlreadyReserved,
    CheckoutNotOpen,
    ExtensionLimitReached,
    HeldByCheckout,
    InsufficientStock,
    NotFound,
    OrderNotOpen,
    PurchaseLimitReached,
    ReservationExpired,
    ReservationNotActive,
    StockConflict,
    ValidationFailed,
)
from stockhold.domain.models import (
    DEFAULT_LOCATION,
    CheckoutStatus,
    Line,
    Location,
    OrderStatus,
    ReservationStatus,
    StockLevel,
)
from stockhold.domain.rules import ExpirePath
from stockhold.settings import Settings
from stockhold.wiring import build
from tools.template import create_tables

SKUS = ("A", "B", "C")
LOCATIONS = ("north", "south")
PLACES = (DEFAULT_LOCATION, *LOCATIONS)
CUSTOMERS = (None, "u1", "u2")
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
# What a reserve or a checkout may also answer: a limit, or a limited SKU without customerId.
REFUSED = (*EXPECTED, PurchaseLimitReached, ValidationFailed)

location_ids = st.none() | st.lists(st.sampled_from(PLACES), min_size=1, max_size=3, unique=True).map(tuple)
customers = st.sampled_from(CUSTOMERS)


def takes(
    quantity: int, available: Mapping[str, int], order: list[str], backorder_limit: int, split: bool
) -> tuple[dict[str, int], int] | None:
    """What API.md says a line takes (units per location, units backordered), or None: short.
    Allowed locations in ``order``; only ``default`` goes below zero, once the rest is used."""
    give = {x: max(0, available.get(x, 0)) for x in order}
    room = 0
    if backorder_limit > 0 and DEFAULT_LOCATION in order:
        room = max(0, backorder_limit + min(0, available.get(DEFAULT_LOCATION, 0)))
    if not split:
        whole = next((x for x in order if give[x] >= quantity), None)
        if whole is not None:
            return {whole: quantity}, 0
        stock = give.get(DEFAULT_LOCATION, 0)
        if room and stock + room >= quantity:
            return {DEFAULT_LOCATION: quantity}, quantity - stock
        return None
    got: dict[str, int] = {}
    need = quantity
    for x in order:
        part = min(need, give[x])
        if part:
            got[x] = part
            need -= part
    if need > room:
        return None
    if need:
        got[DEFAULT_LOCATION] = got.get(DEFAULT_LOCATION, 0) + need
    return got, need


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
        self.places: dict[str, tuple[int, bool]] = {}  # defined locations: (priority, active)
        self.most_per_customer: dict[str, int] = {}  # per SKU, the highest maxPerCustomer it ever had
        self.holds: list[dict[str, Any]] = []  # the RESERVATION items, as the last invariant check read them

    def teardown(self) -> None:
        self._mock.stop()
        wiring.reset()

    # ----- stock in many places: set up, then changed by admins between the other steps

    @initialize(
        spread=st.integers(0, 3),
        priorities=st.tuples(st.integers(0, 2), st.integers(0, 2), st.none() | st.integers(0, 2)),
        south_active=st.booleans(),
        units=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 4), st.integers(0, 4)), min_size=3, max_size=3),
        limits=st.lists(
            st.tuples(
                st.sampled_from(SKUS),
                st.sampled_from([0, 2, 4]),
                st.none() | st.integers(2, 4),
                st.none() | st.integers(3, 6),
            ),
            max_size=2,
            unique_by=lambda t: t[0],
        ),
    )
    def stock_in_places(
        self,
        spread: int,
        priorities: tuple[int, int, int | None],
        south_active: bool,
        units: list[tuple[int, int, int]],
        limits: list[tuple[str, int, int | None, int | None]],
    ) -> None:
        """Mostly (``spread`` > 0) two locations besides ``default``, ``south`` perhaps inactive
        and ``default`` perhaps given a priority, every SKU's units spread over the three;
        otherwise a store without locations, as before them. Then backorder limits and
        purchase limits on some SKUs."""
        if spread:
            north, south, default = priorities
            self._put_location("north", north, True)
            self._put_location("south", south, south_active)
            if default is not None:
                self._put_location(DEFAULT_LOCATION, default, True)
            for sku, (at_default, at_north, at_south) in zip(SKUS, units, strict=True):
                # The opening holds may run first: a lower onHand than they hold is refused (409).
                try:
                    self.stock.set("demo", sku, on_hand=at_default)
                except StockConflict:
                    event("stock set below what is held: refused")
                self.stock.set_at("demo", sku, "north", at_north)
                self.stock.set_at("demo", sku, "south", at_south)
        for sku, backorder_limit, per_cart, per_customer in limits:
            if per_customer is not None:
                self.most_per_customer[sku] = max(per_customer, self.most_per_customer.get(sku, 0))
            self.stock.set(
                "demo", sku, backorder_limit=backorder_limit, max_per_cart=per_cart, max_per_customer=per_customer
            )

    def _put_location(self, location_id: str, priority: int, active: bool) -> None:
        self.stock.put_location(
            "demo", Location(location_id=location_id, name=location_id, priority=priority, active=active)
        )
        self.places[location_id] = (priority, active)

    @rule(where=st.sampled_from(PLACES), priority=st.integers(0, 2), active=st.booleans())
    def define_location(self, where: str, priority: int, active: bool) -> None:
        self._put_location(where, priority, active)

    @rule(sku=st.sampled_from(SKUS), where=st.sampled_from(PLACES), amount=st.integers(-3, 6), absolute=st.booleans())
    def restock(self, sku: str, where: str, amount: int, absolute: bool) -> None:
        """PUT /stock/{sku}/locations/{id} (``absolute``) or an adjustment at a location."""
        before = self.stock.get("demo", sku)
        cell = before.cell(where)
        floor = -before.backorder_limit if where == DEFAULT_LOCATION else 0
        known = where == DEFAULT_LOCATION or where in self.places
        try:
            if absolute:
                self.stock.set_at("demo", sku, where, max(0, amount))
            else:
                self.stock.adjust("demo", sku, amount or 1, reason="counted", location_id=where)
        except NotFound:
            assert not known or (not absolute and cell is None), (sku, where, before)
            return
        except StockConflict:
            assert cell is not None, (sku, where, before)
            delta = max(0, amount) - cell.on_hand if absolute else amount or 1
            assert cell.available + delta < floor or cell.on_hand + delta < 0, ("refused, yet it fits", cell, delta)
            return
        assert known, ("stock placed at an undefined location", where)
        after = self.stock.get("demo", sku).cell(where)
        assert after is not None
        assert after.on_hand == (max(0, amount) if absolute else (cell.on_hand if cell else 0) + (amount or 1))

    @rule(
        sku=st.sampled_from(SKUS),
        on_hand=st.none() | st.integers(0, 8),
        backorder_limit=st.sampled_from([0, 0, 1, 3]),
        per_cart=st.none() | st.integers(1, 4),
        per_customer=st.none() | st.integers(2, 6),
    )
    def sku_settings(
        self, sku: str, on_hand: int | None, backorder_limit: int, per_cart: int | None, per_customer: int | None
    ) -> None:
        """PUT /stock/{sku}: the default cell's onHand (if given) and the SKU's limits."""
        before = self.stock.get("demo", sku)
        head = before.cell(DEFAULT_LOCATION)
        assert head is not None
        try:
            self.stock.set(
                "demo",
                sku,
                on_hand=on_hand,
                backorder_limit=backorder_limit,
                max_per_cart=per_cart,
                max_per_customer=per_customer,
            )
        except StockConflict:
            after = head.available + (0 if on_hand is None else on_hand - head.on_hand)
            assert (on_hand is not None and len(before.locations) > 1) or after < -backorder_limit, (
                "refused, yet it fits",
                before,
                on_hand,
                backorder_limit,
            )
            return
        if per_customer is not None:
            self.most_per_customer[sku] = max(per_customer, self.most_per_customer.get(sku, 0))

    # ----- holds

    def _order(self, available: Mapping[str, int], wanted: tuple[str, ...] | None) -> list[str]:
        """The locations a line may use, in the order it takes from them (API.md, "Allocation")."""
        known = {DEFAULT_LOCATION: (0, True), **self.places}
        if wanted is not None:
            return [x for x in wanted if x in known and known[x][1]]
        active = [x for x, (_, on) in known.items() if on]
        return sorted(active, key=lambda x: (known[x][0], -available.get(x, 0), x))

    def _used(self, customer: str) -> dict[str, int]:
        """The customer's allowance items: units used per SKU."""
        page = self.client.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_av({":pk": f"STORE#demo#CUST#{customer}"}),
            ConsistentRead=True,
        )
        return {i["sku"]: i["used"] for i in map(from_av, page["Items"])}

    @initialize(
        target=reservations,
        opening=st.lists(
            st.tuples(
                st.lists(
                    st.tuples(st.sampled_from(SKUS), st.integers(1, 4)),
                    min_size=1,
                    max_size=3,
                    unique_by=lambda t: t[0],
                ),
                customers,
                st.booleans(),
                location_ids,
            ),
            min_size=1,
            max_size=3,
        ),
    )
    def opening_holds(
        self, opening: list[tuple[list[tuple[str, int]], str | None, bool, tuple[str, ...] | None]]
    ) -> Any:
        """A few holds (one cart each) before anything else, so every run has some to end."""
        made = [
            self._reserve(f"c{n + 1}", lines, 10 + n, False, customer, split, wanted)
            for n, (lines, customer, split, wanted) in enumerate(opening)
        ]
        return multiple(*(x for x in made if x is not None))

    @rule(
        target=reservations,
        cart=st.sampled_from(["c1", "c2", "c3", "c4"]),
        lines=st.lists(
            st.tuples(st.sampled_from(SKUS), st.integers(1, 4)), min_size=1, max_size=3, unique_by=lambda t: t[0]
        ),
        hold=st.integers(1, 30),
        replace=st.booleans(),
        customer=customers,
        split=st.booleans(),
        wanted=location_ids,
    )
    def reserve(
        self,
        cart: str,
        lines: list[tuple[str, int]],
        hold: int,
        replace: bool,
        customer: str | None,
        split: bool,
        wanted: tuple[str, ...] | None,
    ) -> Any:
        made = self._reserve(cart, lines, hold, replace, customer, split, wanted)
        return multiple() if made is None else made

    def _reserve(
        self,
        cart: str,
        lines: list[tuple[str, int]],
        hold: int,
        replace: bool,
        customer: str | None,
        split: bool,
        wanted: tuple[str, ...] | None,
    ) -> str | None:
        """Reserve, and judge the answer by what was read just before (None: refused)."""
        levels = {x.sku: x for x in self.stock.get_many("demo", [s for s, _ in lines])[0]}
        # A replaced hold's own units count for its replacement; a due hold may be ended on the
        # way (its units back). Either makes what was read only a lower bound of what is there.
        replacing = replace and any(h["cartId"] == cart and h["status"] == "ACTIVE" for h in self.holds)
        quiet = not replacing and not any(h["status"] == "ACTIVE" and h["expiresAt"] <= self.now for h in self.holds)
        limited = [s for s, _ in lines if levels[s].max_per_customer is not None]
        used = self._used(customer) if customer is not None and limited else {}
        plans = {}
        for sku, q in lines:
            available = {c.location_id: c.available for c in levels[sku].locations}
            order = self._order(available, wanted)
            plans[sku] = (order, takes(q, available, order, levels[sku].backorder_limit, split))
        try:
            res = self.svc.reserving.reserve(
                "demo",
                cart_id=cart,
                customer_id=customer,
                lines=[Line(sku=s, quantity=q) for s, q in lines],
                hold_seconds=hold,
                replace=replace,
                rules=Rules(location_ids=wanted, split=split),
            )
        except PurchaseLimitReached as refused:
            event("reserve: over a purchase limit")
            if not replacing:
                over = [s for s, q in lines if _over(levels[s], q, customer, used)]
                assert over, ("over no limit", refused.details, levels, used)
            return None
        except ValidationFailed as refused:
            event("reserve: a limited SKU without customerId")
            assert customer is None and limited, refused.details
            return None
        except InsufficientStock as refused:
            event("reserve: short")
            if not replacing:
                assert any(p is None for _, p in plans.values()), ("refused, yet every line fits", refused.short, plans)
            return None
        except EXPECTED as refused:
            event(f"reserve: {type(refused).__name__}")
            return None
        event("reserve: held" + (" (judged exactly)" if quiet else ""))
        if any(len(x.cells()) > 1 for x in res.lines):
            event("reserve: a line split over locations")
        if any(x.backordered for x in res.lines):
            event("reserve: a line backordered")
        if any(x.counted for x in res.lines):
            event("reserve: a line counted against maxPerCustomer")
        self._judge(res.lines, levels, plans, customer, split, quiet)
        if customer is not None and limited and not replacing:
            now_used = self._used(customer)
            for line in res.lines:
                limit = levels[line.sku].max_per_customer
                assert limit is None or now_used.get(line.sku, 0) <= limit, (line, now_used, limit)
        return res.reservation_id

    def _judge(
        self,
        lines: Any,
        levels: Mapping[str, StockLevel],
        plans: Mapping[str, tuple[list[str], tuple[dict[str, int], int] | None]],
        customer: str | None,
        split: bool,
        exact: bool,
    ) -> None:
        """A hold just made: each line within its SKU's limits, from the cells its rules allow
        (and, when nothing else could have moved, exactly the cells API.md says)."""
        for line in lines:
            level, (order, plan) = levels[line.sku], plans[line.sku]
            cells = {c.location_id: c.quantity for c in line.cells()}
            assert level.max_per_cart is None or line.quantity <= level.max_per_cart, (line, level)
            assert line.counted == (level.max_per_customer is not None), (line, level)
            assert sum(cells.values()) == line.quantity and min(cells.values()) > 0, line
            assert set(cells) <= set(order), ("taken from a location it may not use", line, order)
            assert split or len(cells) == 1, ("split, though split is false", line)
            assert line.backordered <= cells.get(DEFAULT_LOCATION, 0), line
            if exact:
                assert plan is not None and (cells, line.backordered) == plan, (line, plan, level, order)

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
        for item in self.holds:
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

    # ----- checkouts and orders

    @rule(
        target=checkouts,
        cart=st.sampled_from(["c3", "c4", "k1", "k2"]),
        lines=st.lists(
            st.tuples(st.sampled_from(SKUS), st.integers(1, 3)), min_size=1, max_size=2, unique_by=lambda t: t[0]
        ),
        customer=customers,
        split=st.booleans(),
        wanted=location_ids,
    )
    def start_checkout(
        self,
        cart: str,
        lines: list[tuple[str, int]],
        customer: str | None,
        split: bool,
        wanted: tuple[str, ...] | None,
    ) -> Any:
        try:
            view = self.checkout.start(
                "demo",
                cart_id=cart,
                customer_id=customer,
                lines=[Line(sku=s, quantity=q) for s, q in lines],
                rules=Rules(location_ids=wanted, split=split),
            )
        except REFUSED:
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

    # ----- what every step leaves true

    @invariant()
    def counters_allowances_and_checkouts_equal_what_the_holds_say(self) -> None:
        every = [from_av(i) for i in self.client.scan(TableName=TABLE, ConsistentRead=True)["Items"]]
        of = {
            kind: [i for i in every if i["type"] == kind]
            for kind in ("RESERVATION", "CHECKOUT", "ORDER", STOCK, ALLOWANCE)
        }
        self.holds = of["RESERVATION"]
        holds = {i["reservationId"]: i["status"] for i in of["RESERVATION"]}
        for chk in of["CHECKOUT"]:
            held = holds.get(chk.get("reservationId", ""))
            if chk["status"] == CheckoutStatus.CHECKOUT.value:
                assert held == "ACTIVE", (chk, held)
            else:
                assert held != "ACTIVE", ("an active hold of a checkout that is not in checkout", chk)

        # What the records say each cell holds, and each customer has used.
        reserved: Counter[tuple[str, str]] = Counter()
        allocated: Counter[tuple[str, str]] = Counter()
        used: Counter[tuple[str, str]] = Counter()
        open_orders = {o["orderId"] for o in of["ORDER"] if o["status"] == OrderStatus.PLACED.value}
        for item in of["RESERVATION"]:
            res = reservation_from_item(item)
            for line in res.lines:  # an unlimited line holds no cell, but may count against a limit
                for cell in line.cells():
                    if res.status is ReservationStatus.ACTIVE:
                        reserved[(line.sku, cell.location_id)] += cell.quantity
                    elif res.status is ReservationStatus.CONFIRMED and res.order_id in open_orders:
                        allocated[(line.sku, cell.location_id)] += cell.quantity
                if res.status is ReservationStatus.ACTIVE and line.counted:
                    used[(res.customer_id or "", line.sku)] += line.quantity
        for order in of["ORDER"]:
            if order["status"] in (OrderStatus.PLACED.value, OrderStatus.FULFILLED.value):
                for x in order["lines"]:
                    if x.get("counted"):
                        used[(order.get("customerId") or "", x["sku"])] += x["quantity"]

        # Every cell: counters add up, above their floor, and equal the records.
        # TTL may delete an ended hold's history only after retention, which this run never reaches.
        cells = {(i["sku"], location_of(i["location"])): i for i in of[STOCK]}
        assert set(reserved) | set(allocated) <= set(cells), ("units held on a cell that does not exist", cells)
        for (sku, where), cell in cells.items():
            head = cells[(sku, DEFAULT_LOCATION)]
            floor = -head.get("backorderLimit", 0) if where == DEFAULT_LOCATION else 0
            counters = cell["onHand"], cell["reserved"], cell["allocated"]
            assert min(counters) >= 0 and cell["available"] >= floor, (sku, where, cell, floor)
            assert cell["available"] + cell["reserved"] + cell["allocated"] == cell["onHand"], (sku, where, cell)
            assert cell["reserved"] == reserved[(sku, where)], (sku, where, cell, reserved)
            assert cell["allocated"] == allocated[(sku, where)], (sku, where, cell, allocated)

        # What a GET /stock answers: the sums over the cells, each cell as stored.
        for level in self.stock.get_many("demo", SKUS)[0]:
            mine = [c for (sku, _), c in cells.items() if sku == level.sku]
            for name in ("on_hand", "reserved", "allocated", "available"):
                stored = "onHand" if name == "on_hand" else name
                assert getattr(level, name) == sum(c[stored] for c in mine), (level, mine)
            assert {c.location_id for c in level.locations} == {location_of(c["location"]) for c in mine}, level

        # Every customer's allowance: used == their counted held and ordered units, never above a limit.
        stored_used = {(i["customerId"], i["sku"]): i["used"] for i in of[ALLOWANCE]}
        for key in set(stored_used) | set(used):
            assert stored_used.get(key, 0) == used[key], ("allowance", key, stored_used, used)
            assert used[key] <= self.most_per_customer.get(key[1], 0), (key, used, self.most_per_customer)


def _over(level: StockLevel, quantity: int, customer: str | None, used: Mapping[str, int]) -> bool:
    """The line is over ``maxPerCart``, or would take the customer over ``maxPerCustomer``."""
    if level.max_per_cart is not None and quantity > level.max_per_cart:
        return True
    limit = level.max_per_customer
    return customer is not None and limit is not None and used.get(level.sku, 0) + quantity > limit


TestHoldLifecycle = HoldLifecycle.TestCase
TestHoldLifecycle.settings = settings(
    max_examples=12,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_a_customers_first_hold_of_a_sku_is_refused_above_max_per_customer(aws: None) -> None:
    """Found by the machine above: a customer with no allowance item yet for a SKU could hold
    more than its maxPerCustomer in one go (API.md: "maxPerCustomer bounds the units one
    customerId holds plus has in placed or fulfilled orders")."""
    svc = build(boto3.client("dynamodb"), Settings(TABLE_NAME=TABLE), lambda: 1_800_000_000_000)
    svc.stock.set("demo", "A", on_hand=6, max_per_customer=3)
    try:
        held = svc.reserving.reserve("demo", cart_id="c1", customer_id="u1", lines=[Line(sku="A", quantity=4)])
    except PurchaseLimitReached as refused:
        assert refused.details["items"] == [{"sku": "A", "requested": 4, "limit": 3, "used": 0}]
    else:
        raise AssertionError(f"held 4 of A, over maxPerCustomer 3: {held.lines}")
    assert svc.stock.get("demo", "A").reserved == 0
