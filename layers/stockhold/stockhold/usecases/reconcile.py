"""Scheduled reconciliation: the third way a hold ends, and the drift report.

1. Sweep: active holds past deadline + ``SWEEP_GRACE_SECONDS`` (the timer had its
   chance) are ended through the same ``expire`` transaction as every other path.
2. Drift: each SKU's ``reserved`` is recounted from the active holds and compared.
   The Sweep index is eventually consistent, so a recount can miss a hold that was
   just made. A counter is therefore corrected only when the evidence cannot be stale:
   the stock item has not changed for ``RECONCILE_QUIET_SECONDS`` (every hold that
   touches a SKU writes its stock item), every counted hold is re-read consistently,
   and the correction is a transaction conditioned on the stock item being exactly as
   read and each counted hold still ACTIVE. Even then only **upward** corrections
   (counter too low: available too high, the oversell direction) are applied
   automatically; a counter that looks too high (units stuck) is reported for an
   operator (``python -m tools.reconcile --correct-stuck``), because a missing index
   entry would make it look too high — and oversell is worse than a late release.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from stockhold.data.repositories import HoldRepository, StockRepository, SweepIndex
from stockhold.data.schema import line_from_item
from stockhold.data.unit import UnitOfWork
from stockhold.domain.ids import Clock, now_ms
from stockhold.domain.intents import RecountStock, Refused, RequireActive
from stockhold.domain.models import DEFAULT_LOCATION, CellLevel, Reservation, ReservationStatus
from stockhold.domain.rules import ExpirePath
from stockhold.observability import count, logger
from stockhold.settings import Settings
from stockhold.usecases.expiry import Expiry


@dataclass
class Drift:
    store_id: str
    sku: str
    reserved: int  # the counter
    counted: int  # units held by active holds
    quiet_seconds: float
    action: str = "reported"  # reported | corrected | would_correct | not_quiet | changed
    location_id: str = DEFAULT_LOCATION  # the cell recounted

    def as_dict(self) -> dict[str, Any]:
        return {
            "storeId": self.store_id,
            "sku": self.sku,
            "locationId": self.location_id,
            "reserved": self.reserved,
            "counted": self.counted,
            "difference": self.reserved - self.counted,
            "quietSeconds": round(self.quiet_seconds, 1),
            "action": self.action,
        }


@dataclass
class ReconcileReport:
    dry_run: bool
    overdue: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "overdue": self.overdue,
            "expired": self.expired,
            "drift": [d.as_dict() for d in self.drift],
        }


class Reconciler:
    def __init__(
        self,
        sweep: SweepIndex,
        stock: StockRepository,
        holds: HoldRepository,
        unit: UnitOfWork,
        expiry: Expiry,
        settings: Settings,
        clock: Clock = now_ms,
    ) -> None:
        self._index = sweep
        self._stock = stock
        self._holds = holds
        self._unit = unit
        self._expiry = expiry
        self._settings = settings
        self._clock = clock

    def run(self, *, dry_run: bool = False, correct_stuck: bool = False) -> ReconcileReport:
        report = ReconcileReport(dry_run=dry_run)
        self._sweep(report)
        self._drift(report, correct_stuck=correct_stuck)
        count("ReconcileHoldsExpired", len(report.expired))
        count("DriftFound", len(report.drift))
        count("DriftCorrected", sum(1 for d in report.drift if d.action == "corrected"))
        for d in report.drift:
            logger.warning("stock drift", **d.as_dict(), dry_run=dry_run)
        logger.info("reconciled", overdue=len(report.overdue), expired=len(report.expired), drift=len(report.drift))
        return report

    def _sweep(self, report: ReconcileReport) -> None:
        cutoff = self._clock() - self._settings.SWEEP_GRACE_SECONDS * 1000
        for item in self._index.overdue_holds(cutoff):
            rid = item["reservationId"]
            report.overdue.append(rid)
            if report.dry_run:
                continue
            if self._expiry.expire(item["storeId"], rid, ExpirePath.RECONCILE).expired:
                report.expired.append(rid)

    def _drift(self, report: ReconcileReport, *, correct_stuck: bool) -> None:
        """Recount ``reserved`` per cell (store, SKU, location) from the active holds' allocations."""
        counted: dict[tuple[str, str, str], int] = defaultdict(int)
        holders: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for item in self._index.active_holds():
            for line in (line_from_item(x) for x in item.get("lines", [])):
                for part in line.cells():
                    counted[(item["storeId"], line.sku, part.location_id)] += part.quantity
                if line.held:
                    holders[(item["storeId"], line.sku)].append((item["storeId"], item["reservationId"]))
        skus = {(s, k) for s, k, _ in counted} | {(x["storeId"], x["sku"]) for x in self._index.stock_with_units_held()}
        for store_id, sku in sorted(skus):
            level = self._stock.get(store_id, sku)
            if level is None:
                continue
            for cell in level.locations:
                key = (store_id, sku, cell.location_id)
                if cell.reserved != counted[key]:
                    self._cell_drift(report, store_id, sku, cell, counted[key], holders[(store_id, sku)], correct_stuck)

    def _cell_drift(
        self,
        report: ReconcileReport,
        store_id: str,
        sku: str,
        cell: CellLevel,
        counted: int,
        holders: list[tuple[str, str]],
        correct_stuck: bool,
    ) -> None:
        now = self._clock()
        drift = Drift(
            store_id, sku, cell.reserved, counted, (now - cell.updated_at) / 1000, location_id=cell.location_id
        )
        report.drift.append(drift)
        if drift.quiet_seconds < self._settings.RECONCILE_QUIET_SECONDS:
            drift.action = "not_quiet"
            return
        # Re-read every counted hold consistently; keep those still ACTIVE.
        holds = []
        for sid, rid in holders:
            res = self._holds.get(sid, rid)
            if res is not None and res.status is ReservationStatus.ACTIVE:
                holds.append(res)
        recount = sum(
            c.quantity
            for h in holds
            for x in h.held_lines
            if x.sku == sku
            for c in x.cells()
            if c.location_id == cell.location_id
        )
        drift.counted = recount
        if recount == cell.reserved:
            drift.action = "changed"
            return
        if recount < cell.reserved and not correct_stuck:
            drift.action = "reported"
            return
        if report.dry_run:
            drift.action = "would_correct"
            return
        ok = self._correct(store_id, sku, cell, recount, holds)
        drift.action = "corrected" if ok else "changed"

    def _correct(self, store_id: str, sku: str, seen: CellLevel, reserved: int, holds: list[Reservation]) -> bool:
        """Set the cell's ``reserved`` to the recount only if the cell is exactly as ``seen`` and every
        counted hold is still ACTIVE. False (nothing written) if anything moved."""
        if seen.on_hand - seen.allocated - reserved < 0:
            return False
        try:
            self._unit.commit([RecountStock(store_id, sku, seen, reserved), *(RequireActive(h) for h in holds)])
        except Refused:
            return False
        return True
