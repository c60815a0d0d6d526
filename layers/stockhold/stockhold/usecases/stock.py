"""Stock: read, set, adjust and validate a SKU's cells, and the store's locations (admins
write, any role reads). A SKU's figures are the sums over its cells (one per location)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from stockhold.data.repositories import LocationRepository, StockRepository
from stockhold.data.schema import HEAD_CELL, stock_from_item
from stockhold.data.transactions import TransactionRunner
from stockhold.data.unit import UnitOfWork
from stockhold.domain.errors import NotFound, StockConflict
from stockhold.domain.ids import Clock, now_ms
from stockhold.domain.intents import (
    AdjustStock,
    CreateCell,
    CreateStock,
    Intent,
    PutLocation,
    Refused,
    RegisterCell,
    SetStock,
    SkuSettings,
)
from stockhold.domain.models import DEFAULT_LOCATION, CellLevel, Line, Location, RequestKey, StockLevel
from stockhold.domain.planning import usable_units
from stockhold.domain.rules import LineCheck, check_line, check_lines
from stockhold.settings import Settings
from stockhold.usecases.once import AGAIN, Again, once, settle

IMPLICIT_DEFAULT = Location(location_id=DEFAULT_LOCATION, name="Default", priority=0, active=True)
SETTING_NAMES = frozenset(f.name for f in fields(SkuSettings))


def settings_of(level: StockLevel) -> SkuSettings:
    return SkuSettings(
        low_stock_threshold=level.low_stock_threshold,
        unlimited=level.unlimited,
        backorder_limit=level.backorder_limit,
        max_per_cart=level.max_per_cart,
        max_per_customer=level.max_per_customer,
        max_hold_seconds=level.max_hold_seconds,
    )


@dataclass(frozen=True)
class StockChange:
    """What ``PUT /stock/{sku}`` gives: ``on_hand`` (None: unchanged, 0 for a new SKU) and the
    settings it names (``SkuSettings`` field names; a setting not named keeps its value)."""

    on_hand: int | None = None
    settings: Mapping[str, Any] | None = None


class StockService:
    def __init__(
        self,
        stock: StockRepository,
        locations: LocationRepository,
        unit: UnitOfWork,
        marks: TransactionRunner,
        settings: Settings,
        clock: Clock = now_ms,
    ) -> None:
        self._stock = stock
        self._locations = locations
        self._unit = unit
        self._marks = marks
        self._settings = settings
        self._clock = clock

    # ----- reads

    def get(self, store_id: str, sku: str) -> StockLevel:
        level = self._stock.get(store_id, sku)
        if level is None:
            raise NotFound(f"no stock record for SKU {sku}")
        return level

    def get_many(self, store_id: str, skus: Sequence[str]) -> tuple[list[StockLevel], list[str]]:
        found = self._stock.get_many(store_id, skus)
        ordered = list(dict.fromkeys(skus))
        return [found[s] for s in ordered if s in found], [s for s in ordered if s not in found]

    def validate(self, store_id: str, lines: Sequence[Line]) -> list[LineCheck]:
        """Answers whether each line could be held now; holds nothing."""
        check_lines(lines)
        found = self._stock.get_many(store_id, [line.sku for line in lines])
        locations = self._locations.cached(store_id)
        threshold = self._settings.LOW_STOCK_THRESHOLD
        checks = []
        for line in lines:
            level = found.get(line.sku)
            usable = usable_units(level, locations) if level is not None and not level.unlimited else None
            checks.append(check_line(line, level, threshold, usable))
        return checks

    # ----- locations

    def locations(self, store_id: str) -> list[Location]:
        """The store's locations, ``default`` among them (implicit until an admin defines it)."""
        defined = self._locations.all(store_id)
        return sorted(
            {DEFAULT_LOCATION: IMPLICIT_DEFAULT, **defined}.values(), key=lambda x: (x.priority, x.location_id)
        )

    def put_location(self, store_id: str, location: Location) -> Location:
        """Define or change a location (an idempotent Put: a retry writes the same)."""
        stamped = location.model_copy(update={"updated_at": self._clock()})
        self._unit.commit([PutLocation(store_id, stamped)])
        self._locations.forget(store_id)
        return stamped

    def _require_location(self, store_id: str, location_id: str) -> None:
        if location_id != DEFAULT_LOCATION and location_id not in self._locations.all(store_id):
            raise NotFound(f"no location {location_id}")

    # ----- set

    def set(
        self,
        store_id: str,
        sku: str,
        change: StockChange | None = None,
        key: RequestKey | None = None,
        *,
        on_hand: int | None = None,
        **settings: Any,
    ) -> StockLevel:
        """``PUT /stock/{sku}``: the ``default`` cell's onHand and the SKU's settings. Units held
        or allocated stay so; onHand may not drop below them (nor below the backorder floor).
        ``on_hand`` and ``settings`` (``SkuSettings`` names) are ``change`` spelled as keywords."""
        unknown = set(settings) - SETTING_NAMES
        if unknown:
            raise TypeError(f"not a stock setting: {', '.join(sorted(unknown))}")
        change = change or StockChange(on_hand=on_hand, settings=settings)
        return once(
            self._marks,
            key,
            lambda: settle(f"stock of {sku}", lambda: self._set_step(store_id, sku, change, key)),
            lambda: self.get(store_id, sku),
            "stock set",
        )

    def _set_step(self, store_id: str, sku: str, change: StockChange, key: RequestKey | None) -> StockLevel | Again:
        now = self._clock()
        current = self._stock.get(store_id, sku)
        given = dict(change.settings or {})
        if current is None:
            fresh = _new_level(sku, change.on_hand or 0, replace(SkuSettings(), **given), now)
            try:
                self._write(CreateStock(store_id, fresh), key, now)
            except Refused:
                return AGAIN  # created concurrently: set it as an existing item
            return fresh
        head = current.cell(DEFAULT_LOCATION)
        assert head is not None
        if change.on_hand is not None and len(current.locations) > 1:
            raise StockConflict(
                f"{sku} is stocked in other locations: set each with PUT /stock/{sku}/locations/{{locationId}}",
                {"sku": sku, "locations": [c.location_id for c in current.locations]},
            )
        new = replace(settings_of(current), **given)
        on_hand = head.on_hand if change.on_hand is None else change.on_hand
        _check_floor(sku, head, on_hand, new.backorder_limit)
        intent = SetStock(store_id, sku, head.on_hand, on_hand, now, settings=new, only_cell=change.on_hand is not None)
        return self._write_or_again(intent, key, now, store_id, sku)

    def set_at(
        self, store_id: str, sku: str, location_id: str, on_hand: int, key: RequestKey | None = None
    ) -> StockLevel:
        """``PUT /stock/{sku}/locations/{id}``: one location's onHand (its cell made on first use)."""
        self._require_location(store_id, location_id)
        return once(
            self._marks,
            key,
            lambda: settle(f"stock of {sku}", lambda: self._set_at_step(store_id, sku, location_id, on_hand, key)),
            lambda: self.get(store_id, sku),
            "stock set",
        )

    def _set_at_step(
        self, store_id: str, sku: str, location_id: str, on_hand: int, key: RequestKey | None
    ) -> StockLevel | Again:
        now = self._clock()
        current = self._stock.get(store_id, sku)
        cell = current.cell(location_id) if current else None
        if current is not None and current.unlimited:
            raise StockConflict(f"{sku} is unlimited: it has no stock to place", {"sku": sku})
        if cell is None and location_id == DEFAULT_LOCATION:
            return self._set_step(store_id, sku, StockChange(on_hand=on_hand), key)
        if cell is None:
            try:
                self._unit.commit(
                    [
                        RegisterCell(store_id, sku, location_id, now),
                        CreateCell(store_id, sku, location_id, on_hand, now),
                    ],
                    key,
                    now,
                )
            except Refused as refused:
                if refused.of(CreateCell):
                    return AGAIN  # made concurrently: set it as an existing cell
                raise StockConflict(f"{sku} is unlimited: it has no stock to place", {"sku": sku}) from None
            return self.get(store_id, sku)
        limit = current.backorder_limit if current is not None and location_id == DEFAULT_LOCATION else 0
        _check_floor(sku, cell, on_hand, limit)
        intent = SetStock(store_id, sku, cell.on_hand, on_hand, now, location=location_id, floor_limit=limit)
        return self._write_or_again(intent, key, now, store_id, sku)

    def _write_or_again(
        self, intent: SetStock, key: RequestKey | None, now: int, store_id: str, sku: str
    ) -> StockLevel | Again:
        try:
            return self._write(intent, key, now) or self.get(store_id, sku)
        except Refused:
            return AGAIN  # the cell moved under us (a hold, an adjustment): decide again on what it is now

    # ----- adjust

    def adjust(
        self,
        store_id: str,
        sku: str,
        delta: int,
        key: RequestKey | None = None,
        reason: str | None = None,
        location_id: str = DEFAULT_LOCATION,
    ) -> StockLevel:
        """One location's onHand and available move by ``delta`` (received, damaged, counted)."""
        self._require_location(store_id, location_id)
        return once(
            self._marks,
            key,
            lambda: settle(f"stock of {sku}", lambda: self._adjust(store_id, sku, delta, key, reason, location_id)),
            lambda: self.get(store_id, sku),
            "stock adjusted",
        )

    def _adjust(
        self, store_id: str, sku: str, delta: int, key: RequestKey | None, reason: str | None, location_id: str
    ) -> StockLevel | Again:
        now, floor = self._clock(), 0
        while True:  # a second try only to rely on the backorder limit the refusal showed
            try:
                intent = AdjustStock(store_id, sku, delta, now, reason, location_id, floor)
                return self._write(intent, key, now) or self.get(store_id, sku)
            except Refused as refused:
                current = refused.failed[0].current
            if current is None:
                where = "" if location_id == DEFAULT_LOCATION else f" at {location_id}"
                raise NotFound(f"no stock record for SKU {sku}{where}") from None
            cell = current.locations[0]
            limit = current.backorder_limit if location_id == DEFAULT_LOCATION else 0
            if cell.on_hand + delta < 0 or cell.available + delta < -limit:
                raise StockConflict(
                    f"adjusting {sku} by {delta} would take available stock below "
                    + ("zero" if limit == 0 else f"its backorder floor -{limit}"),
                    {"sku": sku, "delta": delta, "available": cell.available, "onHand": cell.on_hand},
                )
            if limit == floor:
                return AGAIN  # it fits now: the cell moved under the write
            floor = limit

    def _write(self, intent: Intent, key: RequestKey | None, now: int) -> StockLevel | None:
        """One stock write: its new level (None when it was a transaction: read it after)."""
        new = self._unit.commit([intent], key, now)
        if new is None or new.get("location") != HEAD_CELL or new.get("cells"):
            return None  # a transaction, or one cell of several: the SKU is read after
        return stock_from_item(new)


