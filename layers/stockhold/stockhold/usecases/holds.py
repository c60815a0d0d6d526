"""A hold's life after it is made: read it, extend it, confirm it (the order it becomes),
release it. Every transition is one unit of work conditioned on the hold's state."""

from __future__ import annotations

from collections.abc import Sequence

from stockhold.data.repositories import HoldRepository, OrderRepository
from stockhold.data.schema import reservation_from_item
from stockhold.data.transactions import TransactionRunner
from stockhold.data.unit import UnitOfWork
from stockhold.domain.errors import (
    ExtensionLimitReached,
    HeldByCheckout,
    NotFound,
    OrderIdTaken,
    StockConflict,
)
from stockhold.domain.ids import Clock, now_ms
from stockhold.domain.intents import Cause, ExtendHold, Intent, PutOrder, Refused
from stockhold.domain.models import RequestKey, Reservation, ReservationStatus
from stockhold.domain.rules import (
    Deadline,
    active_purge_at,
    confirm_moves,
    hold_seconds,
    order_for,
    release_moves,
)
from stockhold.observability import count, logger
from stockhold.settings import Settings
from stockhold.usecases.ending import Ender, HoldRefused
from stockhold.usecases.expiry import Expiry
from stockhold.usecases.once import AGAIN, Again, once, settle


class CheckoutChanged(Exception):
    """A checkout's write inside a hold's unit of work failed, or the hold moved: re-read both."""


