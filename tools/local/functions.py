"""Lambda, locally: each function runs in a pool of worker processes.

A worker is one "execution environment": it gets exactly the environment the
template gives the function (plus overrides), imports the handler once (cold start)
and then serves one invocation at a time, as in Lambda. Pool size = concurrency.

As in Lambda, an environment that dies (killed, crashed, out of memory) takes only the
invocation it was running with it: that invocation fails with ``Runtime.ExitError``,
the environment is discarded, and the next invocation that needs one starts a new
environment (a cold start). Every other environment and invocation carries on.
(``concurrent.futures.ProcessPoolExecutor`` does the opposite: one dead worker breaks
the whole pool for good, failing every running and later call, hence ``WorkerPool``.)
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from tools.local.context import LambdaContext

_handler: Any = None
_name = "function"
STOP_GRACE = 5.0  # seconds an environment gets to exit when its pool shuts down


def _init(name: str, code_dir: str, handler: str, env: dict[str, str], paths: list[str]) -> None:
    global _handler, _name
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = [code_dir, *paths]
    module_name, func = handler.rsplit(".", 1)
    _handler = getattr(importlib.import_module(module_name), func)
    _name = name


def _invoke(event: dict[str, Any], timeout: float) -> dict[str, Any]:
    context = LambdaContext(function_name=_name, timeout_seconds=timeout)
    try:
        return {"payload": _handler(event, context)}
    except Exception as exc:
        return {
            "errorType": type(exc).__name__,
            "errorMessage": str(exc),
            "stackTrace": traceback.format_exc().splitlines(),
        }


def _no_init(*_: Any) -> None:
    return None


# ------------------------------------------------------------------ the environments


class EnvironmentFailed(Exception):
    """The execution environment could not answer: it died running the call, or its init failed.

    ``error_type`` / ``message`` are what Lambda reports for it (``Runtime.ExitError``,
    ``Runtime.ImportModuleError``, ...)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def _exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "Runtime exited without providing a reason"
    if exitcode < 0:
        name = signal.strsignal(-exitcode) or f"signal {-exitcode}"
        return f"Runtime exited with error: signal: {name.lower()}"  # as Lambda words it: "signal: killed"
    return f"Runtime exited with error: exit status {exitcode}"


