"""The domain's pure rules (stockhold.domain.rules): what each transition moves, the
deadline and retention rules, and what a checkout does when its hold ends."""

from __future__ import annotations

import pytest

from stockhold.domain.errors import ValidationFailed
from stockhold.domain.models import (
    Checkout,
    CheckoutStatus,
    HeldLine,
    Line,
    OrderStatus,
    Reservation,
    ReservationStatus,
)
from stockhold.domain.rules import (
    WARN_LOOKBACK_SECONDS,
    StockMove,
    active_purge_at,
    check_lines,
    checkout_after,
    confirm_moves,
    effective_status,
    ended_purge_at,
    expiring_notice_at,
    expiry_slot,
    hold_seconds,
    order_moves,
    release_moves,
    reserve_moves,
    short_lines,
    warn_slot,
    warn_window,
)
from stockhold.settings import Settings

NOW = 1_800_000_000_000


def hold(*lines: tuple[str, int, bool], checkout: str | None = None, expires_in: int = 60_000) -> Reservation:
    return Reservation(
        reservation_id="res_1",
        store_id="demo",
        cart_id="c-1",
        customer_id=None,
        status=ReservationStatus.ACTIVE,
        lines=tuple(HeldLine(sku=s, quantity=q, held=h) for s, q, h in lines),
        created_at=NOW,
        expires_at=NOW + expires_in,
        extensions_used=0,
        max_extensions=3,
        checkout_id=checkout,
    )


def test_a_replacing_hold_moves_only_the_net_difference_per_sku() -> None:
    old = hold(("A", 3, True), ("B", 1, True))
    new = hold(("A", 1, True), ("C", 2, True), ("U", 1, False))
    assert reserve_moves(new, old) == [
        StockMove("A", available=2, reserved=-2),
        StockMove("C", available=-2, reserved=2),
        StockMove("U", require_unlimited=True),
        StockMove("B", available=1, reserved=-1),
    ]


def test_an_unchanged_line_of_a_replacement_writes_nothing() -> None:
    assert reserve_moves(hold(("A", 2, True)), hold(("A", 2, True))) == []


def test_each_ending_moves_held_units_and_skips_unlimited_lines() -> None:
    lines = hold(("A", 2, True), ("U", 5, False)).lines
    assert release_moves(lines) == [StockMove("A", reserved=-2, available=2)]
    assert confirm_moves(lines) == [StockMove("A", reserved=-2, allocated=2)]
    assert order_moves(lines, OrderStatus.FULFILLED) == [StockMove("A", allocated=-2, on_hand=-2)]
    assert order_moves(lines, OrderStatus.CANCELLED) == [StockMove("A", allocated=-2, available=2)]


@pytest.mark.parametrize("requested", [59, 1801, 0])
def test_hold_time_outside_the_bounds_is_a_validation_error(requested: int) -> None:
    with pytest.raises(ValidationFailed) as raised:
        hold_seconds(Settings(), requested)
    assert raised.value.details["fields"][0]["field"] == "holdSeconds"


def test_no_hold_time_means_the_store_default() -> None:
    assert hold_seconds(Settings(DEFAULT_HOLD_SECONDS=600), None) == 600


def test_duplicate_skus_and_empty_carts_are_refused() -> None:
    with pytest.raises(ValidationFailed):
        check_lines([Line(sku="A", quantity=1), Line(sku="A", quantity=2)])
    with pytest.raises(ValidationFailed):
        check_lines([])


def test_retention_times_are_epoch_seconds_from_the_settings() -> None:
    s = Settings(TTL_GRACE_SECONDS=3600, HISTORY_RETENTION_DAYS=30)
    assert active_purge_at(NOW + 999, s) == NOW // 1000 + 3600
    assert ended_purge_at(NOW, s) == NOW // 1000 + 30 * 86400


