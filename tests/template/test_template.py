"""template.yaml is the single source: lint it and check the code agrees with it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stockhold.settings import Settings
from tests.helpers import LambdaContext, load_function
from tools import apigw, template
from tools.template import ROOT

FUNCTIONS = template.functions()


def test_cfn_lint_is_clean() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(template.TEMPLATE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_handler_is_importable(name: str) -> None:
    spec = FUNCTIONS[name]
    module = load_function(spec.code_uri.name)
    assert callable(getattr(module, spec.handler.split(".")[1]))


def _env_names_read(path: Path) -> set[str]:
    """Environment variable names the code reads: os.environ[...] / os.getenv(...) / Settings fields."""
    text = path.read_text()
    return set(re.findall(r"os\.(?:environ(?:\.get)?\(|environ\[|getenv\()\s*[\"']([A-Z0-9_]+)[\"']", text))


FUNCTION_SPECIFIC = {
    "HOLD_TIMER_ARN": "HoldStreamFunction",  # would be a cycle in Globals
    "EVENT_BUS_NAME": "ChangeFeedFunction",  # only the publisher needs the bus
}


def test_every_setting_is_set_by_the_template_with_the_same_default() -> None:
    params = template.parameter_defaults()
    for name, field in Settings.model_fields.items():
        env = FUNCTIONS[FUNCTION_SPECIFIC.get(name, "ApiFunction")].environment
        assert name in env, f"{name} is a setting but the template does not set it"
        ref = env[name]
        if isinstance(ref, dict) and "Ref" in ref and ref["Ref"] in params:
            assert str(field.default) == params[ref["Ref"]], f"{name}: code default {field.default} != template"


def test_every_env_var_the_code_reads_is_set() -> None:
    code = list((ROOT / "layers/stockhold/stockhold").glob("*.py")) + list((ROOT / "functions").rglob("*.py"))
    read = set().union(*(_env_names_read(p) for p in code)) - set(FUNCTION_SPECIFIC)
    for spec in FUNCTIONS.values():
        missing = read - set(spec.environment)
        assert not missing, f"{spec.logical_id} lacks {missing}"


def test_hold_settings_are_the_issue_names() -> None:
    for name in ("DEFAULT_HOLD_SECONDS", "MIN_HOLD_SECONDS", "MAX_HOLD_SECONDS", "MAX_EXTENSIONS"):
        assert name in FUNCTIONS["ApiFunction"].environment
    for name in ("TTL_GRACE_SECONDS", "LOW_STOCK_THRESHOLD"):
        assert name in FUNCTIONS["ApiFunction"].environment


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_has_a_sample_event(name: str) -> None:
    folder = FUNCTIONS[name].code_uri.name
    assert list((ROOT / "events").glob(f"{folder}-*.json")), f"no events/{folder}-*.json"


def test_routes_in_template_and_handler_agree() -> None:
    """Every template route reaches a handler route, and every handler route is in the template."""
    app = load_function("api").app
    handler_routes = set()
    for route in app._static_routes + app._dynamic_routes:
        path = re.sub(r"<(\w+)>", r"{\1}", route.path)
        for method in route.method if isinstance(route.method, list | tuple) else [route.method]:
            handler_routes.add((method.upper(), path))
    template_routes = {
        (m, re.sub(r"\{(\w+)\}", lambda x: "{" + x.group(1) + "}", p)) for m, p, _, _ in template.api_routes()
    }
    assert handler_routes == template_routes


def test_no_proxy_routes() -> None:
    assert all("{proxy+}" not in p for _, p, _, _ in template.api_routes())


def test_api_sample_events_are_accepted_by_the_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The events/ samples parse: the handler routes them (no 404 for a missing route, no 400 for shape)."""
    import boto3
    from moto import mock_aws

    from stockhold import wiring

    with mock_aws():
        wiring.reset()
        template.create_tables(boto3.client("dynamodb"))
        handler = load_function("api").lambda_handler
        for path in sorted((ROOT / "events").glob("api-*.json")):
            event = json.loads(path.read_text())
            out = handler(event, LambdaContext())
            body = json.loads(out["body"])
            # Routed and parsed: any domain answer is fine, but not "no such route" or a shape error.
            assert out["statusCode"] < 500, (path.name, body)
            assert body.get("error", {}).get("code") != "VALIDATION_ERROR", (path.name, body)
            assert body.get("error", {}).get("message") != "no such route", path.name
    wiring.reset()


def test_authorizer_sample_event_is_accepted() -> None:
    event = json.loads((ROOT / "events/authorizer-token.json").read_text())
    assert event["type"] == "TOKEN" and event["authorizationToken"].startswith("Bearer ")
    assert apigw.find_route("POST", "/reservations") is not None