def _new_level(sku: str, on_hand: int, settings: SkuSettings, now: int) -> StockLevel:
    return StockLevel(
        sku=sku,
        on_hand=on_hand,
        reserved=0,
        allocated=0,
        available=on_hand,
        low_stock_threshold=settings.low_stock_threshold,
        unlimited=settings.unlimited,
        updated_at=now,
        backorder_limit=settings.backorder_limit,
        max_per_cart=settings.max_per_cart,
        max_per_customer=settings.max_per_customer,
        max_hold_seconds=settings.max_hold_seconds,
        locations=(
            CellLevel(location_id=DEFAULT_LOCATION, on_hand=on_hand, reserved=0, allocated=0, available=on_hand),
        ),
    )


def _check_floor(sku: str, cell: CellLevel, on_hand: int, backorder_limit: int) -> None:
    """The cell after the write keeps available >= -backorder_limit (0 when it takes none)."""
    after = cell.available + on_hand - cell.on_hand
    if after >= -backorder_limit:
        return
    committed = cell.reserved + cell.allocated
    if on_hand < cell.on_hand or backorder_limit == 0:
        message = f"onHand {on_hand} of {sku} is below the {committed - backorder_limit} units held or allocated"
        if backorder_limit:
            message += f" beyond its backorder limit {backorder_limit}"
    else:
        message = f"backorderLimit {backorder_limit} of {sku} is below the {-after} units already backordered"
    details: dict[str, Any] = {
        "sku": sku,
        "onHand": on_hand,
        "reserved": cell.reserved,
        "allocated": cell.allocated,
        "minimum": committed - backorder_limit,
    }
    if cell.location_id != DEFAULT_LOCATION:
        details["locationId"] = cell.location_id
    if backorder_limit:
        details |= {"backorderLimit": backorder_limit, "backordered": max(0, -after)}
    raise StockConflict(message, details)