def test_a_checkout_follows_its_holds_end() -> None:
    res = hold(("A", 1, True), checkout="chk_1")
    failed = checkout_after(res, ReservationStatus.RELEASED, "payment_failed")
    assert failed is not None and (failed.status, failed.over) == (CheckoutStatus.ACTIVE, False)
    expired = checkout_after(res, ReservationStatus.EXPIRED, "expired")
    assert expired is not None and (expired.status, expired.action) == (CheckoutStatus.ABANDONED, "checkout_abandoned")
    cancelled = checkout_after(res, ReservationStatus.RELEASED, "cancelled")
    assert cancelled is not None and cancelled.action == "checkout_cancelled"
    assert checkout_after(res, ReservationStatus.CONFIRMED, "confirmed") is None  # completion writes it itself
    assert checkout_after(hold(("A", 1, True)), ReservationStatus.EXPIRED, "expired") is None  # no checkout


def test_a_checkout_reads_abandoned_from_its_holds_deadline_on() -> None:
    res = hold(("A", 1, True), checkout="chk_1")
    chk = Checkout(
        checkout_id="chk_1",
        store_id="demo",
        cart_id="c-1",
        customer_id=None,
        status=CheckoutStatus.CHECKOUT,
        items=(Line(sku="A", quantity=1),),
        reservation_id="res_1",
        created_at=NOW,
        updated_at=NOW,
    )
    assert effective_status(chk, res, NOW) is CheckoutStatus.CHECKOUT
    assert effective_status(chk, res, res.expires_at) is CheckoutStatus.ABANDONED
    paid = res.model_copy(update={"status": ReservationStatus.CONFIRMED})
    assert effective_status(chk, paid, res.expires_at + 1) is CheckoutStatus.COMPLETED


def test_the_expiry_notice_is_a_whole_second_before_the_deadline_and_only_for_checkouts() -> None:
    res = hold(("A", 1, True), checkout="chk_1", expires_in=90_500)
    assert expiring_notice_at(res, 60, NOW) == NOW + 30_000
    assert expiring_notice_at(hold(("A", 1, True)), 60, NOW) is None
    assert expiring_notice_at(res, 0, NOW) is None
    assert expiring_notice_at(res, 60, res.expires_at) is None  # already due


def test_a_refusal_counts_the_replaced_holds_units_as_usable() -> None:
    old = hold(("A", 2, True))
    lines = [Line(sku="A", quantity=5), Line(sku="Z", quantity=1), Line(sku="B", quantity=1)]
    assert short_lines(lines, ["Z"], {"A": 1}, old) == [
        {"sku": "A", "requested": 5, "available": 3},
        {"sku": "Z", "requested": 1, "available": 0},
    ]


# --- slot timers (docs/expiry.md) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_at", "now", "slot"),
    [
        (10_000_000, 9_000_000, 10_000),  # on a whole second: that second
        (10_000_001, 9_000_000, 10_001),  # never before the deadline
        (10_000_999, 9_000_000, 10_001),
        (10_000_000, 9_999_000, 10_001),  # under a second away: the index gets a second to list it
        (10_000_000, 10_500_000, 10_502),  # a late record or a deadline already past: a slot still to come
    ],
)
def test_a_holds_expiry_slot_is_the_first_whole_second_at_its_deadline_and_never_imminent(
    expires_at: int, now: int, slot: int
) -> None:
    assert expiry_slot(expires_at, now) == slot
    assert slot * 1000 >= expires_at or slot * 1000 >= now + 1000


def test_a_warn_slot_is_the_notices_second_or_none_when_that_is_now() -> None:
    assert warn_slot(20_000_000, 10_000_000) == 20_000
    assert warn_slot(10_002_000, 10_000_500) == 10_002
    assert warn_slot(10_001_000, 10_000_500) is None  # next second: warn at once
    assert warn_slot(9_000_000, 10_000_500) is None


def test_warn_windows_of_consecutive_slots_tile_the_deadlines_twice_over() -> None:
    """Each deadline falls in WARN_LOOKBACK_SECONDS consecutive warn slots' windows: one late
    or lost wake-up misses no warning (the conditional warn writes once)."""
    notice = 60
    for deadline in range(95_000, 105_000, 37):  # epoch ms
        covering = [s for s in range(20, 60) if warn_window(s, notice)[0] <= deadline <= warn_window(s, notice)[1]]
        assert len(covering) == WARN_LOOKBACK_SECONDS, deadline
        assert (deadline - notice * 1000) // 1000 == covering[0]  # its own notice second first
