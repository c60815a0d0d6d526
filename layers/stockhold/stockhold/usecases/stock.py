"""Stock: read, set, adjust and validate a SKU's counters (admins write, any role reads)."""

from __future__ import annotations

from collections.abc import Sequence

from stockhold.data.repositories import StockRepository
from stockhold.data.schema import stock_from_item
from stockhold.data.transactions import TransactionRunner
from stockhold.data.unit import UnitOfWork
from stockhold.domain.errors import NotFound, StockConflict
from stockhold.domain.ids import Clock, now_ms
from stockhold.domain.intents import AdjustStock, CreateStock, Intent, Refused, SetStock
from stockhold.domain.models import Line, RequestKey, StockLevel
from stockhold.domain.rules import LineCheck, check_line, check_lines
from stockhold.settings import Settings
from stockhold.usecases.once import AGAIN, Again, once, settle


class StockService:
    def __init__(
        self,
        stock: StockRepository,
        unit: UnitOfWork,
        marks: TransactionRunner,
        settings: Settings,
        clock: Clock = now_ms,
    ) -> None:
        self._stock = stock
        self._unit = unit
        self._marks = marks
        self._settings = settings
        self._clock = clock

    def get(self, store_id: str, sku: str) -> StockLevel:
        level = self._stock.get(store_id, sku)
        if level is None:
            raise NotFound(f"no stock record for SKU {sku}")
        return level

    def get_many(self, store_id: str, skus: Sequence[str]) -> tuple[list[StockLevel], list[str]]:
        found = self._stock.get_many(store_id, skus)
        ordered = list(dict.fromkeys(skus))
        return [found[s] for s in ordered if s in found], [s for s in ordered if s not in found]

    def set(
        self,
        store_id: str,
        sku: str,
        *,
        on_hand: int,
        low_stock_threshold: int | None,
        unlimited: bool,
        key: RequestKey | None = None,
    ) -> StockLevel:
        """Set the physical count. Units already held or allocated stay so; onHand may not drop below them."""

        def step() -> StockLevel | Again:
            now = self._clock()
            current = self._stock.get(store_id, sku)
            if current is None:
                fresh = StockLevel(
                    sku=sku,
                    on_hand=on_hand,
                    reserved=0,
                    allocated=0,
                    available=on_hand,
                    low_stock_threshold=low_stock_threshold,
                    unlimited=unlimited,
                    updated_at=now,
                )
                try:
                    self._write(CreateStock(store_id, fresh), key, now)
                except Refused:
                    return AGAIN  # created concurrently: set it as an existing item
                return fresh
            if on_hand < current.reserved + current.allocated:
                raise _below_committed(sku, on_hand, current)
            intent = SetStock(store_id, sku, current.on_hand, on_hand, low_stock_threshold, unlimited, now)
            try:
                return self._write(intent, key, now) or self.get(store_id, sku)
            except Refused as refused:
                seen = refused.failed[0].current
                if seen is not None and seen.on_hand == current.on_hand:
                    raise _below_committed(sku, on_hand, seen) from None
                return AGAIN  # onHand moved under us (an adjustment): recompute from the new value

        return once(
            self._marks,
            key,
            lambda: settle(f"stock of {sku}", step),
            lambda: self.get(store_id, sku),
            "stock set",
        )

    def adjust(
        self, store_id: str, sku: str, delta: int, key: RequestKey | None = None, reason: str | None = None
    ) -> StockLevel:
        """onHand and available move by ``delta`` (received, damaged, counted)."""
        return once(
            self._marks,
            key,
            lambda: self._adjust(store_id, sku, delta, key, reason),
            lambda: self.get(store_id, sku),
            "stock adjusted",
        )

    def _adjust(self, store_id: str, sku: str, delta: int, key: RequestKey | None, reason: str | None) -> StockLevel:
        now = self._clock()
        try:
            return self._write(AdjustStock(store_id, sku, delta, now, reason), key, now) or self.get(store_id, sku)
        except Refused as refused:
            current = refused.failed[0].current
            if current is None:
                raise NotFound(f"no stock record for SKU {sku}") from None
            raise StockConflict(
                f"adjusting {sku} by {delta} would take available stock below zero",
                {"sku": sku, "delta": delta, "available": current.available, "onHand": current.on_hand},
            ) from None

    def validate(self, store_id: str, lines: Sequence[Line]) -> list[LineCheck]:
        """Answers whether each line could be held now; holds nothing."""
        check_lines(lines)
        found = self._stock.get_many(store_id, [line.sku for line in lines])
        return [check_line(line, found.get(line.sku), self._settings.LOW_STOCK_THRESHOLD) for line in lines]

    def _write(self, intent: Intent, key: RequestKey | None, now: int) -> StockLevel | None:
        """One stock write: its new level (None when it was a transaction: read it after)."""
        new = self._unit.commit([intent], key, now)
        return stock_from_item(new) if new else None


def _below_committed(sku: str, on_hand: int, current: StockLevel) -> StockConflict:
    minimum = current.on_hand - current.available
    return StockConflict(
        f"onHand {on_hand} of {sku} is below the {minimum} units held or allocated",
        {
            "sku": sku,
            "onHand": on_hand,
            "reserved": current.reserved,
            "allocated": current.allocated,
            "minimum": minimum,
        },
    )
