"""Answer boto3 ``lambda.Invoke`` calls from in-process handlers.

moto's Step Functions interpreter invokes Lambda through a boto3 client made from
boto3's default session; a ``before-call.lambda.Invoke`` handler registered there can
answer the call itself. Used by the hold-timer tests and by the local stack.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

# (function name or ARN's last part, payload) -> (payload, error type or None), or None when
# the function is not this dispatcher's (the next registered hook, or the real call, answers).
Dispatcher = Callable[[str, Any], tuple[Any, str | None] | None]


def _function_name(params: dict[str, Any]) -> str:
    path = params.get("url_path", "")
    name = path.split("/functions/")[1].split("/")[0] if "/functions/" in path else path
    from urllib.parse import unquote

    name = unquote(name)
    return name.split(":function:")[-1].split(":")[0]


def install(dispatch: Dispatcher) -> Callable[..., Any]:
    """Register the hook on boto3's default session; returns it (for ``uninstall``)."""

    def answer(model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        body = params.get("body") or b"{}"
        event = json.loads(body.decode() if isinstance(body, bytes) else body or "{}")
        answered = dispatch(_function_name(params), event)
        if answered is None:
            return None
        payload, error = answered
        data = json.dumps(payload).encode()
        parsed: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": StreamingBody(io.BytesIO(data), len(data)),
            "ExecutedVersion": "$LATEST",
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}},
        }
        if error:
            parsed["FunctionError"] = "Unhandled"
        return AWSResponse("https://lambda.local/", 200, {}, None), parsed

    boto3._get_default_session().events.register("before-call.lambda.Invoke", answer)
    return answer


def uninstall(handler: Callable[..., Any]) -> None:
    boto3._get_default_session().events.unregister("before-call.lambda.Invoke", handler)
