"""Logger, Tracer and Metrics, created once per container and shared by every module.

Powertools reads POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE from the
environment (set in template.yaml Globals). Metrics carry no SKU, cart or store
dimensions: those would explode CloudWatch cardinality and cost.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

# A request that changes nothing emits no metric; Powertools would warn on every such request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
