"""Lambda, locally: each function runs in a pool of worker processes.

A worker is one "execution environment": it gets exactly the environment the
template gives the function (plus overrides), imports the handler once (cold start)
and then serves one invocation at a time, as in Lambda. Pool size = concurrency.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tools.local.context import LambdaContext

_handler: Any = None
_name = "function"


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
        self._pool = ProcessPoolExecutor(
            max_workers=concurrency,
            mp_context=get_context("spawn"),
            initializer=_init,
            initargs=(name, str(code_dir), handler, env, [str(p) for p in paths]),
        )

    def warm(self) -> Future[None]:
        """Start a worker now (its imports are the cold start) rather than on the first request."""
        return self._pool.submit(_noop)

    def invoke(self, event: dict[str, Any]) -> Invocation:
        out = self._pool.submit(_invoke, event, self.timeout).result()
        if "errorType" in out:
            sys.stderr.write(f"[{self.name}] {out['errorType']}: {out['errorMessage']}\n")
            return Invocation(error_type=out["errorType"], error_message=out["errorMessage"])
        return Invocation(payload=out["payload"])

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _noop() -> None:
    return None
