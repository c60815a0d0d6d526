"""The stock model and the hold lifecycle.

Every change of stock goes through ``store`` as one conditional write or one
transaction; this module decides which moves to make and what a refusal means.
Reads before a write are only ever used to *build* a transaction whose conditions
re-check everything the decision depended on (status, onHand), never as the check.
"""

from __future__ import annotations

import hashlib
import os
import time
from base64 import b32encode
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit

from stockhold.errors import (
    CartAlreadyReserved,
    ExtensionLimitReached,
    HeldByCheckout,
    IdempotencyKeyReused,
    InsufficientStock,
    NotFound,
    OrderIdTaken,
    ReservationExpired,
    ReservationNotActive,
    StockConflict,
    StockholdError,
    TooBusy,
    ValidationFailed,
)
from stockhold.models import (
    CheckoutStatus,
    HeldLine,
    Line,
    Order,
    OrderStatus,
    RequestKey,
    Reservation,
    ReservationStatus,
    StockLevel,
    rfc3339,
)
from stockhold.observability import count, logger, metrics
from stockhold.settings import Settings
from stockhold.store import (
    MAX_TRANSACTION_ACTIONS,
    Cause,
    DynamoStore,
    KeyAlreadyUsed,
    ReserveRejected,
    StockMove,
    StockWriteRejected,
    TransitionRejected,
)

# Lines per request. A reservation's transaction carries the hold, the cart slot and
# one write per line; checkout completion adds the order and checkout records. Four
# bookkeeping actions within DynamoDB's 100 leave 96 lines (docs/decisions.md).
MAX_LINES = MAX_TRANSACTION_ACTIONS - 4
MAX_QUANTITY = 1_000_000
MAX_ON_HAND = 1_000_000_000
_RETRIES = 4

Clock = Callable[[], int]
T = TypeVar("T")
ExtraActions = Callable[[Reservation], Sequence[dict[str, Any]]]


class CheckoutChanged(Exception):
    """A checkout's conditional write inside a hold's transaction failed: re-read it."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ExpirePath(StrEnum):
    TIMER = "timer"
    TTL = "ttl"
    RECONCILE = "reconcile"
    REQUEST = "request"


class StockStatus(StrEnum):
    IN_STOCK = "IN_STOCK"
    LOW_STOCK = "LOW_STOCK"
    OUT_OF_STOCK = "OUT_OF_STOCK"


@dataclass(frozen=True)
class LineCheck:
    sku: str
    requested: int
    available: int
    status: StockStatus
    unlimited: bool


@dataclass(frozen=True)
class ExpireOutcome:
    """What an expiry attempt did: ``expired`` is True only for the call that ended the hold."""

    expired: bool
    reservation: Reservation | None
    reason: str  # "expired" | "not_due" | "already_ended" | "not_found"


def new_id(prefix: str) -> str:
    """A ULID-style id: 48 bits of milliseconds then 80 random bits, Crockford-free base32."""
    raw = (now_ms() & (2**48 - 1)).to_bytes(6, "big") + os.urandom(10)
    return prefix + b32encode(raw).decode().rstrip("=").lower()


def derived_id(prefix: str, *parts: str) -> str:
    """A stable id from an idempotency key, so a retried request finds its own earlier result."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()[:16]
    return prefix + b32encode(digest).decode().rstrip("=").lower()


def once(store: DynamoStore, key: RequestKey | None, run: Callable[[], T], current: Callable[[], T], what: str) -> T:
    """Run a change made under an Idempotency-Key at most once, for the key's whole lifetime.

    ``run`` writes the key's mark in the change's own transaction. A re-run of a request
    whose change committed (its answer lost in a crash) finds the mark, changes nothing, and
    answers ``current()``: what a GET shows now. So does a re-run that the rules would now
    refuse (the extension it used was the last): the mark is read on that path only. The
    same key with another request is IDEMPOTENCY_KEY_REUSED."""
    try:
        return run()
    except KeyAlreadyUsed as used:
        same = used.same_request
    except StockholdError as refused:
        if key is None or refused.status >= 500 or isinstance(refused, IdempotencyKeyReused):
            raise
        found = store.key_used(key)
        if found is None:
            raise
        same = found
    if not same:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    count("RequestsAnsweredFromState")
    logger.info("request already took effect; answering from the current state", what=what)
    return current()


