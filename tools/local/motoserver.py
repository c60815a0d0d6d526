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
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT = "000000000000"
# The account moto puts in the ARNs it makes for the dummy credentials of client(): its default
# (moto.core.DEFAULT_ACCOUNT_ID; not imported for it, moto is imported only when a server starts).
ARN_ACCOUNT = "123456789012"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    def __init__(self) -> None:
        self._server: ThreadedMotoServer | None = None
        self._port: int | None = None
        self.endpoint = ""

    @property
    def running(self) -> bool:
        return self._server is not None

    def reserve(self) -> str:
        """Its endpoint URL, before it starts (a free port is picked now, bound by start()): the
        functions' environments can then be made, and their workers started, meanwhile."""
        if self._port is None:
            self._port = _free_port()
            self.endpoint = f"http://127.0.0.1:{self._port}"
        return self.endpoint

    def start(self) -> str:
        """Start the server (once); returns its endpoint URL."""
        if self._server is None:
            from moto.server import ThreadedMotoServer

            # werkzeug would log every request (the event-bus tap polls once a second) at INFO.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            self.reserve()
            assert self._port is not None
            # moto's server thread would die on a taken port, and its start() wait for ever.
            try:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", self._port))
            except OSError as exc:
                raise RuntimeError(f"moto server: port {self._port} was taken meanwhile ({exc})") from exc
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
            server.start()
            self._server = server
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
        self._port = None
        self.endpoint = ""
