"""A bounded Schemathesis run against the local stack, with the checks `make fuzz` runs
(tests/e2e/schemathesis.toml): no 5xx, only documented statuses, content types and bodies,
and every schema-violating request refused. It reads the document the stack serves, so the
bounds it tests are the stack's own settings.

The run is bounded twice: at most 8 examples per operation and phase, and a time budget of
30 s that Schemathesis shares out between its phases (on a busy machine it runs fewer cases,
never longer). A fixed seed, no shrinking, in a store of its own (so its writes touch no other
test's data). `make fuzz` runs the same checks without the budget, against `make run`'s stack.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack
from tools.template import ROOT

pytestmark = pytest.mark.e2e
CONFIG = ROOT / "tests" / "e2e" / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
FUZZ_SECONDS = 30  # Schemathesis' own budget (--max-time)
BUDGET_SECONDS = 60  # the whole test, start-up included


def test_schemathesis_finds_nothing_wrong(stack: Stack, tmp_path: Path) -> None:
    admin, _ = stack.new_store()
    # The SKU of the document's examples, so the example requests get past "no such stock".
    assert admin.put("/stock/A-1", {"onHand": 1_000_000}).status == 200
    cmd = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{stack.url}/openapi.json",
        "--url",
        stack.url,  # the document's first server is relative ("."): where it was fetched from
        "--header",
        f"Authorization: Bearer {admin.key}",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "8",
        "--max-time",
        str(FUZZ_SECONDS),
        "--seed",
        "20261201",
        "--no-shrink",
        "--workers",
        "2",
        "--request-timeout",
        "20",
    ]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=3 * BUDGET_SECONDS, check=False)
    took = time.monotonic() - started
    report = done.stdout[-12000:] + done.stderr[-4000:]
    assert done.returncode == 0, report
    assert "24 selected / 24 total" in done.stdout, report
    assert took < BUDGET_SECONDS, f"the bounded fuzz run took {took:.0f} s\n{report}"
