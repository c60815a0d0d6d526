"""Reserving: hold every line of a cart or none, in one unit of work (docs/decisions.md).

The unit writes the hold, the cart's one slot (the database keeps one active hold per
cart) and one conditional counter move per SKU; a replaced hold ends in the same unit.
When it is refused, every short line comes from the refusal itself, not a second read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stockhold.data.repositories import HoldRepository, LocationRepository, StockRepository, SweepIndex
from stockhold.data.unit import UnitOfWork
from stockhold.domain.allocation import Rules
from stockhold.domain.errors import (
    CartAlreadyReserved,
    HeldByCheckout,
    IdempotencyKeyReused,
    InsufficientStock,
    NotFound,
    PurchaseLimitReached,
    ValidationFailed,
)
from stockhold.domain.ids import Clock, derived_id, new_id, now_ms
from stockhold.domain.intents import Cause, CountAllowance, EndHold, Intent, MoveStock, PutHold, Refused, TakeCart
from stockhold.domain.models import DEFAULT_LOCATION, HeldLine, Line, Reservation, ReservationStatus
from stockhold.domain.planning import HoldPlan, plan_hold
from stockhold.domain.rules import (
    MAX_UNIT_ACTIONS,
    ExpirePath,
    active_purge_at,
    check_lines,
    ended_purge_at,
    reserve_moves,
    short_lines,
)
from stockhold.domain.rules import hold_seconds as bounded_hold
from stockhold.observability import count, logger
from stockhold.settings import Settings
from stockhold.usecases.ending import allowance_back
from stockhold.usecases.expiry import Expiry
from stockhold.usecases.holds import CheckoutChanged
from stockhold.usecases.once import AGAIN, Again, settle
from stockhold.usecases.sold_out import SoldOut

_NEEDS_PLAN_ENTRIES = 10_000
_SWEEP_EVERY_MS = 1000  # a refusal looks for dead holds at most this often per container and store
# A checkout's own writes, made in the hold's unit (given the hold about to be made).
Alongside = Callable[[Reservation], Sequence[Intent]]


@dataclass
class _Why:
    """A refused reserve, by name."""

    exists: bool = False  # a hold with this id exists: an earlier run of this request made it
    cart_holder: str | None = None
    cart_holder_expires_at: int | None = None
    replaced_changed: bool = False
    unknown: list[str] = field(default_factory=list)
    unlimited: list[str] = field(default_factory=list)
    limited: list[str] = field(default_factory=list)  # believed unlimited, but are not
    short: dict[str, int] = field(default_factory=dict)  # sku -> available at the time
    alongside_failed: bool = False
    needs_plan_skus: list[str] = field(default_factory=list)
    needs_plan: bool = False  # planned without a read, but the SKU has cells, limits or backorders
    stale_plan: bool = False  # a planned cell moved since it was read
    over_limit: list[dict[str, object]] = field(default_factory=list)  # allowances the customer has used up


@dataclass(frozen=True)
class _Ask:
    """One reserve request, as the tries of it share it."""

    store_id: str
    cart_id: str
    customer_id: str | None
    lines: tuple[Line, ...]
    hold: int  # seconds
    rid: str
    checkout_id: str | None
    rules: Rules

    def hold_at(
        self,
        now: int,
        unlimited: set[str],
        max_extensions: int,
        planned: Sequence[HeldLine] | None = None,
        max_hold_seconds: int | None = None,
    ) -> Reservation:
        """The hold this request makes if its try at ``now`` commits: ``planned`` lines, or
        (planned without a read) every line from the ``default`` cell."""
        return Reservation(
            reservation_id=self.rid,
            store_id=self.store_id,
            cart_id=self.cart_id,
            customer_id=self.customer_id,
            status=ReservationStatus.ACTIVE,
            lines=tuple(planned)
            if planned is not None
            else tuple(HeldLine(sku=x.sku, quantity=x.quantity, held=x.sku not in unlimited) for x in self.lines),
            created_at=now,
            expires_at=now + (self.hold if max_hold_seconds is None else min(self.hold, max_hold_seconds)) * 1000,
            extensions_used=0,
            max_extensions=max_extensions,
            checkout_id=self.checkout_id,
            max_hold_seconds=max_hold_seconds,
        )


@dataclass
class _Tries:
    """What one reserve request learned from its refused tries."""

    replacing: Reservation | None
    unlimited: set[str] = field(default_factory=set)  # SKUs found unlimited: held=False
    freed_dead_holds: bool = False
    planned: bool = False  # read the cells and plan (locations, backorders, limits)


class Reserving:
    def __init__(
        self,
        holds: HoldRepository,
        sweep: SweepIndex,
        stock: StockRepository,
        locations: LocationRepository,
        unit: UnitOfWork,
        expiry: Expiry,
        sold_out: SoldOut,
        settings: Settings,
        clock: Clock = now_ms,
    ) -> None:
        self._holds = holds
        self._sweep = sweep
        self._stock = stock
        self._locations = locations
        self._unit = unit
        self._expiry = expiry
        # SKUs whose one-request try was refused because they need a plan (cells, limits,
        # backorders, a hold cap), remembered per container for LOCATIONS_CACHE_SECONDS, so
        # a store without locations does not pay a refused transaction on every reserve.
        self._needs_plan: dict[tuple[str, str], int] = {}
        self._sold_out = sold_out  # SKUs this container found with nothing usable
        self._swept_at: dict[str, int] = {}  # store -> when a refusal last looked for dead holds
        self._settings = settings
        self._clock = clock

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
        alongside: Alongside | None = None,
        rules: Rules | None = None,
    ) -> Reservation:
        """Hold every line or none, in one unit. A checkout passes its id and ``alongside``:
        its own writes, in the same unit (CheckoutChanged when their conditions fail)."""
        check_lines(lines)
        scope = "checkout" if checkout_id else "reserve"
        # The id derived from the key is this request's guard: a re-run finds the reservation.
        rid = derived_id("res_", store_id, idempotency_key, scope) if idempotency_key else new_id("res_")
        hold = bounded_hold(self._settings, hold_seconds)
        ask = _Ask(store_id, cart_id, customer_id, tuple(lines), hold, rid, checkout_id, rules or Rules())
        tried = _Tries(replacing=self._active_holder(store_id, cart_id) if replace else None)
        if tried.replacing is None:
            self._refuse_if_known_sold_out(ask, keyed=idempotency_key is not None)
        tried.planned = (
            ask.rules.location_ids is not None
            or bool(self._locations.cached(store_id))
            or self._known_to_need_plan(store_id, lines)
        )

        def step() -> Reservation | Again:
            now = self._clock()
            replacing = tried.replacing
            if replacing is not None and replacing.checkout_id and replacing.checkout_id != checkout_id:
                raise HeldByCheckout(replacing.reservation_id, replacing.checkout_id, "cancel")
            plan = self._plan(ask, replacing) if tried.planned else None
            if plan is not None and (plan.short or plan.over_limit):
                return self._refused(ask, _Why(), tried, now, plan)
            planned = plan.lines if plan is not None else None
            cap = plan.max_hold_seconds if plan is not None else None
            res = ask.hold_at(now, tried.unlimited, self._settings.MAX_EXTENSIONS, planned, cap)
            why = self._try(res, replacing, alongside, now, plan)
            if why is None:
                count("ReservationsCreated")
                if replacing is not None:
                    count("ReservationsReplaced")
                logger.info("reservation created", reservation_id=rid, lines=len(lines), hold_seconds=ask.hold)
                return res
            return self._refused(ask, why, tried, now)

        return settle("the cart or its stock", step)

    def _plan(self, ask: _Ask, replacing: Reservation | None) -> HoldPlan:
        """Read the lines' cells and the store's locations, and plan which cells each line takes."""
        locations = self._locations.cached(ask.store_id)
        wanted = ask.rules.location_ids or ()
        if any(x != DEFAULT_LOCATION and x not in locations for x in wanted):
            locations = self._locations.all(ask.store_id)  # perhaps defined since this container read them
            unknown = [x for x in wanted if x != DEFAULT_LOCATION and x not in locations]
            if unknown:
                raise NotFound(f"no location {', '.join(unknown)}", {"locationIds": unknown})
        levels = self._stock.get_many(ask.store_id, [x.sku for x in ask.lines])
        return plan_hold(ask.lines, levels, locations, ask.rules, ask.customer_id, replacing)

    def _refused(
        self, ask: _Ask, why: _Why, tried: _Tries, now: int, plan: HoldPlan | None = None
    ) -> Reservation | Again:
        """What a refused try means: an earlier run's hold, another try, or the refusal itself."""
        if why.exists:
            return self._earlier_result(ask.store_id, ask.rid, ask.cart_id, ask.lines)
        if why.alongside_failed:
            raise CheckoutChanged()
        over_limit = (plan.over_limit if plan else []) + why.over_limit
        if over_limit:
            count("ReservationsRefused")
            raise PurchaseLimitReached(over_limit)
        if why.needs_plan and not tried.planned:
            tried.planned = True
            self._remember_needs_plan(ask.store_id, why.needs_plan_skus, now)
            return AGAIN
        if why.stale_plan:
            return AGAIN
        if why.unlimited or why.limited:
            tried.unlimited |= set(why.unlimited)
            tried.unlimited -= set(why.limited)
            return AGAIN
        if why.replaced_changed:
            tried.replacing = self._active_holder(ask.store_id, ask.cart_id)
            return AGAIN
        if why.cart_holder is not None:
            if self._free_dead_cart(ask.store_id, ask.cart_id, why, now):
                return AGAIN
            raise CartAlreadyReserved(ask.cart_id, why.cart_holder)
        planned_short = plan.short if plan else []
        short_skus = set(why.short) | set(why.unknown) | {x["sku"] for x in planned_short}
        if not tried.freed_dead_holds:
            tried.freed_dead_holds = True
            if self._end_dead_holds(ask.store_id, short_skus, now):
                return AGAIN  # units came back: try once more within this request
        count("ReservationsRefused")
        short = planned_short or short_lines(ask.lines, why.unknown, why.short, tried.replacing)
        if tried.replacing is None and ask.rules.location_ids is None:
            self._sold_out.remember(ask.store_id, [x["sku"] for x in short if x["available"] <= 0])
        raise InsufficientStock(short)

    # ----- sold out: refusals that cost no write (docs/flash-sales.md)

    def _refuse_if_known_sold_out(self, ask: _Ask, keyed: bool) -> None:
        """Refuse at once, without a write, a request with a line this container found
        sold out within SOLD_OUT_CACHE_SECONDS. A retry of a request that already made its
        hold (its unit committed, then the answer was lost) gets that hold: one read."""
        gone = self._sold_out.known(ask.store_id, [x.sku for x in ask.lines])
        if not gone:
            return
        if keyed and self._holds.get(ask.store_id, ask.rid) is not None:
            return  # an earlier run of this request made it: the normal path answers it
        count("ReservationsRefused")
        count("ReservationsRefusedSoldOut")
        raise InsufficientStock(
            [{"sku": x.sku, "requested": x.quantity, "available": 0} for x in ask.lines if x.sku in gone]
        )

    def _try(
        self,
        res: Reservation,
        replacing: Reservation | None,
        alongside: Alongside | None,
        now: int,
        plan: HoldPlan | None,
    ) -> _Why | None:
        """Commit the reserve's unit; None when it committed, else why it was refused."""
        moves = reserve_moves(res, replacing, plan.floors if plan else None, plain=plan is None)
        allowances = [
            CountAllowance(res.store_id, res.customer_id or "", a.sku, a.delta, a.limit, now)
            for a in (plan.allowances if plan else [])
            if a.delta != 0
        ]
        extra = list(alongside(res)) if alongside else []
        put = PutHold(res, active_purge_at(res.expires_at, self._settings))
        take = TakeCart(res, replacing.reservation_id if replacing else None)
        ended: list[Intent] = []
        if replacing is not None:
            expired = replacing.is_due(now)
            to = ReservationStatus.EXPIRED if expired else ReservationStatus.RELEASED
            cause = (
                Cause("reservation_expired", reason="expired")
                if expired
                else Cause("reservation_released", reason="replaced")
            )
            ended.append(EndHold(replacing, to, now, cause, ended_purge_at(now, self._settings), None))
            if plan is None or replacing.customer_id != res.customer_id:
                # The plan nets out the same customer's counted units; otherwise they all go back.
                ended.extend(allowance_back(replacing.store_id, replacing.customer_id, replacing.lines, now))
        bookkeeping = 2 + len(ended) + len(extra) + len(allowances)
        if bookkeeping + len(moves) > MAX_UNIT_ACTIONS:
            raise ValidationFailed(_too_big(len(moves), bookkeeping, replacing), {"fields": [{"field": "items"}]})
        move_cause = Cause("reservation_created", ref=res.reservation_id)
        stock = [MoveStock(res.store_id, m, now, move_cause) for m in moves]
        try:
            self._unit.commit([put, take, *ended, *stock, *allowances, *extra])
        except Refused as refused:
            return _why(refused, put, take, replacing, extra, planned=plan is not None)
        return None

    def _known_to_need_plan(self, store_id: str, lines: Sequence[Line]) -> bool:
        now = self._clock()
        return any(self._needs_plan.get((store_id, x.sku), 0) > now for x in lines)

    def _remember_needs_plan(self, store_id: str, skus: Sequence[str], now: int) -> None:
        if len(self._needs_plan) > _NEEDS_PLAN_ENTRIES:
            self._needs_plan = {k: t for k, t in list(self._needs_plan.items()) if t > now}
            if len(self._needs_plan) > _NEEDS_PLAN_ENTRIES:
                self._needs_plan.clear()
        until = now + int(self._settings.LOCATIONS_CACHE_SECONDS * 1000)
        for sku in skus:
            self._needs_plan[(store_id, sku)] = until

    def _free_dead_cart(self, store_id: str, cart_id: str, why: _Why, now: int) -> bool:
        """The cart's hold is past its deadline: end it now rather than block the shopper."""
        if why.cart_holder is None or why.cart_holder_expires_at is None or why.cart_holder_expires_at > now:
            return False
        outcome = self._expiry.expire(store_id, why.cart_holder, ExpirePath.REQUEST)
        if outcome.reason in ("already_ended", "not_found"):
            self._holds.clear_cart_slot(store_id, cart_id, why.cart_holder)
        return outcome.reason != "not_due"

    def _end_dead_holds(self, store_id: str, skus: set[str], now: int) -> bool:
        """End holds past their deadline that hold any of ``skus``; True if any ended.

        Only on the refusal path, and at most once a second per container and store: one
        query per ``HOLD#`` key of the Sweep index for holds already due. The timer ends a
        due hold within about two seconds anyway; this only spares the next shopper that wait."""
        if now - self._swept_at.get(store_id, -_SWEEP_EVERY_MS) < _SWEEP_EVERY_MS:
            return False
        self._swept_at[store_id] = now
        ended = False
        for item in self._sweep.overdue_holds(now):
            if item.get("storeId") != store_id or not skus & {x["sku"] for x in item.get("lines", []) if x["held"]}:
                continue
            ended |= self._expiry.expire(store_id, item["reservationId"], ExpirePath.REQUEST).expired
        return ended

    def _active_holder(self, store_id: str, cart_id: str) -> Reservation | None:
        holder = self._holds.cart_holder(store_id, cart_id)
        res = self._holds.get(store_id, holder) if holder else None
        return res if res is not None and res.status is ReservationStatus.ACTIVE else None

    def _earlier_result(self, store_id: str, rid: str, cart_id: str, lines: Sequence[Line]) -> Reservation:
        """A retried request whose unit already committed: answer what it made."""
        earlier = self._holds.get(store_id, rid)
        if earlier is None:
            raise NotFound(f"no reservation {rid}")
        if earlier.cart_id != cart_id or [(x.sku, x.quantity) for x in earlier.lines] != [
            (x.sku, x.quantity) for x in lines
        ]:
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different reservation")
        return earlier


