"""Who is changing the data: set once per request or record by each handler, read by
the data-access layer, which writes it on every item it changes (``lastActor``), so the
audit trail built from the stream can say who did it (docs/data-model.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

SYSTEM = "system"
TIMER = "system:timer"
TTL = "system:ttl"
RECONCILE = "system:reconcile"

_ACTOR: ContextVar[str] = ContextVar("stockhold_actor", default=SYSTEM)


def current() -> str:
    return _ACTOR.get()


def api_caller(role: str, key_id: str | None) -> str:
    """``admin:1a2b3c4d``: the key's role and the first hex digits of its hash (never the key)."""
    return f"{role}:{key_id}" if key_id else role


@contextmanager
def acting_as(name: str) -> Iterator[None]:
    token = _ACTOR.set(name)
    try:
        yield
    finally:
        _ACTOR.reset(token)
