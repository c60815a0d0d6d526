"""Integration tests: the real code against DynamoDB Local (real transactions, conditions, TTL, streams).

One DynamoDB Local per test worker; every test gets its own freshly created tables
(from template.yaml), so tests never see each other's data.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from stockhold import runtime
from stockhold.runtime import Services, services
from tools.ddblocal import DynamoDBLocal
from tools.template import create_tables

pytestmark = pytest.mark.integration
_counter = itertools.count()


@pytest.fixture(scope="session")
def ddb_local() -> Iterator[DynamoDBLocal]:
    server = DynamoDBLocal().start(shared_db=True)
    yield server
    server.stop()


@pytest.fixture
def local(ddb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """Services wired to DynamoDB Local with tables of their own."""
    suffix = f"{next(_counter)}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", ddb_local.endpoint_url)
    client = boto3.client("dynamodb", endpoint_url=ddb_local.endpoint_url)
    names = create_tables(
        client, {"StockholdTable": f"stockhold-{suffix}", "IdempotencyTable": f"idempotency-{suffix}"}
    )
    monkeypatch.setenv("TABLE_NAME", names["StockholdTable"])
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", names["IdempotencyTable"])
    runtime.reset()
    yield services()
    runtime.reset()
    for name in names.values():
        client.delete_table(TableName=name)


def stock_items(svc: Services) -> list[dict[str, Any]]:
    client = runtime.dynamodb_client()
    paginator = client.get_paginator("scan")
    out = []
    for page in paginator.paginate(
        TableName=svc.settings.TABLE_NAME,
        FilterExpression="#t = :s",
        ExpressionAttributeNames={"#t": "type"},
        ExpressionAttributeValues={":s": {"S": "STOCK"}},
        ConsistentRead=True,
    ):
        out.extend({k: int(v["N"]) if "N" in v else v for k, v in item.items()} for item in page["Items"])
    return out


def assert_invariants(svc: Services) -> None:
    """available + reserved + allocated == onHand, all >= 0, for every SKU."""
    for item in stock_items(svc):
        counters = {k: item[k] for k in ("onHand", "reserved", "allocated", "available")}
        assert all(v >= 0 for v in counters.values()), counters
        assert counters["available"] + counters["reserved"] + counters["allocated"] == counters["onHand"], counters
