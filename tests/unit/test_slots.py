"""A slot timer's wake-up (stockhold.usecases.slots), on fakes of the Sweep index and of
the expiry use case: what it ends, what it leaves, when it plans groups, and how it
handles waking a moment early."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stockhold.data.repositories import HoldRef
from stockhold.domain.rules import ExpirePath, SlotKind
from stockhold.settings import Settings
from stockhold.usecases.slots import ROTATING_SHARDS, SlotSweeper

SLOT = 1_800_000_000  # epoch s


@dataclass
class Index:
    """The Sweep index's hold shards, as lists of holds (fake of SweepIndex's two reads)."""

    shards: dict[int, list[HoldRef]] = field(default_factory=dict)
    read: list[int] = field(default_factory=list)
    count: int = 8  # hold shards

    def hold_shards(self) -> range:
        return range(self.count)

    def holds_by_deadline(self, shards: Sequence[int], from_ms: int, to_ms: int) -> dict[int, list[HoldRef]]:
        self.read.extend(shards)
        found = {s: [h for h in self.shards.get(s, []) if from_ms <= h.expires_at <= to_ms] for s in shards}
        return {s: holds for s, holds in found.items() if holds}


@dataclass
class Ended:
    expired: bool


@dataclass
class Expiry:
    """Ends a hold once, if due by the clock (the conditional expire's outcome)."""

    clock: list[int]
    index: Index
    ended: list[str] = field(default_factory=list)

    def expire(self, store_id: str, reservation_id: str, path: ExpirePath) -> Ended:
        for holds in self.index.shards.values():
            for h in holds:
                if h.reservation_id == reservation_id and h.expires_at <= self.clock[0]:
                    holds.remove(h)
                    self.ended.append(reservation_id)
                    return Ended(True)
        return Ended(False)


def _sweeper(
    index: Index, now: list[int], marked: list[int] | None = None, budget: int = 250, read_at: list[int] | None = None
) -> SlotSweeper:
    def sleep(seconds: float) -> None:
        now[0] += int(seconds * 1000)

    def shards_of(kind: SlotKind, slot: int) -> list[int] | None:
        (read_at if read_at is not None else []).append(now[0])
        return marked

    return SlotSweeper(
        index,  # type: ignore[arg-type]
        Expiry(now, index),  # type: ignore[arg-type]
        Settings(),
        lambda: now[0],
        shards_of=shards_of,
        parallel=1,
        group_budget=budget,
        sleep=sleep,
    )


def _hold(rid: str, due_ms: int) -> HoldRef:
    return HoldRef("demo", rid, due_ms)


def test_a_slot_ends_what_is_due_by_its_second_in_the_shards_its_mark_lists() -> None:
    index = Index({1: [_hold("a", SLOT * 1000 - 300), _hold("later", SLOT * 1000 + 5000)], 5: [_hold("b", 1)]})
    now = [SLOT * 1000 + 20]
    survey = _sweeper(index, now, marked=[1, 5]).survey(SlotKind.EXPIRE, SLOT)
    assert (survey.handled, survey.pending, survey.again, survey.fan_out) == (2, 0, False, False)
    # The marked shards, and a few more that change each second; "b" was long overdue: ended too.
    assert {1, 5} <= set(index.read) and len(set(index.read)) <= 2 + ROTATING_SHARDS
    assert [h.reservation_id for h in index.shards[1]] == ["later"]


def test_a_slot_without_a_mark_looks_at_every_shard() -> None:
    index = Index({7: [_hold("a", SLOT * 1000)]})
    survey = _sweeper(index, [SLOT * 1000]).survey(SlotKind.EXPIRE, SLOT)
    assert survey.handled == 1 and sorted(set(index.read)) == list(range(8))


def test_a_slot_woken_a_moment_early_waits_for_its_second_in_the_function() -> None:
    index = Index({0: [_hold("a", SLOT * 1000 - 100)]})
    now, read_at = [SLOT * 1000 - 600], list[int]()
    survey = _sweeper(index, now, marked=[0], read_at=read_at).survey(SlotKind.EXPIRE, SLOT)
    assert (survey.handled, survey.pending, survey.again) == (1, 0, False)
    assert now[0] >= SLOT * 1000 - 100
    # The mark is read at the second, not at the early wake: an arming up to then is in it.
    assert read_at == [SLOT * 1000]


def test_a_slot_woken_long_before_its_second_asks_to_look_again() -> None:
    index = Index({0: [_hold("a", SLOT * 1000 - 100)]})
    now = [SLOT * 1000 - 3000]  # a clock far apart: the state machine waits a second and asks again
    survey = _sweeper(index, now, marked=[0]).survey(SlotKind.EXPIRE, SLOT)
    assert (survey.handled, survey.pending, survey.again) == (0, 1, True)
    assert now[0] == SLOT * 1000 - 3000


def test_a_crowded_slot_plans_groups_of_shards_within_the_budget_and_each_group_ends_its_own() -> None:
    index = Index({s: [_hold(f"h{s}-{i}", SLOT * 1000 - i) for i in range(3)] for s in range(6)})
    now = [SLOT * 1000]
    sweeper = _sweeper(index, now, marked=list(range(6)), budget=7)
    survey = sweeper.survey(SlotKind.EXPIRE, SLOT)
    assert survey.fan_out and survey.handled == 0 and not survey.again
    assert sorted(s for g in survey.groups for s in g) == list(range(6))
    assert all(len(g) * 3 <= 7 for g in survey.groups)  # 3 holds a shard, at most 7 a group
    assert sum(sweeper.sweep(SlotKind.EXPIRE, SLOT, g) for g in survey.groups) == 18
    assert sweeper.survey(SlotKind.EXPIRE, SLOT, survey.loop).handled == 0  # the survey after: nothing left


def test_consecutive_slots_also_look_at_every_other_shard_in_turn() -> None:
    """A hold whose shard is missing from its slot's mark is still found within seconds."""
    turns = 32 // ROTATING_SHARDS
    index = Index(count=32)
    seen: set[int] = set()
    for slot in range(SLOT, SLOT + turns):
        index.read.clear()
        _sweeper(index, [slot * 1000], marked=[]).survey(SlotKind.EXPIRE, slot)
        assert len(index.read) == ROTATING_SHARDS
        seen |= set(index.read)
    assert seen == set(range(32))
    missed = Index({20: [_hold("lost", SLOT * 1000 - 5000)]}, count=32)
    found = [
        _sweeper(missed, [s * 1000], marked=[0]).survey(SlotKind.EXPIRE, s).handled for s in range(SLOT, SLOT + turns)
    ]
    assert sum(found) == 1
