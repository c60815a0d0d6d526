"""Step Functions, locally: each AWS::Serverless::StateMachine of the template, from its
ASL file after DefinitionSubstitutions, run by moto's interpreter (a port of
LocalStack's) in the stack's moto server (tools/local/motoserver.py). Lambda tasks are
answered by the function pools through a ``before-call.lambda.Invoke`` hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools import lambda_hook, template
from tools.local.functions import FunctionPool
from tools.local.motoserver import ACCOUNT, ARN_ACCOUNT, REGION, MotoServer


def scope_stack_per_parse() -> None:
    """Give each parse of a state machine definition a query-language scope stack of its own.

    moto's ASL ``Preprocessor`` keeps that stack in a class attribute, shared by every parse
    in the process, and every execution parses its definition again on a thread of its
    own. Executions started together (a burst of holds: the hold stream starts up to
    ParallelizationFactor timers at once) share it: one that found another parse's scopes
    on the stack and then read its top just after that parse emptied it died with an
    IndexError before its first state, so that hold's timer never ran. An instance
    attribute ends the sharing without serialising the parses. Process-wide and
    idempotent, like moto's own state."""
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    if getattr(Preprocessor.__init__, "scope_stack_per_parse", False):
        return
    original = Preprocessor.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._query_language_per_scope = []

    __init__.scope_stack_per_parse = True  # type: ignore[attr-defined]
    Preprocessor.__init__ = __init__  # type: ignore[method-assign]


def lambda_arn(logical_id: str, suffix: str = "") -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}{suffix}"


def state_machine_arn(name: str) -> str:
    """The ARN moto (like AWS) gives a state machine of this name."""
    return f"arn:aws:states:{REGION}:{ARN_ACCOUNT}:stateMachine:{name}"


class StateMachines:
    def __init__(
        self, pools: Callable[[], dict[str, FunctionPool]], server: MotoServer | None = None, suffix: str = ""
    ) -> None:
        """``suffix`` makes this stack's function and state machine names its own: moto's state
        and the boto3 hook are process-wide, and two stacks (or a stack and a test) may share
        a process; each hook answers only for its own functions."""
        self._pools = pools
        self.suffix = suffix
        self._owns_server = server is None  # a server of its own is stopped with it
        self._server = server if server is not None else MotoServer()
        self._hook: Any = None
        self.endpoint = ""
        self.arns: dict[str, str] = {}
        self._planned: dict[str, str] = {}

    def plan(self) -> dict[str, str]:
        """{logical id: ARN} of every state machine, before any exists (the server is not started
        yet, only its endpoint picked): the functions' environments can be made meanwhile.
        start() then checks it made exactly these."""
        machines = template.resources("AWS::Serverless::StateMachine")
        if not machines:
            return {}
        self.endpoint = self._server.reserve()
        self._planned = {logical: state_machine_arn(logical + self.suffix) for logical in machines}
        return dict(self._planned)

    def start(self, refs: dict[str, str]) -> dict[str, str]:
        """Create every state machine; returns {logical id: ARN} (what ``!Ref`` gives)."""
        machines = template.resources("AWS::Serverless::StateMachine")
        if not machines:
            return {}
        self.endpoint = self._server.start()
        self._server.configure({"stepfunctions": {"execute_state_machine": True}})
        scope_stack_per_parse()
        self._hook = lambda_hook.install(self._dispatch)
        client = self._server.client("stepfunctions")
        for logical, res in machines.items():
            props = res["Properties"]
            definition = (template.ROOT / props["DefinitionUri"]).read_text()
            for name, value in props.get("DefinitionSubstitutions", {}).items():
                definition = definition.replace("${" + name + "}", str(template.resolve(value, refs)))
            self.arns[logical] = client.create_state_machine(
                name=logical + self.suffix,
                definition=definition,
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/{logical}",
                type=props.get("Type", "STANDARD"),
            )["stateMachineArn"]
            if self._planned and self.arns[logical] != self._planned.get(logical):
                raise RuntimeError(f"state machine {logical} is {self.arns[logical]}, not {self._planned.get(logical)}")
        return self.arns

    def _dispatch(self, function: str, event: Any) -> tuple[Any, str | None] | None:
        if not function.endswith(self.suffix):
            return None  # another stack's (or test's) function: not ours to answer
        pool = self._pools().get(function[: len(function) - len(self.suffix)] if self.suffix else function)
        if pool is None:
            return {"errorType": "ResourceNotFoundException", "errorMessage": f"no function {function}"}, "Unhandled"
        result = pool.invoke(event)
        if result.failed:
            return {"errorType": result.error_type, "errorMessage": result.error_message}, result.error_type
        return result.payload, None

    def stop(self) -> None:
        """Stop invoking functions (the Lambda hook goes); the server stops with its owner."""
        if self._hook is not None:
            lambda_hook.uninstall(self._hook)
            self._hook = None
        if self._owns_server:
            self._server.stop()
