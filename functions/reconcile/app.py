"""Scheduled reconciliation (EventBridge): end overdue holds the timer and TTL missed,
recount reserved units and report drift. See stockhold/reconcile.py for the rule."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from stockhold import actor
from stockhold.observability import logger, metrics, tracer
from stockhold.wiring import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with actor.acting_as(actor.RECONCILE):
        report: dict[str, Any] = services().reconciler.run().as_dict()
    return report
