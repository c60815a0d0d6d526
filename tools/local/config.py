"""The local stack's settings, and starting its DynamoDB Local: the standard library only, so that
``make run`` can start Java before it imports anything heavy (boto3, moto, cfn-lint)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tools.ddblocal import LOCAL_DIR, QUICK_START_JVM_ARGS, DynamoDBLocal


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


def where(config: StackConfig) -> str:
    return f"data in {config.data_dir}" if config.data_dir else "in memory"


def launch_dynamodb(config: StackConfig) -> DynamoDBLocal | None:
    """Start the stack's DynamoDB Local (None: the config names a running one) without waiting
    for it to answer: its JVM starts while the stack does the rest (``DynamoDBLocal.wait_ready``)."""
    if config.ddb_endpoint:
        return None
    return DynamoDBLocal().launch(db_path=config.data_dir, shared_db=True, jvm_args=QUICK_START_JVM_ARGS)
