"""Stock events of a SKU kept in several cells, judged on the SKU's total (docs/events.md).

A single-cell SKU's events are decided from one stream record's old and new image
(``stockhold.data.events.decide``). A SKU with cells at other locations has no item that
holds its total, and a record of one cell cannot tell whether the SKU crossed. So for
those records the change feed reads the SKU's cells (one consistent Query of its
partition) and compares the total's state with the last state it published, kept in
one item per SKU: ``STORE#s#SKU#sku`` / ``STOCKSTATE`` (``type: STOCK_STATE``, which
the stream's filters never admit).

- The state item moves only by a conditional write on its ``version``: of two records
  racing over the same crossing (two cells, two stream shards), one writes and emits,
  the other re-reads, sees the state already moved, and emits nothing. Once per crossing.
- The item remembers the record that made the last crossing and the event it made. A
  record redelivered after its crossing was written (a crash before PutEvents) emits that
  same event again, with the same ``eventId``, which the publisher's marker dedupes.
- The total is judged when the feed reads it, not at the instant of the write: a dip
  and a recovery that both landed before the feed looked mean no event. Only a record
  whose image is still its cell's state judges (a redelivered or late one leaves it to the
  later record of that cell), so an event's ``cause`` is the write that made the total.
- A record that crosses nothing writes nothing; the cost is one Query and one GetItem per
  record of a multi-cell SKU (docs/events.md, "What it costs").
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stockhold.data.events import (
    DetailType,
    Event,
    StockState,
    crossing,
    is_multi_cell,
    judge,
    stock_event,
)
from stockhold.data.schema import HEAD_CELL, STOCK, Item, StreamChange, from_av, location_of, stock_pk, to_av
from stockhold.data.transactions import condition_failed
from stockhold.domain.models import rfc3339

STATE_SK = "STOCKSTATE"
STOCK_STATE = "STOCK_STATE"
_TRIES = 4


def state_key(store_id: str, sku: str) -> dict[str, str]:
    return {"pk": stock_pk(store_id, sku), "sk": STATE_SK}


class SkuTotals:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def events_for(self, change: StreamChange, default_threshold: int) -> list[Event]:
        new = change.new
        if change.event_name not in ("INSERT", "MODIFY") or new is None or new.get("type") != STOCK:
            return []
        if not is_multi_cell(new):
            return []
        store_id, sku = str(new["storeId"]), str(new["sku"])
        for _ in range(_TRIES):
            state = self._state(store_id, sku)
            if state is not None and state.get("record") == change.record_id:
                # This record's crossing was written before: the same event again (same eventId).
                if not state.get("detailType"):
                    return []
                return [stock_event(change.record_id, DetailType(state["detailType"]), state["detail"])]
            cells = self._cells(store_id, sku)
            if not _current(cells, new):
                return []  # a later write of this cell is on its way through the stream: it judges
            head = cells.get(HEAD_CELL, {})
            if head.get("unlimited"):
                return []
            threshold = default_threshold if head.get("lowStockThreshold") is None else int(head["lowStockThreshold"])
            total = sum(int(c["available"]) for c in cells.values())
            after = judge(total, threshold)
            before = self._before(state, change, total, threshold)
            found = crossing(before, after)
            if found is None:
                if state is None and self._put(store_id, sku, None, {"state": after.name}):
                    return []
                if state is not None:
                    return []
                continue  # another record wrote the first state meanwhile: judge against it
            detail = _detail(store_id, sku, new, cells, total, threshold)
            moved = {"state": after.name, "record": change.record_id, "detailType": found.value, "detail": detail}
            if self._put(store_id, sku, state, moved):
                return [stock_event(change.record_id, found, detail)]
        return []  # the state kept moving under us: the records that moved it emit

    @staticmethod
    def _before(state: Item | None, change: StreamChange, total: int, threshold: int) -> StockState:
        if state is not None:
            return StockState.named(str(state["state"]))
        new, old = change.new or {}, change.old
        if new.get("location", HEAD_CELL) == HEAD_CELL:
            # No state kept yet: the SKU was one cell until now, judged on its head's images.
            return judge(int(old["available"]), threshold) if old else StockState(out=False, low=False)
        # A cell's record before the head's (the SKU just got its second cell): the total without this write.
        was = int(old["available"]) if old else 0
        return judge(total - int(new["available"]) + was, threshold)

    def _state(self, store_id: str, sku: str) -> Item | None:
        resp = self._client.get_item(TableName=self._table, Key=to_av(state_key(store_id, sku)), ConsistentRead=True)
        return from_av(resp["Item"]) if "Item" in resp else None

    def _cells(self, store_id: str, sku: str) -> dict[str, Item]:
        cells: dict[str, Item] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :cell)",
            "ExpressionAttributeValues": to_av({":pk": stock_pk(store_id, sku), ":cell": "STOCK#"}),
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**kwargs)
            for raw in page.get("Items", []):
                item = from_av(raw)
                cells[str(item.get("location", HEAD_CELL))] = item
            if "LastEvaluatedKey" not in page:
                return cells
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _put(self, store_id: str, sku: str, state: Item | None, values: dict[str, Any]) -> bool:
        version = int(state["version"]) if state is not None else 0
        item: dict[str, Any] = {**state_key(store_id, sku), "type": STOCK_STATE, "storeId": store_id, "sku": sku}
        item.update(values, version=version + 1)
        if state is None:
            condition, names, vals = "attribute_not_exists(pk)", None, None
        else:
            condition, names, vals = "#v = :v", {"#v": "version"}, to_av({":v": version})
        kwargs: dict[str, Any] = {"TableName": self._table, "Item": to_av(item), "ConditionExpression": condition}
        if names:
            kwargs.update(ExpressionAttributeNames=names, ExpressionAttributeValues=vals)
        try:
            self._client.put_item(**kwargs)
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True


_SAME = ("updatedAt", "lastRef", "lastAction", "onHand", "reserved", "allocated", "available")


def _current(cells: dict[str, Item], new: Item) -> bool:
    """The record's image is still its cell's state (a redelivered or late record is not)."""
    now = cells.get(str(new.get("location", HEAD_CELL)))
    return now is not None and all(now.get(k) == new.get(k) for k in _SAME)


def _detail(store_id: str, sku: str, new: Item, cells: dict[str, Item], total: int, threshold: int) -> dict[str, Any]:
    def cell_sum(field: str) -> int:
        return sum(int(c[field]) for c in cells.values())

    return {
        "storeId": store_id,
        "sku": sku,
        "available": total,
        "onHand": cell_sum("onHand"),
        "reserved": cell_sum("reserved"),
        "allocated": cell_sum("allocated"),
        "threshold": threshold,
        "at": rfc3339(int(new["updatedAt"])),
        "cause": {
            "action": new.get("lastAction"),
            "ref": new.get("lastRef"),
            "locationId": location_of(str(new.get("location", HEAD_CELL))),
        },
        "locations": [
            {"locationId": location_of(cell), "available": int(item["available"])}
            for cell, item in sorted(cells.items())
        ],
    }
