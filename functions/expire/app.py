"""The hold timer's task (statemachine/hold_timer.asl.json, docs/expiry.md): a slot's work.

Survey   {"kind": "expire" | "warn", "slot": epoch s, "loop": n}
    -> {"handled", "failed", "pending", "fanOut": bool, "groups": [[shard, ...], ...],
        "again": bool (look again in a second), "loop": n + 1}
Group    {"kind", "slot", "shards": [shard, ...]}  (one item of the state machine's Map)
    -> {"handled"}; raises when a hold of the group could not be ended (the Map retries it)

An execution started before slot timers were deployed keeps its old definition (Standard
executions do) and calls with one hold, ``{"storeId", "reservationId", "loop"}``
(``"action": "warn"`` to warn): that hold is expired or warned through the same
conditional write, and the answer tells the old execution to end. The hold's own slot
(armed by the hold stream) or reconciliation covers an extended hold.
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from stockhold import actor
from stockhold.domain.rules import ExpirePath, SlotKind
from stockhold.observability import logger, metrics, tracer
from stockhold.wiring import services


class SlotTask(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kind: SlotKind
    slot: int = Field(ge=0)
    loop: int = Field(default=0, ge=0)
    shards: list[int] | None = Field(default=None, max_length=4096)


class OneHoldTask(BaseModel):
    """The payload of a per-hold execution started before slot timers (see above)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    store_id: str = Field(alias="storeId", min_length=1)
    reservation_id: str = Field(alias="reservationId", min_length=1)
    loop: int = Field(default=0, ge=0)
    action: Literal["expire", "warn"] = "expire"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "slot" not in event:
        return _one_hold(OneHoldTask.model_validate(event))
    task = SlotTask.model_validate(event)
    slots = services().slots
    if task.shards is not None:
        handled = slots.sweep(task.kind, task.slot, task.shards)
        logger.info("slot group done", kind=task.kind.value, slot=task.slot, shards=len(task.shards), handled=handled)
        return {"handled": handled}
    survey = slots.survey(task.kind, task.slot, task.loop)
    answer = {
        "handled": survey.handled,
        "failed": survey.failed,
        "pending": survey.pending,
        "fanOut": survey.fan_out,
        "groups": survey.groups,
        "again": survey.again,
        "loop": survey.loop,
    }
    shown = {k: v for k, v in answer.items() if k != "groups"} | {"kind": task.kind.value, "slot": task.slot}
    logger.info("slot timer woke", extra=shown)
    return answer


def _one_hold(task: OneHoldTask) -> dict[str, Any]:
    expiry = services().expiry
    with actor.acting_as(actor.TIMER):
        if task.action == "warn":
            return {"outcome": expiry.warn_expiring(task.store_id, task.reservation_id)}
        outcome = expiry.expire(task.store_id, task.reservation_id, ExpirePath.TIMER).reason
    logger.info("per-hold timer fired", reservation_id=task.reservation_id, outcome=outcome)
    return {"outcome": outcome, "expiresAt": None, "loop": task.loop + 1, "wait": False, "soon": False, "warnAt": None}
