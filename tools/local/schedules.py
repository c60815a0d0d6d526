"""EventBridge schedules (``rate(...)``) -> Lambda, locally."""

from __future__ import annotations

import re
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from tools.local.functions import FunctionPool

_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def rate_seconds(expression: str) -> float | None:
    m = re.fullmatch(r"rate\((\d+)\s+(\w+)\)", expression.strip())
    if not m or m.group(2) not in _UNITS:
        return None
    return int(m.group(1)) * _UNITS[m.group(2)]


class Schedule:
    def __init__(self, function: FunctionPool, name: str, expression: str, every: float | None = None) -> None:
        self._fn = function
        self._name = name
        self.every = every if every is not None else rate_seconds(expression)
        if self.every is None:
            raise ValueError(f"{name}: only rate(...) schedules run locally, not {expression!r}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"schedule-{name}", daemon=True)
        self.fired = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _event(self) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "000000000000",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:000000000000:rule/{self._name}"],
            "detail": {},
        }

    def _run(self) -> None:
        """Fire every ``every`` seconds until stopped. A run that fails (an error, an environment
        that died, even a fault of the stack) is logged and the schedule carries on, as an
        EventBridge rule does: the next run is the retry."""
        assert self.every is not None
        while not self._stop.wait(self.every):
            started = time.monotonic()
            try:
                result = self._fn.invoke(self._event())
                status = f"failed ({result.error_type}: {result.error_message})" if result.failed else "ok"
            except Exception as exc:
                status = f"failed ({type(exc).__name__}: {exc})"
            self.fired += 1
            sys.stderr.write(f"[schedule {self._name}] {status} in {(time.monotonic() - started) * 1000:.0f} ms\n")
