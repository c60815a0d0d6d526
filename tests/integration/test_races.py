"""Many shoppers at once, against DynamoDB Local: never more held than stock, counters always add up."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, TypeVar

import pytest

from stockhold.domain.errors import (
    InsufficientStock,
    ReservationExpired,
    ReservationNotActive,
    StockholdError,
)
from stockhold.domain.models import Line, ReservationStatus
from stockhold.wiring import Services
from tests.integration.conftest import assert_invariants, race

pytestmark = pytest.mark.integration
T = TypeVar("T")
SHOPPERS = 32


def test_32_shoppers_race_for_the_last_5_units(local: Services) -> None:
    local.stock.set("demo", "LAST", on_hand=5, low_stock_threshold=None, unlimited=False)
    results = race(
        SHOPPERS,
        lambda i: local.reserving.reserve(
            "demo", cart_id=f"c{i}", customer_id=None, lines=[Line(sku="LAST", quantity=1)]
        ),
    )
    won = [r for r in results if not isinstance(r, StockholdError)]
    lost = [r for r in results if isinstance(r, StockholdError)]
    assert len(won) == 5
    assert all(isinstance(e, InsufficientStock) for e in lost), lost
    assert all(
        e.short == [{"sku": "LAST", "requested": 1, "available": 0}] for e in lost if isinstance(e, InsufficientStock)
    )
    level = local.stock.get("demo", "LAST")
    assert (level.available, level.reserved, level.on_hand) == (0, 5, 5)
    assert_invariants(local)


def test_overlapping_multi_line_carts_never_hold_more_than_stock(local: Services) -> None:
    skus = {"A": 7, "B": 5, "C": 3, "D": 10}
    for sku, n in skus.items():
        local.stock.set("demo", sku, on_hand=n, low_stock_threshold=None, unlimited=False)
    rng = random.Random(7)
    carts = [
        [Line(sku=s, quantity=rng.randint(1, 3)) for s in rng.sample(sorted(skus), rng.randint(2, 4))]
        for _ in range(SHOPPERS)
    ]
    results = race(
        SHOPPERS, lambda i: local.reserving.reserve("demo", cart_id=f"m{i}", customer_id=None, lines=carts[i])
    )
    held: Counter[str] = Counter()
    for cart, result in zip(carts, results, strict=True):
        if isinstance(result, StockholdError):
            assert isinstance(result, InsufficientStock)
            continue
        for line in cart:
            held[line.sku] += line.quantity
    assert any(not isinstance(r, StockholdError) for r in results)
    for sku, n in skus.items():
        level = local.stock.get("demo", sku)
        assert level.reserved == held[sku] <= n, sku
        assert level.available == n - held[sku]
    assert_invariants(local)


def test_all_or_nothing_when_one_line_is_short(local: Services) -> None:
    local.stock.set("demo", "P", on_hand=10, low_stock_threshold=None, unlimited=False)
    local.stock.set("demo", "Q", on_hand=1, low_stock_threshold=None, unlimited=False)
    local.stock.set("demo", "R", on_hand=0, low_stock_threshold=None, unlimited=False)
    with pytest.raises(InsufficientStock) as refused:
        local.reserving.reserve(
            "demo",
            cart_id="c",
            customer_id=None,
            lines=[
                Line(sku="P", quantity=2),
                Line(sku="Q", quantity=2),
                Line(sku="R", quantity=1),
                Line(sku="NOPE", quantity=1),
            ],
        )
    # Every short line is reported, read from the cancellation reasons of the one transaction.
    assert refused.value.short == [
        {"sku": "Q", "requested": 2, "available": 1},
        {"sku": "R", "requested": 1, "available": 0},
        {"sku": "NOPE", "requested": 1, "available": 0},
    ]
    assert local.stock.get("demo", "P").available == 10
    assert_invariants(local)


def test_confirm_and_release_race_on_one_hold_exactly_one_wins(local: Services) -> None:
    local.stock.set("demo", "X", on_hand=100, low_stock_threshold=None, unlimited=False)
    confirmed = 0
    for round_ in range(20):
        res = local.reserving.reserve("demo", cart_id=f"r{round_}", customer_id=None, lines=[Line(sku="X", quantity=3)])

        def end(i: int, rid: str = res.reservation_id) -> Any:
            if i % 2:
                return local.holds.confirm("demo", rid, f"o-{rid}")
            return local.holds.release("demo", rid, "cancelled")

        results = race(8, end)
        final = local.holds.get("demo", res.reservation_id)
        assert final.status in (ReservationStatus.CONFIRMED, ReservationStatus.RELEASED)
        confirmed += final.status is ReservationStatus.CONFIRMED
        for r in results:
            if isinstance(r, StockholdError):
                assert isinstance(r, ReservationNotActive), r
            else:
                assert r.status is final.status  # retries of the winner's kind answer the same
    level = local.stock.get("demo", "X")
    assert level.reserved == 0
    assert level.allocated == 3 * confirmed and level.available == 100 - 3 * confirmed
    assert_invariants(local)


def test_mixed_traffic_keeps_the_invariant(local: Services) -> None:
    """Reserve, extend, confirm and release interleaved on shared SKUs by 32 threads."""
    for sku in "UVW":
        local.stock.set("demo", sku, on_hand=20, low_stock_threshold=None, unlimited=False)

    def shopper(i: int) -> Any:
        rng = random.Random(i)
        outcomes = []
        for step in range(4):
            lines = [Line(sku=s, quantity=rng.randint(1, 3)) for s in rng.sample("UVW", rng.randint(1, 3))]
            try:
                res = local.reserving.reserve("demo", cart_id=f"s{i}-{step}", customer_id=None, lines=lines)
            except InsufficientStock:
                outcomes.append("refused")
                continue
            if rng.random() < 0.5:
                local.holds.extend("demo", res.reservation_id, 600)
            choice = rng.choice(["confirm", "release", "keep"])
            try:
                if choice == "confirm":
                    local.holds.confirm("demo", res.reservation_id, f"o{i}-{step}")
                elif choice == "release":
                    local.holds.release("demo", res.reservation_id, "cancelled")
            except (ReservationNotActive, ReservationExpired):
                pass
            outcomes.append(choice)
        return outcomes

    results = race(SHOPPERS, shopper)
    assert not any(isinstance(r, StockholdError) for r in results), results
    assert_invariants(local)