class Holds:
    def __init__(
        self,
        holds: HoldRepository,
        orders: OrderRepository,
        unit: UnitOfWork,
        marks: TransactionRunner,
        ender: Ender,
        expiry: Expiry,
        settings: Settings,
        clock: Clock = now_ms,
    ) -> None:
        self._holds = holds
        self._orders = orders
        self._unit = unit
        self._marks = marks
        self._ender = ender
        self._expiry = expiry
        self._settings = settings
        self._clock = clock

    # ----- reads

    def get(self, store_id: str, reservation_id: str) -> Reservation:
        res = self._holds.get(store_id, reservation_id)
        if res is None:
            raise NotFound(f"no reservation {reservation_id}")
        return res

    def get_for_cart(self, store_id: str, cart_id: str) -> Reservation:
        holder = self._holds.cart_holder(store_id, cart_id)
        res = self._holds.get(store_id, holder) if holder else None
        if res is None or res.status_at(self._clock()) is not ReservationStatus.ACTIVE:
            raise NotFound(f"cart {cart_id} has no active reservation")
        return res

    # ----- extend

    def extend(
        self, store_id: str, reservation_id: str, seconds: int | None, key: RequestKey | None = None
    ) -> Reservation:
        """New deadline = now + holdSeconds, never earlier than the current one."""
        hold = hold_seconds(self._settings, seconds)
        return once(
            self._marks,
            key,
            lambda: self._extend(self.get(store_id, reservation_id), hold, key),
            lambda: self.get(store_id, reservation_id),
            "reservation extended",
        )

    def _extend(self, res: Reservation, hold: int, key: RequestKey | None) -> Reservation:
        seen = [res]

        def step() -> Reservation | Again:
            res, now = seen[0], self._clock()
            self._expiry.require_live(res, now)
            deadline = now + res.grant(hold) * 1000
            if deadline <= res.expires_at:
                return res  # already later than asked: nothing to do, no extension used
            if res.extensions_left == 0:
                raise ExtensionLimitReached(
                    f"reservation {res.reservation_id} used all {res.max_extensions} extensions",
                    {"extensionsUsed": res.extensions_used, "maxExtensions": res.max_extensions},
                )
            try:
                extended = self._extend_unit(res, deadline, now, key=key)
            except HoldRefused as refused:
                if refused.current is None:
                    raise NotFound(f"no reservation {res.reservation_id}") from None
                seen[0] = refused.current
                return AGAIN
            count("ReservationsExtended")
            return extended

        return settle(f"reservation {res.reservation_id}", step)

    def extend_with(
        self, res: Reservation, seconds: int, with_: Sequence[Intent], key: RequestKey | None = None
    ) -> Reservation:
        """Use one extension to move ``res``'s deadline to now + ``seconds``, with ``with_`` (the
        checkout's write) in the same unit. CheckoutChanged when either moved since read."""
        now = self._clock()
        try:
            extended = self._extend_unit(res, now + res.grant(seconds) * 1000, now, with_=with_, key=key)
        except HoldRefused:
            raise CheckoutChanged() from None
        count("ReservationsExtended")
        return extended

    def enter_payment_window(
        self, res: Reservation, seconds: int, with_: Sequence[Intent], key: RequestKey | None = None
    ) -> Reservation | None:
        """Move a checkout's deadline to now + ``seconds``, once per hold and without using an
        extension, with ``with_`` (the checkout's write) in the same unit. None when there
        is nothing to extend (already in its payment window, or already later): the caller
        then writes the checkout alone."""
        now = self._clock()
        self._expiry.require_live(res, now)
        deadline = now + res.grant(seconds) * 1000
        if res.payment_window_at is not None or deadline <= res.expires_at:
            return None
        try:
            return self._extend_unit(res, deadline, now, counts=False, with_=with_, key=key)
        except HoldRefused as refused:
            if refused.others:
                raise CheckoutChanged() from None
            if refused.current is None:
                raise NotFound(f"no reservation {res.reservation_id}") from None
            self._expiry.require_live(refused.current, self._clock())
            raise CheckoutChanged() from None  # extended or entered payment meanwhile: look again

    def _extend_unit(
        self,
        res: Reservation,
        deadline: int,
        now: int,
        *,
        counts: bool = True,
        with_: Sequence[Intent] = (),
        key: RequestKey | None = None,
    ) -> Reservation:
        ext = ExtendHold(res, deadline, active_purge_at(deadline, self._settings), now, counts)
        try:
            new = self._unit.commit([ext, *with_], key, now)
        except Refused as refused:
            hit = refused.hit(ext)
            current = (
                hit.current
                if hit is not None and hit.current is not None
                else self._holds.get(res.store_id, res.reservation_id)
            )
            raise HoldRefused(current, others=[f.intent for f in refused.failed if f.intent is not ext]) from None
        if new is not None:
            return reservation_from_item(new)
        current = self._holds.get(res.store_id, res.reservation_id)
        if current is None:
            raise HoldRefused(None)
        return current

    # ----- confirm, release

    def confirm(self, store_id: str, reservation_id: str, order_id: str) -> Reservation:
        """Payment succeeded: reserved units become allocated to ``order_id``, and the order
        record (PLACED, to be fulfilled or cancelled) is created in the same unit.

        Once only by its own state: a re-run finds the hold CONFIRMED (same order: the same
        answer) and no Idempotency-Key mark is needed."""
        seen = [self.get(store_id, reservation_id)]

        def step() -> Reservation | Again:
            res = seen[0]
            if res.status is ReservationStatus.CONFIRMED and res.order_id == order_id:
                return res  # confirming again with the same order is a no-op
            if res.checkout_id and res.status is ReservationStatus.ACTIVE:
                raise HeldByCheckout(reservation_id, res.checkout_id, "complete")
            now = self._clock()
            self._expiry.require_live(res, now)
            order = PutOrder(order_for(res, order_id, None, None, now), Cause("order_created", ref=reservation_id))
            try:
                done = self._ender.end(
                    res,
                    ReservationStatus.CONFIRMED,
                    confirm_moves(res.lines),
                    now,
                    "confirmed",
                    deadline=Deadline.BEFORE,
                    order_id=order_id,
                    with_=[order],
                )
            except HoldRefused as refused:
                if order in refused.others and refused.current and refused.current.status is ReservationStatus.ACTIVE:
                    taken = self._orders.get(store_id, order_id)
                    raise OrderIdTaken(order_id, taken.reservation_id if taken else None) from None
                seen[0] = self._after(reservation_id, refused)
                return AGAIN
            count("ReservationsConfirmed")
            return done

        return settle(f"reservation {reservation_id}", step)

    def release(self, store_id: str, reservation_id: str, reason: str, key: RequestKey | None = None) -> Reservation:
        """Cancel, payment failure or manual: held units go back to available.

        Once only by its own state (a released hold stays released); ``key`` is for callers
        whose request means more than this hold (a checkout's cancel): its mark goes into the
        release's unit (raises KeyAlreadyUsed)."""
        seen = [self.get(store_id, reservation_id)]

        def step() -> Reservation | Again:
            res = seen[0]
            if res.status is ReservationStatus.RELEASED:
                return res  # releasing again changes nothing
            now = self._clock()
            self._expiry.require_live(res, now)
            try:
                done = self._ender.end(
                    res,
                    ReservationStatus.RELEASED,
                    release_moves(res.lines),
                    now,
                    reason,
                    deadline=Deadline.BEFORE,
                    mark=key,
                )
            except HoldRefused as refused:
                seen[0] = self._after(reservation_id, refused)
                return AGAIN
            count("ReservationsReleased")
            return done

        return settle(f"reservation {reservation_id}", step)

    @staticmethod
    def _after(reservation_id: str, refused: HoldRefused) -> Reservation:
        """The hold as it is after a refused ending, or the error that ends the request."""
        if refused.current is None:
            raise NotFound(f"no reservation {reservation_id}")
        if refused.stock_conflict and refused.current.status is ReservationStatus.ACTIVE:
            # A counter would go below zero: the stock record disagrees with the hold.
            logger.error(
                "stock counters disagree with an active hold",
                reservation_id=reservation_id,
                skus=refused.stock_conflict,
            )
            raise StockConflict("the stock counters disagree with this reservation", {"skus": refused.stock_conflict})
        return refused.current
