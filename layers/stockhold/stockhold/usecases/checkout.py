"""Checkout as quote (docs/checkout.md).

The cart is the quote: ``active -> checkout -> completed | abandoned``, no draft orders.
A checkout holds its stock through an ordinary reservation that carries its id; every
write that changes both goes into the hold's own unit of work:

* start: the hold, its cart slot, the counters, the checkout (and the cart's pointer to it);
* complete: the hold CONFIRMED, the counters, the checkout ``completed`` and the order;
* cancel / expiry by any path: the hold ended, the counters, the checkout following it
  (``Ender.end``).

So a checkout is ``checkout`` exactly while its hold is ACTIVE. Reads still derive the
status from the hold as well, so a hold past its deadline reads ``abandoned`` at once,
before any path has ended it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from stockhold.domain.allocation import Rules
from stockhold.domain.errors import (
    CartAlreadyReserved,
    HeldByCheckout,
)
from stockhold.domain.ids import derived_id, new_id
from stockhold.domain.intents import Cause, Intent, PointCart, PutCheckout
from stockhold.domain.models import (
    Checkout,
    CheckoutStatus,
    Line,
    Reservation,
)
from stockhold.domain.rules import (
    ExpirePath,
    check_lines,
    same_lines,
)
from stockhold.observability import count, logger
from stockhold.usecases.checkout_steps import CheckoutSteps
from stockhold.usecases.checkout_view import CheckoutView
from stockhold.usecases.holds import CheckoutChanged
from stockhold.usecases.once import AGAIN, Again, settle


class CheckoutService(CheckoutSteps):
    """Start (or resume) a checkout; its later steps are ``CheckoutSteps``."""

    # ----- start, resume, change the lines

    def start(
        self,
        store_id: str,
        *,
        cart_id: str,
        customer_id: str | None,
        lines: Sequence[Line],
        idempotency_key: str | None = None,
        rules: Rules | None = None,
    ) -> CheckoutView:
        """Hold every line on the checkout deadline, all or none (allocated by ``rules``).

        The cart's open checkout is resumed (same lines: nothing changes) or its hold is
        swapped for the new lines atomically; a checkout whose payment failed (``active``)
        starts again with a fresh hold; otherwise a new checkout is made. A plain
        reservation of the cart is taken over in the same unit."""
        check_lines(lines)

        def step() -> CheckoutView | Again:
            now = self._clock()
            current = self._of_cart(store_id, cart_id)
            if current is not None and current.status is CheckoutStatus.CHECKOUT:
                if same_lines(current.checkout.items, lines) and current.checkout.customer_id == customer_id:
                    return replace(current, resumed=True, warnings=self._warnings(store_id, lines))
                base: Checkout | None = current.checkout
            elif current is not None and current.status is CheckoutStatus.ACTIVE:
                base = current.checkout
            else:
                if current is not None and current.reservation is not None and current.reservation.is_due(now):
                    # Its hold is past the deadline but not yet ended: end it (the checkout follows).
                    self._p.expiry.expire(store_id, current.reservation.reservation_id, ExpirePath.REQUEST)
                    return AGAIN
                base = None
            try:
                return self._hold(store_id, base, cart_id, customer_id, lines, idempotency_key, rules)
            except (CheckoutChanged, CartAlreadyReserved, HeldByCheckout):
                return AGAIN  # the checkout or the cart moved under us (a racing start): look again

        return settle(f"cart {cart_id}", step)

    def _hold(
        self,
        store_id: str,
        base: Checkout | None,
        cart_id: str,
        customer_id: str | None,
        lines: Sequence[Line],
        idempotency_key: str | None,
        rules: Rules | None,
    ) -> CheckoutView:
        if base is not None:
            checkout_id = base.checkout_id
        elif idempotency_key:
            checkout_id = derived_id("chk_", store_id, idempotency_key)
        else:
            checkout_id = new_id("chk_")
        written: list[Checkout] = []

        def alongside(res: Reservation) -> list[Intent]:
            chk, intents = _checkout_writes(base, checkout_id, store_id, cart_id, customer_id, lines, res)
            written[:] = [chk]
            return intents

        res = self._p.reserving.reserve(
            store_id,
            cart_id=cart_id,
            customer_id=customer_id,
            lines=lines,
            hold_seconds=self._settings.CHECKOUT_HOLD_SECONDS,
            replace=True,
            idempotency_key=idempotency_key,
            checkout_id=checkout_id,
            alongside=alongside,
            rules=rules,
        )
        if res.checkout_id != checkout_id:
            raise CheckoutChanged()
        stored: Checkout | None = written[0] if written else None
        if stored is None or stored.updated_at != res.created_at:
            # An earlier request with this Idempotency-Key made the hold: answer what it made,
            # as it is now (its hold may have ended since), exactly as a GET would.
            view = self.get(store_id, checkout_id)
            live = view.status is CheckoutStatus.CHECKOUT
            return replace(view, warnings=self._warnings(store_id, lines) if live else [])
        count("CheckoutsStarted" if base is None else "CheckoutsRestarted")
        logger.info("checkout holding stock", checkout_id=checkout_id, reservation_id=res.reservation_id)
        return CheckoutView(stored, res, CheckoutStatus.CHECKOUT, self._warnings(store_id, lines))


def _checkout_writes(
    base: Checkout | None,
    checkout_id: str,
    store_id: str,
    cart_id: str,
    customer_id: str | None,
    lines: Sequence[Line],
    res: Reservation,
) -> tuple[Checkout, list[Intent]]:
    """The checkout a start writes in its hold's unit: new, or the cart's open or active one."""
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
        return chk, [PutCheckout(chk, None, Cause("checkout_started", ref=res.reservation_id)), PointCart(chk)]
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
    return chk, [PutCheckout(chk, base.version, Cause(action, ref=res.reservation_id))]
