"""Start and stop the whole local stack, everything read from template.yaml."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

from tools import template
from tools.ddblocal import LOCAL_DIR, DynamoDBLocal, client_kwargs
from tools.local.eventbuses import EventBuses
from tools.local.functions import FunctionPool
from tools.local.gateway import Gateway
from tools.local.motoserver import MotoServer
from tools.local.schedules import Schedule
from tools.local.statemachines import StateMachines, lambda_arn
from tools.local.streams import StreamSource

REGION = "us-east-1"
DEMO_SKUS = {"TSHIRT-M": 20, "MUG": 5, "POSTER": 1}


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    data_dir: Path | None = None
    admin_key: str = "local-admin"
    storefront_key: str = "local-storefront"
    concurrency: int = 4
    seed: bool = True
    ddb_endpoint: str | None = None  # use a running DynamoDB Local instead of starting one
    table_suffix: str = ""
    schedule_seconds: float | None = None  # run every schedule at this period instead of its rate
    events_log: Path | None = None  # every published event, one JSON per line (make run: .local/events.jsonl)
    overrides: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StackConfig:
        env = dict(os.environ if env is None else env)
        data = env.get("STOCKHOLD_DATA_DIR")
        events = env.get("STOCKHOLD_EVENTS_LOG", str(LOCAL_DIR / "events.jsonl"))  # "" = none
        return cls(
            port=int(env.get("STOCKHOLD_PORT", "3000")),
            data_dir=Path(data) if data else None,
            admin_key=env.get("STOCKHOLD_ADMIN_KEY", "local-admin"),
            storefront_key=env.get("STOCKHOLD_STOREFRONT_KEY", "local-storefront"),
            concurrency=int(env.get("STOCKHOLD_CONCURRENCY", "4")),
            events_log=Path(events) if events else None,
            overrides=env,
        )


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.ddb: DynamoDBLocal | None = None
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
        try:
            self._start_dynamodb()
            self._create_tables()
            self._extra_refs.update(self.state_machines.start(self._refs()))
            if self.state_machines.arns:
                self._say(f"state machines: {', '.join(self.state_machines.arns)} (moto's Step Functions interpreter)")
            self._extra_refs.update(self.event_buses.start(self._refs()))
            if self.event_buses.names:
                where = f"; also in {self.config.events_log}" if self.config.events_log else ""
                self._say(
                    f"event buses: {', '.join(self.event_buses.names.values())} (moto; printed as [event]{where})"
                )
            self._start_functions()
            if self.config.seed:
                self._seed()
            self._start_http()
            self._start_event_sources()
        except BaseException:
            self.stop()
            raise
        return self

    def _say(self, message: str) -> None:
        print(f"==> {message}", flush=True)

    def _start_dynamodb(self) -> None:
        if self.config.ddb_endpoint:
            self.endpoint = self.config.ddb_endpoint
            return
        where = f"data in {self.config.data_dir}" if self.config.data_dir else "in memory"
        self._say(f"starting DynamoDB Local ({where})")
        self.ddb = DynamoDBLocal().start(db_path=self.config.data_dir, shared_db=True)
        self.endpoint = self.ddb.endpoint_url

    def _client(self, service: str) -> Any:
        return boto3.client(service, **client_kwargs(self.endpoint))

    def _create_tables(self) -> None:
        client = self._client("dynamodb")
        existing = set(client.list_tables()["TableNames"])
        names = {
            req["_logical"]: req["_logical"] + self.config.table_suffix for req in template.create_table_requests()
        }
        missing = {k: v for k, v in names.items() if v not in existing}
        if missing:
            template.create_tables(client, missing)
        self.tables = names
        self._say(f"tables ready: {', '.join(names.values())} (as template.yaml declares them)")

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

    def _start_functions(self) -> None:
        specs = template.functions()
        self._say(f"starting {len(specs)} functions: {', '.join(specs)}")
        for name, spec in specs.items():
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
        for warming in [pool.warm() for pool in self.pools.values()]:  # all at once
            warming.result()

    def _seed(self) -> None:
        from stockhold.domain.ids import now_ms
        from stockhold.domain.models import Role
        from stockhold.settings import Settings
        from stockhold.wiring import build

        shop = build(self._client("dynamodb"), Settings(TABLE_NAME=self.tables["StockholdTable"]))
        now = now_ms()
        shop.tenancy.create_store("demo", "Demo store", now)
        shop.tenancy.add_key("demo", Role.ADMIN, now, self.config.admin_key, label="local admin")
        shop.tenancy.add_key("demo", Role.STOREFRONT, now, self.config.storefront_key, label="local storefront")
        existing, _ = shop.stock.get_many("demo", list(DEMO_SKUS))
        for sku, on_hand in DEMO_SKUS.items():
            if sku not in {level.sku for level in existing}:
                shop.stock.set("demo", sku, on_hand=on_hand, low_stock_threshold=None, unlimited=False)
        self._say(
            f"store demo with keys {self.config.admin_key} / {self.config.storefront_key} and SKUs {', '.join(DEMO_SKUS)}"
        )

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