def test_stream_and_schedule_free_template_has_log_retention() -> None:
    groups = template.resources("AWS::Logs::LogGroup")
    for spec_name, res in template.resources("AWS::Serverless::Function").items():
        ref = res["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        assert ref in groups, f"{spec_name} logs to a group without retention"
        assert "RetentionInDays" in groups[ref]["Properties"]


def _stream_readers() -> dict[str, list[str]]:
    """Stream (the table's logical id) -> the functions whose event sources read it."""
    readers: dict[str, list[str]] = {}
    for name, spec in FUNCTIONS.items():
        for event in spec.events.values():
            if event["Type"] == "DynamoDB":
                table = event["Properties"]["Stream"]["Fn::GetAtt"][0]
                readers.setdefault(table, []).append(name)
    return readers


def test_no_stream_has_more_than_two_readers() -> None:
    """AWS: more than two readers per DynamoDB stream shard throttles GetRecords (docs/decisions.md)."""
    readers = _stream_readers()
    assert readers == {"StockholdTable": ["HoldStreamFunction", "ChangeFeedFunction"]}


def test_every_stream_reader_retries_boundedly_parks_failures_and_has_an_iterator_age_alarm() -> None:
    alarmed = {
        d["Value"]["Ref"]
        for a in template.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "IteratorAge"
        for d in a["Properties"]["Dimensions"]
        if d["Name"] == "FunctionName"
    }
    for name in _stream_readers()["StockholdTable"]:
        (props,) = [e["Properties"] for e in FUNCTIONS[name].events.values() if e["Type"] == "DynamoDB"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], name
        assert props["BisectBatchOnFunctionError"] is True, name
        assert 0 <= int(props["MaximumRetryAttempts"]) <= 20, name
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["StreamFailureQueue", "Arn"]}
        assert props["FilterCriteria"]["Filters"], name
        assert name in alarmed, f"{name} has no IteratorAge alarm"


def test_the_hold_stream_may_start_hold_timers_and_nothing_stops_one() -> None:
    """Slot timers are never stopped (docs/expiry.md): StopExecution is granted to no one."""
    resources = template.load()["Resources"]
    policies = resources["HoldStreamFunction"]["Properties"]["Policies"]
    assert {"StepFunctionsExecutionPolicy": {"StateMachineName": {"Fn::GetAtt": ["HoldTimer", "Name"]}}} in policies
    statements = [st for p in policies if "Statement" in p for st in p["Statement"]]
    assert all(not str(st["Action"]).startswith("states:") for st in statements)
    assert all("*" not in str(st["Resource"]).replace(":*", "") for st in statements)
    assert "states:StopExecution" not in json.dumps(resources)


def test_ast_parses_all_functions() -> None:
    for path in (ROOT / "functions").rglob("*.py"):
        ast.parse(path.read_text())


def test_the_checked_in_openapi_document_is_current() -> None:
    """docs/openapi.json is what the code generates (run `make openapi` after changing routes or models)."""
    generated = json.loads(load_function("api").openapi_json())
    assert json.loads((ROOT / "docs/openapi.json").read_text()) == generated


def test_openapi_lists_every_template_route() -> None:
    doc = json.loads(load_function("api").openapi_json())
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    expected = {(m, p) for m, p, _, auth in template.api_routes() if p != "/openapi.json"}
    assert documented == expected


# ---------------------------------------------------------------- template hygiene (issue 11)


def test_api_access_logs_are_one_json_object_per_request_in_a_group_with_a_retention() -> None:
    api = template.load()["Resources"]["StockholdApi"]
    setting = api["Properties"]["AccessLogSetting"]
    (group_id, attr) = setting["DestinationArn"]["Fn::GetAtt"]
    group = template.load()["Resources"][group_id]
    assert group["Type"] == "AWS::Logs::LogGroup" and attr == "Arn"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # API Gateway substitutes every $context variable, "-" when it has none: still JSON.
    line = json.loads(re.sub(r"\$context\.[A-Za-z.]+", "-", setting["Format"]))
    assert {"requestId", "status", "resourcePath", "httpMethod", "responseLatency", "storeId"} <= set(line)
    assert "$context.requestId" in setting["Format"] and "$context.authorizer.storeId" in setting["Format"]
    # Access logging needs the account's CloudWatch role first (an account-wide API Gateway setting).
    assert api["DependsOn"] == "ApiGatewayAccount"
    account = template.load()["Resources"]["ApiGatewayAccount"]
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}


