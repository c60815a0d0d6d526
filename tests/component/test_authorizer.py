"""API keys: looked up by hash, mapped to one store and role, never stored in clear."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
import pytest

from stockhold.domain.models import Role
from stockhold.wiring import services
from tests.helpers import LambdaContext, load_function
from tools.admin import main as admin_main

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/POST/reservations"


def _authorize(token: str | None) -> dict[str, Any]:
    event = {"type": "TOKEN", "methodArn": ARN, "authorizationToken": token}
    result: dict[str, Any] = load_function("authorizer").lambda_handler(event, LambdaContext())
    return result


@pytest.fixture
def keys(aws: None) -> dict[str, str]:
    tenancy = services().tenancy
    tenancy.create_store("demo", None, 0)
    return {
        "admin": tenancy.add_key("demo", Role.ADMIN, 0),
        "storefront": tenancy.add_key("demo", Role.STOREFRONT, 0, api_key="local-storefront"),
    }


@pytest.mark.parametrize("role", ["admin", "storefront"])
def test_a_known_key_is_allowed_with_its_store_and_role(keys: dict[str, str], role: str) -> None:
    policy = _authorize(f"Bearer {keys[role]}")
    assert policy["context"] == {
        "storeId": "demo",
        "role": role,
        "keyId": hashlib.sha256(keys[role].encode()).hexdigest()[:8],
    }
    statement = policy["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abc123/v1/*/*"]


@pytest.mark.parametrize(
    "token",
    [None, "", "Bearer", "Bearer ", "Bearer nope", "Basic local-storefront", "local-storefront", "Bearer " + "x" * 600],
    ids=["absent", "empty", "scheme-only", "blank-key", "unknown-key", "wrong-scheme", "no-scheme", "oversized"],
)
def test_a_missing_or_unknown_key_is_a_401(keys: dict[str, str], token: str | None) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        _authorize(token)


def test_keys_are_stored_hashed_never_in_clear(keys: dict[str, str]) -> None:
    items = boto3.client("dynamodb").scan(TableName="StockholdTable")["Items"]
    dumped = json.dumps(items)
    assert keys["admin"] not in dumped and keys["storefront"] not in dumped
    assert sum(1 for i in items if i["type"]["S"] == "APIKEY") == 2


def test_the_operator_command_creates_a_store_and_working_keys(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin_main(["create-store", "acme", "--table", "StockholdTable"]) == 0
    printed = capsys.readouterr().out
    admin_key = printed.split("admin key:")[1].split()[0]
    front_key = printed.split("storefront key:")[1].split()[0]
    admin_ctx, front_ctx = _authorize(f"Bearer {admin_key}")["context"], _authorize(f"bearer {front_key}")["context"]
    assert (admin_ctx["storeId"], admin_ctx["role"]) == ("acme", "admin")
    assert (front_ctx["storeId"], front_ctx["role"]) == ("acme", "storefront")
    assert admin_ctx["keyId"] != front_ctx["keyId"]  # the key (by its hash) is named, never shown


def test_a_revoked_key_is_refused(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    admin_main(["create-store", "acme", "--table", "StockholdTable", "--storefront-key", "front-1"])
    assert _authorize("Bearer front-1")["context"]["storeId"] == "acme"
    admin_main(["revoke-key", "front-1", "--table", "StockholdTable"])
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        _authorize("Bearer front-1")


def test_a_store_id_must_be_simple(aws: None) -> None:
    with pytest.raises(Exception, match="store id"):
        services().tenancy.create_store("Bad Store#1", None, 0)
