"""Start and stop the whole local stack, everything read from template.yaml.

Start-up does independent parts at once. DynamoDB Local's JVM boots (begun first: before this
module's heavy imports when ``make run`` starts it) while the HTTP API's functions import their
handlers in their first environments (every name and ARN is known before anything exists, so
their environments are too); then the tables (in parallel) and the demo store, and the HTTP API
answers. Then moto (state machines, event buses), the stream and schedule sources, and in the
background the first environments of the functions only events invoke (as Lambda would start
them on their first event, only earlier). start() returns when all but that last part is ready.
Progress lines say what is starting and when each part is ready."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

from tools import template
from tools.ddblocal import DynamoDBLocal, client_kwargs
from tools.local.config import StackConfig, launch_dynamodb, where
from tools.local.eventbuses import EventBuses
from tools.local.functions import FunctionPool
from tools.local.gateway import Gateway, default_authorizer
from tools.local.motoserver import MotoServer
from tools.local.progress import Progress
from tools.local.schedules import Schedule
from tools.local.statemachines import StateMachines, lambda_arn
from tools.local.streams import StreamSource

__all__ = ["DEMO_SKUS", "REGION", "LocalStack", "StackConfig"]

REGION = "us-east-1"
DEMO_SKUS = {"TSHIRT-M": 20, "MUG": 5, "POSTER": 1}
# A second place to keep stock, and a SKU kept in both: reserving 4 HOODIEs splits the line
# (2 from default, which allocates first, and 2 from leeds-dc); "locationIds": ["leeds-dc"]
# is click and collect from Leeds only.
DEMO_LOCATION = ("leeds-dc", "Leeds warehouse", 10)
DEMO_SPLIT = {"HOODIE": {"default": 2, "leeds-dc": 3}}
JAVA = "DynamoDB Local (Java)"


class LocalStack:
    def __init__(
        self, config: StackConfig, *, ddb: DynamoDBLocal | None = None, progress: Progress | None = None
    ) -> None:
        """``ddb``: a DynamoDB Local already launched for this stack (``config.launch_dynamodb``),
        not yet answering; the stack waits for it and stops it. ``progress``: where start-up
        progress goes (its clock is the stack's; default: starts with start())."""
        self.config = config
        self.ddb: DynamoDBLocal | None = ddb
        self.endpoint = ""
        self.tables: dict[str, str] = {}
        self.pools: dict[str, FunctionPool] = {}
        self.streams: list[StreamSource] = []
        self.schedules: list[Schedule] = []
        self.moto = MotoServer()  # Step Functions and EventBridge, in this process
        # Function and state machine names of this stack's own (moto and the Lambda hook are per process).
        self.name_suffix = "-" + uuid.uuid4().hex[:6]
        self.state_machines = StateMachines(lambda: self.pools, self.moto, self.name_suffix)
        self.event_buses = EventBuses(self.moto, suffix=config.table_suffix, log_path=config.events_log)
        self.progress = progress
        self._extra_refs: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """Every event published on the template's buses so far (EventBridge envelopes), oldest first."""
        return self.event_buses.events(detail_type)

    # ------------------------------------------------------------------ start

    def start(self) -> LocalStack:
        if self.progress is None:
            self.progress = Progress()
        try:
            self._launch_dynamodb()
            # Every name and ARN is known before anything exists, so every function's environment
            # is too: the HTTP API's functions start their first environments now, while Java starts.
            self.tables = {
                req["_logical"]: req["_logical"] + self.config.table_suffix for req in template.create_table_requests()
            }
            self._extra_refs.update(self.state_machines.plan())
            self._extra_refs.update(self.event_buses.plan(self._refs()))
            self._make_pools()
            api = self._http_functions()
            warming = self._warm(api)
            if self._wait_dynamodb():  # it came up on another port: environments made for the old one go
                for pool in self.pools.values():
                    pool.shutdown()
                self._make_pools()
                warming = self._warm(api)
            self._create_tables()
            if self.config.seed:
                self._seed()
            for started in warming.values():
                started.result()  # an HTTP function whose init fails: the stack does not start
            self._start_http()
            # No HTTP function calls Step Functions or EventBridge; only the stream consumers do,
            # and they start after moto (TRIM_HORIZON: a write meanwhile waits in the stream).
            self._start_moto()
            self._start_event_sources()
            self._warm([name for name in self.pools if name not in api], background=True)
        except BaseException:
            self.stop()
            raise
        finally:
            self.progress.close()
        return self

    def _say(self, message: str) -> None:
        if self.progress is None:
            self.progress = Progress()
        self.progress.say(message)

    def _launch_dynamodb(self) -> None:
        if self.config.ddb_endpoint:
            self.endpoint = self.config.ddb_endpoint
            return
        if self.ddb is None:
            self._say(f"starting DynamoDB Local ({where(self.config)})")
            self.ddb = launch_dynamodb(self.config)
        assert self.ddb is not None and self.progress is not None
        self.progress.begin(JAVA)
        self.endpoint = self.ddb.endpoint_url

    def _wait_dynamodb(self) -> bool:
        """Wait until DynamoDB Local answers; True if its endpoint is not the one planned with."""
        if self.ddb is None:
            return False
        assert self.progress is not None
        self.ddb.wait_ready()
        self.progress.end(JAVA, f"DynamoDB Local ready on {self.ddb.endpoint_url} ({where(self.config)})")
        moved = self.ddb.endpoint_url != self.endpoint
        self.endpoint = self.ddb.endpoint_url
        return moved

    def _client(self, service: str) -> Any:
        return boto3.client(service, **client_kwargs(self.endpoint))

    def _create_tables(self) -> None:
        client = self._client("dynamodb")
        existing = set(client.list_tables()["TableNames"])
        missing = [req for req in template.create_table_requests(self.tables) if req["TableName"] not in existing]

        def create(req: dict[str, Any]) -> None:
            ttl = req.pop("_ttl")
            req.pop("_logical")
            client.create_table(**req)
            client.get_waiter("table_exists").wait(TableName=req["TableName"])
            if ttl:
                client.update_time_to_live(
                    TableName=req["TableName"], TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
                )

        if missing:  # all at once (a boto3 client may be shared by threads)
            with ThreadPoolExecutor(len(missing), thread_name_prefix="create-table") as creating:
                list(creating.map(create, missing))
        self._say(f"tables ready: {', '.join(self.tables.values())} (as template.yaml declares them)")

    def _start_moto(self) -> None:
        self.state_machines.start(self._refs())
        if self.state_machines.arns:
            self._say(f"state machines: {', '.join(self.state_machines.arns)} (moto's Step Functions interpreter)")
        self.event_buses.start(self._refs())
        if self.event_buses.names:
            also = f"; also in {self.config.events_log}" if self.config.events_log else ""
            self._say(f"event buses: {', '.join(self.event_buses.names.values())} (moto; printed as [event]{also})")

    def _refs(self) -> dict[str, str]:
        refs: dict[str, str] = dict(template.parameter_defaults())
        refs.update(self.tables)
        refs.update({f"{name}.Arn": lambda_arn(name, self.name_suffix) for name in template.functions()})
        refs.update(self._extra_refs)
        refs.update(
            {
                "AWS::Region": REGION,
                "AWS::AccountId": "000000000000",
                "AWS::StackName": "stockhold-local",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::Partition": "aws",
            }
        )
        return refs

    def function_env(self, spec: template.FunctionSpec) -> dict[str, str]:
        """The template's environment for this function, then same-named overrides from the caller's environment."""
        env = {str(k): str(v) for k, v in template.resolve(spec.environment, self._refs()).items()}
        for name in env:
            if name in self.config.overrides:
                env[name] = self.config.overrides[name]
        creds = client_kwargs(self.endpoint)
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
            "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint,
            **({"AWS_ENDPOINT_URL_SFN": self.state_machines.endpoint} if self.state_machines.endpoint else {}),
            **({"AWS_ENDPOINT_URL_EVENTBRIDGE": self.moto.endpoint} if self.event_buses.names else {}),
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "POWERTOOLS_TRACE_DISABLED": self.config.overrides.get("POWERTOOLS_TRACE_DISABLED", "true"),
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        }

    def _make_pools(self) -> None:
        """A pool per function (no environment started yet)."""
        for name, spec in template.functions().items():
            timeout = float(template.load()["Resources"][name]["Properties"].get("Timeout", 10))
            self.pools[name] = FunctionPool(
                str(name),
                spec.code_uri,
                str(spec.handler),
                self.function_env(spec),
                template.layer_dirs(name),
                concurrency=self.config.concurrency,
                timeout=timeout,
            )

    def _http_functions(self) -> list[str]:
        """The functions an HTTP request can need: the routes' and the default authorizer's."""
        needed = {function for _, _, function, _ in template.api_routes()}
        authorizer = default_authorizer()
        if authorizer is not None:
            needed.add(authorizer.function)
        return [name for name in self.pools if name in needed]

    def _warm(self, names: list[str], *, background: bool = False) -> dict[str, Future[bool]]:
        """Start the first environment of each function now, all at once (each one's init, its cold
        start, runs in its own process); a progress line as each is ready."""
        if not names:
            return {}
        assert self.progress is not None
        progress = self.progress
        if background:
            progress.say(f"starting the other functions' first environments: {', '.join(names)}")
        else:
            progress.say(f"starting the first environment of {', '.join(names)} (the HTTP API's functions)")
        out: dict[str, Future[bool]] = {}
        for name in names:
            part = f"{name} (cold start)"
            progress.begin(part)
            try:
                started = self.pools[name].warm()
            except RuntimeError:  # stopped meanwhile
                progress.end(part)
                continue

            def ready(future: Future[bool], name: str = name, part: str = part) -> None:
                exc = future.exception()
                if exc is None:
                    progress.end(part, f"{name} ready (cold start {{took}})" if future.result() else None)
                else:
                    progress.end(part)
                    if background:  # as in Lambda, its invocations fail with this until it starts
                        sys.stderr.write(f"[{name}] its first environment did not start: {exc}\n")

            started.add_done_callback(ready)
            out[name] = started
        return out

    def _seed(self) -> None:
        from stockhold.domain.ids import now_ms
        from stockhold.domain.models import Location, Role
        from stockhold.settings import Settings
        from stockhold.wiring import build

        shop = build(self._client("dynamodb"), Settings(TABLE_NAME=self.tables["StockholdTable"]))
        now = now_ms()
        shop.tenancy.create_store("demo", "Demo store", now)
        shop.tenancy.add_key("demo", Role.ADMIN, now, self.config.admin_key, label="local admin")
        shop.tenancy.add_key("demo", Role.STOREFRONT, now, self.config.storefront_key, label="local storefront")
        location_id, name, priority = DEMO_LOCATION
        if location_id not in {x.location_id for x in shop.stock.locations("demo")}:
            shop.stock.put_location(
                "demo", Location(location_id=location_id, name=name, priority=priority, active=True)
            )
        existing, _ = shop.stock.get_many("demo", [*DEMO_SKUS, *DEMO_SPLIT])
        known = {level.sku for level in existing}
        for sku, on_hand in DEMO_SKUS.items():
            if sku not in known:
                shop.stock.set("demo", sku, on_hand=on_hand, low_stock_threshold=None, unlimited=False)
        for sku, cells in DEMO_SPLIT.items():
            if sku not in known:
                for at, on_hand in cells.items():
                    shop.stock.set_at("demo", sku, at, on_hand)
        skus = ", ".join([*DEMO_SKUS, *(f"{sku} (in default and {location_id})" for sku in DEMO_SPLIT)])
        self._say(f"store demo with keys {self.config.admin_key} / {self.config.storefront_key} and SKUs {skus}")

    def _start_http(self) -> None:
        gateway = Gateway(self.pools)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def _serve(self) -> None:
                started = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    reply = gateway.handle(self.command, self.path, list(self.headers.items()), body)
                except Exception as exc:  # a fault of the stack itself: still an answer, never a dropped connection
                    sys.stderr.write(f"[gateway] {self.command} {self.path}: {type(exc).__name__}: {exc}\n")
                    reply = gateway.function_failed()
                self.send_response(reply.status)
                for k, v in reply.headers:
                    if k.lower() not in ("content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has the headers of the body it does not send
                    self.wfile.write(reply.body)
                ms = (time.monotonic() - started) * 1000
                sys.stderr.write(f"{self.command} {self.path} {reply.status} {ms:.1f}ms\n")

            def __getattr__(self, name: str) -> Any:
                # Every method reaches the gateway (TRACE, PROPFIND, ...: its JSON answer), not
                # http.server's 501 HTML page: API Gateway answers a method no route has as an unknown route.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                return  # one line per request is written by _serve

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 resets bursts of storefront connections

        self._server = Server((self.config.host, self.config.port), Handler)
        self._server.daemon_threads = True
        self._server_thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._server_thread.start()
        self._say(f"HTTP API answering on {self.url}")

    def _start_event_sources(self) -> None:
        streams = self._client("dynamodbstreams")
        ddb = self._client("dynamodb")
        for name, spec in template.functions().items():
            for event_name, event in spec.events.items():
                props = event.get("Properties", {})
                if event["Type"] == "DynamoDB":
                    stream = props["Stream"]
                    logical = (
                        stream["Fn::GetAtt"][0]
                        if isinstance(stream.get("Fn::GetAtt"), list)
                        else str(stream["Fn::GetAtt"]).split(".")[0]
                    )
                    arn = ddb.describe_table(TableName=self.tables[logical])["Table"]["LatestStreamArn"]
                    source = StreamSource(
                        function=self.pools[name], streams_client=streams, stream_arn=arn, properties=props
                    )
                    source.start()
                    self.streams.append(source)
                    self._say(f"stream {logical} -> {name} ({event_name})")
                elif event["Type"] in ("Schedule", "ScheduleV2"):
                    expression = str(
                        template.resolve(props.get("Schedule") or props.get("ScheduleExpression", ""), self._refs())
                    )
                    schedule = Schedule(
                        self.pools[name], f"{name}-{event_name}", expression, self.config.schedule_seconds
                    )
                    schedule.start()
                    self.schedules.append(schedule)
                    self._say(f"schedule {expression} -> {name}")

    # ------------------------------------------------------------------ stop

    def stop(self) -> None:
        for source in self.streams:
            source.stop()
        for schedule in self.schedules:
            schedule.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.state_machines.stop()
        self.event_buses.stop()
        self.moto.stop()
        if self.pools:  # all at once: each worker takes a moment to exit
            with ThreadPoolExecutor(len(self.pools), thread_name_prefix="stop") as stopping:
                list(stopping.map(FunctionPool.shutdown, self.pools.values()))
        self.pools.clear()
        if self.ddb is not None:
            self.ddb.stop()
            self.ddb = None