def test_what_a_stack_delete_or_replacement_keeps_is_explicit() -> None:
    """docs/deploy.md, "What a delete keeps": the stock table and the parked stream records stay."""
    resources = template.load()["Resources"]
    expected = {
        "StockholdTable": "Retain",
        "StreamFailureQueue": "Retain",
        "IdempotencyTable": "Delete",
        **dict.fromkeys(template.resources("AWS::Logs::LogGroup"), "Delete"),
    }
    assert len(template.resources("AWS::Logs::LogGroup")) == len(FUNCTIONS) + 2  # + hold timer, API access
    for name, policy in expected.items():
        assert resources[name].get("DeletionPolicy") == policy, name
        assert resources[name].get("UpdateReplacePolicy") == policy, name


def test_both_tables_have_point_in_time_recovery() -> None:
    for name, table in template.resources("AWS::DynamoDB::Table").items():
        assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name


def test_local_endpoint_variables_are_declared_for_sam_but_absent_on_aws() -> None:
    """An env-vars file may set only what the template declares; AWS::NoValue removes it on AWS."""
    declared = {}
    for name, spec in FUNCTIONS.items():
        endpoints = {k: v for k, v in spec.environment.items() if k.startswith("AWS_ENDPOINT_URL")}
        assert endpoints.get("AWS_ENDPOINT_URL_DYNAMODB") == {"Ref": "AWS::NoValue"}, name
        assert all(v == {"Ref": "AWS::NoValue"} for v in endpoints.values()), (name, endpoints)
        assert not set(endpoints) & set(template.resolve(spec.environment, {})), name  # the local stack's own win
        declared[name] = set(endpoints)
    assert "AWS_ENDPOINT_URL_SFN" in declared["HoldStreamFunction"]
    assert "AWS_ENDPOINT_URL_EVENTBRIDGE" in declared["ChangeFeedFunction"]


@pytest.mark.parametrize("client", ["dynamodb_client", "stepfunctions_client", "events_client"])
def test_an_empty_endpoint_variable_means_the_regions_own_endpoint(
    client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sam local invoke` without an env-vars file sets a declared NoValue variable to "": that is AWS's endpoint."""
    from stockhold import wiring

    for var in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SFN", "AWS_ENDPOINT_URL_EVENTBRIDGE"):
        monkeypatch.setenv(var, "")
    wiring.reset()
    try:
        url = getattr(wiring, client)().meta.endpoint_url
    finally:
        wiring.reset()
    assert url.startswith("https://") and url.endswith(".us-east-1.amazonaws.com"), url


def test_sam_local_invoke_reads_the_env_vars_file_the_local_stack_writes() -> None:
    """samconfig.toml: `sam local invoke` takes the running stack's env-vars file, and refuses without it."""
    import tomllib

    from tools import invoke

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    local = config["default"]["local_invoke"]["parameters"]
    assert ROOT / local["env_vars"] == invoke.SAM_ENV_FILE
    assert local["region"] == "us-east-1"  # the local stack's region (its state machine and bus ARNs)


def _filter_values(pattern: object, attribute: str) -> set[str]:
    """Every ``{"<attribute>": {"S": [...]}}`` value a FilterCriteria pattern matches on."""
    found: set[str] = set()
    if isinstance(pattern, dict):
        for name, value in pattern.items():
            if name == attribute and isinstance(value, dict) and isinstance(value.get("S"), list):
                found |= {v for v in value["S"] if isinstance(v, str)}
            else:
                found |= _filter_values(value, attribute)
    return found


def test_stream_filters_name_only_types_and_statuses_of_the_item_schema() -> None:
    """The template's FilterCriteria and data/schema.py describe the same items: a renamed
    type or status in one but not the other would silently starve a stream reader."""
    from stockhold.data import schema

    types: set[str] = set()
    statuses: set[str] = set()
    for fn in template.functions().values():
        for event in fn.events.values():
            for f in (event.get("Properties", {}).get("FilterCriteria") or {}).get("Filters", []):
                pattern = json.loads(f["Pattern"])
                types |= _filter_values(pattern, schema.TYPE)
                statuses |= _filter_values(pattern, schema.STATUS)
    assert types and types <= set(schema.ITEM_TYPES), types - set(schema.ITEM_TYPES)
    assert statuses and statuses <= set(schema.HOLD_STATUSES), statuses - set(schema.HOLD_STATUSES)
    change_feed = template.functions()["ChangeFeedFunction"].events["TableChanges"]["Properties"]["FilterCriteria"]
    admitted = set().union(*(_filter_values(json.loads(f["Pattern"]), schema.TYPE) for f in change_feed["Filters"]))
    assert admitted == set(schema.AUDITED_TYPES)