def check_lines(lines: Sequence[Line]) -> None:
    """Domain rules for a cart; the API checks the same first and names the field."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise ValidationFailed(f"a request holds 1 to {MAX_LINES} lines", {"fields": [{"field": "items"}]})
    seen: set[str] = set()
    for line in lines:
        if line.sku in seen:
            raise ValidationFailed(f"SKU {line.sku} appears twice", {"fields": [{"field": "items", "sku": line.sku}]})
        seen.add(line.sku)
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise ValidationFailed(f"quantity of {line.sku} must be 1..{MAX_QUANTITY}")


class StockService:
    def __init__(self, store: DynamoStore, settings: Settings, clock: Clock = now_ms) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock

    def get(self, store_id: str, sku: str) -> StockLevel:
        level = self._store.get_stock(store_id, sku)
        if level is None:
            raise NotFound(f"no stock record for SKU {sku}")
        return level

    def get_many(self, store_id: str, skus: Sequence[str]) -> tuple[list[StockLevel], list[str]]:
        found = self._store.get_stocks(store_id, skus)
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
        return once(
            self._store,
            key,
            lambda: self._set(store_id, sku, on_hand, low_stock_threshold, unlimited, key),
            lambda: self.get(store_id, sku),
            "stock set",
        )

    def _set(
        self,
        store_id: str,
        sku: str,
        on_hand: int,
        low_stock_threshold: int | None,
        unlimited: bool,
        key: RequestKey | None,
    ) -> StockLevel:
        for _ in range(_RETRIES):
            now = self._clock()
            current = self._store.get_stock(store_id, sku)
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
                    self._store.create_stock(store_id, fresh, key)
                except StockWriteRejected:
                    continue  # created concurrently: set it as an existing item
                return fresh
            committed = current.reserved + current.allocated
            if on_hand < committed:
                raise self._below_committed(sku, on_hand, current)
            try:
                return self._store.set_stock(
                    store_id,
                    sku,
                    expected_on_hand=current.on_hand,
                    on_hand=on_hand,
                    low_stock_threshold=low_stock_threshold,
                    unlimited=unlimited,
                    now_ms=now,
                    mark=key,
                )
            except StockWriteRejected as rejected:
                if rejected.current is not None and rejected.current.on_hand == current.on_hand:
                    raise self._below_committed(sku, on_hand, rejected.current) from None
                # onHand moved under us (an adjustment): recompute from the new value.
        raise TooBusy(f"stock of {sku} kept changing; retry shortly")

    @staticmethod
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

    def adjust(
        self, store_id: str, sku: str, delta: int, key: RequestKey | None = None, reason: str | None = None
    ) -> StockLevel:
        return once(
            self._store,
            key,
            lambda: self._adjust(store_id, sku, delta, key, reason),
            lambda: self.get(store_id, sku),
            "stock adjusted",
        )

    def _adjust(self, store_id: str, sku: str, delta: int, key: RequestKey | None, reason: str | None) -> StockLevel:
        try:
            return self._store.adjust_stock(store_id, sku, delta, self._clock(), key, reason)
        except StockWriteRejected as rejected:
            if rejected.current is None:
                raise NotFound(f"no stock record for SKU {sku}") from None
            raise StockConflict(
                f"adjusting {sku} by {delta} would take available stock below zero",
                {
                    "sku": sku,
                    "delta": delta,
                    "available": rejected.current.available,
                    "onHand": rejected.current.on_hand,
                },
            ) from None

    def validate(self, store_id: str, lines: Sequence[Line]) -> list[LineCheck]:
        """Answers whether each line could be held now; holds nothing."""
        check_lines(lines)
        found = self._store.get_stocks(store_id, [line.sku for line in lines])
        out: list[LineCheck] = []
        for line in lines:
            level = found.get(line.sku)
            available = level.available if level else 0
            unlimited = bool(level and level.unlimited)
            if unlimited:
                status = StockStatus.IN_STOCK
            elif available < line.quantity:
                status = StockStatus.OUT_OF_STOCK
            elif level and level.is_low(self._settings.LOW_STOCK_THRESHOLD):
                status = StockStatus.LOW_STOCK
            else:
                status = StockStatus.IN_STOCK
            out.append(LineCheck(line.sku, line.quantity, available, status, unlimited))
        return out


class ReservationService:
    def __init__(self, store: DynamoStore, settings: Settings, clock: Clock = now_ms) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock

    # ----- reads

    def get(self, store_id: str, reservation_id: str) -> Reservation:
        res = self._store.get_reservation(store_id, reservation_id)
        if res is None:
            raise NotFound(f"no reservation {reservation_id}")
        return res

    def get_for_cart(self, store_id: str, cart_id: str) -> Reservation:
        holder = self._store.get_cart_holder(store_id, cart_id)
        res = self._store.get_reservation(store_id, holder) if holder else None
        if res is None or res.status_at(self._clock()) is not ReservationStatus.ACTIVE:
            raise NotFound(f"cart {cart_id} has no active reservation")
        return res

    # ----- reserve

    def reserve(
        self,
        store_id: str,
        *,
        cart_id: str,
        customer_id: str | None,
        lines: Sequence[Line],
        hold_seconds: int | None = None,
        replace: bool = False,
        idempotency_key: str | None = None,
        checkout_id: str | None = None,
        extra: ExtraActions | None = None,
    ) -> Reservation:
        """Hold every line or none, in one transaction.

        A checkout passes its id and ``extra``: its own write, made in the same transaction
        (raises CheckoutChanged when that write's condition fails)."""
        check_lines(lines)
        hold = self._hold_seconds(hold_seconds)
        scope = "checkout" if checkout_id else "reserve"
        # The id derived from the key is this request's guard: a re-run finds the reservation.
        rid = derived_id("res_", store_id, idempotency_key, scope) if idempotency_key else new_id("res_")
        unlimited: set[str] = set()
        freed_dead_holds = False
        replacing = self._active_holder(store_id, cart_id) if replace else None

        for _ in range(_RETRIES):
            now = self._clock()
            res = Reservation(
                reservation_id=rid,
                store_id=store_id,
                cart_id=cart_id,
                customer_id=customer_id,
                status=ReservationStatus.ACTIVE,
                lines=tuple(HeldLine(sku=x.sku, quantity=x.quantity, held=x.sku not in unlimited) for x in lines),
                created_at=now,
                expires_at=now + hold * 1000,
                extensions_used=0,
                max_extensions=self._settings.MAX_EXTENSIONS,
                checkout_id=checkout_id,
            )
            if replacing is not None and replacing.checkout_id and replacing.checkout_id != checkout_id:
                raise HeldByCheckout(replacing.reservation_id, replacing.checkout_id, "cancel")
            moves = _reserve_moves(res, replacing)
            extras = list(extra(res)) if extra else []
            bookkeeping = 2 + (1 if replacing else 0) + len(extras)
            if bookkeeping + len(moves) > MAX_TRANSACTION_ACTIONS:
                raise ValidationFailed(
                    f"the old and new carts together touch {len(moves)} SKUs; an atomic swap holds at most "
                    f"{MAX_TRANSACTION_ACTIONS - bookkeeping}. Release the old reservation first.",
                    {"fields": [{"field": "items"}]},
                )
            try:
                self._store.create_reservation(
                    res,
                    purge_at=self._active_purge_at(res.expires_at),
                    moves=moves,
                    replacing=replacing,
                    replaced_status=(
                        ReservationStatus.EXPIRED if replacing and replacing.is_due(now) else ReservationStatus.RELEASED
                    ),
                    ended_purge_at=self._ended_purge_at(now),
                    now_ms=now,
                    extra=extras,
                )
            except ReserveRejected as why:
                if why.reservation_exists:
                    return self._earlier_result(store_id, rid, cart_id, lines)
                if why.extra_failed:
                    raise CheckoutChanged() from None
                if why.unlimited_skus or why.limited_skus:
                    unlimited |= set(why.unlimited_skus)
                    unlimited -= set(why.limited_skus)
                    continue
                if why.replaced_changed:
                    replacing = self._active_holder(store_id, cart_id)
                    continue
                if why.cart_holder is not None:
                    if why.cart_holder_expires_at is not None and why.cart_holder_expires_at <= now:
                        # The cart's hold is past its deadline: end it now rather than block the shopper.
                        outcome = self.expire(store_id, why.cart_holder, ExpirePath.REQUEST)
                        if outcome.reason in ("already_ended", "not_found"):
                            self._store.clear_cart_slot(store_id, cart_id, why.cart_holder)
                        if outcome.reason != "not_due":
                            continue
                    raise CartAlreadyReserved(cart_id, why.cart_holder) from None
                if not freed_dead_holds:
                    freed_dead_holds = True
                    short_skus = set(why.short) | set(why.unknown_skus)
                    if self._end_dead_holds(store_id, short_skus, now):
                        continue  # units came back: try once more within this request
                count("ReservationsRefused")
                raise InsufficientStock(self._short_lines(lines, why, replacing)) from None
            count("ReservationsCreated")
            if replacing is not None:
                count("ReservationsReplaced")
            logger.info("reservation created", reservation_id=rid, lines=len(lines), hold_seconds=hold)
            return res
        raise TooBusy("the cart or its stock kept changing; retry shortly")

    def _end_dead_holds(self, store_id: str, skus: set[str], now: int) -> bool:
        """End holds past their deadline that hold any of ``skus``; True if any ended.

        Only on the refusal path: one query per index shard for holds already due."""
        ended = False
        for item in self._store.overdue_holds(now):
            if item.get("storeId") != store_id or not skus & {x["sku"] for x in item.get("lines", []) if x["held"]}:
                continue
            ended |= self.expire(store_id, item["reservationId"], ExpirePath.REQUEST).expired
        return ended

    def _hold_seconds(self, requested: int | None) -> int:
        s = self._settings
        hold = s.DEFAULT_HOLD_SECONDS if requested is None else requested
        if not s.MIN_HOLD_SECONDS <= hold <= s.MAX_HOLD_SECONDS:
            raise ValidationFailed(
                f"holdSeconds must be between {s.MIN_HOLD_SECONDS} and {s.MAX_HOLD_SECONDS}",
                {"fields": [{"field": "holdSeconds", "min": s.MIN_HOLD_SECONDS, "max": s.MAX_HOLD_SECONDS}]},
            )
        return hold

    def _active_holder(self, store_id: str, cart_id: str) -> Reservation | None:
        holder = self._store.get_cart_holder(store_id, cart_id)
        res = self._store.get_reservation(store_id, holder) if holder else None
        return res if res is not None and res.status is ReservationStatus.ACTIVE else None

    def _earlier_result(self, store_id: str, rid: str, cart_id: str, lines: Sequence[Line]) -> Reservation:
        """A retried request whose transaction already committed: answer what it made."""
        earlier = self.get(store_id, rid)
        if earlier.cart_id != cart_id or [(x.sku, x.quantity) for x in earlier.lines] != [
            (x.sku, x.quantity) for x in lines
        ]:
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different reservation")
        return earlier

    @staticmethod
    def _short_lines(
        lines: Sequence[Line], why: ReserveRejected, replacing: Reservation | None
    ) -> list[dict[str, Any]]:
        returned = {x.sku: x.quantity for x in replacing.held_lines} if replacing else {}
        short = []
        for line in lines:
            if line.sku in why.unknown_skus:
                short.append({"sku": line.sku, "requested": line.quantity, "available": 0})
            elif line.sku in why.short:
                available = why.short[line.sku] + returned.get(line.sku, 0)
                short.append({"sku": line.sku, "requested": line.quantity, "available": available})
        return short

    # ----- extend

    def extend(
        self, store_id: str, reservation_id: str, hold_seconds: int | None, key: RequestKey | None = None
    ) -> Reservation:
        """New deadline = now + holdSeconds, never earlier than the current one."""
        hold = self._hold_seconds(hold_seconds)
        return once(
            self._store,
            key,
            lambda: self._extend(self.get(store_id, reservation_id), hold, key),
            lambda: self.get(store_id, reservation_id),
            "reservation extended",
        )

    def _extend(self, res: Reservation, hold: int, key: RequestKey | None) -> Reservation:
        reservation_id = res.reservation_id
        for _ in range(_RETRIES):
            now = self._clock()
            self.require_live(res, now)
            new_deadline = now + hold * 1000
            if new_deadline <= res.expires_at:
                return res  # already later than asked: nothing to do, no extension used
            if res.extensions_left == 0:
                raise ExtensionLimitReached(
                    f"reservation {reservation_id} used all {res.max_extensions} extensions",
                    {"extensionsUsed": res.extensions_used, "maxExtensions": res.max_extensions},
                )
            try:
                extended = self._store.extend_reservation(
                    res,
                    new_expires_at=new_deadline,
                    purge_at=self._active_purge_at(new_deadline),
                    now_ms=now,
                    mark=key,
                )
            except TransitionRejected as rejected:
                if rejected.current is None:
                    raise NotFound(f"no reservation {reservation_id}") from None
                res = rejected.current
                continue
            count("ReservationsExtended")
            return extended
        raise TooBusy(f"reservation {reservation_id} kept changing; retry shortly")

    # ----- end a hold

    def confirm(self, store_id: str, reservation_id: str, order_id: str) -> Reservation:
        """Payment succeeded: reserved units become allocated to ``order_id``, and the order
        record (PLACED, to be fulfilled or cancelled) is created in the same transaction.

        Once only by its own state: a re-run finds the hold CONFIRMED (same order: the same
        answer) and no Idempotency-Key mark is needed."""
        res = self.get(store_id, reservation_id)
        for _ in range(_RETRIES):
            if res.status is ReservationStatus.CONFIRMED and res.order_id == order_id:
                return res  # confirming again with the same order is a no-op
            if res.checkout_id and res.status is ReservationStatus.ACTIVE:
                raise HeldByCheckout(reservation_id, res.checkout_id, "complete")
            now = self._clock()
            self.require_live(res, now)
            moves = [StockMove(x.sku, reserved=-x.quantity, allocated=x.quantity) for x in res.held_lines]
            order = order_for(res, order_id, None, None, now)
            extra = [self._store.order_put_action(order, Cause("order_created", ref=reservation_id))]
            try:
                done = self.end(
                    res, ReservationStatus.CONFIRMED, moves, now, "confirmed", order_id, "before", extra=extra
                )
            except TransitionRejected as rejected:
                if rejected.extra_failed and rejected.current and rejected.current.status is ReservationStatus.ACTIVE:
                    taken = self._store.get_order(store_id, order_id)
                    raise OrderIdTaken(order_id, taken.reservation_id if taken else None) from None
                res = self._after_rejection(reservation_id, rejected)
                continue
            count("ReservationsConfirmed")
            return done
        raise TooBusy(f"reservation {reservation_id} kept changing; retry shortly")

    def release(self, store_id: str, reservation_id: str, reason: str, key: RequestKey | None = None) -> Reservation:
        """Cancel, payment failure or manual: held units go back to available.

        Once only by its own state (a released hold stays released); ``key`` is for callers
        whose request means more than this hold (a checkout's cancel): its mark goes into the
        release's transaction (raises KeyAlreadyUsed)."""
        res = self.get(store_id, reservation_id)
        for _ in range(_RETRIES):
            if res.status is ReservationStatus.RELEASED:
                return res  # releasing again changes nothing
            now = self._clock()
            self.require_live(res, now)
            moves = [StockMove(x.sku, reserved=-x.quantity, available=x.quantity) for x in res.held_lines]
            try:
                done = self.end(res, ReservationStatus.RELEASED, moves, now, reason, None, "before", key)
            except TransitionRejected as rejected:
                res = self._after_rejection(reservation_id, rejected)
                continue
            count("ReservationsReleased")
            return done
        raise TooBusy(f"reservation {reservation_id} kept changing; retry shortly")

    def expire(self, store_id: str, reservation_id: str, path: ExpirePath) -> ExpireOutcome:
        """End the hold as EXPIRED if it is still ACTIVE and due; otherwise change nothing and say why.

        Safe to call at any time, in any order, any number of times, from any path."""
        res = self._store.get_reservation(store_id, reservation_id)
        for _ in range(_RETRIES):
            if res is None:
                return ExpireOutcome(False, None, "not_found")
            if res.status is not ReservationStatus.ACTIVE:
                return ExpireOutcome(False, res, "already_ended")
            now = self._clock()
            if not res.is_due(now):
                return ExpireOutcome(False, res, "not_due")
            moves = [StockMove(x.sku, reserved=-x.quantity, available=x.quantity) for x in res.held_lines]
            try:
                done = self.end(res, ReservationStatus.EXPIRED, moves, now, "expired", None, "due", None, path.value)
            except TransitionRejected as rejected:
                res = rejected.current
                continue
            count("ReservationsExpired")
            count(f"ReservationsExpiredBy{path.value.capitalize()}")
            metrics.add_metric(name="ExpiryLag", unit=MetricUnit.Milliseconds, value=now - res.expires_at)
            logger.info(
                "reservation expired",
                reservation_id=reservation_id,
                path=path.value,
                lag_ms=now - res.expires_at,
            )
            return ExpireOutcome(True, done, "expired")
        raise TooBusy(f"reservation {reservation_id} kept changing; retry shortly")

    def restore_after_ttl(self, res: Reservation) -> bool:
        """The TTL backstop: DynamoDB deleted ``res`` (its last image) while it was ACTIVE.

        Returns its units and leaves an EXPIRED record, once however often it is delivered."""
        now = self._clock()
        moves = [StockMove(x.sku, reserved=-x.quantity, available=x.quantity) for x in res.held_lines]
        follow = self._checkout_follow(res, ReservationStatus.EXPIRED, "expired", now)
        try:
            restored = self._store.restore_as_expired(
                res,
                moves=moves,
                now_ms=now,
                purge_at=self._ended_purge_at(now),
                path=ExpirePath.TTL.value,
                extra=follow,
            )
        except TransitionRejected as rejected:
            if not (follow and rejected.extra_failed and not rejected.stock_conflict):
                raise
            logger.error(
                "checkout did not follow its hold; returning the units alone", reservation_id=res.reservation_id
            )
            restored = self._store.restore_as_expired(
                res, moves=moves, now_ms=now, purge_at=self._ended_purge_at(now), path=ExpirePath.TTL.value
            )
        if restored:
            count("ReservationsExpired")
            count("ReservationsExpiredByTtl")
            metrics.add_metric(name="ExpiryLag", unit=MetricUnit.Milliseconds, value=now - res.expires_at)
            logger.warning(
                "hold returned by the TTL backstop", reservation_id=res.reservation_id, lag_ms=now - res.expires_at
            )
        return restored

    def end(
        self,
        res: Reservation,
        to: ReservationStatus,
        moves: list[StockMove],
        now: int,
        reason: str,
        order_id: str | None,
        deadline: str,
        mark: RequestKey | None = None,
        expired_by: str | None = None,
        extra: Sequence[dict[str, Any]] | None = None,
    ) -> Reservation:
        """End the hold. Unless the caller brings its own ``extra`` actions, a checkout's hold
        takes its checkout along (expired or cancelled -> abandoned, payment failed -> active)."""
        follow = self._checkout_follow(res, to, reason, now) if extra is None else []

        def end(actions: Sequence[dict[str, Any]]) -> Reservation:
            return self._store.end_reservation(
                res,
                to,
                moves=moves,
                now_ms=now,
                reason=reason,
                order_id=order_id,
                purge_at=self._ended_purge_at(now),
                deadline=deadline,
                mark=mark,
                expired_by=expired_by,
                extra=actions,
            )

        try:
            return end(extra if extra is not None else follow)
        except TransitionRejected as rejected:
            hold_ok = rejected.current is not None and rejected.current.status is ReservationStatus.ACTIVE
            if not (follow and rejected.extra_failed and hold_ok and not rejected.stock_conflict):
                raise
            # Never let a checkout that disagrees with its hold keep the units: end the hold alone.
            logger.error("checkout did not follow its hold; ending the hold alone", reservation_id=res.reservation_id)
            return end([])

    def _checkout_follow(self, res: Reservation, to: ReservationStatus, reason: str, now: int) -> list[dict[str, Any]]:
        if not res.checkout_id or to not in (ReservationStatus.EXPIRED, ReservationStatus.RELEASED):
            return []
        if to is ReservationStatus.RELEASED and reason == "payment_failed":
            status, action, purge = CheckoutStatus.ACTIVE, "checkout_payment_failed", None
        else:
            status = CheckoutStatus.ABANDONED
            action = "checkout_cancelled" if reason == "cancelled" else "checkout_abandoned"
            purge = self._ended_purge_at(now)
        cause = Cause(action, ref=res.reservation_id, reason=reason)
        return [self._store.checkout_follow_action(res, status, now_ms=now, cause=cause, purge_at=purge)]

    def extend_with(
        self, res: Reservation, seconds: int, extra: Sequence[dict[str, Any]], key: RequestKey | None = None
    ) -> Reservation:
        """Use one extension to move ``res``'s deadline to now + ``seconds``, with ``extra`` (the
        checkout's write) in the same transaction. CheckoutChanged when the hold or the
        checkout moved since they were read (the caller reads both again)."""
        now = self._clock()
        deadline = now + seconds * 1000
        try:
            extended = self._store.extend_reservation(
                res,
                new_expires_at=deadline,
                purge_at=self._active_purge_at(deadline),
                now_ms=now,
                extra=extra,
                mark=key,
            )
        except TransitionRejected:
            raise CheckoutChanged() from None
        count("ReservationsExtended")
        return extended

    def enter_payment_window(
        self, res: Reservation, seconds: int, extra: Sequence[dict[str, Any]], key: RequestKey | None = None
    ) -> Reservation | None:
        """Move a checkout's deadline to now + ``seconds``, once per hold and without using an
        extension, with ``extra`` (the checkout's write) in the same transaction. None when
        there is nothing to extend (already in its payment window, or already later): the
        caller then writes the checkout alone."""
        now = self._clock()
        self.require_live(res, now)
        deadline = now + seconds * 1000
        if res.payment_window_at is not None or deadline <= res.expires_at:
            return None
        try:
            return self._store.extend_reservation(
                res,
                new_expires_at=deadline,
                purge_at=self._active_purge_at(deadline),
                now_ms=now,
                counts=False,
                extra=extra,
                mark=key,
            )
        except TransitionRejected as rejected:
            if rejected.extra_failed:
                raise CheckoutChanged() from None
            if rejected.current is None:
                raise NotFound(f"no reservation {res.reservation_id}") from None
            self.require_live(rejected.current, self._clock())
            raise CheckoutChanged() from None  # extended or entered payment meanwhile: look again

    def require_live(self, res: Reservation, now: int) -> None:
        """Raise unless the hold is ACTIVE and before its deadline. A due hold is ended on the spot."""
        if res.status is ReservationStatus.ACTIVE and not res.is_due(now):
            return
        if res.status is ReservationStatus.ACTIVE:
            self.expire(res.store_id, res.reservation_id, ExpirePath.REQUEST)
            raise ReservationExpired(res.reservation_id, rfc3339(res.expires_at))
        if res.status is ReservationStatus.EXPIRED:
            raise ReservationExpired(res.reservation_id, rfc3339(res.expires_at))
        raise ReservationNotActive(res.reservation_id, res.status.value)

    @staticmethod
    def _after_rejection(reservation_id: str, rejected: TransitionRejected) -> Reservation:
        if rejected.current is None:
            raise NotFound(f"no reservation {reservation_id}")
        if rejected.stock_conflict and rejected.current.status is ReservationStatus.ACTIVE:
            # A counter would go below zero: the stock record disagrees with the hold.
            logger.error(
                "stock counters disagree with an active hold",
                reservation_id=reservation_id,
                skus=rejected.stock_conflict,
            )
            raise StockConflict("the stock counters disagree with this reservation", {"skus": rejected.stock_conflict})
        return rejected.current

    def _active_purge_at(self, expires_at_ms: int) -> int:
        return expires_at_ms // 1000 + self._settings.TTL_GRACE_SECONDS

    def _ended_purge_at(self, now: int) -> int:
        return now // 1000 + self._settings.history_retention_seconds

    # ----- expiry notice of a checkout's hold (docs/events.md)

    def expiring_notice_at(self, res: Reservation) -> int | None:
        """When the hold timer should wake to warn of ``res``'s deadline (epoch ms, whole
        seconds): EXPIRING_NOTICE_SECONDS before it, for an ACTIVE checkout's hold. A timer
        that starts inside the notice (a late stream, a hold shorter than the notice) warns at
        once: late is better than never, as long as the deadline is still ahead."""
        notice = self._settings.EXPIRING_NOTICE_SECONDS
        if notice <= 0 or not res.checkout_id or res.status is not ReservationStatus.ACTIVE:
            return None
        if res.expires_at <= self._clock():
            return None
        at = res.expires_at - notice * 1000
        return at - at % 1000  # a Wait state's whole second, never later than the notice asks

    def warn_expiring(self, store_id: str, reservation_id: str) -> str:
        """Mark a checkout's hold as about to expire (``warnedFor``), once per deadline; the
        events publisher turns that write into ReservationExpiring.

        Answers "warned" (the only one that wrote), "already_warned" (or changed meanwhile),
        "not_yet" (extended since the timer was set: it warns before the new deadline),
        "not_checkout", "due", "already_ended" or "not_found"."""
        early_ms = 2000  # a timer may wake a little late; more than this early means extended
        res = self._store.get_reservation(store_id, reservation_id)
        if res is None:
            return "not_found"
        if res.status is not ReservationStatus.ACTIVE:
            return "already_ended"
        notice_ms = self._settings.EXPIRING_NOTICE_SECONDS * 1000
        if not res.checkout_id or notice_ms <= 0:
            return "not_checkout"
        now = self._clock()
        if res.is_due(now):
            return "due"
        if res.expires_at - now > notice_ms + early_ms:
            return "not_yet"
        if not self._store.mark_expiring(store_id, reservation_id, deadline=res.expires_at, now_ms=now):
            return "already_warned"
        count("ReservationsWarned")
        logger.info("reservation expiring", reservation_id=reservation_id, ms_left=res.expires_at - now)
        return "warned"


def order_for(
    res: Reservation, order_id: str, checkout_id: str | None, payment_reference: str | None, now: int
) -> Order:
    """The order a confirmed hold becomes: its lines (unlimited ones too), PLACED."""
    return Order(
        order_id=order_id,
        store_id=res.store_id,
        checkout_id=checkout_id,
        reservation_id=res.reservation_id,
        cart_id=res.cart_id,
        customer_id=res.customer_id,
        lines=res.lines,
        status=OrderStatus.PLACED,
        payment_reference=payment_reference,
        created_at=now,
        updated_at=now,
    )


def _reserve_moves(res: Reservation, replacing: Reservation | None) -> list[StockMove]:
    """Net counter moves per SKU (a transaction may touch each item once)."""
    old = {x.sku: x.quantity for x in replacing.held_lines} if replacing else {}
    moves: list[StockMove] = []
    for line in res.lines:
        delta = (line.quantity if line.held else 0) - old.pop(line.sku, 0)
        if not line.held and delta == 0:
            moves.append(StockMove(line.sku, require_unlimited=True))
        elif delta != 0:
            moves.append(StockMove(line.sku, available=-delta, reserved=delta))
    moves.extend(StockMove(sku, available=q, reserved=-q) for sku, q in old.items())
    return moves
