"""The Sweep index with its real shard counts, on DynamoDB Local: holds and cells land on
keys all over the index, and reconciliation still finds every one of them
(docs/flash-sales.md, "The Sweep index")."""

from __future__ import annotations

import pytest

from stockhold import wiring
from stockhold.data import schema
from stockhold.data.schema import from_av, reservation_key, stock_key, to_av
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Line, ReservationStatus
from stockhold.wiring import Services, build
from tests.integration.conftest import assert_invariants

pytestmark = [pytest.mark.integration, pytest.mark.real_sweep_shards]
STORE, HOLDS = "demo", 60


def sweep_pk(svc: Services, key: dict[str, str]) -> str:
    item = wiring.dynamodb_client().get_item(TableName=svc.settings.TABLE_NAME, Key=to_av(key), ConsistentRead=True)
    return str(from_av(item["Item"])["sweepPk"])


def test_reconcile_finds_holds_and_cells_on_every_shard(local: Services) -> None:
    assert (schema.HOLD_SHARDS, schema.CELL_SHARDS) == (256, 512)  # not the 8 of the other tests
    made = []
    for i in range(HOLDS):
        sku = f"SPREAD-{i}"
        local.stock.set(STORE, sku, on_hand=2, low_stock_threshold=None, unlimited=False)
        made.append(
            local.reserving.reserve(
                STORE, cart_id=f"c-{i}", customer_id=None, lines=[Line(sku=sku, quantity=1)], hold_seconds=60
            )
        )
    holds_at = {sweep_pk(local, reservation_key(STORE, r.reservation_id)) for r in made}
    cells_at = {sweep_pk(local, stock_key(STORE, f"SPREAD-{i}")) for i in range(HOLDS)}
    assert len(holds_at) > HOLDS * 0.8 and len(cells_at) > HOLDS * 0.85  # spread out, not on 4 keys
    assert max(int(k.split("#")[1]) for k in holds_at) >= 128  # beyond the old and the halfway shards
    assert max(int(k.split("#")[1]) for k in cells_at) >= 256

    # Two minutes on: every hold is overdue past the grace. Reconciliation reads all 256 + 512
    # keys, ends each hold once, and finds no drift in any cell.
    later = build(wiring.dynamodb_client(), local.settings, lambda: now_ms() + 120_000)
    report = later.reconciler.run()
    assert sorted(report.expired) == sorted(r.reservation_id for r in made)
    assert report.drift == []
    assert all(local.holds.get(STORE, r.reservation_id).status is ReservationStatus.EXPIRED for r in made)
    assert all(local.stock.get(STORE, f"SPREAD-{i}").available == 2 for i in range(HOLDS))
    assert later.reconciler.run().as_dict() == {"dryRun": False, "overdue": [], "expired": [], "drift": []}
    assert_invariants(local)


def test_drift_on_a_cell_anywhere_in_the_index_is_found(local: Services) -> None:
    """A cell whose reserved counts a hold that is not there (drift) is found by the recount,
    whichever of the 512 keys it sits on."""
    skus = [f"DRIFT-{i}" for i in range(40)]
    for sku in skus:
        local.stock.set(STORE, sku, on_hand=3, low_stock_threshold=None, unlimited=False)
    client = wiring.dynamodb_client()
    for sku in skus:  # a unit held by nothing: reserved 1, available 2
        client.update_item(
            TableName=local.settings.TABLE_NAME,
            Key=to_av(stock_key(STORE, sku)),
            UpdateExpression="SET reserved = :r, available = :a",
            ExpressionAttributeValues=to_av({":r": 1, ":a": 2}),
        )
    report = local.reconciler.run(dry_run=True)
    assert sorted(d.sku for d in report.drift) == sorted(skus)
