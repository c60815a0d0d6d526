"""GET /stock?skus= accepts a list exactly when it matches the pattern the OpenAPI document
declares for it (the handler on moto)."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import ApiClient, load_function

PARAMS = {
    op["operationId"]: op.get("parameters", [])
    for ops in json.loads(load_function("api").openapi_json())["paths"].values()
    for op in ops.values()
}


SKU_LISTS = [
    ("A-1", True),
    (" A-1 , B-2 ", True),
    ("A-1,,B-2,", True),
    ("\tA-1", True),
    ("\x1ci", False),
    ("A-1\n", False),
    ("A-1\x1f,B-2", False),
    ("\u00a0A-1", False),
    ("A-1 B-2", False),
    (" , ,", False),
    ("", False),
]


@pytest.mark.parametrize(("skus", "valid"), SKU_LISTS, ids=[repr(s) for s, _ in SKU_LISTS])
def test_a_sku_list_is_accepted_exactly_when_it_matches_the_documented_pattern(
    api: ApiClient, skus: str, valid: bool
) -> None:
    (param,) = PARAMS["listStock"]
    assert bool(re.fullmatch(param["schema"]["pattern"], skus)) is valid
    reply = api.call("GET", "/stock", query={"skus": skus})
    assert reply.status == (200 if valid else 400), reply.body
