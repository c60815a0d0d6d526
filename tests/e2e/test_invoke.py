"""`make invoke`: every sample event in events/ runs cleanly against a running local stack.

A stack of this module's own (as `make run` starts it, with its state published to a file of
the test's), so the sample events' writes to the demo store meet no other test's data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Http
from tools import invoke, template
from tools.local.stack import LocalStack, StackConfig
from tools.template import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("invoke")]
# The samples tell one story about store "demo": A-1 is stocked (put-stock) before a hold takes 2 of it
# (create-reservation), whose end the stream samples then report (the TTL backstop returns those 2).
FIRST = ("api-put-stock.json", "api-create-reservation.json")
EVENTS = sorted(
    (ROOT / "events").glob("*.json"), key=lambda p: (FIRST.index(p.name) if p.name in FIRST else len(FIRST), p.name)
)


@dataclass
class Running:
    stack: LocalStack
    state_file: Path
    sam_env_file: Path

    @property
    def state(self) -> dict[str, Any]:
        return invoke.load_state(self.state_file)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    where = tmp_path_factory.mktemp("invoke")
    config = StackConfig(port=0, concurrency=1, events_log=None, overrides={"POWERTOOLS_LOG_LEVEL": "WARNING"})
    stack = LocalStack(config).start()
    try:
        state_file = invoke.publish(stack, where / "stack.json", sam_env=where / "sam-env.json")
        yield Running(stack, state_file, where / "sam-env.json")
    finally:
        invoke.unpublish(where / "stack.json", sam_env=where / "sam-env.json")
        stack.stop()


def _function_of(event_file: Path) -> str:
    """events/<code folder>-<what>.json -> the function whose CodeUri is functions/<code folder>/."""
    for name, spec in template.functions().items():
        if event_file.name.startswith(spec.code_uri.name + "-"):
            return name
    raise AssertionError(f"{event_file.name} names no function's folder")


def _assert_clean(event_file: Path, response: Any, error: str | None) -> None:
    assert error is None, (event_file.name, response)
    event = json.loads(event_file.read_text())
    if "httpMethod" in event:  # API Gateway: routed, parsed, answered by the domain
        body = json.loads(response["body"])
        assert response["statusCode"] < 500, (event_file.name, body)
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        assert code != "VALIDATION_ERROR", (event_file.name, body)
    elif event.get("type") == "TOKEN":  # the authorizer: the sample key is the stack's storefront key
        assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow", response
    elif "Records" in event:  # a stream batch: no record failed
        assert response == {"batchItemFailures": []}, (event_file.name, response)


def test_every_sample_event_invokes_cleanly_against_the_running_stack(running: Running) -> None:
    by_function: dict[str, list[Path]] = {}
    for path in EVENTS:
        by_function.setdefault(_function_of(path), []).append(path)
    assert set(by_function) == set(template.functions()), "every function has a sample event"
    for name, files in by_function.items():
        env = invoke.function_env(running.state, name, shell={})
        results = invoke.invoke_many(name, [json.loads(p.read_text()) for p in files], env)
        for path, (response, error) in zip(files, results, strict=True):
            _assert_clean(path, response, error)


def test_an_invocation_reads_and_writes_the_running_stacks_tables_with_the_templates_environment(
    running: Running,
) -> None:
    env = invoke.function_env(running.state, "ApiFunction", shell={})
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == running.stack.endpoint  # DynamoDB Local, never AWS
    assert env["TABLE_NAME"] == running.stack.tables["StockholdTable"]
    assert env["AWS_SAM_LOCAL"] == "true" and env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "10"
    assert env["MIN_HOLD_SECONDS"] == template.parameter_defaults()["MinHoldSeconds"]
    event = json.loads((ROOT / "events/api-put-stock.json").read_text())
    event["body"] = json.dumps({"onHand": 7})
    event["pathParameters"] = {"sku": "INVOKED"}
    event["path"] = "/stock/INVOKED"
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Idempotency-Key")
    response, error = invoke.invoke("ApiFunction", event, env)
    assert error is None and response["statusCode"] == 200, response
    seen = Http(running.stack.url, running.stack.config.storefront_key).get("/stock/INVOKED")
    assert seen.status == 200 and seen.body["onHand"] == 7  # the stack's own API sees the write


def test_overrides_follow_the_sam_cli_env_vars_file_then_shell_and_only_for_declared_variables(
    running: Running,
) -> None:
    files = {"Parameters": {"MIN_HOLD_SECONDS": "2", "NOT_DECLARED": "x"}, "ApiFunction": {"MAX_EXTENSIONS": "9"}}
    env = invoke.function_env(
        running.state, "ApiFunction", shell={"MIN_HOLD_SECONDS": "1", "LOW_STOCK_THRESHOLD": "3"}, env_vars=files
    )
    assert (env["MIN_HOLD_SECONDS"], env["MAX_EXTENSIONS"], env["LOW_STOCK_THRESHOLD"]) == ("2", "9", "3")
    assert "NOT_DECLARED" not in env


def test_the_command_prints_only_the_response_on_stdout(running: Running) -> None:
    env = {k: v for k, v in os.environ.items() if k not in template.functions()["ApiFunction"].environment}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.invoke",
            "ApiFunction",
            "events/api-get-stock.json",
            "--state",
            str(running.state_file),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["statusCode"] in (200, 404), out.stdout


def test_the_command_says_how_to_start_a_stack_when_none_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.invoke",
            "ApiFunction",
            "events/api-get-stock.json",
            "--state",
            str(tmp_path / "none.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 2 and "make run" in out.stderr and out.stdout == ""


def test_the_sam_env_vars_file_sets_the_declared_variables_to_the_stacks_values(running: Running) -> None:
    sam_env = json.loads(running.sam_env_file.read_text())
    assert set(sam_env) == set(template.functions())
    for name, spec in template.functions().items():
        assert set(sam_env[name]) <= set(spec.environment), f"{name}: the SAM CLI ignores undeclared variables"
        assert sam_env[name]["AWS_ENDPOINT_URL_DYNAMODB"] == running.stack.endpoint
        assert sam_env[name]["TABLE_NAME"] == running.stack.tables["StockholdTable"]
    assert sam_env["HoldStreamFunction"]["HOLD_TIMER_ARN"].startswith("arn:aws:states:")
    assert sam_env["HoldStreamFunction"]["AWS_ENDPOINT_URL_SFN"].startswith("http://127.0.0.1:")
    assert sam_env["ChangeFeedFunction"]["AWS_ENDPOINT_URL_EVENTBRIDGE"].startswith("http://127.0.0.1:")
    desktop = invoke.sam_env_vars(running.state, docker_host="host.docker.internal")
    assert desktop["ApiFunction"]["AWS_ENDPOINT_URL_DYNAMODB"].startswith("http://host.docker.internal:")
