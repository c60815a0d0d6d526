"""The wiring: per-container singletons (the boto3 clients and the use cases built on them).

Created lazily and once (Lambda reuses the container), so tests can set the
environment first and reset with ``reset()``. ``AWS_ENDPOINT_URL_DYNAMODB`` (a
standard boto3 setting) points everything at DynamoDB Local.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from stockhold.data.audit_store import AuditStore
from stockhold.data.repositories import (
    CheckoutRepository,
    HoldRepository,
    OrderRepository,
    StockRepository,
    SweepIndex,
    TenancyRepository,
)
from stockhold.data.transactions import TransactionRunner
from stockhold.data.unit import UnitOfWork
from stockhold.domain.ids import Clock, now_ms
from stockhold.settings import Settings, get_settings
from stockhold.usecases.checkout import CheckoutService
from stockhold.usecases.checkout_view import CheckoutParts
from stockhold.usecases.ending import Ender
from stockhold.usecases.expiry import Expiry
from stockhold.usecases.holds import Holds
from stockhold.usecases.orders import OrderService
from stockhold.usecases.reconcile import Reconciler
from stockhold.usecases.reserve import Reserving
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


@dataclass(frozen=True)
class Services:
    settings: Settings
    runner: TransactionRunner
    stock: StockService
    reserving: Reserving
    holds: Holds
    expiry: Expiry
    checkouts: CheckoutService
    orders: OrderService
    tenancy: Tenancy
    reconciler: Reconciler
    audit: AuditStore


def build(
    client: Any,
    settings: Settings,
    clock: Clock = now_ms,
    sleep: Callable[[float], None] = time.sleep,
) -> Services:
    """Every use case wired to one table through ``client`` (tests pass their own clock)."""
    runner = TransactionRunner(
        client, settings.TABLE_NAME, sleep=sleep, mark_ttl_seconds=settings.IDEMPOTENCY_TTL_SECONDS
    )
    unit = UnitOfWork(runner)
    stock_repo, holds_repo, orders_repo = StockRepository(runner), HoldRepository(runner), OrderRepository(runner)
    sweep = SweepIndex(runner)
    ender = Ender(unit, settings)
    expiry = Expiry(holds_repo, unit, ender, settings, clock)
    holds = Holds(holds_repo, orders_repo, unit, runner, ender, expiry, settings, clock)
    reserving = Reserving(holds_repo, sweep, unit, expiry, settings, clock)
    stock = StockService(stock_repo, unit, runner, settings, clock)
    parts = CheckoutParts(
        CheckoutRepository(runner), holds_repo, orders_repo, unit, runner, reserving, holds, ender, expiry, stock
    )
    return Services(
        settings=settings,
        runner=runner,
        stock=stock,
        reserving=reserving,
        holds=holds,
        expiry=expiry,
        checkouts=CheckoutService(parts, settings, clock),
        orders=OrderService(orders_repo, unit, clock),
        tenancy=Tenancy(TenancyRepository(runner)),
        reconciler=Reconciler(sweep, stock_repo, holds_repo, unit, expiry, settings, clock),
        audit=AuditStore(client, settings.TABLE_NAME, retention_days=settings.AUDIT_RETENTION_DAYS),
    )


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
