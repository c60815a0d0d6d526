"""A counting HTTP proxy in front of DynamoDB Local, in its own process (``python -m bench.ddbproxy UPSTREAM``).

Every request is passed on byte for byte (botocore checks DynamoDB's x-amz-crc32 on the
answer) and kept: time, X-Amz-Target, body and the client's app id (``app/...`` in its
User-Agent: botocore's AWS_SDK_UA_APP_ID, which bench.checkout gives each function).
``GET /__bench/requests`` answers them as JSON. Its own process so that it takes nothing
from the GIL of the process it counts for (the local stack: HTTP gateway, stream pollers,
moto's interpreter).
Prints ``PORT <n>`` when it listens; SIGTERM (or stdin closing) stops it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.request import urlopen

from bench.env import ROOT, pythonpath

REQUESTS_PATH = "/__bench/requests"
_APP_ID = re.compile(r"(?:^|\s)app/(\S+)")


@dataclass
class Request:
    at: float  # time.time() when the proxy received it
    target: str  # e.g. DynamoDB_20120810.TransactWriteItems
    body: str
    app: str = ""  # the client's AWS_SDK_UA_APP_ID, if it has one


def serve(upstream: str) -> None:
    host, port = upstream.removeprefix("http://").rstrip("/").split(":")
    kept: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        upstream_conn: HTTPConnection | None = None

        def do_GET(self) -> None:
            with lock:
                data = json.dumps(kept).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            app = _APP_ID.search(self.headers.get("User-Agent", ""))
            with lock:
                kept.append(
                    {
                        "at": time.time(),
                        "target": self.headers.get("X-Amz-Target", ""),
                        "body": body.decode("utf-8"),
                        "app": app.group(1) if app else "",
                    }
                )
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            for attempt in (1, 2):  # once more on a fresh connection if the kept one was closed
                if self.upstream_conn is None:
                    self.upstream_conn = HTTPConnection(host, int(port), timeout=60)
                try:
                    self.upstream_conn.request("POST", self.path, body=body, headers=headers)
                    resp = self.upstream_conn.getresponse()
                    data = resp.read()
                    break
                except (OSError, HTTPException):
                    self.upstream_conn.close()
                    self.upstream_conn = None
                    if attempt == 2:
                        raise
            self.send_response_only(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def finish(self) -> None:
            super().finish()
            if self.upstream_conn is not None:
                self.upstream_conn.close()

        def log_message(self, format: str, *args: Any) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="proxy", daemon=True)
    thread.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it

    def until_stdin_closes() -> None:  # the parent died without stopping us
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()


class ProxyProcess:
    """``python -m bench.ddbproxy`` as a child; ``url`` to give clients, ``requests()`` what it saw."""

    def __init__(self, upstream: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ddbproxy", upstream],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": pythonpath(), "PYTHONDONTWRITEBYTECODE": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the bench only; the bench stops it
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"bench.ddbproxy did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def requests(self) -> list[Request]:
        with urlopen(self.url + REQUESTS_PATH, timeout=30) as resp:
            return [Request(**r) for r in json.loads(resp.read())]

    def stop(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    serve(sys.argv[1])
