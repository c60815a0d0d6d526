"""Reads of each aggregate, one small repository each (writes go through ``UnitOfWork``).

Strongly consistent reads everywhere except the Sweep index, which is eventually
consistent by nature: only reconciliation (and a refused reserve, looking for dead
holds) reads it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from stockhold.data import schema
from stockhold.data.schema import (
    APIKEY,
    STORE,
    SWEEP_INDEX,
    Item,
    api_key_key,
    cart_checkout_key,
    cart_key,
    checkout_from_item,
    checkout_key,
    from_av,
    location_from_item,
    location_key,
    order_from_item,
    order_key,
    reservation_from_item,
    reservation_key,
    stock_from_item,
    stock_key,
    store_key,
    to_av,
)
from stockhold.data.transactions import TransactionRunner, condition_failed
from stockhold.domain.models import Checkout, Location, Order, Reservation, StockLevel

_SWEEP_PARALLEL = 16  # index queries at a time (the client pools 50 connections: wiring.py)


class StockRepository:
    """A SKU's stock: its head cell (``default``, with the settings) and its other cells."""

    def __init__(self, runner: TransactionRunner) -> None:
        self._runner = runner

    def get(self, store_id: str, sku: str) -> StockLevel | None:
        """The SKU's head (one GetItem), and the other cells it names (one BatchGetItem, only
        for a SKU stocked in more than one location), strongly consistent."""
        head = self._runner.get(stock_key(store_id, sku))
        if head is None:
            return None
        return stock_from_item(head, self._batch([stock_key(store_id, sku, c) for c in sorted(head.get("cells", ()))]))

    def get_many(self, store_id: str, skus: Sequence[str]) -> dict[str, StockLevel]:
        """Up to 100 SKUs: one BatchGetItem of their heads, then one of the other cells the heads
        name (none for a store with one location), strongly consistent."""
        heads = self._batch([stock_key(store_id, sku) for sku in dict.fromkeys(skus)])
        others = self._batch(
            [stock_key(store_id, h["sku"], cell) for h in heads for cell in sorted(h.get("cells", ()))]
        )
        by_sku: dict[str, list[Item]] = {}
        for item in others:
            by_sku.setdefault(item["sku"], []).append(item)
        return {h["sku"]: stock_from_item(h, by_sku.get(h["sku"], [])) for h in heads}

    def _batch(self, keys: list[dict[str, str]]) -> list[Item]:
        table, client = self._runner.table, self._runner.client
        found: list[Item] = []
        for start in range(0, len(keys), 100):
            pending: list[dict[str, Any]] = [to_av(k) for k in keys[start : start + 100]]
            attempt = 0
            while pending:
                resp = client.batch_get_item(RequestItems={table: {"Keys": pending, "ConsistentRead": True}})
                found.extend(from_av(raw) for raw in resp.get("Responses", {}).get(table, []))
                pending = resp.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
                if pending:
                    attempt += 1
                    self._runner.backoff(attempt)
        return found


class LocationRepository:
    """A store's locations. Reserving reads them through a per-container copy kept for
    ``cache_seconds`` (docs/decisions.md, "Locations"); admin reads and writes do not."""

    def __init__(self, runner: TransactionRunner, cache_seconds: float, clock: Callable[[], float]) -> None:
        self._runner = runner
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, Location]]] = {}

    def all(self, store_id: str) -> dict[str, Location]:
        """The store's defined locations by id, read now (strongly consistent)."""
        kwargs: dict[str, Any] = {
            "TableName": self._runner.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_av({":pk": location_key(store_id, "")["pk"]}),
            "ConsistentRead": True,
        }
        found: dict[str, Location] = {}
        while True:
            page = self._runner.client.query(**kwargs)
            for raw in page.get("Items", []):
                loc = location_from_item(from_av(raw))
                found[loc.location_id] = loc
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        self._cache[store_id] = (self._clock(), found)
        return found

    def cached(self, store_id: str) -> dict[str, Location]:
        """The store's locations as this container last read them, at most ``cache_seconds`` old."""
        hit = self._cache.get(store_id)
        if hit is not None and self._clock() - hit[0] < self._cache_seconds:
            return hit[1]
        return self.all(store_id)

    def forget(self, store_id: str) -> None:
        self._cache.pop(store_id, None)


