"""Holds that end by themselves (docs/expiry.md): the conditional expire every path uses
(timer, reconciliation, a request that meets a due hold), the TTL backstop, and the
``ReservationExpiring`` warning of a checkout's hold."""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from stockhold.data.repositories import HoldRepository
from stockhold.data.unit import UnitOfWork
from stockhold.domain.errors import ReservationExpired, ReservationNotActive
from stockhold.domain.ids import Clock, now_ms
from stockhold.domain.intents import Cause, FollowHold, Intent, MoveStock, Refused, RestoreHold, WarnHold
from stockhold.domain.models import Reservation, ReservationStatus, rfc3339
from stockhold.domain.rules import Deadline, ExpirePath, ended_purge_at, expiring_notice_at, release_moves
from stockhold.observability import count, logger, metrics
from stockhold.settings import Settings
from stockhold.usecases.ending import Ender, HoldRefused, allowance_back
from stockhold.usecases.once import AGAIN, Again, settle


@dataclass(frozen=True)
class ExpireOutcome:
    """What an expiry attempt did: ``expired`` is True only for the call that ended the hold."""

    expired: bool
    reservation: Reservation | None
    reason: str  # "expired" | "not_due" | "already_ended" | "not_found"


class Expiry:
    def __init__(
        self, holds: HoldRepository, unit: UnitOfWork, ender: Ender, settings: Settings, clock: Clock = now_ms
    ) -> None:
        self._holds = holds
        self._unit = unit
        self._ender = ender
        self._settings = settings
        self._clock = clock

    def expire(self, store_id: str, reservation_id: str, path: ExpirePath) -> ExpireOutcome:
        """End the hold as EXPIRED if it is still ACTIVE and due; otherwise change nothing and say why.

        Safe to call at any time, in any order, any number of times, from any path."""
        seen = [self._holds.get(store_id, reservation_id)]

        def step() -> ExpireOutcome | Again:
            res = seen[0]
            if res is None:
                return ExpireOutcome(False, None, "not_found")
            if res.status is not ReservationStatus.ACTIVE:
                return ExpireOutcome(False, res, "already_ended")
            now = self._clock()
            if not res.is_due(now):
                return ExpireOutcome(False, res, "not_due")
            try:
                done = self._ender.end(
                    res,
                    ReservationStatus.EXPIRED,
                    release_moves(res.lines),
                    now,
                    "expired",
                    deadline=Deadline.DUE,
                    expired_by=path.value,
                )
            except HoldRefused as refused:
                seen[0] = refused.current
                return AGAIN
            self._expired(res, path, now)
            return ExpireOutcome(True, done, "expired")

        return settle(f"reservation {reservation_id}", step)

    def restore_after_ttl(self, res: Reservation) -> bool:
        """The TTL backstop: DynamoDB deleted ``res`` (its last image) while it was ACTIVE.

        Returns its units and leaves an EXPIRED record, once however often it is delivered."""
        now = self._clock()
        restore = RestoreHold(res, now, ended_purge_at(now, self._settings), ExpirePath.TTL.value)
        cause = Cause("reservation_expired", ref=res.reservation_id, reason="expired")
        units: list[Intent] = [
            restore,
            *(MoveStock(res.store_id, m, now, cause) for m in release_moves(res.lines)),
            *allowance_back(res.store_id, res.customer_id, res.lines, now),
        ]
        follow = self._ender.checkout_follow(res, ReservationStatus.EXPIRED, "expired", now)
        try:
            self._unit.commit([*units, *follow])
        except Refused as refused:
            if refused.hit(restore):
                return False  # done before: the record is back as EXPIRED
            if not (follow and refused.only(FollowHold)):
                raise HoldRefused(None, [f.intent.move.sku for f in refused.of(MoveStock)]) from None
            logger.error(
                "checkout did not follow its hold; returning the units alone", reservation_id=res.reservation_id
            )
            try:
                self._unit.commit(units)
            except Refused as again:
                if again.hit(restore):
                    return False
                raise HoldRefused(None, [f.intent.move.sku for f in again.of(MoveStock)]) from None
        self._holds.clear_cart_slot(res.store_id, res.cart_id, res.reservation_id)
        self._expired(res, ExpirePath.TTL, now)
        logger.warning(
            "hold returned by the TTL backstop", reservation_id=res.reservation_id, lag_ms=now - res.expires_at
        )
        return True

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

    def _expired(self, res: Reservation, path: ExpirePath, now: int) -> None:
        count("ReservationsExpired")
        count(f"ReservationsExpiredBy{path.value.capitalize()}")
        metrics.add_metric(name="ExpiryLag", unit=MetricUnit.Milliseconds, value=now - res.expires_at)
        if path is not ExpirePath.TTL:
            logger.info(
                "reservation expired", reservation_id=res.reservation_id, path=path.value, lag_ms=now - res.expires_at
            )

    # ----- the expiry notice of a checkout's hold (docs/events.md)

    def expiring_notice_at(self, res: Reservation) -> int | None:
        """When the hold timer should wake to warn of ``res``'s deadline (epoch ms), if at all."""
        return expiring_notice_at(res, self._settings.EXPIRING_NOTICE_SECONDS, self._clock())

    def warn_expiring(self, store_id: str, reservation_id: str) -> str:
        """Mark a checkout's hold as about to expire (``warnedFor``), once per deadline; the
        events publisher turns that write into ReservationExpiring.

        Answers "warned" (the only one that wrote), "already_warned" (or changed meanwhile),
        "not_yet" (extended since the timer was set: it warns before the new deadline),
        "not_checkout", "due", "already_ended" or "not_found"."""
        early_ms = 2000  # a timer may wake a little late; more than this early means extended
        res = self._holds.get(store_id, reservation_id)
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
        try:
            self._unit.commit([WarnHold(res, res.expires_at, now)])
        except Refused:
            return "already_warned"
        count("ReservationsWarned")
        logger.info("reservation expiring", reservation_id=reservation_id, ms_left=res.expires_at - now)
        return "warned"
