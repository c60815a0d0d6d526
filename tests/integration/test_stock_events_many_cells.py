"""Stock events of a SKU kept at several locations, on DynamoDB Local: judged on the SKU's
total, once per crossing, whichever cell's write crossed it and however the stream's
records are redelivered or raced (stockhold.data.stock_totals, docs/events.md)."""

from __future__ import annotations

from typing import Any

import pytest

from stockhold import wiring
from stockhold.data.schema import stream_change
from stockhold.data.stock_totals import SkuTotals
from stockhold.domain.allocation import Rules
from stockhold.domain.models import Line, Location
from stockhold.wiring import Services, services
from tests.helpers import load_function
from tests.integration.conftest import change_feed_source, race, stream_records
from tools.local.context import LambdaContext

pytestmark = pytest.mark.integration
THRESHOLD = 5  # LOW_STOCK_THRESHOLD's default


def two_locations(svc: Services, sku: str, default: int, leeds: int) -> None:
    svc.stock.put_location("demo", Location(location_id="leeds", name="Leeds", priority=1, active=True))
    svc.stock.set("demo", sku, on_hand=default, low_stock_threshold=None, unlimited=False)
    svc.stock.set_at("demo", sku, "leeds", leeds)


def feed(records: list[dict[str, Any]]) -> Any:
    source = change_feed_source()
    batch = [r for r in records if source.matches(r)]
    return load_function("change_feed").lambda_handler({"Records": batch}, LambdaContext())


def reserve(svc: Services, cart: str, sku: str, quantity: int, **rules: Any) -> str:
    held = svc.reserving.reserve(
        "demo", cart_id=cart, customer_id=None, lines=[Line(sku=sku, quantity=quantity)], rules=Rules(**rules)
    )
    return held.reservation_id


def test_a_cell_running_out_is_not_the_sku_running_out_only_the_total_crossing_is(bus: dict[str, Any]) -> None:
    svc = services()
    two_locations(svc, "MUG", default=4, leeds=6)  # total 10
    seen = 0

    def step() -> list[tuple[str, int]]:
        """The feed's next batch: the records written since the last one."""
        nonlocal seen
        records = stream_records(svc)
        assert feed(records[seen:]) == {"batchItemFailures": []}
        seen = len(records)
        return [(e["detail-type"], e["detail"]["available"]) for e in bus["received"]()]

    # Made at 4 in one cell (low, judged on its image), then 6 more at leeds: 10, not low.
    assert step() == [("StockLow", 4)]
    reserve(svc, "c1", "MUG", 4, location_ids=("default",))
    assert step() == []  # the default cell is out; the SKU is not
    reserve(svc, "c2", "MUG", 1)
    assert step() == [("StockLow", 5)]
    last = reserve(svc, "c3", "MUG", 5)
    assert step() == [("StockOut", 0)]
    svc.holds.release("demo", last, "cancelled")
    assert step() == [("StockBackIn", 5)]

    # The whole stream again (a replay): nothing twice.
    assert feed(stream_records(svc)) == {"batchItemFailures": []}
    assert bus["received"]() == []


def test_a_stock_out_event_carries_the_totals_and_each_location(bus: dict[str, Any]) -> None:
    svc = services()
    two_locations(svc, "JUG", default=2, leeds=3)
    feed(stream_records(svc))
    bus["received"]()
    reserve(svc, "c1", "JUG", 5)
    feed(stream_records(svc))
    (out,) = bus["received"]()
    assert out["detail-type"] == "StockOut"
    detail = out["detail"]
    assert (detail["available"], detail["onHand"], detail["reserved"], detail["allocated"]) == (0, 5, 5, 0)
    assert {x["locationId"]: x["available"] for x in detail["locations"]} == {"default": 0, "leeds": 0}
    assert detail["cause"]["action"] == "reservation_created"


def test_a_record_redelivered_after_its_crossing_was_kept_emits_the_same_event_again(local: Services) -> None:
    """A crash between keeping the crossing and PutEvents: the retry sends that event (same
    eventId, which the publisher's marker and consumers dedupe), never a second crossing."""
    svc = local
    two_locations(svc, "CAP", default=0, leeds=1)
    totals = SkuTotals(wiring.dynamodb_client(), svc.settings.TABLE_NAME)
    made = [stream_change(r) for r in stream_records(svc)]
    kinds = [e["detail-type"] for c in made for e in totals.events_for(c, THRESHOLD)]
    assert kinds == ["StockBackIn"]  # made out in one cell (decide's StockOut), back in with leeds' unit
    reserve(svc, "c1", "CAP", 1)
    later = [stream_change(r) for r in stream_records(svc)][len(made) :]
    (emptied,) = [c for c in later if c.new and c.new.get("type") == "STOCK"]

    first = totals.events_for(emptied, THRESHOLD)
    again = totals.events_for(emptied, THRESHOLD)
    assert [e["detail-type"] for e in first] == ["StockOut"]
    assert again == first


def test_records_of_two_cells_racing_over_one_crossing_emit_it_once(local: Services) -> None:
    svc = local
    two_locations(svc, "HAT", default=3, leeds=3)
    totals = SkuTotals(wiring.dynamodb_client(), svc.settings.TABLE_NAME)
    for change in (stream_change(r) for r in stream_records(svc)):
        totals.events_for(change, THRESHOLD)  # the state so far: 6 available, not low
    reserve(svc, "c1", "HAT", 6)  # one write takes both cells to 0
    late = [stream_change(r) for r in stream_records(svc)][-2:]
    assert {c.new["location"] for c in late if c.new} == {"_", "leeds"}

    emitted = race(8, lambda i: totals.events_for(late[i % 2], THRESHOLD))
    assert all(isinstance(got, list) for got in emitted), emitted
    events = [e for got in emitted if isinstance(got, list) for e in got]
    # Whichever record won the crossing may be retried (the same event again); the other emits none.
    assert events and {e["detail-type"] for e in events} == {"StockOut"}
    assert len({e["detail"]["eventId"] for e in events}) == 1