class HoldRepository:
    def __init__(self, runner: TransactionRunner) -> None:
        self._runner = runner

    def get(self, store_id: str, reservation_id: str) -> Reservation | None:
        item = self._runner.get(reservation_key(store_id, reservation_id))
        return reservation_from_item(item) if item else None

    def cart_holder(self, store_id: str, cart_id: str) -> str | None:
        """The id of the hold the cart's slot names, if any (it may have ended since)."""
        item = self._runner.get(cart_key(store_id, cart_id))
        return item["reservationId"] if item else None

    def clear_cart_slot(self, store_id: str, cart_id: str, reservation_id: str) -> bool:
        """Delete the cart's slot if it still names this (ended) reservation."""
        try:
            self._runner.client.delete_item(
                TableName=self._runner.table,
                Key=to_av(cart_key(store_id, cart_id)),
                ConditionExpression="reservationId = :rid",
                ExpressionAttributeValues=to_av({":rid": reservation_id}),
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True


class CheckoutRepository:
    def __init__(self, runner: TransactionRunner) -> None:
        self._runner = runner

    def get(self, store_id: str, checkout_id: str) -> Checkout | None:
        item = self._runner.get(checkout_key(store_id, checkout_id))
        return checkout_from_item(item) if item else None

    def of_cart(self, store_id: str, cart_id: str) -> str | None:
        """The id of the cart's latest checkout (whatever its status), if it ever had one."""
        item = self._runner.get(cart_checkout_key(store_id, cart_id))
        return item["checkoutId"] if item else None


class OrderRepository:
    def __init__(self, runner: TransactionRunner) -> None:
        self._runner = runner

    def get(self, store_id: str, order_id: str) -> Order | None:
        item = self._runner.get(order_key(store_id, order_id))
        return order_from_item(item) if item else None


@dataclass(frozen=True)
class HoldRef:
    """An active hold as the Sweep index lists it."""

    store_id: str
    reservation_id: str
    expires_at: int


class SweepIndex:
    """The sparse "Sweep" index: active holds by deadline, and stock cells, over shards."""

    def __init__(self, runner: TransactionRunner, parallel: int = _SWEEP_PARALLEL) -> None:
        self._runner = runner
        self._parallel = parallel

    def overdue_holds(self, before_ms: int) -> list[Item]:
        """Active holds whose deadline is before ``before_ms`` (eventually consistent)."""
        return self._every_shard(
            schema.HOLD_SHARDS,
            lambda shard: self._query(
                "sweepPk = :p AND sweepSk < :t", {":p": f"HOLD#{shard}", ":t": f"{before_ms:015d}"}
            ),
        )

    @staticmethod
    def hold_shards() -> range:
        return range(schema.HOLD_SHARDS)

    def holds_by_deadline(self, shards: Sequence[int], from_ms: int, to_ms: int) -> dict[int, list[HoldRef]]:
        """Active holds of ``shards`` with a deadline in [``from_ms``, ``to_ms``], by shard (a slot
        timer's survey and its share of the work: docs/expiry.md). Eventually consistent."""
        values = {":a": f"{max(from_ms, 0):015d}", ":b": f"{max(to_ms, 0):015d}"}

        def query(shard: int) -> list[HoldRef]:
            items = self._query("sweepPk = :p AND sweepSk BETWEEN :a AND :b", {":p": f"HOLD#{shard}", **values})
            return [HoldRef(str(i["storeId"]), str(i["reservationId"]), int(i["sweepSk"])) for i in items]

        with ThreadPoolExecutor(max_workers=self._parallel) as pool:
            return {shard: holds for shard, holds in zip(shards, pool.map(query, shards), strict=True) if holds}

    def active_holds(self) -> list[Item]:
        return self._every_shard(schema.HOLD_SHARDS, lambda shard: self._query("sweepPk = :p", {":p": f"HOLD#{shard}"}))

    def stock_with_units_held(self) -> list[Item]:
        return self._every_shard(
            schema.CELL_SHARDS,
            lambda shard: self._query("sweepPk = :p", {":p": f"STOCK#{shard}"}, "reserved > :z", {":z": 0}),
        )

    def _every_shard(self, shards: int, query: Callable[[int], list[Item]]) -> list[Item]:
        """``query`` on each of ``shards``, ``parallel`` at a time, in shard order."""
        with ThreadPoolExecutor(max_workers=self._parallel) as pool:
            return [item for items in pool.map(query, range(shards)) for item in items]

    def _query(
        self, key: str, values: dict[str, Any], filter_: str | None = None, filter_values: dict[str, Any] | None = None
    ) -> list[Item]:
        kwargs: dict[str, Any] = {
            "TableName": self._runner.table,
            "IndexName": SWEEP_INDEX,
            "KeyConditionExpression": key,
            "ExpressionAttributeValues": to_av({**values, **(filter_values or {})}),
        }
        if filter_:
            kwargs["FilterExpression"] = filter_
        out: list[Item] = []
        while True:
            page = self._runner.client.query(**kwargs)
            out.extend(from_av(x) for x in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class TenancyRepository:
    """Stores and their API keys (by the key's hash)."""

    def __init__(self, runner: TransactionRunner) -> None:
        self._runner = runner

    def api_key(self, key_hash: str) -> Item | None:
        return self._runner.get(api_key_key(key_hash))

    def put_store(self, store_id: str, fields: Mapping[str, Any]) -> bool:
        """Create the store record; False if it already existed."""
        return self._put({**store_key(store_id), "type": STORE, "storeId": store_id, **fields}, only_if_new=True)

    def put_api_key(self, key_hash: str, fields: Mapping[str, Any]) -> None:
        self._put({**api_key_key(key_hash), "type": APIKEY, **fields})

    def revoke_api_key(self, key_hash: str) -> bool:
        """Mark the key revoked; False when there is no such key."""
        try:
            self._runner.client.update_item(
                TableName=self._runner.table,
                Key=to_av(api_key_key(key_hash)),
                UpdateExpression="SET revoked = :t",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=to_av({":t": True}),
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def _put(self, item: Mapping[str, Any], *, only_if_new: bool = False) -> bool:
        kwargs: dict[str, Any] = {"TableName": self._runner.table, "Item": to_av(item)}
        if only_if_new:
            kwargs["ConditionExpression"] = "attribute_not_exists(pk)"
        try:
            self._runner.client.put_item(**kwargs)
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True
