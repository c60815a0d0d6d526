"""``make invoke FN=<Function> EVENT=events/<file>.json``: one invocation, as ``sam local invoke``
runs it, against the local stack that ``make run`` is running. No Docker.

What it does, and why it is the same as ``sam local invoke FN -e EVENT``:

* the function's environment is the template's, resolved the way the running stack resolved
  it for its own copy of the function (table names, the hold timer's ARN, the event bus, the
  endpoints of DynamoDB Local and of the stack's Step Functions and EventBridge), plus the
  variables the SAM CLI adds (``AWS_SAM_LOCAL``, ``AWS_LAMBDA_FUNCTION_*``, ...);
* as with the SAM CLI, a variable the template declares can be overridden from the shell
  (``MIN_HOLD_SECONDS=1 make invoke ...``) or from an env-vars file (``--env-vars FILE``, the
  SAM CLI's format: ``{"Parameters": {...}, "<Function>": {...}}``), and nothing else can;
* the handler runs in a fresh process of its own (a cold start) with its code folder and the
  layer on ``sys.path``, exactly as the local stack runs every function (tools/local/functions.py);
* the response is printed as JSON on stdout, the function's logs go to stderr; a function
  error is printed as ``{"errorType": ..., "errorMessage": ...}`` and exits 1.

``make run`` publishes what this needs in ``.local/stack.json`` while it runs (``publish``),
and the same as an env-vars file for a real ``sam local invoke`` in Docker, ``.local/sam-env.json``
(samconfig.toml names it; ``make sam-env`` rewrites it, e.g. for Docker Desktop: docs/deploy.md).
Both go when the stack stops, so a ``sam local invoke`` without a running stack stops at the
missing file instead of calling the real AWS account."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from tools import template
from tools.ddblocal import LOCAL_DIR

STATE_FILE = LOCAL_DIR / "stack.json"
SAM_ENV_FILE = LOCAL_DIR / "sam-env.json"  # samconfig.toml: sam local invoke's env_vars
# Of the invoking shell, never of the stack: where programs and home are.
_OWN = ("PATH", "HOME")


class InvokeError(RuntimeError):
    """No stack to invoke against, an unknown function, a bad event or env-vars file."""


# ------------------------------------------------------------------ the running stack's state


def stack_state(stack: Any) -> dict[str, Any]:
    """What ``make invoke`` needs of a started ``tools.local.stack.LocalStack``."""
    functions = {}
    for name, spec in template.functions().items():
        env = {k: v for k, v in stack.function_env(spec).items() if k not in _OWN}
        functions[name] = {"environment": env}
    return {
        "pid": os.getpid(),
        "url": stack.url,
        "dynamodb": stack.endpoint,
        "tables": dict(stack.tables),
        "functions": functions,
    }


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a file


def publish(stack: Any, path: Path = STATE_FILE, sam_env: Path | None = SAM_ENV_FILE) -> Path:
    """Write the stack's state for ``make invoke`` and its env-vars file for ``sam local invoke``.

    They hold the stack's dummy local credentials only."""
    state = stack_state(stack)
    _write(path, state)
    if sam_env is not None:
        _write(sam_env, sam_env_vars(state))
    return path


def unpublish(path: Path = STATE_FILE, sam_env: Path | None = SAM_ENV_FILE) -> None:
    """Remove both files if this process wrote them (another ``make run`` may have replaced them)."""
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        if json.loads(path.read_text())["pid"] == os.getpid():
            path.unlink()
            if sam_env is not None:
                sam_env.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_state(path: Path = STATE_FILE) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvokeError(
            f"no local stack is running ({_display(path)} not found): start one with `make run` in another terminal"
        ) from None
    if not _alive(int(state.get("pid", 0))):
        raise InvokeError(
            f"the local stack that wrote {_display(path)} (pid {state.get('pid')}) is not running: start `make run` again"
        )
    return state


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(template.ROOT))
    return str(path)


# ------------------------------------------------------------------ one invocation


def _setting(name: str, key: str, default: Any) -> Any:
    props = template.load()["Resources"][name]["Properties"]
    return props.get(key, template.load().get("Globals", {}).get("Function", {}).get(key, default))


