"""Checkout as quote, and the orders it makes (docs/checkout.md).

The cart is the quote: ``active -> checkout -> completed | abandoned``, no draft orders.
A checkout holds its stock through an ordinary reservation that carries its id; every
write that changes both goes into the hold's own transaction:

* start: the hold, its cart slot, the counters, the checkout (and the cart's pointer to it);
* complete: the hold CONFIRMED, the counters, the checkout ``completed`` and the order;
* cancel / expiry by any path: the hold ended, the counters, the checkout following it
  (``ReservationService.end``).

So a checkout is ``checkout`` exactly while its hold is ACTIVE. Reads still derive the
status from the hold as well, so a hold past its deadline reads ``abandoned`` at once,
before any path has ended it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from stockhold.errors import (
    CartAlreadyReserved,
    CheckoutNotOpen,
    HeldByCheckout,
    NotFound,
    OrderNotOpen,
    ReservationExpired,
    StockConflict,
    TooBusy,
)
from stockhold.models import (
    Checkout,
    CheckoutStatus,
    Line,
    Order,
    OrderStatus,
    RequestKey,
    Reservation,
    ReservationStatus,
    rfc3339,
)
from stockhold.observability import count, logger
from stockhold.service import (
    CheckoutChanged,
    Clock,
    ExpirePath,
    ReservationService,
    StockService,
    check_lines,
    derived_id,
    new_id,
    now_ms,
    once,
    order_for,
)
from stockhold.settings import Settings
from stockhold.store import Cause, DynamoStore, OrderRejected, StockMove, TransitionRejected

_RETRIES = 4
# What PATCH may change (domain field names); everything else follows the hold.
_EDITABLE = frozenset({"shipping_address", "billing_address", "payment_method", "shipping_method_id", "step"})


@dataclass(frozen=True)
class CheckoutView:
    """A checkout as read now: its stored record, its hold, and its status derived from both."""

    checkout: Checkout
    reservation: Reservation | None
    status: CheckoutStatus
    warnings: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False


def effective_status(chk: Checkout, res: Reservation | None, now: int) -> CheckoutStatus:
    if chk.status is not CheckoutStatus.CHECKOUT:
        return chk.status
    held = res.status_at(now) if res is not None else ReservationStatus.EXPIRED
    if held is ReservationStatus.ACTIVE:
        return CheckoutStatus.CHECKOUT
    if held is ReservationStatus.CONFIRMED:
        return CheckoutStatus.COMPLETED
    if held is ReservationStatus.RELEASED and res is not None and res.end_reason == "payment_failed":
        return CheckoutStatus.ACTIVE
    return CheckoutStatus.ABANDONED


class CheckoutService:
    def __init__(
        self,
        store: DynamoStore,
        settings: Settings,
        reservations: ReservationService,
        stock: StockService,
        clock: Clock = now_ms,
    ) -> None:
        self._store = store
        self._settings = settings
        self._reservations = reservations
        self._stock = stock
        self._clock = clock

    # ----- reads

    def get(self, store_id: str, checkout_id: str) -> CheckoutView:
        chk = self._store.get_checkout(store_id, checkout_id)
        if chk is None:
            raise NotFound(f"no checkout {checkout_id}")
        res = self._store.get_reservation(store_id, chk.reservation_id) if chk.reservation_id else None
        return CheckoutView(chk, res, effective_status(chk, res, self._clock()))

    def _of_cart(self, store_id: str, cart_id: str) -> CheckoutView | None:
        checkout_id = self._store.get_cart_checkout(store_id, cart_id)
        if checkout_id is None:
            return None
        try:
            return self.get(store_id, checkout_id)
        except NotFound:
            return None  # purged after its retention

    # ----- start, resume, change the lines

    def start(
        self,
        store_id: str,
        *,
        cart_id: str,
        customer_id: str | None,
        lines: Sequence[Line],
        idempotency_key: str | None = None,
    ) -> CheckoutView:
        """Hold every line on the checkout deadline, all or none.

        The cart's open checkout is resumed (same lines: nothing changes) or its hold is
        swapped for the new lines atomically; a checkout whose payment failed (``active``)
        starts again with a fresh hold; otherwise a new checkout is made. A plain
        reservation of the cart is taken over in the same transaction."""
        check_lines(lines)
        for _ in range(_RETRIES):
            now = self._clock()
            current = self._of_cart(store_id, cart_id)
            if current is not None and current.status is CheckoutStatus.CHECKOUT:
                if _same_lines(current.checkout.items, lines) and current.checkout.customer_id == customer_id:
                    return replace(current, resumed=True, warnings=self._warnings(store_id, lines))
                base: Checkout | None = current.checkout
            elif current is not None and current.status is CheckoutStatus.ACTIVE:
                base = current.checkout
            else:
                if current is not None and current.reservation is not None and current.reservation.is_due(now):
                    # Its hold is past the deadline but not yet ended: end it (the checkout follows).
                    self._reservations.expire(store_id, current.reservation.reservation_id, ExpirePath.REQUEST)
                    continue
                base = None
            try:
                return self._hold(store_id, base, cart_id, customer_id, lines, idempotency_key)
            except (CheckoutChanged, CartAlreadyReserved, HeldByCheckout):
                continue  # the checkout or the cart moved under us (a racing start): look again
        raise TooBusy(f"cart {cart_id} kept changing; retry shortly")

    def _hold(
        self,
        store_id: str,
        base: Checkout | None,
        cart_id: str,
        customer_id: str | None,
        lines: Sequence[Line],
        idempotency_key: str | None,
    ) -> CheckoutView:
        if base is not None:
            checkout_id = base.checkout_id
        elif idempotency_key:
            checkout_id = derived_id("chk_", store_id, idempotency_key)
        else:
            checkout_id = new_id("chk_")
        written: list[Checkout] = []

        def checkout_write(res: Reservation) -> list[dict[str, Any]]:
            if base is None:
                chk = Checkout(
                    checkout_id=checkout_id,
                    store_id=store_id,
                    cart_id=cart_id,
                    customer_id=customer_id,
                    status=CheckoutStatus.CHECKOUT,
                    items=tuple(lines),
                    reservation_id=res.reservation_id,
                    created_at=res.created_at,
                    updated_at=res.created_at,
                )
                action = "checkout_started"
            else:
                chk = base.model_copy(
                    update={
                        "status": CheckoutStatus.CHECKOUT,
                        "customer_id": customer_id,
                        "items": tuple(lines),
                        "reservation_id": res.reservation_id,
                        "end_reason": None,
                        "updated_at": res.created_at,
                        "version": base.version + 1,
                    }
                )
                action = "checkout_restarted" if base.status is CheckoutStatus.ACTIVE else "checkout_items_changed"
            written[:] = [chk]
            expected = None if base is None else base.version
            actions = [
                self._store.checkout_put_action(
                    chk, expected_version=expected, cause=Cause(action, ref=res.reservation_id)
                )
            ]
            if base is None:
                actions.append(self._store.cart_checkout_action(chk))
            return actions

        res = self._reservations.reserve(
            store_id,
            cart_id=cart_id,
            customer_id=customer_id,
            lines=lines,
            hold_seconds=self._settings.CHECKOUT_HOLD_SECONDS,
            replace=True,
            idempotency_key=idempotency_key,
            checkout_id=checkout_id,
            extra=checkout_write,
        )
        if res.checkout_id != checkout_id:
            raise CheckoutChanged()
        stored: Checkout | None = written[0] if written else None
        if stored is None or stored.updated_at != res.created_at:
            # An earlier request with this Idempotency-Key made the hold: answer what it made,
            # as it is now (its hold may have ended since), exactly as a GET would.
            view = self.get(store_id, checkout_id)
            return replace(
                view, warnings=self._warnings(store_id, lines) if view.status is CheckoutStatus.CHECKOUT else []
            )
        count("CheckoutsStarted" if base is None else "CheckoutsRestarted")
        logger.info("checkout holding stock", checkout_id=checkout_id, reservation_id=res.reservation_id)
        return CheckoutView(stored, res, CheckoutStatus.CHECKOUT, self._warnings(store_id, lines))

    def _warnings(self, store_id: str, lines: Sequence[Line]) -> list[dict[str, Any]]:
        """Lines whose SKU is low on stock now (one BatchGetItem)."""
        found, _ = self._stock.get_many(store_id, [line.sku for line in lines])
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

    # ----- activity, payment

    def update(
        self, store_id: str, checkout_id: str, changes: dict[str, Any], key: RequestKey | None = None
    ) -> CheckoutView:
        """Save the shopper's details; extend the hold when less than the threshold is left."""
        unknown = set(changes) - _EDITABLE
        if unknown:
            raise ValueError(f"not editable on a checkout: {sorted(unknown)}")
        return once(
            self._store,
            key,
            lambda: self._update(store_id, checkout_id, changes, key),
            lambda: self.get(store_id, checkout_id),
            "checkout updated",
        )

    def _update(self, store_id: str, checkout_id: str, changes: dict[str, Any], key: RequestKey | None) -> CheckoutView:
        """The details and, when due, the extension are one transaction: both or neither."""
        for _ in range(_RETRIES):
            now = self._clock()
            view = self.get(store_id, checkout_id)
            self._require_open(view, now, allow_active=True)
            chk, res = view.checkout, view.reservation
            saved = chk.model_copy(update={**changes, "updated_at": now, "version": chk.version + 1})
            cause = Cause("checkout_updated", ref=chk.reservation_id)
            warnings: list[dict[str, Any]] = []
            seconds = self._settings.CHECKOUT_HOLD_SECONDS
            due = (
                view.status is CheckoutStatus.CHECKOUT
                and res is not None
                and res.expires_at - now < self._settings.EXTEND_THRESHOLD_SECONDS * 1000
                and now + seconds * 1000 > res.expires_at
            )
            if due and res is not None and res.extensions_left > 0:
                write = self._store.checkout_put_action(saved, expected_version=chk.version, cause=cause)
                try:
                    extended = self._reservations.extend_with(res, seconds, [write], key)
                except CheckoutChanged:
                    continue  # the hold or the checkout moved since they were read: look again
                return CheckoutView(saved, extended, view.status)
            if due and res is not None:
                warnings.append(
                    {
                        "code": "EXTENSION_LIMIT_REACHED",
                        "message": f"the hold ends at {rfc3339(res.expires_at)} and cannot be extended again",
                    }
                )
            if self._store.save_checkout(saved, expected_version=chk.version, cause=cause, mark=key):
                return CheckoutView(saved, res, view.status, warnings)
        raise TooBusy(f"checkout {checkout_id} kept changing; retry shortly")

    def payment(self, store_id: str, checkout_id: str, key: RequestKey | None = None) -> CheckoutView:
        """Entering payment: the hold must still be live; it moves to the payment window (once)."""
        return once(
            self._store,
            key,
            lambda: self._payment(store_id, checkout_id, key),
            lambda: self.get(store_id, checkout_id),
            "checkout payment",
        )

    def _payment(self, store_id: str, checkout_id: str, key: RequestKey | None) -> CheckoutView:
        for _ in range(_RETRIES):
            now = self._clock()
            view = self.get(store_id, checkout_id)
            res = self._require_open(view, now)
            chk = view.checkout
            saved = chk.model_copy(update={"step": "payment", "updated_at": now, "version": chk.version + 1})
            cause = Cause("checkout_payment", ref=res.reservation_id)
            write = self._store.checkout_put_action(saved, expected_version=chk.version, cause=cause)
            try:
                extended = self._reservations.enter_payment_window(
                    res, self._settings.PAYMENT_HOLD_SECONDS, [write], key
                )
            except CheckoutChanged:
                continue
            if extended is not None:
                return CheckoutView(saved, extended, view.status)
            # Already in its payment window (or later): nothing to extend; the hold was re-checked.
            if chk.step == "payment":
                return view
            if self._store.save_checkout(saved, expected_version=chk.version, cause=cause, mark=key):
                return CheckoutView(saved, res, view.status)
        raise TooBusy(f"checkout {checkout_id} kept changing; retry shortly")

    # ----- complete, cancel

    def complete(self, store_id: str, checkout_id: str, payment_reference: str | None) -> Order:
        """The order and the hold's confirmation, in one transaction; exactly one order per
        checkout (its id derives from the checkout's), so a re-run finds it made."""
        order_id = derived_id("ord_", store_id, checkout_id)
        for _ in range(_RETRIES):
            now = self._clock()
            view = self.get(store_id, checkout_id)
            chk = view.checkout
            if chk.status is CheckoutStatus.COMPLETED:
                return self._completed_order(chk, payment_reference)
            if view.status is CheckoutStatus.COMPLETED:
                continue  # read between a racing complete's commit and our second read: read again
            res = self._require_open(view, now)
            order = order_for(res, order_id, checkout_id, payment_reference, now)
            done = chk.model_copy(
                update={
                    "status": CheckoutStatus.COMPLETED,
                    "order_id": order_id,
                    "updated_at": now,
                    "version": chk.version + 1,
                }
            )
            extra = [
                self._store.checkout_put_action(
                    done,
                    expected_version=chk.version,
                    cause=Cause("checkout_completed", ref=order_id),
                    purge_at=now // 1000 + self._settings.history_retention_seconds,
                ),
                self._store.order_put_action(order, Cause("order_created", ref=res.reservation_id)),
            ]
            moves = [StockMove(x.sku, reserved=-x.quantity, allocated=x.quantity) for x in res.held_lines]
            try:
                self._reservations.end(
                    res, ReservationStatus.CONFIRMED, moves, now, "confirmed", order_id, "before", extra=extra
                )
            except TransitionRejected as rejected:
                hold_active = rejected.current is not None and rejected.current.status is ReservationStatus.ACTIVE
                if rejected.stock_conflict and hold_active and not rejected.extra_failed:
                    raise StockConflict(
                        "the stock counters disagree with this checkout's hold", {"skus": rejected.stock_conflict}
                    ) from None
                continue  # the checkout or its hold moved (a racing complete, an update, expiry): look again
            count("CheckoutsCompleted")
            logger.info("checkout completed", checkout_id=checkout_id, order_id=order_id)
            return order
        raise TooBusy(f"checkout {checkout_id} kept changing; retry shortly")

    def _completed_order(self, chk: Checkout, payment_reference: str | None) -> Order:
        order = self._store.get_order(chk.store_id, chk.order_id or "")
        if order is None:
            raise NotFound(f"order {chk.order_id} of checkout {chk.checkout_id} is gone")
        if payment_reference is not None and order.payment_reference not in (None, payment_reference):
            raise CheckoutNotOpen(
                chk.checkout_id,
                "completed",
                f"checkout {chk.checkout_id} was completed with another paymentReference (order {order.order_id})",
            )
        return order

    def cancel(self, store_id: str, checkout_id: str, reason: str, key: RequestKey | None = None) -> CheckoutView:
        """Release the hold at once: ``payment_failed`` -> ``active`` (start again for a fresh
        hold), ``cancelled`` -> ``abandoned``. Saying the same again changes nothing, and a
        re-run under the same key never touches a hold the shopper has made since."""
        return once(
            self._store,
            key,
            lambda: self._cancel(store_id, checkout_id, reason, key),
            lambda: self.get(store_id, checkout_id),
            "checkout cancelled",
        )

    def _cancel(self, store_id: str, checkout_id: str, reason: str, key: RequestKey | None) -> CheckoutView:
        for _ in range(_RETRIES):
            now = self._clock()
            view = self.get(store_id, checkout_id)
            chk, status = view.checkout, view.status
            wanted = CheckoutStatus.ACTIVE if reason == "payment_failed" else CheckoutStatus.ABANDONED
            if status is wanted:
                return view
            if status is CheckoutStatus.COMPLETED:
                raise CheckoutNotOpen(
                    checkout_id, status.value, f"checkout {checkout_id} is completed; cancel its order"
                )
            if status is CheckoutStatus.ABANDONED:
                self._require_open(view, now)  # 410 when its hold expired
                raise CheckoutNotOpen(checkout_id, status.value)
            if status is CheckoutStatus.ACTIVE:
                # Nothing held (payment failed before): the shopper gives up.
                gone = chk.model_copy(
                    update={
                        "status": CheckoutStatus.ABANDONED,
                        "end_reason": reason,
                        "updated_at": now,
                        "version": chk.version + 1,
                    }
                )
                purge = now // 1000 + self._settings.history_retention_seconds
                if self._store.save_checkout(
                    gone,
                    expected_version=chk.version,
                    cause=Cause("checkout_cancelled", reason=reason),
                    purge_at=purge,
                    mark=key,
                ):
                    return CheckoutView(gone, view.reservation, CheckoutStatus.ABANDONED)
                continue
            assert view.reservation is not None  # status CHECKOUT: its hold is live
            try:
                self._reservations.release(store_id, view.reservation.reservation_id, reason, key)
            except ReservationExpired:
                if reason != "cancelled":
                    raise
            return self.get(store_id, checkout_id)
        raise TooBusy(f"checkout {checkout_id} kept changing; retry shortly")

    def _require_open(self, view: CheckoutView, now: int, *, allow_active: bool = False) -> Reservation:
        """The checkout's live hold, or the error that says why there is none."""
        chk, res = view.checkout, view.reservation
        if view.status is CheckoutStatus.ACTIVE and allow_active:
            return res  # type: ignore[return-value]  # only update() allows it, and never uses the hold
        if view.status is CheckoutStatus.CHECKOUT and res is not None:
            self._reservations.require_live(res, now)
            return res
        if (
            view.status is CheckoutStatus.ABANDONED
            and res is not None
            and res.status_at(now) is ReservationStatus.EXPIRED
        ):
            if res.status is ReservationStatus.ACTIVE:
                self._reservations.expire(res.store_id, res.reservation_id, ExpirePath.REQUEST)
            raise ReservationExpired(res.reservation_id, rfc3339(res.expires_at))
        if view.status is CheckoutStatus.ACTIVE:
            raise CheckoutNotOpen(
                chk.checkout_id, "active", f"checkout {chk.checkout_id} holds nothing; start it again (POST /checkouts)"
            )
        raise CheckoutNotOpen(chk.checkout_id, view.status.value)


