"""Logger, Tracer and Metrics, created once per container and shared by every module.

Powertools reads POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE from the
environment (set in template.yaml Globals). Metrics carry no SKU, cart or store
dimensions: those would explode CloudWatch cardinality and cost.

Nothing made here must differ between execution environments, so a SnapStart snapshot may
hold it (docs/deploy.md, "SnapStart"): Logger and Metrics take the request id, the cold-start
flag and timestamps per invocation; the X-Ray recorder (where tracing is on) holds an
unconnected UDP socket to the daemon address Lambda gives every environment, makes its ids
with os.urandom, and in Lambda samples as the trace header says, not with its own random.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

# A request that changes nothing emits no metric; Powertools would warn on every such request.
warnings.filterwarnings("ignore", message="No application metrics to publish")


class _Untraced(BaseSegment):
    """The segment of a disabled tracer: every call does nothing."""

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class _NoTracing(BaseProvider):
    """The provider of a disabled tracer. Powertools' default provider is the X-Ray recorder, and
    importing ``aws_xray_sdk.core`` builds one with a botocore X-Ray client: about 100 ms of a
    cold start (tests, make run, the bench) for a tracer that then records nothing."""

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        yield _Untraced()

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> Any:
        yield _Untraced()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


def _tracer() -> Tracer:
    """Powertools' Tracer: with X-Ray where tracing is on (Lambda, unless POWERTOOLS_TRACE_DISABLED),
    with the no-op provider where Powertools would disable it anyway (its own rule)."""
    if Tracer._is_tracer_disabled():
        return Tracer(disabled=True, provider=_NoTracing())
    return Tracer()


logger = Logger()
tracer = _tracer()
metrics = Metrics()


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
