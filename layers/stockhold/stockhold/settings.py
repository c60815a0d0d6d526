"""One typed settings object, read from the environment once.

template.yaml Parameters are the source of the defaults: they reach each function as
environment variables. The defaults below only matter for tests and local tools and
are kept equal to the template's (a template test checks that).
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    TABLE_NAME: str = Field(default="stockhold", min_length=1)
    IDEMPOTENCY_TABLE_NAME: str = Field(default="stockhold-idempotency", min_length=1)
    DEFAULT_HOLD_SECONDS: int = Field(default=900, ge=1)
    MIN_HOLD_SECONDS: int = Field(default=60, ge=1)
    MAX_HOLD_SECONDS: int = Field(default=1800, ge=1)
    MAX_EXTENSIONS: int = Field(default=3, ge=0, le=100)
    TTL_GRACE_SECONDS: int = Field(default=3600, ge=0)
    LOW_STOCK_THRESHOLD: int = Field(default=5, ge=0)
    HISTORY_RETENTION_DAYS: int = Field(default=30, ge=1)
    AUDIT_RETENTION_DAYS: int = Field(default=90, ge=1)
    IDEMPOTENCY_TTL_SECONDS: int = Field(default=86400, ge=60)
    SWEEP_GRACE_SECONDS: int = Field(default=30, ge=0)
    RECONCILE_QUIET_SECONDS: int = Field(default=300, ge=0)
    HOLD_TIMER_ARN: str = ""
    MAX_TIMER_LOOPS: int = Field(default=10, ge=1)
    # Due holds one slot-timer invocation ends itself; a slot with more fans out over a Map
    # of invocations of about this many each (docs/expiry.md, "Slot timers").
    SLOT_GROUP_HOLDS: int = Field(default=250, ge=1, le=5000)
    CHECKOUT_HOLD_SECONDS: int = Field(default=300, ge=1)
    EXTEND_THRESHOLD_SECONDS: int = Field(default=120, ge=0)
    PAYMENT_HOLD_SECONDS: int = Field(default=900, ge=1)
    EVENT_BUS_NAME: str = ""
    EXPIRING_NOTICE_SECONDS: int = Field(default=60, ge=0)  # 0: no ReservationExpiring
    # How long a container reserves on its copy of a store's locations (docs/decisions.md, "Locations").
    LOCATIONS_CACHE_SECONDS: float = Field(default=5, ge=0, le=300)
    # How long a container refuses, without a write, a SKU it found with nothing usable
    # (docs/flash-sales.md, "Sold out"); 0 turns it off. Units that come back are
    # reachable again after at most this long.
    SOLD_OUT_CACHE_SECONDS: float = Field(default=1, ge=0, le=10)

    @model_validator(mode="after")
    def _hold_bounds(self) -> Settings:
        if not self.MIN_HOLD_SECONDS <= self.DEFAULT_HOLD_SECONDS <= self.MAX_HOLD_SECONDS:
            raise ValueError(
                "need MIN_HOLD_SECONDS <= DEFAULT_HOLD_SECONDS <= MAX_HOLD_SECONDS, got "
                f"{self.MIN_HOLD_SECONDS} / {self.DEFAULT_HOLD_SECONDS} / {self.MAX_HOLD_SECONDS}"
            )
        for name in ("CHECKOUT_HOLD_SECONDS", "PAYMENT_HOLD_SECONDS"):
            value = getattr(self, name)
            if not self.MIN_HOLD_SECONDS <= value <= self.MAX_HOLD_SECONDS:
                raise ValueError(
                    f"need MIN_HOLD_SECONDS <= {name} <= MAX_HOLD_SECONDS, got "
                    f"{self.MIN_HOLD_SECONDS} / {value} / {self.MAX_HOLD_SECONDS}"
                )
        return self

    @property
    def history_retention_seconds(self) -> int:
        return self.HISTORY_RETENTION_DAYS * 86400


class SettingsError(RuntimeError):
    """The environment does not describe a valid configuration (a deploy mistake)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this container. Tests reset them with ``get_settings.cache_clear()``."""
    names = Settings.model_fields.keys()
    raw = {name: os.environ[name] for name in names if name in os.environ}
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(f"invalid stockhold configuration: {exc}") from exc
