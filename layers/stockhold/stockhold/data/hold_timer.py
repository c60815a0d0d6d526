"""The hold timer's executions (docs/expiry.md): one Step Functions execution per hold,
named after the store and the hold, started when the hold is made and stopped when it
ends early (confirmed or released).

The name makes both calls safe to repeat: a second start finds the execution already
there (``ExecutionAlreadyExists``), and the execution's ARN is known without a lookup, so
a stop needs no read. Stopping an execution that has finished is a no-op; one that never
started (``ExecutionDoesNotExist``: its start failed for good, or the timer was off) is
nothing to stop.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from stockhold.data.transactions import error_code
from stockhold.domain.models import Reservation, timer_deadline

MAX_NAME = 80  # Step Functions' limit on an execution name


def execution_name(store_id: str, reservation_id: str) -> str:
    return f"{store_id}--{reservation_id}"[:MAX_NAME]


def execution_arn(state_machine_arn: str, name: str) -> str:
    """arn:…:stateMachine:HoldTimer -> arn:…:execution:HoldTimer:<name>."""
    if ":stateMachine:" not in state_machine_arn:
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name


class HoldTimers:
    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._client = client
        self._arn = state_machine_arn

    def start(self, res: Reservation, warn_at: int | None) -> bool:
        """Start ``res``'s timer (waking at ``warn_at`` first, when given). False: it exists already."""
        payload: dict[str, Any] = {
            "storeId": res.store_id,
            "reservationId": res.reservation_id,
            "expiresAt": timer_deadline(res.expires_at),
            "loop": 0,
        }
        if warn_at is not None:
            payload["warnAt"] = timer_deadline(warn_at)
        try:
            self._client.start_execution(
                stateMachineArn=self._arn,
                name=execution_name(res.store_id, res.reservation_id),
                input=json.dumps(payload),
            )
        except ClientError as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise
            return False
        return True

    def stop(self, store_id: str, reservation_id: str, cause: str) -> bool:
        """Stop the hold's timer (the execution ends ABORTED, not FAILED). False: there is none."""
        try:
            self._client.stop_execution(
                executionArn=execution_arn(self._arn, execution_name(store_id, reservation_id)),
                error="HoldEnded",
                cause=cause,
            )
        except ClientError as exc:
            if error_code(exc) != "ExecutionDoesNotExist":
                raise
            return False
        return True