def read_env_vars_file(path: Path) -> dict[str, dict[str, str]]:
    """A SAM CLI ``--env-vars`` file: ``{"Parameters": {...}, "<Function>": {...}}``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvokeError(f"cannot read env-vars file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InvokeError(f'{path}: expected {{"Parameters": {{...}}, "<Function>": {{...}}}} of strings')
    return {str(k): {str(n): str(v) for n, v in vars_.items()} for k, vars_ in data.items()}


def function_env(
    state: dict[str, Any],
    name: str,
    *,
    shell: dict[str, str] | None = None,
    env_vars: dict[str, dict[str, str]] | None = None,
) -> dict[str, str]:
    """The environment ``sam local invoke`` would give ``name``, with the running stack's values.

    Precedence, as in the SAM CLI (samcli/local/lambdafn/env_vars.py): the env-vars file's
    function entry, then its ``Parameters``, then the shell, then the template (as the stack
    resolved it). Only variables the template declares for the function are overridden.
    """
    functions = state["functions"]
    if name not in functions:
        raise InvokeError(f"no function {name!r} in template.yaml; one of: {', '.join(sorted(functions))}")
    env: dict[str, str] = dict(functions[name]["environment"])
    declared = set(template.functions()[name].environment)
    shell = dict(os.environ if shell is None else shell)
    files = env_vars or {}
    for var in declared:
        for source in (shell, files.get("Parameters", {}), files.get(name, {})):
            if var in source:
                env[var] = source[var]
    memory, timeout = _setting(name, "MemorySize", 128), _setting(name, "Timeout", 3)
    log_group = template.resolve(
        template.load()["Resources"][name]["Properties"].get("LoggingConfig", {}).get("LogGroup", ""),
        {**template.parameter_defaults(), "AWS::StackName": "stockhold-local"},
    )
    env.update(
        {
            "AWS_SAM_LOCAL": "true",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout),
            "AWS_LAMBDA_FUNCTION_HANDLER": str(template.functions()[name].handler),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": str(log_group or f"aws/lambda/{name}"),
            "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        }
    )
    for var in _OWN:
        if var in os.environ:
            env[var] = os.environ[var]
    return env


def invoke(name: str, event: Any, env: dict[str, str]) -> tuple[Any, str | None]:
    """Run ``name``'s handler once on ``event`` in a fresh process: (response or error, error type)."""
    return invoke_many(name, [event], env)[0]


def invoke_many(name: str, events: list[Any], env: dict[str, str]) -> list[tuple[Any, str | None]]:
    """Run ``name``'s handler on each event in turn, in one fresh process (one cold start, then warm)."""
    from tools.local.functions import FunctionPool

    spec = template.functions()[name]
    pool = FunctionPool(
        name,
        spec.code_uri,
        str(spec.handler),
        env,
        template.layer_dirs(name),
        concurrency=1,
        timeout=float(_setting(name, "Timeout", 3)),
    )
    out: list[tuple[Any, str | None]] = []
    try:
        for event in events:
            result = pool.invoke(event)
            if result.failed:
                out.append(({"errorType": result.error_type, "errorMessage": result.error_message}, result.error_type))
            else:
                out.append((result.payload, None))
    finally:
        pool.shutdown()
    return out


def read_event(path: str | None) -> Any:
    if path is None:
        return {}
    try:
        return json.loads(sys.stdin.read() if path == "-" else Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvokeError(f"cannot read event {path}: {exc}") from None


# ------------------------------------------------------------------ sam local invoke (Docker)


def sam_env_vars(state: dict[str, Any], docker_host: str | None = None) -> dict[str, dict[str, str]]:
    """An env-vars file for ``sam local invoke --env-vars``: every variable the template declares
    for each function, with the running stack's value (the SAM CLI takes no others).

    ``docker_host`` (e.g. ``host.docker.internal``) replaces 127.0.0.1 in the endpoints, for a
    container that does not share the host's network."""
    out: dict[str, dict[str, str]] = {}
    for name, spec in template.functions().items():
        env = state["functions"][name]["environment"]
        values = {var: env[var] for var in spec.environment if var in env}
        if docker_host:
            values = {
                k: v.replace("127.0.0.1", docker_host) if k.startswith("AWS_ENDPOINT_URL") else v
                for k, v in values.items()
            }
        out[name] = values
    return out


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make invoke FN=<Function> EVENT=<file>",
        description="Invoke one function of template.yaml, as `sam local invoke FN -e EVENT` would, "
        "against the local stack `make run` is running.",
    )
    parser.add_argument("function", nargs="?", help="the function's logical id, e.g. ApiFunction")
    parser.add_argument("event", nargs="?", help="event JSON file (events/*.json), '-' for stdin; default {}")
    parser.add_argument("--env-vars", type=Path, help="a SAM CLI env-vars JSON file of overrides")
    parser.add_argument(
        "--state", type=Path, default=STATE_FILE, help=f"the stack's state file ({_display(STATE_FILE)})"
    )
    parser.add_argument(
        "--write-sam-env", type=Path, metavar="FILE", help="write an env-vars file for sam local invoke"
    )
    parser.add_argument("--docker-host", help="with --write-sam-env: endpoints' host as seen from a container")
    args = parser.parse_args(argv)
    try:
        state = load_state(args.state)
        if args.write_sam_env:
            args.write_sam_env.parent.mkdir(parents=True, exist_ok=True)
            args.write_sam_env.write_text(json.dumps(sam_env_vars(state, args.docker_host), indent=2) + "\n")
            print(f"wrote {args.write_sam_env} (the stack at {state['url']}, DynamoDB Local {state['dynamodb']})")
            return 0
        if not args.function:
            parser.error(f"which function? one of: {', '.join(sorted(state['functions']))}")
        env_vars = read_env_vars_file(args.env_vars) if args.env_vars else None
        env = function_env(state, args.function, env_vars=env_vars)
        event = read_event(args.event)
    except InvokeError as exc:
        print(f"stockhold: {exc}", file=sys.stderr)
        return 2
    # The function's own output (its logs) goes to stderr, as the SAM CLI shows it; stdout is the response.
    sys.stdout.flush()
    response_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    response, error = invoke(args.function, event, env)
    print(json.dumps(response), file=response_out, flush=True)
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
