"""The steps of an open checkout: save details (and extend), enter payment, complete, cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stockhold.domain.errors import (
    CheckoutNotOpen,
    NotFound,
    ReservationExpired,
    StockConflict,
)
from stockhold.domain.ids import derived_id
from stockhold.domain.intents import Cause, Intent, PutCheckout, PutOrder
from stockhold.domain.models import (
    Checkout,
    CheckoutStatus,
    Order,
    RequestKey,
    Reservation,
    ReservationStatus,
    rfc3339,
)
from stockhold.domain.rules import (
    Deadline,
    confirm_moves,
    ended_purge_at,
    order_for,
)
from stockhold.observability import count, logger
from stockhold.usecases.checkout_view import CheckoutBase, CheckoutView
from stockhold.usecases.ending import HoldRefused
from stockhold.usecases.holds import CheckoutChanged
from stockhold.usecases.once import AGAIN, Again, once, settle

# What PATCH may change (domain field names); everything else follows the hold.
_EDITABLE = frozenset({"shipping_address", "billing_address", "payment_method", "shipping_method_id", "step"})


class CheckoutSteps(CheckoutBase):
    def _once(
        self,
        store_id: str,
        checkout_id: str,
        key: RequestKey | None,
        what: str,
        step: Callable[[], CheckoutView | Again],
    ) -> CheckoutView:
        """A step that changes the checkout: once per Idempotency-Key, re-read while it moves."""
        return once(
            self._p.marks,
            key,
            lambda: settle(f"checkout {checkout_id}", step),
            lambda: self.get(store_id, checkout_id),
            what,
        )

    # ----- activity, payment

    def update(
        self, store_id: str, checkout_id: str, changes: dict[str, Any], key: RequestKey | None = None
    ) -> CheckoutView:
        """Save the shopper's details; extend the hold when less than the threshold is left."""
        unknown = set(changes) - _EDITABLE
        if unknown:
            raise ValueError(f"not editable on a checkout: {sorted(unknown)}")
        return self._once(
            store_id, checkout_id, key, "checkout updated", lambda: self._update(store_id, checkout_id, changes, key)
        )

    def _update(
        self, store_id: str, checkout_id: str, changes: dict[str, Any], key: RequestKey | None
    ) -> CheckoutView | Again:
        """The details and, when due, the extension are one unit: both or neither."""
        now = self._clock()
        view = self.get(store_id, checkout_id)
        self._require_open(view, now, allow_active=True)
        chk, res = view.checkout, view.reservation
        saved = chk.model_copy(update={**changes, "updated_at": now, "version": chk.version + 1})
        write = PutCheckout(saved, chk.version, Cause("checkout_updated", ref=chk.reservation_id))
        warnings: list[dict[str, Any]] = []
        seconds = self._settings.CHECKOUT_HOLD_SECONDS
        if (
            view.status is CheckoutStatus.CHECKOUT
            and res is not None
            and self._extension_due(res, now, seconds)
            and now + res.grant(seconds) * 1000 > res.expires_at  # a maxHoldSeconds cap may leave nothing to gain
        ):
            if res.extensions_left > 0:
                try:
                    extended = self._p.lifecycle.extend_with(res, seconds, [write], key)
                except CheckoutChanged:
                    return AGAIN  # the hold or the checkout moved since they were read: look again
                return CheckoutView(saved, extended, view.status)
            warnings.append(
                {
                    "code": "EXTENSION_LIMIT_REACHED",
                    "message": f"the hold ends at {rfc3339(res.expires_at)} and cannot be extended again",
                }
            )
        if not self._save(write, key, now):
            return AGAIN
        return CheckoutView(saved, res, view.status, warnings)

    def _extension_due(self, res: Reservation, now: int, seconds: int) -> bool:
        left_ms = res.expires_at - now
        return left_ms < self._settings.EXTEND_THRESHOLD_SECONDS * 1000 and now + seconds * 1000 > res.expires_at

    def payment(self, store_id: str, checkout_id: str, key: RequestKey | None = None) -> CheckoutView:
        """Entering payment: the hold must still be live; it moves to the payment window (once)."""
        return self._once(
            store_id, checkout_id, key, "checkout payment", lambda: self._payment(store_id, checkout_id, key)
        )

    def _payment(self, store_id: str, checkout_id: str, key: RequestKey | None) -> CheckoutView | Again:
        now = self._clock()
        view = self.get(store_id, checkout_id)
        res = self._require_open(view, now)
        chk = view.checkout
        saved = chk.model_copy(update={"step": "payment", "updated_at": now, "version": chk.version + 1})
        write = PutCheckout(saved, chk.version, Cause("checkout_payment", ref=res.reservation_id))
        try:
            extended = self._p.lifecycle.enter_payment_window(res, self._settings.PAYMENT_HOLD_SECONDS, [write], key)
        except CheckoutChanged:
            return AGAIN
        if extended is not None:
            return CheckoutView(saved, extended, view.status)
        # Already in its payment window (or later): nothing to extend; the hold was re-checked.
        if chk.step == "payment":
            return view
        if self._save(write, key, now):
            return CheckoutView(saved, res, view.status)
        return AGAIN

    # ----- complete, cancel

    def complete(self, store_id: str, checkout_id: str, payment_reference: str | None) -> Order:
        """The order and the hold's confirmation, in one unit; exactly one order per
        checkout (its id derives from the checkout's), so a re-run finds it made."""
        order_id = derived_id("ord_", store_id, checkout_id)

        def step() -> Order | Again:
            now = self._clock()
            view = self.get(store_id, checkout_id)
            chk = view.checkout
            if chk.status is CheckoutStatus.COMPLETED:
                return self._completed_order(chk, payment_reference)
            if view.status is CheckoutStatus.COMPLETED:
                return AGAIN  # read between a racing complete's commit and our second read: read again
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
            with_: list[Intent] = [
                PutCheckout(
                    done, chk.version, Cause("checkout_completed", ref=order_id), ended_purge_at(now, self._settings)
                ),
                PutOrder(order, Cause("order_created", ref=res.reservation_id)),
            ]
            try:
                self._p.ender.end(
                    res, ReservationStatus.CONFIRMED, confirm_moves(res.lines), now, "confirmed",
                    deadline=Deadline.BEFORE, order_id=order_id, with_=with_,
                )  # fmt: skip
            except HoldRefused as refused:
                hold_active = refused.current is not None and refused.current.status is ReservationStatus.ACTIVE
                if refused.stock_conflict and hold_active and not refused.others:
                    raise StockConflict(
                        "the stock counters disagree with this checkout's hold", {"skus": refused.stock_conflict}
                    ) from None
                return AGAIN  # the checkout or its hold moved (a racing complete, an update, expiry): look again
            count("CheckoutsCompleted")
            logger.info("checkout completed", checkout_id=checkout_id, order_id=order_id)
            return order

        return settle(f"checkout {checkout_id}", step)

    def _completed_order(self, chk: Checkout, payment_reference: str | None) -> Order:
        order = self._p.orders.get(chk.store_id, chk.order_id or "")
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
        return self._once(
            store_id, checkout_id, key, "checkout cancelled", lambda: self._cancel(store_id, checkout_id, reason, key)
        )

    def _cancel(self, store_id: str, checkout_id: str, reason: str, key: RequestKey | None) -> CheckoutView | Again:
        now = self._clock()
        view = self.get(store_id, checkout_id)
        chk, status = view.checkout, view.status
        wanted = CheckoutStatus.ACTIVE if reason == "payment_failed" else CheckoutStatus.ABANDONED
        if status is wanted:
            return view
        if status is CheckoutStatus.COMPLETED:
            raise CheckoutNotOpen(checkout_id, status.value, f"checkout {checkout_id} is completed; cancel its order")
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
            write = PutCheckout(
                gone, chk.version, Cause("checkout_cancelled", reason=reason), ended_purge_at(now, self._settings)
            )
            return (
                CheckoutView(gone, view.reservation, CheckoutStatus.ABANDONED) if self._save(write, key, now) else AGAIN
            )
        assert view.reservation is not None  # status CHECKOUT: its hold is live
        try:
            self._p.lifecycle.release(store_id, view.reservation.reservation_id, reason, key)
        except ReservationExpired:
            if reason != "cancelled":
                raise
        return self.get(store_id, checkout_id)
