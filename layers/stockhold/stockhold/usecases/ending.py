"""Ending a hold: the one conditional transition out of ACTIVE that every path uses
(confirm, release, expiry by timer, TTL backstop, reconciliation or a request), with the
counter moves, the cart slot freed, and a checkout's record following its hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stockhold.data.unit import UnitOfWork
from stockhold.domain.intents import Cause, CountAllowance, EndHold, FollowHold, FreeCart, Intent, MoveStock, Refused
from stockhold.domain.models import HeldLine, RequestKey, Reservation, ReservationStatus
from stockhold.domain.rules import Deadline, StockMove, allowance_returns, checkout_after, ended_purge_at
from stockhold.observability import logger
from stockhold.settings import Settings


@dataclass
class HoldRefused(Exception):
    """A change of a hold did not happen. ``current``: the hold as stored (None: it is gone);
    ``stock_conflict``: SKUs whose counters would have gone below zero; ``others``: other
    intents of the unit (a checkout, an order) whose conditions failed."""

    current: Reservation | None
    stock_conflict: list[str] = field(default_factory=list)
    others: list[Intent] = field(default_factory=list)


class Ender:
    def __init__(self, unit: UnitOfWork, settings: Settings) -> None:
        self._unit = unit
        self._settings = settings

    def end(
        self,
        res: Reservation,
        to: ReservationStatus,
        moves: Sequence[StockMove],
        now: int,
        reason: str,
        *,
        deadline: Deadline,
        order_id: str | None = None,
        mark: RequestKey | None = None,
        expired_by: str | None = None,
        with_: Sequence[Intent] | None = None,
    ) -> Reservation:
        """End the hold. Unless the caller brings its own intents (``with_``: completion's
        checkout and order), a checkout's hold takes its checkout along (expired or
        cancelled -> abandoned, payment failed -> active). Raises HoldRefused."""
        follow = self.checkout_follow(res, to, reason, now) if with_ is None else []
        action = f"reservation_{to.value.lower()}"
        end = EndHold(
            res,
            to,
            now,
            Cause(action, reason=reason),
            ended_purge_at(now, self._settings),
            deadline,
            order_id=order_id,
            expired_by=expired_by,
        )
        move_cause = Cause(action, ref=res.reservation_id, reason=reason)
        units: list[Intent] = [end, FreeCart(res), *(MoveStock(res.store_id, m, now, move_cause) for m in moves)]
        if to is not ReservationStatus.CONFIRMED:  # confirmed: the order keeps the units counted
            units.extend(allowance_back(res.store_id, res.customer_id, res.lines, now))
        try:
            self._unit.commit([*units, *(with_ if with_ is not None else follow)], mark, now)
        except Refused as refused:
            rejected = _rejection(res, end, refused)
            hold_ok = rejected.current is not None and rejected.current.status is ReservationStatus.ACTIVE
            if not (follow and rejected.others and hold_ok and not rejected.stock_conflict):
                raise rejected from None
            # Never let a checkout that disagrees with its hold keep the units: end the hold alone.
            logger.error("checkout did not follow its hold; ending the hold alone", reservation_id=res.reservation_id)
            try:
                self._unit.commit(units, mark, now)
            except Refused as again:
                raise _rejection(res, end, again) from None
        return res.model_copy(
            update={"status": to, "ended_at": now, "end_reason": reason, "order_id": order_id, "expired_by": expired_by}
        )

    def checkout_follow(self, res: Reservation, to: ReservationStatus, reason: str, now: int) -> list[Intent]:
        follow = checkout_after(res, to, reason)
        if follow is None:
            return []
        purge = ended_purge_at(now, self._settings) if follow.over else None
        return [FollowHold(res, follow.status, now, Cause(follow.action, ref=res.reservation_id, reason=reason), purge)]


def allowance_back(store_id: str, customer_id: str | None, lines: Sequence[HeldLine], now: int) -> list[Intent]:
    """A hold released or expired, or an order cancelled: its counted units go back to the
    customer's ``maxPerCustomer`` allowance, in the same unit as the ending (so exactly once)."""
    if customer_id is None:
        return []
    return [CountAllowance(store_id, customer_id, sku, -q, None, now) for sku, q in allowance_returns(lines).items()]


def _rejection(res: Reservation, end: EndHold, refused: Refused) -> HoldRefused:
    hit = refused.hit(end)
    # The hold's own condition passed when only another intent failed: it is as given.
    current = res if hit is None else hit.current
    stock = [f.intent.move.sku for f in refused.of(MoveStock)]
    others = [
        f.intent for f in refused.failed if not isinstance(f.intent, (EndHold, MoveStock, FreeCart, CountAllowance))
    ]
    return HoldRefused(current, stock, others)
