"""EnableSnapStart (docs/deploy.md, "SnapStart"): off, the API function deploys as it always did;
on, API Gateway invokes a published version that SnapStart restores, and every change publishes one."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from tools import template
from tools.template import ROOT

SNAPSTART_KEYS = ("AutoPublishAlias", "AutoPublishAliasAllProperties", "VersionDeletionPolicy", "SnapStart")


def effective(value: Any, on: bool) -> Any:
    """``value`` with every ``Fn::If [SnapStartOn, a, b]`` decided, and ``AWS::NoValue`` left out."""
    if isinstance(value, list):
        return [effective(v, on) for v in value if v != {"Ref": "AWS::NoValue"}]
    if not isinstance(value, dict):
        return value
    if list(value) == ["Fn::If"]:
        condition, yes, no = value["Fn::If"]
        assert condition == "SnapStartOn"
        return effective(yes if on else no, on)
    out = {k: effective(v, on) for k, v in value.items()}
    return {k: v for k, v in out.items() if v != {"Ref": "AWS::NoValue"}}


def test_the_parameter_is_off_by_default() -> None:
    tpl = template.load()
    param = tpl["Parameters"]["EnableSnapStart"]
    assert param["Default"] == "false" and sorted(param["AllowedValues"]) == ["false", "true"]
    assert tpl["Conditions"]["SnapStartOn"] == {"Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]}


def test_the_language_extensions_decide_the_ifs_before_sam_reads_them_here_and_in_every_sam_command() -> None:
    assert template.load()["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["default"]["global"]["parameters"]["language_extensions"] is True


def test_off_the_api_function_has_no_versions_and_api_gateway_invokes_latest() -> None:
    api = effective(template.load()["Resources"]["ApiFunction"]["Properties"], on=False)
    layer = effective(template.load()["Resources"]["StockholdLayer"]["Properties"], on=False)
    assert not set(SNAPSTART_KEYS) & set(api)
    assert "PublishLambdaVersion" not in layer


def test_on_every_change_of_the_function_or_its_layer_is_a_version_that_snapstart_restores() -> None:
    api = effective(template.load()["Resources"]["ApiFunction"]["Properties"], on=True)
    layer = effective(template.load()["Resources"]["StockholdLayer"]["Properties"], on=True)
    assert api["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert api["AutoPublishAlias"] == "live"  # API Gateway invokes the alias: SnapStart never applies to $LATEST
    assert api["AutoPublishAliasAllProperties"] is True and layer["PublishLambdaVersion"] is True
    assert api["VersionDeletionPolicy"] == "Delete"  # a superseded version's snapshot is not kept (nor billed)


@pytest.mark.parametrize("on", [False, True])
def test_nothing_snapstart_cannot_run_with_is_configured(on: bool) -> None:
    tpl = template.load()
    api = {**tpl["Globals"]["Function"], **effective(tpl["Resources"]["ApiFunction"]["Properties"], on)}
    assert api["Runtime"] == "python3.13"  # SnapStart: Python 3.12 and later
    assert "ProvisionedConcurrencyConfig" not in api and "FileSystemConfigs" not in api
    assert api.get("EphemeralStorage", {}).get("Size", 512) <= 512
