"""Cold start: the API handler's import + first request, against a bare boto3 import + first get_item.

Each sample is a fresh ``python -c`` with the bench's environment and the Lambda-like
import path (layer, function folder, repository root). Times are taken inside the
child with perf_counter, so interpreter start-up is excluded; the whole process's
wall time is kept as well.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.env import ROOT, pythonpath

_MARK = "BENCH_COLD "  # the children print their result after it

HANDLER = """
import json, os, time, types
event = json.loads(os.environ["BENCH_COLD_EVENT"])
context = types.SimpleNamespace(
    function_name="stockhold-bench", memory_limit_in_mb=1024, log_group_name="/aws/lambda/stockhold-bench",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:stockhold-bench",
    aws_request_id="00000000-0000-0000-0000-00000000c01d", log_stream_name="bench",
    get_remaining_time_in_millis=lambda: 10_000,
)
t0 = time.perf_counter()
import app
t1 = time.perf_counter()
out = app.lambda_handler(event, context)
t2 = time.perf_counter()
if out["statusCode"] != 200:
    raise SystemExit("cold request failed: " + json.dumps(out))
print("BENCH_COLD " + json.dumps({"import": t1 - t0, "first": t2 - t1}))
"""

BASELINE = """
import json, os, time
key = json.loads(os.environ["BENCH_COLD_KEY"])
t0 = time.perf_counter()
import boto3
client = boto3.client("dynamodb")
t1 = time.perf_counter()
out = client.get_item(TableName=os.environ["TABLE_NAME"], Key=key, ConsistentRead=True)
t2 = time.perf_counter()
if "Item" not in out:
    raise SystemExit("cold get_item found nothing")
print("BENCH_COLD " + json.dumps({"import": t1 - t0, "first": t2 - t1}))
"""


@dataclass
class ColdSamples:
    import_s: list[float] = field(default_factory=list)
    first_s: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)

    def medians_ms(self) -> tuple[float, float, float, float]:
        """(import, first request, import + first, process wall), medians in ms."""
        totals = [a + b for a, b in zip(self.import_s, self.first_s, strict=True)]
        return (
            statistics.median(self.import_s) * 1e3,
            statistics.median(self.first_s) * 1e3,
            statistics.median(totals) * 1e3,
            statistics.median(self.wall_s) * 1e3,
        )


def _run(code: str, env: dict[str, str], into: ColdSamples) -> None:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    wall = time.perf_counter() - start
    lines = [x for x in done.stdout.splitlines() if x.startswith(_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cold-start child failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    got = json.loads(lines[-1][len(_MARK) :])
    into.import_s.append(got["import"])
    into.first_s.append(got["first"])
    into.wall_s.append(wall)


def measure(event: dict[str, Any], key: dict[str, Any], runs: int) -> tuple[ColdSamples, ColdSamples]:
    """(handler, baseline) samples, alternating the two so drift hits both alike."""
    env = {**os.environ, "PYTHONPATH": pythonpath(), "BENCH_COLD_EVENT": json.dumps(event)}
    env["BENCH_COLD_KEY"] = json.dumps(key)
    handler, baseline = ColdSamples(), ColdSamples()
    for _ in range(runs):
        _run(HANDLER, env, handler)
        _run(BASELINE, env, baseline)
    return handler, baseline
