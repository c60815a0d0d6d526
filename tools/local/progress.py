"""Progress lines while the local stack starts: ``==>  2.3 s  what``, seconds since the start.

Parts that take a while (DynamoDB Local's JVM, a function's first environment) are begun and
ended by name; while any is still pending and nothing was printed for ``every`` seconds, one
``still waiting for ...`` line says which."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, started: float | None = None, *, every: float = 2.0, out: TextIO | None = None) -> None:
        self.started = time.monotonic() if started is None else started
        self._every = every
        self._out = out
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}  # part -> when it began
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def emit(self, text: str) -> None:
        """Print ``text`` as it is (e.g. the banner), never in the middle of a progress line."""
        out = self._out or sys.stdout
        with self._lock:
            out.write(text if text.endswith("\n") else text + "\n")
            out.flush()
            self._last = time.monotonic()

    def say(self, message: str) -> None:
        self.emit(f"==> {self.elapsed():5.1f} s  {message}")

    def begin(self, part: str) -> None:
        with self._lock:
            self._pending.setdefault(part, time.monotonic())
        self._start_ticker()

    def end(self, part: str, message: str | None = None) -> float:
        """The part is done; prints ``message`` with ``{took}`` filled in. Returns the seconds it took."""
        with self._lock:
            began = self._pending.pop(part, None)
        took = time.monotonic() - began if began is not None else 0.0
        if message is not None:
            self.say(message.format(took=f"{took:.1f} s"))
        return took

    def _start_ticker(self) -> None:
        with self._lock:
            if self._ticker is not None or self._stop.is_set():
                return
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                quiet = time.monotonic() - self._last >= self._every
                pending = list(self._pending)
            if quiet and pending:
                self.say(f"still waiting for {', '.join(pending)}")

    def close(self) -> None:
        """No more ``still waiting`` lines (say() still prints)."""
        self._stop.set()
        ticker = self._ticker
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join(timeout=1)
