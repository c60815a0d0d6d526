"""A container's memory of sold-out SKUs (docs/flash-sales.md, "Sold out").

After a request is refused because a SKU has nothing usable, further attempts in this
container are refused at once, without a write, for ``seconds``. It only ever refuses,
so it cannot oversell. Units that come back elsewhere are reachable again once the
memory lapses; a change this container commits that may give units back (a release, an
expiry, a cancelled order, a delivery, new settings, a location) forgets at once."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from stockhold.domain.ids import Clock
from stockhold.domain.intents import (
    AdjustStock,
    CreateCell,
    CreateStock,
    Intent,
    MoveStock,
    PutLocation,
    RecountStock,
    SetStock,
)

_ENTRIES = 10_000  # bounded: a flood of distinct SKUs cannot grow it without limit


class SoldOut:
    """Safe across threads (one Lambda environment runs one request at a time; the local
    stack and the tests share one between threads)."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self._window = int(seconds * 1000)
        self._clock = clock
        self._until: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def remember(self, store_id: str, skus: Iterable[str]) -> None:
        skus = list(skus)
        if not skus or self._window <= 0:
            return
        now = self._clock()
        with self._lock:
            if len(self._until) > _ENTRIES:
                self._until = {k: t for k, t in self._until.items() if t > now}
                if len(self._until) > _ENTRIES:
                    self._until.clear()
            for sku in skus:
                self._until[(store_id, sku)] = now + self._window

    def known(self, store_id: str, skus: Iterable[str]) -> set[str]:
        """Which of ``skus`` this container found sold out within the window."""
        if not self._until:
            return set()
        now = self._clock()
        return {sku for sku in skus if self._until.get((store_id, sku), 0) > now}

    def committed(self, intents: Sequence[Intent]) -> None:
        """Forget what a committed unit may have given units back to."""
        if not self._until:
            return
        with self._lock:
            for i in intents:
                if isinstance(i, MoveStock) and i.move.available > 0:
                    self._until.pop((i.store_id, i.move.sku), None)
                elif (isinstance(i, AdjustStock) and i.delta > 0) or isinstance(
                    i, (SetStock, CreateCell, RecountStock)
                ):
                    self._until.pop((i.store_id, i.sku), None)
                elif isinstance(i, CreateStock):
                    self._until.pop((i.store_id, i.level.sku), None)
                elif isinstance(i, PutLocation):
                    self._until = {k: t for k, t in self._until.items() if k[0] != i.store_id}
