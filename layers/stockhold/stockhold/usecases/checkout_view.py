"""A checkout as read now, and what every checkout step shares (docs/checkout.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stockhold.data.repositories import CheckoutRepository, HoldRepository, OrderRepository
from stockhold.data.transactions import TransactionRunner
from stockhold.data.unit import UnitOfWork
from stockhold.domain.errors import (
    CheckoutNotOpen,
    NotFound,
    ReservationExpired,
)
from stockhold.domain.ids import Clock, now_ms
from stockhold.domain.intents import PutCheckout, Refused
from stockhold.domain.models import (
    Checkout,
    CheckoutStatus,
    Line,
    RequestKey,
    Reservation,
    ReservationStatus,
    rfc3339,
)
from stockhold.domain.rules import (
    ExpirePath,
    effective_status,
)
from stockhold.settings import Settings
from stockhold.usecases.ending import Ender
from stockhold.usecases.expiry import Expiry
from stockhold.usecases.holds import Holds
from stockhold.usecases.reserve import Reserving
from stockhold.usecases.stock import StockService


@dataclass(frozen=True)
class CheckoutView:
    """A checkout as read now: its stored record, its hold, and its status derived from both."""

    checkout: Checkout
    reservation: Reservation | None
    status: CheckoutStatus
    warnings: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False


@dataclass(frozen=True)
class CheckoutParts:
    """What the checkout use case works with (wired once per container)."""

    checkouts: CheckoutRepository
    holds: HoldRepository
    orders: OrderRepository
    unit: UnitOfWork
    marks: TransactionRunner
    reserving: Reserving
    lifecycle: Holds
    ender: Ender
    expiry: Expiry
    stock: StockService


class CheckoutBase:
    def __init__(self, parts: CheckoutParts, settings: Settings, clock: Clock = now_ms) -> None:
        self._p = parts
        self._settings = settings
        self._clock = clock

    # ----- reads

    def get(self, store_id: str, checkout_id: str) -> CheckoutView:
        chk = self._p.checkouts.get(store_id, checkout_id)
        if chk is None:
            raise NotFound(f"no checkout {checkout_id}")
        res = self._p.holds.get(store_id, chk.reservation_id) if chk.reservation_id else None
        return CheckoutView(chk, res, effective_status(chk, res, self._clock()))

    def _of_cart(self, store_id: str, cart_id: str) -> CheckoutView | None:
        checkout_id = self._p.checkouts.of_cart(store_id, cart_id)
        if checkout_id is None:
            return None
        try:
            return self.get(store_id, checkout_id)
        except NotFound:
            return None  # purged after its retention

    def _warnings(self, store_id: str, lines: Sequence[Line]) -> list[dict[str, Any]]:
        """Lines whose SKU is low on stock now (one BatchGetItem)."""
        found, _ = self._p.stock.get_many(store_id, [line.sku for line in lines])
        default = self._settings.LOW_STOCK_THRESHOLD
        return [
            {
                "code": "LOW_STOCK",
                "sku": level.sku,
                "available": level.available,
                "message": f"only {level.available} of {level.sku} left for other shoppers",
            }
            for level in found
            if level.is_low(default)
        ]

    # ----- helpers

    def _save(self, write: PutCheckout, key: RequestKey | None, now: int) -> bool:
        """The checkout alone (with the key's mark); False if it changed since it was read."""
        try:
            self._p.unit.commit([write], key, now)
        except Refused:
            return False
        return True

    def _require_open(self, view: CheckoutView, now: int, *, allow_active: bool = False) -> Reservation:
        """The checkout's live hold, or the error that says why there is none."""
        chk, res = view.checkout, view.reservation
        if view.status is CheckoutStatus.ACTIVE and allow_active:
            return res  # type: ignore[return-value]  # only update() allows it, and never uses the hold
        if view.status is CheckoutStatus.CHECKOUT and res is not None:
            self._p.expiry.require_live(res, now)
            return res
        if (
            view.status is CheckoutStatus.ABANDONED
            and res is not None
            and res.status_at(now) is ReservationStatus.EXPIRED
        ):
            if res.status is ReservationStatus.ACTIVE:
                self._p.expiry.expire(res.store_id, res.reservation_id, ExpirePath.REQUEST)
            raise ReservationExpired(res.reservation_id, rfc3339(res.expires_at))
        if view.status is CheckoutStatus.ACTIVE:
            raise CheckoutNotOpen(
                chk.checkout_id, "active", f"checkout {chk.checkout_id} holds nothing; start it again (POST /checkouts)"
            )
        raise CheckoutNotOpen(chk.checkout_id, view.status.value)
