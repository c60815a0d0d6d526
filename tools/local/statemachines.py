"""Step Functions, locally: each AWS::Serverless::StateMachine of the template, from its
ASL file after DefinitionSubstitutions, run by moto's interpreter (a port of
LocalStack's) in a moto server inside the stack's process. Lambda tasks are answered
by the function pools through a ``before-call.lambda.Invoke`` hook."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from tools import lambda_hook, template
from tools.local.functions import FunctionPool

REGION = "us-east-1"
ACCOUNT = "000000000000"


def lambda_arn(logical_id: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StateMachines:
    def __init__(self, pools: Callable[[], dict[str, FunctionPool]]) -> None:
        self._pools = pools
        self._server: ThreadedMotoServer | None = None
        self._hook: Any = None
        self.endpoint = ""
        self.arns: dict[str, str] = {}

    def start(self, refs: dict[str, str]) -> dict[str, str]:
        """Create every state machine; returns {logical id: ARN} (what ``!Ref`` gives)."""
        machines = template.resources("AWS::Serverless::StateMachine")
        if not machines:
            return {}
        port = _free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/config",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).read()
        self._hook = lambda_hook.install(self._dispatch)
        client = boto3.client(
            "stepfunctions",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        for logical, res in machines.items():
            props = res["Properties"]
            definition = (template.ROOT / props["DefinitionUri"]).read_text()
            for name, value in props.get("DefinitionSubstitutions", {}).items():
                definition = definition.replace("${" + name + "}", str(template.resolve(value, refs)))
            self.arns[logical] = client.create_state_machine(
                name=logical,
                definition=definition,
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/{logical}",
                type=props.get("Type", "STANDARD"),
            )["stateMachineArn"]
        return self.arns

    def _dispatch(self, function: str, event: Any) -> tuple[Any, str | None]:
        pool = self._pools().get(function)
        if pool is None:
            return {"errorType": "ResourceNotFoundException", "errorMessage": f"no function {function}"}, "Unhandled"
        result = pool.invoke(event)
        if result.failed:
            return {"errorType": result.error_type, "errorMessage": result.error_message}, result.error_type
        return result.payload, None

    def stop(self) -> None:
        if self._hook is not None:
            lambda_hook.uninstall(self._hook)
            self._hook = None
        if self._server is not None:
            self._server.stop()
            self._server = None
