"""Process-tree bookkeeping (Linux /proc): find what a child started, and make sure it is gone.

The local stack's DynamoDB Local runs in its own session (tools.ddblocal starts it with
``start_new_session``), so signalling the stack's process group would miss it: we walk
the parent links instead, before the stack is asked to stop, and check afterwards that
every process found then has exited (same pid *and* start time, so a recycled pid is
never touched).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time in clock ticks, state) of a live process, or None."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19]), fields[0]


def family(root: int) -> dict[int, int]:
    """``root`` and all its descendants now alive: pid -> start time. Empty without /proc."""
    if not _PROC.is_dir():
        return {}
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        info = _stat(int(entry.name))
        if info is None or info[2] == "Z":
            continue
        parents.setdefault(info[0], []).append(int(entry.name))
        starts[int(entry.name)] = info[1]
    if root not in starts:
        return {}
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        out[pid] = starts[pid]
        todo.extend(p for p in parents.get(pid, []) if p in starts and p not in out)
    return out


def alive(processes: dict[int, int]) -> dict[int, int]:
    """Those of ``processes`` still running (same pid and start time, not a zombie)."""
    out = {}
    for pid, start in processes.items():
        info = _stat(pid)
        if info is not None and info[1] == start and info[2] != "Z":
            out[pid] = start
    return out


def kill(processes: dict[int, int], sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal each process still alive by its own pid (never a group or a name)."""
    for pid in alive(processes):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(processes: dict[int, int], timeout: float) -> dict[int, int]:
    """Wait up to ``timeout`` s for the processes to exit; returns those still alive."""
    deadline = time.monotonic() + timeout
    left = alive(processes)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = alive(left)
    return left


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM for a while (main thread only): clean-up is not cut short."""
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: nothing to shield
            saved[sig] = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def cmdline(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far (0 if gone)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
