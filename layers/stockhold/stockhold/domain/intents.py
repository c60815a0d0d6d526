"""What a use case asks to happen atomically: one typed intent per item written.

A use case composes a unit of work from these and hands it to the data access, which
turns each into a conditional write of one DynamoDB transaction (or one plain write, for
a unit of one). When the unit is refused, the answer names the intents whose condition
failed, each with the item's current state: nothing is read by its position in a list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stockhold.domain.models import (
    DEFAULT_LOCATION,
    CellLevel,
    Checkout,
    CheckoutStatus,
    Location,
    Order,
    OrderStatus,
    Reservation,
    ReservationStatus,
    StockLevel,
)
from stockhold.domain.rules import Deadline, StockMove


@dataclass(frozen=True)
class Cause:
    """Why an item is written: its ``lastAction``/``lastRef``/``lastReason`` (docs/data-model.md)."""

    action: str
    ref: str | None = None
    reason: str | None = None


# --- holds and cart slots ----------------------------------------------------------------


@dataclass(frozen=True)
class PutHold:
    """A new hold (ACTIVE), only if no hold has its id."""

    res: Reservation
    purge_at: int


@dataclass(frozen=True)
class RestoreHold:
    """Put back as EXPIRED a hold DynamoDB's TTL deleted while ACTIVE, only if absent."""

    res: Reservation  # as it was, ACTIVE
    now_ms: int
    purge_at: int
    path: str


@dataclass(frozen=True)
class TakeCart:
    """The cart's one slot: free, or still held by ``replacing`` (an atomic swap)."""

    res: Reservation
    replacing: str | None


@dataclass(frozen=True)
class FreeCart:
    """Delete the cart's slot if it names this hold (or is gone already)."""

    res: Reservation


@dataclass(frozen=True)
class EndHold:
    """ACTIVE -> ``to``, with the deadline condition ``deadline`` (none for a replaced hold)."""

    res: Reservation
    to: ReservationStatus
    now_ms: int
    cause: Cause
    purge_at: int
    deadline: Deadline | None
    order_id: str | None = None
    expired_by: str | None = None


@dataclass(frozen=True)
class ExtendHold:
    """A later deadline while ACTIVE and not yet due: one extension (``counts``) or the
    checkout's payment window (once per hold)."""

    res: Reservation
    new_expires_at: int
    purge_at: int
    now_ms: int
    counts: bool = True


@dataclass(frozen=True)
class WarnHold:
    """``ReservationExpiring`` for this deadline, once, while the hold is ACTIVE on it."""

    res: Reservation
    deadline: int
    now_ms: int


@dataclass(frozen=True)
class RequireActive:
    """No write: the hold must still be ACTIVE when the unit commits."""

    res: Reservation


# --- stock ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveStock:
    """Counter deltas on one SKU's stock item; no counter below zero."""

    store_id: str
    move: StockMove
    now_ms: int
    cause: Cause


@dataclass(frozen=True)
class CreateStock:
    store_id: str
    level: StockLevel


@dataclass(frozen=True)
class SkuSettings:
    """A SKU's settings, all of them, as they are to be after a write (kept on its head cell)."""

    low_stock_threshold: int | None = None
    unlimited: bool = False
    backorder_limit: int = 0
    max_per_cart: int | None = None
    max_per_customer: int | None = None
    max_hold_seconds: int | None = None


@dataclass(frozen=True)
class SetStock:
    """One cell's onHand := ``on_hand`` (available by the same delta) if onHand is still
    ``expected_on_hand``; afterwards the cell's available is >= 0, or >= -backorder limit on
    the ``default`` cell. ``settings`` (``default`` cell only) replaces the SKU's settings.
    ``only_cell``: only while the SKU has no cell but ``default`` (``PUT /stock/{sku}``).
    ``floor_limit`` (without ``settings``): the backorder limit the floor was decided on,
    re-checked on the head (``default`` cell only)."""

    store_id: str
    sku: str
    expected_on_hand: int
    on_hand: int
    now_ms: int
    location: str = DEFAULT_LOCATION
    settings: SkuSettings | None = None
    only_cell: bool = False
    floor_limit: int = 0


