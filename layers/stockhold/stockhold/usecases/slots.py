"""What a slot timer does when its second comes (docs/expiry.md, "Slot timers").

An *expire* slot ends every hold due by now, whatever second it was due in: a hold whose
own slot fired before its stream record arrived, or that was extended into a second
already past, is ended by the next slot that wakes. A *warn* slot warns the checkout
holds whose ``ReservationExpiring`` notice falls in its second (and the one before).

Both go through the Sweep index's hold shards (those the slot's mark lists: the shards
its holds were armed with; all of them without a mark), and every hold through the same
conditional expire (or warn) as every other path, so a hold ended twice over, by two
slots or a slot and a request, is ended once. A hold confirmed or released has left the
index: its slot never sees it.

The survey (one Lambda invocation per wake-up) does the work itself when there is
little of it. When there is more, it answers groups of shards, about ``group_budget``
holds each, and the state machine's Map runs one invocation per group in parallel: the
work of a slot of thousands of holds is spread over many functions, and each hold's
cells are written by one transaction as always.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from stockhold import actor
from stockhold.data.repositories import HoldRef, SweepIndex
from stockhold.domain.ids import Clock, now_ms
from stockhold.domain.rules import ExpirePath, SlotKind, warn_window
from stockhold.observability import count, logger
from stockhold.settings import Settings
from stockhold.usecases.expiry import Expiry

GROUP_BUDGET = 250  # holds per invocation when a slot fans out (each: a read and a transaction); SLOT_GROUP_HOLDS
PARALLEL = 16  # holds ended at once by one invocation
EARLY_WAKE_MS = 1500  # a survey this close before its second waits for it in the function
ROTATING_SHARDS = 8  # hold shards a survey reads besides its mark's (see _rotation)


@dataclass(frozen=True)
class Survey:
    """One wake-up of a slot: what it did, and what the state machine should do next."""

    handled: int  # holds this invocation ended (or warned)
    failed: int  # holds whose expiry raised (they are tried again)
    pending: int  # holds of this slot not yet due by this function's clock (it woke early)
    groups: list[list[int]] = field(default_factory=list)  # shards for the Map, when it fans out
    loop: int = 0

    @property
    def fan_out(self) -> bool:
        return bool(self.groups)

    @property
    def again(self) -> bool:
        """Look again in a second: the slot woke a little early, or some holds failed."""
        return not self.groups and (self.pending > 0 or self.failed > 0)


class SlotIncomplete(RuntimeError):
    """Some holds of a group could not be ended now; the Map's retry runs the group again."""