def _environment_main(conn: Connection, init: Callable[..., None], init_args: tuple[Any, ...]) -> None:
    """The worker process: init once, then run one call at a time until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for `make run`, which stops us
    try:
        init(*init_args)
    except BaseException as exc:
        kind = "Runtime.ImportModuleError" if isinstance(exc, ImportError) else f"Runtime.{type(exc).__name__}"
        conn.send(("init_error", kind, f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the pool (or the whole stack) went away
        if message is None:
            return
        fn, args = message
        try:
            reply: tuple[Any, ...] = ("ok", fn(*args))
        except BaseException as exc:
            reply = ("error", exc)
        try:
            conn.send(reply)
        except (BrokenPipeError, EOFError):
            return
        except Exception as exc:  # an answer that does not pickle
            conn.send(("error", RuntimeError(f"the call's answer could not be sent back: {exc!r}")))


class _Environment:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def ask_to_exit(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.conn.close()

    def close(self, grace: float = STOP_GRACE) -> None:
        """Ask it to exit (the pipe closes), then make sure it has."""
        if not self.conn.closed:
            self.ask_to_exit()
        self.process.join(grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def discard(self) -> int | None:
        """It died: reap it and say how."""
        self.conn.close()
        self.process.join(STOP_GRACE)
        if self.process.is_alive():  # the pipe broke but it lives on: not ours any more
            self.process.kill()
            self.process.join()
        return self.process.exitcode


@dataclass
class _Call:
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]


class WorkerPool(Executor):
    """Up to ``size`` execution environments (spawned worker processes), started on demand.

    ``submit(fn, *args)`` runs ``fn(*args)`` in one of them (a warm one when one is free:
    Lambda reuses environments) and returns its Future. An environment that dies fails
    only its own call (``EnvironmentFailed``) and is replaced by the next call's cold start."""

    def __init__(
        self,
        size: int,
        *,
        name: str = "worker",
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self.name = name
        self._size = max(1, size)
        self._initializer = initializer or _no_init
        self._initargs = initargs
        self._context = get_context("spawn")
        self._lock = threading.Condition()
        self._idle: list[_Environment] = []  # warm and free, most recently used last
        self._busy: set[_Environment] = set()
        self._starting = 0  # environments being spawned (counted against size)
        self._warming = 0  # of those, ones started by prestart() with no call of their own yet
        self._pending: deque[_Call] = deque()
        self._spawning: set[BaseProcess] = set()  # processes started, their init not yet done
        self._closed = False
        self.started = 0  # environments started so far (cold starts)
        self.died = 0  # environments lost while running a call or starting

    @property
    def pids(self) -> list[int]:
        """The process ids of the environments alive now (for tests that kill one)."""
        with self._lock:
            envs = [*self._idle, *self._busy]
        return [e.pid for e in envs if e.pid is not None and e.process.is_alive()]

    @property
    def busy_pids(self) -> list[int]:
        """The process ids of the environments running a call now."""
        with self._lock:
            return [e.pid for e in self._busy if e.pid is not None]

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            raise TypeError("WorkerPool.submit takes positional arguments only")
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: cannot submit after shutdown")
            self._pending.append(_Call(future, fn, args))
            self._dispatch()
        return future

    def prestart(self) -> Future[bool]:
        """Start one environment now, ahead of the first call, unless the pool has one already
        (free, busy or starting): its init is the cold start that call would otherwise wait for.
        A call that comes while it starts waits for it rather than starting another one. The
        Future is done once it is ready (idle, or running that call): True if this started one,
        False if there was one; or failed with ``EnvironmentFailed``."""
        future: Future[bool] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: cannot prestart after shutdown")
            if self._idle or self._busy or self._starting:
                future.set_result(False)
                return future
            self._starting += 1
            self._warming += 1
        threading.Thread(target=self._prestarted, args=(future,), name=f"{self.name}-prestart", daemon=True).start()
        return future

    def _prestarted(self, future: Future[bool]) -> None:
        try:
            env = self._spawn()
        except Exception as exc:
            if not isinstance(exc, EnvironmentFailed):
                exc = EnvironmentFailed("Runtime.Unknown", f"the environment did not start: {exc!r}")
            with self._lock:
                self._starting -= 1
                self._warming -= 1
                self.died += 1
                self._dispatch()  # the calls that waited for it start environments of their own
                self._lock.notify_all()
            future.set_exception(exc)
            return
        with self._lock:
            self._starting -= 1
            self._warming -= 1
            self.started += 1
            call = self._pending.popleft() if self._pending else None
            if call is not None:
                self._busy.add(env)
                self._dispatch()  # any other waiting calls: no longer waiting for this one
            elif not self._closed:
                self._idle.append(env)
            self._lock.notify_all()
        future.set_result(True)
        if call is not None:
            self._serve(env, call)
        elif self._closed:
            env.close()

    def _dispatch(self) -> None:
        """Hand waiting calls to free environments, or start environments while below size (lock held).
        Calls no more than the environments prestart() is starting wait for those."""
        while self._pending:
            env: _Environment | None = None
            if self._idle:
                env = self._idle.pop()
                self._busy.add(env)
            elif len(self._pending) <= self._warming:
                return
            elif len(self._busy) + self._starting < self._size:
                self._starting += 1
            else:
                return
            call = self._pending.popleft()
            threading.Thread(target=self._serve, args=(env, call), name=f"{self.name}-call", daemon=True).start()

    def _spawn(self) -> _Environment:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_environment_main,
            args=(child, self._initializer, self._initargs),
            name=f"{self.name}-environment",
            daemon=True,
        )
        with self._lock:
            if self._closed:
                raise EnvironmentFailed("Runtime.Unknown", "the pool is shutting down")
            process.start()
            self._spawning.add(process)
        child.close()  # the child holds the only other end now: its death is our EOF
        env = _Environment(process, parent)
        try:
            hello = parent.recv()
        except (EOFError, OSError):
            code = env.discard()
            raise EnvironmentFailed("Runtime.ExitError", f"init: {_exit_description(code)}") from None
        finally:
            with self._lock:
                self._spawning.discard(process)
        if hello[0] != "ready":
            env.discard()
            raise EnvironmentFailed(hello[1], hello[2])
        return env

    def _serve(self, env: _Environment | None, call: _Call | None) -> None:
        """Run calls on one environment while calls wait, then park it as idle. The thread holds
        one of the pool's ``size`` slots throughout: ``env`` in ``_busy``, or (``env`` None: one
        to start) counted in ``_starting``."""
        while call is not None:
            if call.future.set_running_or_notify_cancel():
                env = self._run(env, call)
            call, env = self._next(env)

    def _run(self, env: _Environment | None, call: _Call) -> _Environment | None:
        """Run one call; returns the environment it ran on, or None if that one is gone."""
        while True:
            if env is None:
                try:
                    env = self._spawn()
                except Exception as exc:
                    if not isinstance(exc, EnvironmentFailed):
                        exc = EnvironmentFailed("Runtime.Unknown", f"the environment did not start: {exc!r}")
                    with self._lock:
                        self.died += 1
                    call.future.set_exception(exc)
                    return None
                with self._lock:
                    self._starting -= 1
                    self.started += 1
                    self._busy.add(env)
            try:
                env.conn.send((call.fn, call.args))
            except OSError:  # it died while idle: the call never reached it, so a new one runs it
                self._gone(env, "while idle")
                env = None
                continue
            try:
                reply = env.conn.recv()
            except (EOFError, OSError):  # it died running the call: as in Lambda, the call fails
                how = self._gone(env, "running a call")
                call.future.set_exception(EnvironmentFailed("Runtime.ExitError", how))
                return None
            if reply[0] == "ok":
                call.future.set_result(reply[1])
            else:
                call.future.set_exception(reply[1])
            return env

    def _gone(self, env: _Environment, when: str) -> str:
        """Reap a dead environment; its slot becomes one to start. Returns how it ended."""
        how = _exit_description(env.discard())
        sys.stderr.write(f"[{self.name}] execution environment {env.pid} died {when}: {how}\n")
        with self._lock:
            self._busy.discard(env)
            self._starting += 1
            self.died += 1
        return how

    def _next(self, env: _Environment | None) -> tuple[_Call | None, _Environment | None]:
        """The next waiting call for this thread, or (none waiting) give its slot back."""
        with self._lock:
            if self._pending:
                return self._pending.popleft(), env
            if env is None:
                self._starting -= 1
            else:
                self._busy.discard(env)
                if not self._closed:
                    self._idle.append(env)
                    env = None
            self._lock.notify_all()
        if env is not None:  # shutting down
            env.close()
        return None, None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                while self._pending:
                    self._pending.popleft().future.cancel()
            idle, self._idle = self._idle, []
            spawning = list(self._spawning)
        for process in spawning:  # an init no call will use: stopped now, not left to finish orphaned
            process.kill()
        for env in idle:  # all at once: each takes a moment to exit
            env.ask_to_exit()
        for env in idle:
            env.close()
        if not wait:
            return
        with self._lock:
            self._lock.wait_for(
                lambda: not self._busy and not self._starting and not self._pending, timeout=STOP_GRACE * 2
            )
            stragglers = [env.process for env in self._busy] + list(self._spawning)
        for process in stragglers:  # a call that will not end: Lambda would have timed it out
            process.kill()
        with self._lock:  # each one's own thread reaps it
            self._lock.wait_for(lambda: not self._busy and not self._starting, timeout=STOP_GRACE)


