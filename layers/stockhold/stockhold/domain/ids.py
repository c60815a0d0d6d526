"""Ids and the clock. Randomness and time are read when called, never at import (SnapStart)."""

from __future__ import annotations

import hashlib
import os
import time
from base64 import b32encode
from collections.abc import Callable

Clock = Callable[[], int]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id(prefix: str) -> str:
    """A ULID-style id: 48 bits of milliseconds then 80 random bits, Crockford-free base32."""
    raw = (now_ms() & (2**48 - 1)).to_bytes(6, "big") + os.urandom(10)
    return prefix + b32encode(raw).decode().rstrip("=").lower()


def derived_id(prefix: str, *parts: str) -> str:
    """A stable id from an idempotency key, so a retried request finds its own earlier result."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()[:16]
    return prefix + b32encode(digest).decode().rstrip("=").lower()