class OrderService:
    def __init__(self, store: DynamoStore, clock: Clock = now_ms) -> None:
        self._store = store
        self._clock = clock

    def get(self, store_id: str, order_id: str) -> Order:
        order = self._store.get_order(store_id, order_id)
        if order is None:
            raise NotFound(f"no order {order_id}")
        return order

    def fulfil(self, store_id: str, order_id: str) -> Order:
        """Shipped: the allocated units leave ``onHand``."""
        return self._finish(
            store_id, order_id, OrderStatus.FULFILLED, lambda sku, q: StockMove(sku, allocated=-q, on_hand=-q)
        )

    def cancel(self, store_id: str, order_id: str) -> Order:
        """Cancelled before shipping: the allocated units return to ``available``."""
        return self._finish(
            store_id, order_id, OrderStatus.CANCELLED, lambda sku, q: StockMove(sku, allocated=-q, available=q)
        )

    def _finish(self, store_id: str, order_id: str, to: OrderStatus, move: Any) -> Order:
        """PLACED -> ``to`` once, by the order's own state: a re-run finds it ``to`` and answers it."""
        order = self.get(store_id, order_id)
        for _ in range(_RETRIES):
            if order.status is to:
                return order  # again: nothing more happens
            if order.status is not OrderStatus.PLACED:
                raise OrderNotOpen(order_id, order.status.value)
            moves = [move(x.sku, x.quantity) for x in order.held_lines]
            try:
                done = self._store.transition_order(order, to, moves=moves, now_ms=self._clock())
            except OrderRejected as rejected:
                if rejected.current is None:
                    raise NotFound(f"no order {order_id}") from None
                if rejected.stock_conflict and rejected.current.status is OrderStatus.PLACED:
                    logger.error(
                        "stock counters disagree with an order", order_id=order_id, skus=rejected.stock_conflict
                    )
                    raise StockConflict(
                        "the stock counters disagree with this order", {"skus": rejected.stock_conflict}
                    ) from None
                order = rejected.current
                continue
            count(f"Orders{to.value.capitalize()}")
            return done
        raise TooBusy(f"order {order_id} kept changing; retry shortly")


def _same_lines(a: Sequence[Line], b: Sequence[Line]) -> bool:
    return sorted((x.sku, x.quantity) for x in a) == sorted((x.sku, x.quantity) for x in b)
