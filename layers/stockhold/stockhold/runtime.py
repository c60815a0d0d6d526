"""Per-container singletons: the boto3 client and the services built on it.

Created lazily and once (Lambda reuses the container), so tests can set the
environment first and reset with ``reset()``. ``AWS_ENDPOINT_URL_DYNAMODB`` (a
standard boto3 setting) points everything at DynamoDB Local.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from stockhold.checkout import CheckoutService, OrderService
from stockhold.reconcile import Reconciler
from stockhold.service import ReservationService, StockService
from stockhold.settings import Settings, get_settings
from stockhold.store import DynamoStore
from stockhold.tenancy import Tenancy

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
    store: DynamoStore
    stock: StockService
    reservations: ReservationService
    checkouts: CheckoutService
    orders: OrderService
    tenancy: Tenancy
    reconciler: Reconciler


@lru_cache(maxsize=1)
def services() -> Services:
    settings = get_settings()
    store = DynamoStore(dynamodb_client(), settings.TABLE_NAME, mark_ttl_seconds=settings.IDEMPOTENCY_TTL_SECONDS)
    reservations = ReservationService(store, settings)
    stock = StockService(store, settings)
    return Services(
        settings=settings,
        store=store,
        stock=stock,
        reservations=reservations,
        checkouts=CheckoutService(store, settings, reservations, stock),
        orders=OrderService(store),
        tenancy=Tenancy(store),
        reconciler=Reconciler(store, reservations, settings),
    )


def reset() -> None:
    """Forget the cached client, settings and services (tests change the environment)."""
    services.cache_clear()
    dynamodb_client.cache_clear()
    stepfunctions_client.cache_clear()
    events_client.cache_clear()
    get_settings.cache_clear()
