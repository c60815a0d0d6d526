"""The hold timer's task: end the hold as EXPIRED if it is still ACTIVE and due.

Input  {"storeId", "reservationId", "loop"}
Output {"outcome": "expired" | "not_due" | "already_ended" | "not_found",
        "expiresAt": RFC 3339 (the current deadline), "loop": loop + 1,
        "wait": true when the state machine should wait for the (new) deadline,
        "soon": true when that deadline is within 1.5 s: wait one second and ask again,
        "warnAt": RFC 3339 or null: when waiting, for a checkout's hold, when to warn first}

With ``"action": "warn"`` (the timer woke EXPIRING_NOTICE_SECONDS before a checkout
hold's deadline) it marks the hold as warned instead (ReservationExpiring, docs/events.md):
Output {"outcome": "warned" | "already_warned" | "not_yet" | "not_checkout" | "due" | ...}
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from stockhold import actor
from stockhold.domain.ids import now_ms
from stockhold.domain.models import timer_deadline
from stockhold.domain.rules import ExpirePath
from stockhold.observability import logger, metrics, tracer
from stockhold.wiring import services

SOON_MS = 1500


class TimerInput(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    store_id: str = Field(alias="storeId", min_length=1)
    reservation_id: str = Field(alias="reservationId", min_length=1)
    loop: int = Field(default=0, ge=0)
    action: Literal["expire", "warn"] = "expire"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = TimerInput.model_validate(event)
    svc = services()
    if task.action == "warn":
        with actor.acting_as(actor.TIMER):
            warned = {"outcome": svc.expiry.warn_expiring(task.store_id, task.reservation_id)}
        logger.info("hold timer warned", extra={"reservation_id": task.reservation_id, **warned})
        return warned
    with actor.acting_as(actor.TIMER):
        outcome = svc.expiry.expire(task.store_id, task.reservation_id, ExpirePath.TIMER)
    loop = task.loop + 1
    res = outcome.reservation
    again = outcome.reason == "not_due" and loop < svc.settings.MAX_TIMER_LOOPS
    # Woken just before the deadline (whole-second Wait states, clock skew): look again in a second.
    soon = again and res is not None and res.expires_at - now_ms() <= SOON_MS
    answer = {
        "outcome": outcome.reason,
        "expiresAt": timer_deadline(res.expires_at) if res else None,
        "loop": loop,
        "wait": again,
        "soon": soon,
        "warnAt": None,
    }
    warn_at = svc.expiry.expiring_notice_at(res) if again and not soon and res is not None else None
    if warn_at is not None:
        answer["warnAt"] = timer_deadline(warn_at)
    logger.info("hold timer fired", extra={"reservation_id": task.reservation_id, **answer})
    return answer
