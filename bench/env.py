"""Import paths and environment of a bench run: the same ones tests and Lambda use."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# As pyproject's pytest ``pythonpath`` (and Lambda: the layer, then the function's folder).
IMPORT_PATHS: tuple[Path, ...] = (ROOT / "layers" / "stockhold", ROOT / "functions" / "api", ROOT)


def add_import_paths() -> None:
    for path in reversed(IMPORT_PATHS):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def pythonpath() -> str:
    return os.pathsep.join(str(p) for p in IMPORT_PATHS)


def bench_env(client_kwargs: Mapping[str, str], tables: Mapping[str, str]) -> dict[str, str]:
    """The variables a handler needs to run against DynamoDB Local with fresh tables."""
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": client_kwargs["endpoint_url"],
        "AWS_ACCESS_KEY_ID": client_kwargs["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": client_kwargs["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": client_kwargs["region_name"],
        "AWS_REGION": client_kwargs["region_name"],
        "TABLE_NAME": tables["StockholdTable"],
        "IDEMPOTENCY_TABLE_NAME": tables["IdempotencyTable"],
        "POWERTOOLS_SERVICE_NAME": "stockhold",
        "POWERTOOLS_METRICS_NAMESPACE": "Stockhold",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        # Metrics stay on, as deployed: bench.run discards the EMF lines they print to stdout.
        # (POWERTOOLS_METRICS_DISABLED=true is not enough in Powertools 3.37: flush_metrics then
        # skips printing but also clearing, and add_metric prints the set anyway at 100 values.)
    }


def apply(env: Mapping[str, str]) -> None:
    os.environ.update(env)
    for stray in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(stray, None)
