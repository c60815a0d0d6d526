"""Processes (Linux /proc): what a child started, that it is gone, and a section's run in a child of its own.

A local stack's DynamoDB Local runs in its own session, so signalling a process group would
miss it: the parent links are walked instead, and a process is known by its pid *and* start
time, so a recycled pid is never touched. A run that starts a local stack in-process (its
function workers are multiprocessing children) runs in a child process in its own session
(:class:`Child`): a Ctrl-C in the terminal reaches the bench alone, which stops the child with
SIGTERM, and the child stops its stack in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import MARK, ROOT, SectionFailed, say

_PROC = Path("/proc")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, ...), None if gone or a zombie."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return None if fields[0] == "Z" else fields


def family(root: int | None = None) -> dict[int, int]:
    """``root`` (default: this process) and all its descendants alive now: pid -> start time."""
    root = os.getpid() if root is None else root
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in _PROC.iterdir() if _PROC.is_dir() else []:
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
            starts[int(entry.name)] = int(fields[19])
    out, todo = {}, [root] if root in starts else []
    while todo:
        pid = todo.pop()
        out[pid] = starts[pid]
        todo.extend(p for p in parents.get(pid, []) if p not in out)
    return out


def alive(processes: dict[int, int]) -> dict[int, int]:
    return {p: s for p, s in processes.items() if (f := _stat(p)) is not None and int(f[19]) == s}


def kill(processes: dict[int, int]) -> None:
    """SIGKILL each process still alive, by its own pid (never a group or a name)."""
    for pid in alive(processes):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def wait_gone(processes: dict[int, int], timeout: float) -> dict[int, int]:
    """Wait up to ``timeout`` s for the processes to exit; returns those still alive."""
    deadline, left = time.monotonic() + timeout, alive(processes)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = alive(left)
    return left


def cmdline(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far (0 if gone)."""
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


@contextlib.contextmanager
def no_leftovers(left_behind: list[int]) -> Iterator[None]:
    """Every process started meanwhile must be gone afterwards: any left is killed (by pid) and its pid added
    to ``left_behind``. (multiprocessing's resource tracker lives as long as this process, by design.)"""
    before, seen, stop = family(), {}, threading.Event()

    def look() -> None:
        seen.update({p: s for p, s in family().items() if p not in before})

    def watch() -> None:
        while not stop.wait(1.0):
            look()

    watcher = threading.Thread(target=watch, name="bench-procs", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        look()
        left = {p: s for p, s in wait_gone(seen, 10.0).items() if "resource_tracker" not in cmdline(p)}
        left_behind.extend(sorted(left))
        kill(left)
        wait_gone(left, 5.0)


def stop_tree(proc: subprocess.Popen[bytes], timeout: float) -> tuple[float, bool, list[int]]:
    """SIGTERM ``proc`` and wait up to ``timeout`` s (then SIGKILL it and everything it started); 5 s later every
    process it had started must be gone (any left is killed). Returns (seconds to exit, killed, pids left)."""
    with shielded():
        tree, began, killed = family(proc.pid), time.perf_counter(), False
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                killed = True
                kill({**tree, **family(proc.pid)})
                proc.wait()
        took = time.perf_counter() - began
        left = wait_gone({p: s for p, s in tree.items() if p != proc.pid}, 5.0)
        kill(left)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
    return took, killed, sorted(left)


def raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --- a run in a child process ---------------------------------------------------------------


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 to ``path`` (the stack's function workers inherit them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, old in zip((1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)


def child_main(log: Path, work: Callable[[], Any]) -> int:
    """The child side of :class:`Child`: ``work()`` with its output sent to ``log``; progress (harness.say),
    'made' and the JSON of what it returns go to the bench as protocol lines on the former stdout."""
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGINT, raise_interrupt)
    harness._pipe = os.fdopen(os.dup(1), "w", buffering=1)
    try:
        with _output_to(log):
            result = work()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        say(f"{type(exc).__name__}: {exc}", "failed")
        return 1
    say(json.dumps(result), "result")
    return 0


class Child:
    """``python -m MODULE child ARGS...`` in its own session; its protocol lines read by a thread."""

    def __init__(self, module: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.name = args[0] if args else module
        self.made, self.done = threading.Event(), threading.Event()
        self.result: Any = None
        self.error = ""
        env = {
            **(os.environ if env is None else env),
            "PYTHONPATH": harness.pythonpath(),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "child", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"child-{self.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(MARK):
                kind, _, rest = line[len(MARK) :].partition(" ")
                if kind == "say":
                    say(rest)
                elif kind == "result":
                    self.result = json.loads(rest)
                elif kind == "failed":
                    self.error = rest
                elif kind == "made":
                    self.made.set()
        self.done.set()
        self.made.set()

    def wait(self) -> Any:
        while not self.done.wait(0.5):  # a short wait: a Ctrl-C is taken between two
            pass
        self.proc.wait()
        if self.result is None:
            raise SectionFailed(f"the {self.name} run failed: {self.error or f'exit status {self.proc.returncode}'}")
        return self.result

    def stop(self) -> None:
        """SIGTERM (the child stops what it started, in order), then whatever is left is killed."""
        stop_tree(self.proc, 60.0)
        self._reader.join(timeout=5)
