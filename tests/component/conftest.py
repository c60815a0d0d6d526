from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from stockhold import wiring
from tests.helpers import ApiClient
from tools.template import create_tables


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
