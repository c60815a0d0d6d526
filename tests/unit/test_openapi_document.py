"""The OpenAPI document says what the API does: every success and error status with its body,
the Idempotency-Key header, the enforced bounds, links that lead somewhere, and no Powertools
422. (The generated client and the fuzzer check the same document over HTTP: tests/e2e.)"""

from __future__ import annotations

import json
import re
from typing import Any

import http_common
import pytest
from openapi_spec_validator import validate

from stockhold import api_models
from stockhold.settings import Settings, get_settings
from tests.helpers import ApiClient, load_function

API = load_function("api")
MUTATING = {"post", "put", "patch", "delete"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}


def document(settings: Settings | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(API.openapi_json(settings))
    return doc


DOC = document()
OPERATIONS = [(path, method, op) for path, ops in DOC["paths"].items() for method, op in ops.items()]
BY_ID = {op["operationId"]: (path, method, op) for path, method, op in OPERATIONS}


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1")
    validate(DOC)


def test_operation_ids_are_stable_camel_case_names() -> None:
    assert len(BY_ID) == len(OPERATIONS) == 24
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)+", op_id) for op_id in BY_ID), sorted(BY_ID)
    assert {"createReservation", "getStock", "putStock", "createCheckout", "completeCheckout"} <= set(BY_ID)


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=[o["operationId"] for *_, o in OPERATIONS])
def test_every_operation_declares_its_success_and_the_error_shape(path: str, method: str, op: dict[str, Any]) -> None:
    responses = op["responses"]
    success = [s for s in responses if s.startswith("2")]
    assert success, f"{method} {path} declares no success status"
    for status in success:
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema.get("$ref", "").startswith("#/components/schemas/") and schema != ERROR_REF
    assert "422" not in responses
    for status in (s for s in responses if s[0] in "45"):
        assert responses[status]["content"] == {"application/json": {"schema": ERROR_REF}}, (path, method, status)
    assert {"400", "401", "413", "415", "429"} <= set(responses)


def test_the_success_statuses_are_the_ones_the_handlers_answer() -> None:
    success = {op_id: sorted(s for s in op["responses"] if s.startswith("2")) for op_id, (_, _, op) in BY_ID.items()}
    assert success.pop("createReservation") == ["201"]
    assert success.pop("createCheckout") == ["200", "201"]  # 200: the open checkout resumed
    assert success.pop("completeCheckout") == ["201"]
    assert set(map(tuple, success.values())) == {("200",)}


def test_no_powertools_validation_error_shapes_are_left() -> None:
    text = json.dumps(DOC)
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        assert f'"{name}"' not in text and f"/{name}" not in text


def test_every_mutating_operation_takes_an_idempotency_key() -> None:
    for path, method, op in OPERATIONS:
        headers = [p for p in op.get("parameters", []) if p["in"] == "header"]
        if method not in MUTATING:
            assert headers == [], (method, path)
            continue
        assert [h["name"] for h in headers] == ["Idempotency-Key"], (method, path)
        assert headers[0]["required"] is False
        assert headers[0]["schema"] == {"type": "string", "maxLength": http_common.MAX_IDEMPOTENCY_KEY_LENGTH}
        conflicts = op["responses"]["409"]["description"]
        assert "`IDEMPOTENCY_KEY_REUSED`" in conflicts and "`IDEMPOTENCY_KEY_IN_USE`" in conflicts
        for status in (s for s in op["responses"] if s.startswith("2")):
            assert "Idempotent-Replayed" in op["responses"][status]["headers"]


def test_409_descriptions_name_only_real_codes() -> None:
    for path, method, op in OPERATIONS:
        if "409" in op["responses"]:
            codes = re.findall(r"`([A-Z_]+)`", op["responses"]["409"]["description"])
            assert codes and set(codes) <= set(http_common.CONFLICTS), (method, path, codes)
    reserve = BY_ID["createReservation"][2]["responses"]["409"]["description"]
    assert "`INSUFFICIENT_STOCK`" in reserve and "`CART_ALREADY_RESERVED`" in reserve


def test_admin_operations_and_only_they_declare_403() -> None:
    with_403 = {op_id for op_id, (_, _, op) in BY_ID.items() if "403" in op["responses"]}
    assert with_403 == {"putStock", "putStockAtLocation", "putLocation", "adjustStock", "fulfilOrder", "getAuditTrail"}
    assert with_403 == {route.operation_id for route in API.ACCESS.admin_routes}


def test_operations_with_a_resource_in_the_path_declare_404() -> None:
    for path, method, op in OPERATIONS:
        if "{" in path:
            assert "404" in op["responses"], (method, path)


def schema(name: str, doc: dict[str, Any] = DOC) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][name]
    return found


