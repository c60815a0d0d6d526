"""Environment shared by every test: no real AWS, settings equal to the template defaults."""

from __future__ import annotations

import os

from tools import template

_DEFAULTS = template.parameter_defaults()

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "stockhold",
        "POWERTOOLS_METRICS_NAMESPACE": "Stockhold",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "TABLE_NAME": "StockholdTable",
        "IDEMPOTENCY_TABLE_NAME": "IdempotencyTable",
        "DEFAULT_HOLD_SECONDS": _DEFAULTS["DefaultHoldSeconds"],
        "MIN_HOLD_SECONDS": _DEFAULTS["MinHoldSeconds"],
        "MAX_HOLD_SECONDS": _DEFAULTS["MaxHoldSeconds"],
        "MAX_EXTENSIONS": _DEFAULTS["MaxExtensions"],
        "TTL_GRACE_SECONDS": _DEFAULTS["TtlGraceSeconds"],
        "LOW_STOCK_THRESHOLD": _DEFAULTS["LowStockThreshold"],
        "HISTORY_RETENTION_DAYS": _DEFAULTS["HistoryRetentionDays"],
        "IDEMPOTENCY_TTL_SECONDS": _DEFAULTS["IdempotencyTtlSeconds"],
    }
)
os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
os.environ.pop("AWS_PROFILE", None)
