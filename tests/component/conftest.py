from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from stockhold import wiring
from stockhold.data import schema
from tests.helpers import ApiClient
from tools.template import create_tables


@pytest.fixture(autouse=True)
def few_sweep_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto answers a Query of an index by scanning every item, so the hundreds of Sweep
    keys a reconciliation reads would make each run slow here. Writers and readers both
    take the counts from the schema at call time, so 8 keys each is the same design on a
    smaller scale; tests/unit/test_sweep_keys.py and DynamoDB Local run the real counts."""
    monkeypatch.setattr(schema, "HOLD_SHARDS", 8)
    monkeypatch.setattr(schema, "CELL_SHARDS", 8)


@pytest.fixture
def aws() -> Iterator[None]:
    """A fresh in-process moto account with the template's tables."""
    with mock_aws():
        wiring.reset()
        create_tables(boto3.client("dynamodb"))
        yield
    wiring.reset()


@pytest.fixture
def api(aws: None) -> ApiClient:
    return ApiClient(store="demo", role="storefront")


@pytest.fixture
def admin(aws: None) -> ApiClient:
    return ApiClient(store="demo", role="admin")