@dataclass(frozen=True)
class CreateCell:
    """A SKU's first units at a location other than ``default``, only if it has no cell there."""

    store_id: str
    sku: str
    location: str
    on_hand: int
    now_ms: int


@dataclass(frozen=True)
class RegisterCell:
    """The SKU's head records a new cell (creating the head, with no units, if the SKU is new);
    refused when the SKU is unlimited."""

    store_id: str
    sku: str
    location: str
    now_ms: int


@dataclass(frozen=True)
class AdjustStock:
    """One cell's onHand and available by ``delta``; onHand not below zero, available not
    below zero or, relying on the SKU's backorder limit ``floor_limit``, not below -limit."""

    store_id: str
    sku: str
    delta: int
    now_ms: int
    reason: str | None = None
    location: str = DEFAULT_LOCATION
    floor_limit: int = 0


@dataclass(frozen=True)
class RecountStock:
    """One cell's reserved := ``reserved`` (available follows) only if it is exactly as ``seen``."""

    store_id: str
    sku: str
    seen: CellLevel
    reserved: int


@dataclass(frozen=True)
class PutLocation:
    store_id: str
    location: Location


@dataclass(frozen=True)
class CountAllowance:
    """A customer's units of a SKU with ``maxPerCustomer`` move by ``delta``: taking is refused
    when it would pass ``limit``; giving back is never refused."""

    store_id: str
    customer_id: str
    sku: str
    delta: int
    limit: int | None
    now_ms: int


# --- checkouts and orders -----------------------------------------------------------------


@dataclass(frozen=True)
class PutCheckout:
    """The whole checkout: new (``expected_version`` None) or at the version it was read at."""

    chk: Checkout
    expected_version: int | None
    cause: Cause
    purge_at: int | None = None


@dataclass(frozen=True)
class PointCart:
    """The cart's pointer to its latest checkout."""

    chk: Checkout


@dataclass(frozen=True)
class FollowHold:
    """The checkout follows its hold's end, only while still in checkout on that hold."""

    res: Reservation
    to: CheckoutStatus
    now_ms: int
    cause: Cause
    purge_at: int | None


@dataclass(frozen=True)
class PutOrder:
    """A new order, only if no order has its id."""

    order: Order
    cause: Cause


@dataclass(frozen=True)
class MoveOrder:
    """PLACED -> ``to``."""

    order: Order
    to: OrderStatus
    now_ms: int


Intent = (
    PutHold
    | RestoreHold
    | TakeCart
    | FreeCart
    | EndHold
    | ExtendHold
    | WarnHold
    | RequireActive
    | MoveStock
    | CreateStock
    | SetStock
    | CreateCell
    | RegisterCell
    | AdjustStock
    | RecountStock
    | PutLocation
    | CountAllowance
    | PutCheckout
    | PointCart
    | FollowHold
    | PutOrder
    | MoveOrder
)
K = TypeVar("K")


@dataclass(frozen=True)
class Failed:
    """One intent whose condition failed, with its item as stored (a model, a plain dict
    for a cart slot, or None when there is no item)."""

    intent: Any
    current: Any


@dataclass
class Refused(Exception):
    """A unit of work whose conditions did not all hold: nothing was written."""

    failed: Sequence[Failed] = field(default_factory=tuple)

    def of(self, kind: type[K]) -> list[Failed]:
        return [f for f in self.failed if isinstance(f.intent, kind)]

    def hit(self, intent: object) -> Failed | None:
        return next((f for f in self.failed if f.intent is intent), None)

    def only(self, *kinds: type) -> bool:
        """Every failed intent is one of ``kinds``."""
        return all(isinstance(f.intent, kinds) for f in self.failed)
