"""The Sweep index's keys spread its writes: no index partition takes more than its share
(docs/flash-sales.md, "The Sweep index")."""

from __future__ import annotations

from collections import Counter

from stockhold.data.schema import CELL_SHARDS, HOLD_SHARDS, hold_sweep_keys, stock_sweep_keys
from stockhold.domain.ids import new_id


def test_holds_spread_evenly_over_every_shard() -> None:
    n = HOLD_SHARDS * 200
    load = Counter(hold_sweep_keys(new_id("res_"), 1_800_000_000_000)["sweepPk"] for _ in range(n))
    assert len(load) == HOLD_SHARDS  # every shard is used
    assert max(load.values()) < 1.5 * n / HOLD_SHARDS, load.most_common(3)  # none runs hot


def test_holds_due_in_the_same_millisecond_still_spread() -> None:
    """A flash sale's holds are made, and fall due, together: the deadline is not the key."""
    keys = {hold_sweep_keys(new_id("res_"), 1_800_000_000_000)["sweepPk"] for _ in range(1000)}
    assert len(keys) > HOLD_SHARDS * 0.9


def test_the_cells_of_one_sku_sit_on_different_shards() -> None:
    """Each cell's entry is written whenever its ``reserved`` changes: a SKU's cells at
    different locations must not share one index partition."""
    places = ["default", *(f"shop-{n}" for n in range(31))]
    shards = {stock_sweep_keys("demo", "HOT", x)["sweepPk"] for x in places}
    assert len(shards) >= 24  # 32 cells: nearly all apart (hashing: a few may meet)
    assert stock_sweep_keys("demo", "HOT")["sweepSk"] == "demo#HOT"
    assert stock_sweep_keys("demo", "HOT", "shop-1")["sweepSk"] == "demo#HOT#shop-1"


def test_cells_of_many_skus_spread_evenly() -> None:
    n = CELL_SHARDS * 100
    load = Counter(stock_sweep_keys("demo", f"SKU-{i}")["sweepPk"] for i in range(n))
    assert len(load) == CELL_SHARDS
    assert max(load.values()) < 1.5 * n / CELL_SHARDS, load.most_common(3)