class SlotSweeper:
    def __init__(
        self,
        index: SweepIndex,
        expiry: Expiry,
        settings: Settings,
        clock: Clock = now_ms,
        *,
        shards_of: Callable[[SlotKind, int], list[int] | None] | None = None,
        parallel: int | None = None,
        group_budget: int = GROUP_BUDGET,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sleep = sleep
        self._index = index
        # The hold shards a slot's holds are in (its mark: data.hold_timer.SlotMarks), or None for all.
        self._shards_of = shards_of or (lambda kind, slot: None)
        self._expiry = expiry
        self._settings = settings
        self._clock = clock
        self._parallel = parallel or PARALLEL
        self._budget = group_budget

    def survey(self, kind: SlotKind, slot: int, loop: int = 0) -> Survey:
        """Look at the slot's hold shards: do its work here when it is small, else plan groups."""
        now = self._clock()
        early = slot * 1000 - now
        if 0 < early <= EARLY_WAKE_MS:
            # Woke a moment before the slot's second (a Wait's whole seconds, clocks apart): wait
            # here for it, rather than a whole second in the state machine, and only then read
            # the mark, so that every arming at least TRUST_MS ahead of the second is in it.
            self._sleep(early / 1000)
            now = self._clock()
        marked = self._shards_of(kind, slot)
        shards = self._index.hold_shards() if marked is None else sorted({*marked, *self._rotation(slot)})
        work, pending = self._work(kind, slot, shards, now)
        total = sum(len(holds) for holds in work.values())
        last = loop + 1 >= self._settings.MAX_TIMER_LOOPS
        if total > self._budget and not last:
            return Survey(0, 0, pending, self._groups(work), loop + 1)
        handled, failed = self._act(kind, [h for holds in work.values() for h in holds])
        if last and (failed or pending):
            logger.error(
                "slot timer gave up after MAX_TIMER_LOOPS: reconciliation ends what is left",
                kind=kind.value,
                slot=slot,
                failed=failed,
                pending=pending,
            )
            return Survey(handled, 0, 0, [], loop + 1)
        return Survey(handled, failed, pending, [], loop + 1)

    def sweep(self, kind: SlotKind, slot: int, shards: Iterable[int]) -> int:
        """One group of a fanned-out slot: its shards' work. Raises SlotIncomplete if any failed."""
        work, _ = self._work(kind, slot, list(shards), self._clock())
        handled, failed = self._act(kind, [h for holds in work.values() for h in holds])
        if failed:
            raise SlotIncomplete(f"{failed} of {handled + failed} holds of {kind.value} slot {slot} failed")
        return handled

    # ----- inside

    def _rotation(self, slot: int) -> list[int]:
        """ROTATING_SHARDS more shards than the mark lists, a different few each second: every
        shard is looked at once in HOLD_SHARDS / ROTATING_SHARDS consecutive slots, so a hold
        whose shard never reached a mark (no cause known, but cheap to cover) waits seconds,
        not reconciliation's minutes."""
        every = list(self._index.hold_shards())
        start = slot * ROTATING_SHARDS % len(every)
        return [every[(start + i) % len(every)] for i in range(min(ROTATING_SHARDS, len(every)))]

    def _work(self, kind: SlotKind, slot: int, shards: Iterable[int], now: int) -> tuple[dict[int, list[HoldRef]], int]:
        """The holds to act on, by shard, and how many of the slot's own are not due yet."""
        shards = list(shards)
        if kind is SlotKind.WARN:
            low, high = warn_window(slot, self._settings.EXPIRING_NOTICE_SECONDS)
            return self._index.holds_by_deadline(shards, max(low, now + 1), high), 0
        found = self._index.holds_by_deadline(shards, 0, max(now, slot * 1000))
        work: dict[int, list[HoldRef]] = {}
        pending = 0
        for shard, holds in found.items():
            due = [h for h in holds if h.expires_at <= now]
            pending += len(holds) - len(due)
            if due:
                work[shard] = due
        return work, pending

    def _groups(self, work: dict[int, list[HoldRef]]) -> list[list[int]]:
        """Shards packed into groups of about ``group_budget`` holds (a bigger shard is a group alone)."""
        groups: list[list[int]] = []
        size = 0
        for shard in sorted(work):
            n = len(work[shard])
            if not groups or size + n > self._budget:
                groups.append([])
                size = 0
            groups[-1].append(shard)
            size += n
        return groups

    def _act(self, kind: SlotKind, holds: list[HoldRef]) -> tuple[int, int]:
        """End (or warn) ``holds``, ``parallel`` at a time: (how many did, how many failed)."""
        if not holds:
            return 0, 0
        act: Callable[[HoldRef], bool | None] = self._expire if kind is SlotKind.EXPIRE else self._warn
        with ThreadPoolExecutor(max_workers=min(self._parallel, len(holds))) as pool:
            results = list(pool.map(act, holds))
        did = sum(1 for r in results if r)
        failed = sum(1 for r in results if r is None)
        count("SlotHoldsExpired" if kind is SlotKind.EXPIRE else "SlotHoldsWarned", did)
        return did, failed

    def _expire(self, hold: HoldRef) -> bool | None:
        """True: this call ended it; False: nothing to do (ended meanwhile, or not due); None: failed."""
        try:
            with actor.acting_as(actor.TIMER):
                return self._expiry.expire(hold.store_id, hold.reservation_id, ExpirePath.TIMER).expired
        except Exception:  # one hold's failure must not stop the slot's others: tried again after
            logger.exception(
                "slot timer could not end a hold", store_id=hold.store_id, reservation_id=hold.reservation_id
            )
            return None

    def _warn(self, hold: HoldRef) -> bool | None:
        try:
            with actor.acting_as(actor.TIMER):
                return self._expiry.warn_expiring(hold.store_id, hold.reservation_id) == "warned"
        except Exception:  # a warning is best effort: the hold still expires on time
            logger.exception(
                "slot timer could not warn of a hold", store_id=hold.store_id, reservation_id=hold.reservation_id
            )
            return False
