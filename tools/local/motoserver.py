"""One moto server inside the local stack's process, started on first use.

It serves what DynamoDB Local does not: Step Functions (the hold timer, run by moto's
interpreter) and EventBridge (the stock events bus, tapped by an SQS queue of the same
server). Functions reach it through ``AWS_ENDPOINT_URL_SFN`` / ``AWS_ENDPOINT_URL_EVENTBRIDGE``.
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT = "000000000000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    def __init__(self) -> None:
        self._server: ThreadedMotoServer | None = None
        self.endpoint = ""

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Start the server (once); returns its endpoint URL."""
        if self._server is None:
            # werkzeug would log every request (the event-bus tap polls once a second) at INFO.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            port = _free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            self._server = server
            self.endpoint = f"http://127.0.0.1:{port}"
        return self.endpoint

    def configure(self, config: dict[str, Any]) -> None:
        """moto's runtime configuration, e.g. ``{"stepfunctions": {"execute_state_machine": True}}``."""
        request = urllib.request.Request(
            f"{self.start()}/moto-api/config",
            data=json.dumps(config).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).read()

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.start(),
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self.endpoint = ""