# ------------------------------------------------------------------ a function


@dataclass
class Invocation:
    payload: Any = None
    error_type: str | None = None
    error_message: str | None = None

    @property
    def failed(self) -> bool:
        return self.error_type is not None


class FunctionPool:
    def __init__(
        self,
        name: str,
        code_dir: Path,
        handler: str,
        env: dict[str, str],
        paths: list[Path],
        *,
        concurrency: int,
        timeout: float,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self._pool = WorkerPool(
            concurrency,
            name=name,
            initializer=_init,
            initargs=(name, str(code_dir), handler, env, [str(p) for p in paths]),
        )

    @property
    def pids(self) -> list[int]:
        """Process ids of this function's live execution environments."""
        return self._pool.pids

    @property
    def busy_pids(self) -> list[int]:
        """Process ids of the environments running an invocation now."""
        return self._pool.busy_pids

    @property
    def environments_lost(self) -> int:
        """How many of this function's environments died (mid-invocation or in their init)."""
        return self._pool.died

    def warm(self) -> Future[bool]:
        """Start an environment now (its imports are the cold start) rather than on the first
        invocation, unless there is one already; an invocation meanwhile waits for it (no second
        cold start). Done when it is ready (True: this started it); failed with
        ``EnvironmentFailed`` if its init failed."""
        return self._pool.prestart()

    def warm_up(self, environments: int) -> None:
        """Have at least ``environments`` environments started (at most the pool's size): as many
        overlapping calls at once, each long enough for none to be free for the next."""
        for started in [self._pool.submit(time.sleep, 0.2) for _ in range(environments)]:
            started.result()

    def invoke(self, event: dict[str, Any]) -> Invocation:
        """Invoke synchronously, as Lambda's Invoke does: a handler's exception and an environment
        that dies (or fails its init) both come back as a function error, never as an exception."""
        try:
            out = self._pool.submit(_invoke, event, self.timeout).result()
        except EnvironmentFailed as exc:
            sys.stderr.write(f"[{self.name}] {exc.error_type}: {exc.message}\n")
            return Invocation(error_type=exc.error_type, error_message=exc.message)
        if "errorType" in out:
            sys.stderr.write(f"[{self.name}] {out['errorType']}: {out['errorMessage']}\n")
            return Invocation(error_type=out["errorType"], error_message=out["errorMessage"])
        return Invocation(payload=out["payload"])

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