NARROW = {
    "MIN_HOLD_SECONDS": 5,
    "MAX_HOLD_SECONDS": 50,
    "DEFAULT_HOLD_SECONDS": 10,
    "CHECKOUT_HOLD_SECONDS": 10,
    "PAYMENT_HOLD_SECONDS": 10,
}


def hold_bounds(doc: dict[str, Any]) -> set[tuple[int, int]]:
    found = set()
    for model in ("ReserveIn", "ExtendIn"):
        (integer,) = [b for b in schema(model, doc)["properties"]["holdSeconds"]["anyOf"] if b["type"] == "integer"]
        found.add((integer["minimum"], integer["maximum"]))
    return found


def test_hold_seconds_bounds_are_the_settings() -> None:
    assert hold_bounds(DOC) == {(60, 1800)}  # the template's defaults: docs/openapi.json
    assert hold_bounds(document(Settings.model_validate(NARROW))) == {(5, 50)}


def test_constraints_the_server_enforces_are_in_the_schema() -> None:
    assert schema("AdjustmentIn")["properties"]["delta"]["not"] == {"const": 0}
    assert schema("CheckoutUpdateIn")["minProperties"] == 1
    (skus,) = BY_ID["listStock"][2]["parameters"]
    assert skus["required"] is True and skus["schema"]["minLength"] == 1
    for model in ("ReserveIn", "CheckoutIn", "ValidateIn"):
        assert schema(model)["properties"]["items"]["minItems"] == 1
    for name, body in schema_bodies():
        assert body["additionalProperties"] is False, name  # a typo such as quantiy is refused


def schema_bodies() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for _, _, op in OPERATIONS:
        for media in op.get("requestBody", {}).get("content", {}).values():
            ref = media["schema"]["$ref"]  # an object, never null (precheck refuses a null body)
            out.append((ref, schema(ref.rsplit("/", 1)[1])))
    return out


def test_an_optional_body_may_be_left_out_but_is_not_nullable() -> None:
    for op_id in ("enterCheckoutPayment", "fulfilOrder", "cancelOrder"):
        body = BY_ID[op_id][2]["requestBody"]
        assert body.get("required") is not True
        assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EmptyIn"}


def test_rules_json_schema_cannot_express_are_described() -> None:
    for op_id in ("createReservation", "createCheckout", "validateStock"):
        assert "each sku at most once" in BY_ID[op_id][2]["description"].lower()
    assert "exactly one of reservationId, sku, orderId and checkoutId" in BY_ID["getAuditTrail"][2]["description"]
    assert "`2.0` is refused" in DOC["info"]["description"]


def test_every_schema_example_is_accepted_by_its_model() -> None:
    checked = 0
    for name, body in DOC["components"]["schemas"].items():
        for example in body.get("examples", []):
            getattr(api_models, name).model_validate_json(json.dumps(example))
            checked += 1
    assert checked >= 10


def test_links_lead_to_operations_with_those_parameters() -> None:
    count = 0
    for path, method, op in OPERATIONS:
        for status, answer in op["responses"].items():
            for name, link in answer.get("links", {}).items():
                _, _, target = BY_ID[link["operationId"]]
                path_params = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
                assert set(link["parameters"]) == path_params, (method, path, name)
                source = schema(answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1])
                for expr in link["parameters"].values():
                    field = expr.removeprefix("$response.body#/")
                    assert field in source["required"], (method, path, status, name, expr)
                count += 1
    flows = {
        "createReservation": {
            "getReservation",
            "getCartReservation",
            "extendReservation",
            "confirmReservation",
            "releaseReservation",
        },
        "createCheckout": {
            "getCheckout",
            "updateCheckout",
            "enterCheckoutPayment",
            "completeCheckout",
            "cancelCheckout",
        },
        "completeCheckout": {"getOrder", "fulfilOrder", "cancelOrder"},
    }
    for op_id, targets in flows.items():
        answers = BY_ID[op_id][2]["responses"]
        assert all(set(answers[s]["links"]) == targets for s in answers if s.startswith("2")), op_id
    assert count > 20


def test_servers_cover_the_stage_and_the_local_stack() -> None:
    urls = [s["url"] for s in DOC["servers"]]
    assert urls[0] == "."  # relative: right wherever GET /openapi.json was fetched from
    assert "{stage}" in urls[1] and DOC["servers"][1]["variables"]["stage"]["default"] == "v1"
    assert urls[2] == "http://127.0.0.1:3000"


def test_the_served_document_carries_the_deployments_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in NARROW.items():
        monkeypatch.setenv(name, str(value))
    get_settings.cache_clear()
    try:
        reply = ApiClient().call("GET", "/openapi.json")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert reply.status == 200
    assert hold_bounds(reply.body) == {(5, 50)}
    assert reply.body == document(Settings.model_validate(NARROW))


# --- GET /stock?skus= : the document's pattern and the server agree (a fuzzer finding: the
# server took "\x1ci" for the SKU "i", as str.strip() drops control characters)
