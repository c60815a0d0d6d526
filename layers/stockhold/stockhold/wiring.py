"""The wiring: per-container singletons (the boto3 clients and the use cases built on them).

Created lazily and once (Lambda reuses the container), so tests can set the
environment first and reset with ``reset()``. ``AWS_ENDPOINT_URL_DYNAMODB`` (a
standard boto3 setting) points everything at DynamoDB Local.

Each use case is built, and its module imported, the first time something asks for it:
a cold start pays for what its request uses (GET /stock/{sku} never imports the checkout
or audit code), and every later request finds the same objects. Nothing here is made at
import: no client, no connection, no id or randomness. So a SnapStart snapshot of an
initialized function holds nothing that must differ between the environments restored
from it, except the ``random`` module's state, which each draws again (``after_restore``;
docs/deploy.md, "SnapStart").
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

import boto3
from botocore.config import Config

from stockhold.domain.ids import Clock, now_ms
from stockhold.settings import Settings, get_settings

if TYPE_CHECKING:
    from stockhold.data.audit_store import AuditStore
    from stockhold.data.hold_timer import SlotTimers
    from stockhold.data.repositories import (
        HoldRepository,
        LocationRepository,
        OrderRepository,
        StockRepository,
        SweepIndex,
    )
    from stockhold.data.transactions import TransactionRunner
    from stockhold.data.unit import UnitOfWork
    from stockhold.usecases.checkout import CheckoutService
    from stockhold.usecases.ending import Ender
    from stockhold.usecases.expiry import Expiry
    from stockhold.usecases.holds import Holds
    from stockhold.usecases.orders import OrderService
    from stockhold.usecases.reconcile import Reconciler
    from stockhold.usecases.reserve import Reserving
    from stockhold.usecases.slots import SlotSweeper
    from stockhold.usecases.sold_out import SoldOut
    from stockhold.usecases.stock import StockService
    from stockhold.usecases.tenancy import Tenancy

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=2,
    read_timeout=5,
    tcp_keepalive=True,
    max_pool_connections=50,
)


@lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    return boto3.client("dynamodb", config=_CLIENT_CONFIG)


@lru_cache(maxsize=1)
def stepfunctions_client() -> Any:
    return boto3.client("stepfunctions", config=_CLIENT_CONFIG)


@lru_cache(maxsize=1)
def events_client() -> Any:
    """EventBridge (``AWS_ENDPOINT_URL_EVENTBRIDGE`` points it elsewhere, e.g. the local stack's moto)."""
    return boto3.client("events", config=_CLIENT_CONFIG)


_T = TypeVar("_T")
_BUILDING = threading.RLock()


class _once(cached_property[_T]):
    """``cached_property`` built under one lock, so threads asking at once (the races of the tests)
    share one object. Once built it lives in the instance's ``__dict__``: no lock after that."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> _T: ...
    def __get__(self, instance: object | None, owner: type[Any] | None = None) -> _T | Self:
        if instance is None:
            return self
        with _BUILDING:
            return super().__get__(instance, owner)


class Services:
    """Every use case wired to one table through ``client`` (tests pass their own clock and sleep).
    Each is built on first use and then kept: the same objects, shared as if built at once."""

    def __init__(
        self,
        client: Any,
        settings: Settings,
        clock: Clock = now_ms,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self.settings = settings
        self._clock = clock
        self._sleep = sleep

    # --- data access
    @_once
    def runner(self) -> TransactionRunner:
        from stockhold.data.transactions import TransactionRunner

        return TransactionRunner(
            self._client,
            self.settings.TABLE_NAME,
            sleep=self._sleep,
            mark_ttl_seconds=self.settings.IDEMPOTENCY_TTL_SECONDS,
        )

    @_once
    def _unit(self) -> UnitOfWork:
        from stockhold.data.unit import UnitOfWork

        return UnitOfWork(self.runner, after_commit=self.sold_out.committed)

    @_once
    def sold_out(self) -> SoldOut:
        from stockhold.usecases.sold_out import SoldOut

        return SoldOut(self.settings.SOLD_OUT_CACHE_SECONDS, self._clock)

    @_once
    def _stock_repo(self) -> StockRepository:
        from stockhold.data.repositories import StockRepository

        return StockRepository(self.runner)

    @_once
    def _holds_repo(self) -> HoldRepository:
        from stockhold.data.repositories import HoldRepository

        return HoldRepository(self.runner)

    @_once
    def _orders_repo(self) -> OrderRepository:
        from stockhold.data.repositories import OrderRepository

        return OrderRepository(self.runner)

    @_once
    def _locations_repo(self) -> LocationRepository:
        from stockhold.data.repositories import LocationRepository

        return LocationRepository(self.runner, self.settings.LOCATIONS_CACHE_SECONDS, time.monotonic)

    @_once
    def _sweep(self) -> SweepIndex:
        from stockhold.data.repositories import SweepIndex

        return SweepIndex(self.runner)

    @_once
    def audit(self) -> AuditStore:
        from stockhold.data.audit_store import AuditStore

        return AuditStore(self._client, self.settings.TABLE_NAME, retention_days=self.settings.AUDIT_RETENTION_DAYS)

    # --- use cases
    @_once
    def _ender(self) -> Ender:
        from stockhold.usecases.ending import Ender

        return Ender(self._unit, self.settings)

    @_once
    def expiry(self) -> Expiry:
        from stockhold.usecases.expiry import Expiry

        return Expiry(self._holds_repo, self._unit, self._ender, self.settings, self._clock)

    @_once
    def holds(self) -> Holds:
        from stockhold.usecases.holds import Holds

        return Holds(
            self._holds_repo,
            self._orders_repo,
            self._unit,
            self.runner,
            self._ender,
            self.expiry,
            self.settings,
            self._clock,
        )

    @_once
    def reserving(self) -> Reserving:
        from stockhold.usecases.reserve import Reserving

        return Reserving(
            self._holds_repo,
            self._sweep,
            self._stock_repo,
            self._locations_repo,
            self._unit,
            self.expiry,
            self.sold_out,
            self.settings,
            self._clock,
        )

    @_once
    def stock(self) -> StockService:
        from stockhold.usecases.stock import StockService

        return StockService(self._stock_repo, self._locations_repo, self._unit, self.runner, self.settings, self._clock)

    @_once
    def checkouts(self) -> CheckoutService:
        from stockhold.data.repositories import CheckoutRepository
        from stockhold.usecases.checkout import CheckoutService
        from stockhold.usecases.checkout_view import CheckoutParts

        parts = CheckoutParts(
            CheckoutRepository(self.runner),
            self._holds_repo,
            self._orders_repo,
            self._unit,
            self.runner,
            self.reserving,
            self.holds,
            self._ender,
            self.expiry,
            self.stock,
        )
        return CheckoutService(parts, self.settings, self._clock)

    @_once
    def orders(self) -> OrderService:
        from stockhold.usecases.orders import OrderService

        return OrderService(self._orders_repo, self._unit, self._clock)

    @_once
    def tenancy(self) -> Tenancy:
        from stockhold.data.repositories import TenancyRepository
        from stockhold.usecases.tenancy import Tenancy

        return Tenancy(TenancyRepository(self.runner))

    @_once
    def reconciler(self) -> Reconciler:
        from stockhold.usecases.reconcile import Reconciler

        return Reconciler(
            self._sweep, self._stock_repo, self._holds_repo, self._unit, self.expiry, self.settings, self._clock
        )

    @_once
    def slots(self) -> SlotSweeper:
        from stockhold.data.hold_timer import SlotMarks
        from stockhold.usecases.slots import SlotSweeper

        marks = SlotMarks(self.runner.client, self.settings.TABLE_NAME, self._clock)
        return SlotSweeper(
            self._sweep,
            self.expiry,
            self.settings,
            self._clock,
            shards_of=marks.shards,
            group_budget=self.settings.SLOT_GROUP_HOLDS,
        )

    @_once
    def slot_timers(self) -> SlotTimers | None:
        """Arms the hold timer's slots (None: HOLD_TIMER_ARN is empty, timers are off)."""
        from stockhold.data.hold_timer import SlotTimers

        arn = self.settings.HOLD_TIMER_ARN
        if not arn:
            return None
        return SlotTimers(stepfunctions_client(), self.runner.client, self.settings.TABLE_NAME, arn, self._clock)


def build(
    client: Any,
    settings: Settings,
    clock: Clock = now_ms,
    sleep: Callable[[float], None] = time.sleep,
) -> Services:
    """Every use case wired to one table through ``client`` (tests pass their own clock)."""
    return Services(client, settings, clock, sleep)


@lru_cache(maxsize=1)
def services() -> Services:
    """This container's services (built on first use: tests set the environment first)."""
    return build(dynamodb_client(), get_settings())


def reset() -> None:
    """Forget the cached client, settings and services (tests change the environment)."""
    services.cache_clear()
    dynamodb_client.cache_clear()
    stepfunctions_client.cache_clear()
    events_client.cache_clear()
    get_settings.cache_clear()


def after_restore() -> None:
    """SnapStart: every execution environment restored from one snapshot starts with the ``random``
    module's state of that snapshot, so their retries (TransactionRunner's jitter, botocore's) would
    back off in step. Each seeds it again from the OS (os.urandom, which stays unique across restores)."""
    random.seed()


try:  # in the Lambda Python runtimes (3.12+); hooks run only where SnapStart restores a snapshot
    from snapshot_restore_py import register_after_restore
except ImportError:  # not on Lambda
    pass
else:
    register_after_restore(after_restore)
