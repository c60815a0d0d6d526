"""How the local stack starts: a warm-up no call doubles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.local.functions import EnvironmentFailed, FunctionPool

pytestmark = pytest.mark.integration

_SLOW_INIT = """
import os, time
time.sleep(float(os.environ.get("INIT_SECONDS", "0.5")))  # the cold start: imports at init

def lambda_handler(event, context):
    return os.getpid()
"""


def _pool(code: Path, handler: str = "app.lambda_handler", concurrency: int = 4) -> FunctionPool:
    return FunctionPool(
        "Slow", code, handler, {"PATH": os.environ.get("PATH", "")}, [], concurrency=concurrency, timeout=10
    )


def test_an_invocation_during_the_warm_up_waits_for_that_environment_not_a_second_cold_start(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(_SLOW_INIT)
    pool = _pool(tmp_path)
    try:
        warming = pool.warm()
        result = pool.invoke({})  # arrives while the warm-up's environment is still importing
        assert warming.result(timeout=30) is True
        assert not result.failed, result
        assert pool.pids == [result.payload]  # one environment: the warmed one ran it
        assert pool.warm().result(timeout=5) is False  # one is warm already: nothing more starts
        assert pool.pids == [result.payload]
    finally:
        pool.shutdown()


def test_calls_beyond_the_warming_environment_start_their_own(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(_SLOW_INIT)
    pool = _pool(tmp_path)
    try:
        pool.warm()
        pool.warm_up(3)  # three overlapping calls: one waits for the warm-up, two start environments
        assert len(pool.pids) == 3
    finally:
        pool.shutdown()


def test_a_warm_up_whose_init_fails_fails_and_the_waiting_call_gets_lambdas_error(tmp_path: Path) -> None:
    pool = _pool(tmp_path, handler="missing.lambda_handler")
    try:
        warming = pool.warm()
        result = pool.invoke({})
        with pytest.raises(EnvironmentFailed) as failed:
            warming.result(timeout=30)
        assert failed.value.error_type == "Runtime.ImportModuleError"
        assert result.error_type == "Runtime.ImportModuleError"  # it started its own, which failed too
        assert pool.pids == []
    finally:
        pool.shutdown()


def test_shutting_down_during_a_warm_up_leaves_no_environment(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(_SLOW_INIT)
    pool = _pool(tmp_path)
    warming = pool.warm()
    pool.shutdown()
    warming.result(timeout=30)
    assert pool.pids == []
