"""What a cold start of the API function does, and what it leaves for later (docs/deploy.md, "Cold start").

Each check imports the function in a fresh interpreter with the Lambda-like import path
(layer, function folder, repository root), as Lambda and `make bench` do: whatever the
import does, every cold start pays for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
IMPORT_PATH = os.pathsep.join(str(ROOT / p) for p in ("layers/stockhold", "functions/api", "."))


def fresh(code: str, **env: str | None) -> Any:
    """Run ``code`` after ``import app`` in a new interpreter; it prints one JSON value, returned here."""
    child_env = {**os.environ, "PYTHONPATH": IMPORT_PATH}
    for name, value in env.items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    script = "import json, sys\nimport app\n" + code
    done = subprocess.run(
        [sys.executable, "-c", script], env=child_env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_where_tracing_is_off_the_x_ray_sdk_is_not_imported() -> None:
    got = fresh(
        "from stockhold.observability import tracer\n"
        "print(json.dumps([tracer.disabled, 'aws_xray_sdk.core' in sys.modules]))",
        POWERTOOLS_TRACE_DISABLED="true",
    )
    assert got == [True, False]


def test_where_tracing_is_on_the_tracer_records_to_x_ray() -> None:
    got = fresh(
        "from stockhold.observability import tracer\n"
        "print(json.dumps([bool(tracer.disabled), type(tracer.provider).__module__.split('.')[0]]))",
        POWERTOOLS_TRACE_DISABLED=None,
        LAMBDA_TASK_ROOT=str(ROOT / "functions" / "api"),
        AWS_LAMBDA_FUNCTION_NAME="stockhold-api",
        AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR",
    )
    assert got == [False, "aws_xray_sdk"]


def test_a_disabled_tracer_passes_answers_and_errors_through() -> None:
    from stockhold.observability import tracer

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        if event.get("fail"):
            raise ValueError("boom")
        return {"statusCode": 200}

    @tracer.capture_method
    def step(n: int) -> int:
        return n + 1

    assert handler({}, None) == {"statusCode": 200}
    assert step(1) == 2
    try:
        handler({"fail": True}, None)
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the error was swallowed")


def test_importing_the_api_function_generates_no_openapi_document_and_loads_no_idempotency() -> None:
    got = fresh(
        "print(json.dumps(sorted(m for m in ('aws_lambda_powertools.event_handler.openapi.models',"
        " 'aws_lambda_powertools.utilities.idempotency', 'openapi_doc') if m in sys.modules)))"
    )
    assert got == []


def test_admin_routes_are_read_from_the_handlers_only_when_asked() -> None:
    got = fresh(
        "from http_common import RouteAccess\n"
        "before = RouteAccess.is_admin.cache_info().currsize\n"
        "admin = sorted(r.operation_id for r in app.ACCESS.admin_routes)\n"
        "print(json.dumps([before, 'putStock' in admin, 'getStock' in admin]))"
    )
    assert got == [0, True, False]


LATER = (
    "stockhold.usecases.checkout",
    "stockhold.usecases.checkout_view",
    "stockhold.usecases.reserve",
    "stockhold.usecases.holds",
    "stockhold.usecases.reconcile",
    "stockhold.data.audit",
    "stockhold.data.audit_store",
)


def test_the_import_makes_no_client_and_a_stock_read_builds_only_the_stock_code() -> None:
    got = fresh(
        "from stockhold import wiring\n"
        f"later = {LATER!r}\n"
        "at_import = [wiring.dynamodb_client.cache_info().currsize, wiring.services.cache_info().currsize,"
        " [m for m in later if m in sys.modules]]\n"
        "wiring.services().stock\n"
        "print(json.dumps([at_import, [m for m in later if m in sys.modules]]))"
    )
    assert got == [[0, 0, []], []]


def test_each_use_case_is_built_once_and_shared_even_when_threads_ask_at_once() -> None:
    import boto3

    from stockhold.settings import Settings
    from stockhold.wiring import build

    svc = build(boto3.client("dynamodb", region_name="us-east-1"), Settings())
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(lambda _: (svc.checkouts, svc.reserving, svc.expiry, svc.runner), range(32)))
    assert len({tuple(map(id, objs)) for objs in seen}) == 1
    assert (svc.checkouts, svc.reserving, svc.expiry, svc.runner) == seen[0]


def test_no_api_model_is_built_at_import() -> None:
    got = fresh(
        "from stockhold import api_models, api_outputs\n"
        "def family(cls):\n"
        "    return [cls, *(m for sub in cls.__subclasses__() for m in family(sub))]\n"
        "models = [*family(api_models.ApiInput), *family(api_outputs.ApiOutput), api_outputs.ErrorOut]\n"
        "print(json.dumps([len(models), sorted(m.__name__ for m in models if m.__pydantic_complete__)]))"
    )
    assert got[0] > 20
    assert got[1] == []


def test_after_a_snapstart_restore_each_environment_draws_its_own_random_state(tmp_path: Path) -> None:
    """The Lambda runtime's snapshot_restore_py, faked: the hook is registered at import, and it reseeds."""
    (tmp_path / "snapshot_restore_py.py").write_text(
        "HOOKS = []\ndef register_after_restore(func, *args, **kwargs):\n    HOOKS.append(func)\n"
    )
    got = fresh(
        "import random, snapshot_restore_py\n"
        "from stockhold import wiring\n"
        "snapshot = random.getstate()\n"
        "for hook in snapshot_restore_py.HOOKS:\n"
        "    hook()\n"
        "print(json.dumps([[h.__name__ for h in snapshot_restore_py.HOOKS], random.getstate() != snapshot]))",
        PYTHONPATH=os.pathsep.join([str(tmp_path), IMPORT_PATH]),
    )
    assert got == [["after_restore"], True]
