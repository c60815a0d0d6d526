"""How the local stack starts: parts at once, a warm-up no call doubles, progress while it waits.

No timing assertions here: how long `make run` takes is the bench's business (a benchmark, not
a test); these check the order and the promises that make the overlap safe."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.ddblocal import QUICK_START_JVM_ARGS, DynamoDBLocal
from tools.local.functions import EnvironmentFailed, FunctionPool
from tools.local.progress import Progress
from tools.template import ROOT

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


def test_shutting_down_stops_an_environment_still_in_a_long_init_rather_than_orphaning_it(tmp_path: Path) -> None:
    """CI caught `make run`'s SIGTERM leaving a worker behind: its init outlasted the pool's wait."""
    (tmp_path / "app.py").write_text(
        "import os, pathlib, time\n"
        f"pathlib.Path({str(tmp_path / 'pid')!r}).write_text(str(os.getpid()))\n"
        "time.sleep(120)\n"
        "def lambda_handler(event, context):\n    return 1\n"
    )
    pool = _pool(tmp_path)
    warming = pool.warm()
    deadline = time.monotonic() + 30
    while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int((tmp_path / "pid").read_text())
    pool.shutdown()  # returns well before the 120 s init would have ended
    with pytest.raises(EnvironmentFailed):
        warming.result(timeout=5)
    assert not Path(f"/proc/{pid}").exists(), "the half-started environment outlived its pool"
    assert pool.pids == []


def test_progress_says_what_it_still_waits_for_when_nothing_else_was_printed() -> None:
    out = io.StringIO()
    progress = Progress(every=0.2, out=out)
    progress.begin("DynamoDB Local (Java)")
    progress.begin("ApiFunction (cold start)")
    time.sleep(0.6)
    progress.end("ApiFunction (cold start)", "ApiFunction ready (cold start {took})")
    progress.close()
    lines = out.getvalue().splitlines()
    assert any(
        re.fullmatch(r"==> +\d+\.\d s  still waiting for DynamoDB Local \(Java\), ApiFunction.*", x) for x in lines
    )
    assert re.fullmatch(r"==> +\d+\.\d s  ApiFunction ready \(cold start \d+\.\d s\)", lines[-1]), lines


def test_dynamodb_local_launches_without_waiting_and_answers_on_the_endpoint_it_said() -> None:
    server = DynamoDBLocal().launch(shared_db=True, jvm_args=QUICK_START_JVM_ARGS)
    try:
        endpoint = server.endpoint_url  # known before it answers: environments can be made with it
        assert server.running
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        assert b"-XX:TieredStopAtLevel=1" in cmdline and cmdline.index(b"-XX:TieredStopAtLevel=1") < cmdline.index(
            b"-jar"
        )
        server.wait_ready()
        assert server.endpoint_url == endpoint
    finally:
        server.stop()
    assert not server.running


def test_make_run_prints_progress_then_the_banner() -> None:
    env = {**os.environ, "STOCKHOLD_PORT": "0", "PYTHONPATH": f"{ROOT}/layers/stockhold:{ROOT}/functions/api:{ROOT}"}
    env.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    env["STOCKHOLD_EVENTS_LOG"] = ""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if "Ctrl-C stops everything" in line:
                break
        text = "\n".join(lines)
        assert "stockhold is running at http://127.0.0.1:" in text, text
        progress = [x for x in lines if x.startswith("==> ")]
        assert all(re.match(r"==> +\d+\.\d s  \S", x) for x in progress), progress
        # Each part says when it is ready, in an order that lets the independent ones overlap.
        order = [
            "starting DynamoDB Local (in memory)",
            "starting the first environment of ApiFunction, AuthorizerFunction",
            "DynamoDB Local ready on http://127.0.0.1:",
            "tables ready: StockholdTable, IdempotencyTable",
            "store demo with keys",
            "HTTP API answering on http://127.0.0.1:",
            "state machines: HoldTimer",
            "event buses:",
            "stream StockholdTable -> HoldStreamFunction",
        ]
        at = [next((i for i, x in enumerate(progress) if want in x), -1) for want in order]
        assert -1 not in at and at == sorted(at), list(zip(order, at, strict=True))
        http_at = at[order.index("HTTP API answering on http://127.0.0.1:")]
        for fn in ("ApiFunction", "AuthorizerFunction"):  # warm before the API answers
            ready = [i for i, x in enumerate(progress) if f"{fn} ready (cold start" in x]
            assert ready and ready[0] < http_at, progress
        banner_at = lines.index(next(x for x in lines if "stockhold is running at" in x))
        assert re.search(r"\(ready in \d+\.\d s\)", lines[banner_at])
        assert re.search(r"DynamoDB Local: http://127\.0\.0\.1:\d+", text)
    finally:
        proc.send_signal(signal.SIGTERM)
        # A clean exit, however long the in-flight calls (a reconcile run) take on a loaded machine.
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave a stack behind holding its ports: later tests would fail on them
            proc.wait()
            raise
        assert code == 0