def _too_big(moves: int, bookkeeping: int, replacing: Reservation | None) -> str:
    """A unit of work is one transaction: a hold that cannot fit is refused, never split."""
    room = MAX_UNIT_ACTIONS - bookkeeping
    if replacing is not None:
        return (
            f"the old and new carts together touch {moves} stock cells; an atomic swap holds at most {room}. "
            "Release the old reservation first."
        )
    return (
        f"the allocation takes from {moves} stock cells (SKUs x locations); one atomic hold takes at most {room}. "
        "Hold fewer lines, or use split: false or locationIds."
    )


def _why(
    refused: Refused,
    put: PutHold,
    take: TakeCart,
    replacing: Reservation | None,
    extra: Sequence[Intent],
    planned: bool = False,
) -> _Why:
    why = _Why(exists=refused.hit(put) is not None)
    slot = refused.hit(take)
    if slot is not None:
        if replacing is not None:
            why.replaced_changed = True
        elif slot.current:
            why.cart_holder = slot.current["reservationId"]
            why.cart_holder_expires_at = slot.current.get("expiresAt")
    if refused.of(EndHold):
        why.replaced_changed = True
    for failed in refused.of(CountAllowance):
        a = failed.intent
        used = (failed.current or {}).get("used", 0)
        why.over_limit.append({"sku": a.sku, "requested": a.delta, "limit": a.limit, "used": used})
    for failed in refused.of(MoveStock):
        move, level = failed.intent.move, failed.current
        if planned:
            why.stale_plan = True
        elif level is not None and (
            len(level.cell_ids) > 1
            or level.backorder_limit > 0
            or level.max_per_cart is not None
            or level.max_per_customer is not None
            or level.max_hold_seconds is not None
        ):
            why.needs_plan = True
            why.needs_plan_skus.append(move.sku)
        elif level is None:
            why.unknown.append(move.sku)
        elif move.require_unlimited and not level.unlimited:
            why.limited.append(move.sku)
        elif not move.require_unlimited and level.unlimited:
            why.unlimited.append(move.sku)
        else:
            why.short[move.sku] = level.available
    why.alongside_failed = any(refused.hit(x) is not None for x in extra)
    return why
