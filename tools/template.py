"""Read template.yaml: the single description of tables, functions and routes.

Tests and the local stack create tables and wire functions from here, so nothing
about them is written twice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    template, matches = decode(str(TEMPLATE))
    if matches or template is None:
        raise RuntimeError(f"cannot read {TEMPLATE}: {matches}")
    # Plain dicts and strs (cfn-lint's node classes cannot be pickled to worker processes).
    plain: dict[str, Any] = json.loads(json.dumps(template))
    return plain


def parameter_defaults() -> dict[str, str]:
    return {name: str(p.get("Default", "")) for name, p in load().get("Parameters", {}).items()}


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in load()["Resources"].items() if r["Type"] == kind}


def create_table_requests(names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """CreateTable requests for every AWS::DynamoDB::Table, named ``names[logical id]`` (default: the logical id).

    Returned with the TTL and stream settings the template gives each table, under
    the keys ``_ttl`` (attribute name or None) so the caller can enable TTL after creation.
    """
    out = []
    for logical, res in resources("AWS::DynamoDB::Table").items():
        props = res["Properties"]
        req: dict[str, Any] = {
            "TableName": (names or {}).get(logical, logical),
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if "GlobalSecondaryIndexes" in props:
            req["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if "StreamSpecification" in props:
            req["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        ttl = props.get("TimeToLiveSpecification", {})
        req["_ttl"] = ttl.get("AttributeName") if ttl.get("Enabled") else None
        req["_logical"] = logical
        out.append(req)
    return out


def create_tables(client: Any, names: dict[str, str] | None = None) -> dict[str, str]:
    """Create every table of the template (with TTL) and return {logical id: table name}."""
    created = {}
    for req in create_table_requests(names):
        ttl, logical = req.pop("_ttl"), req.pop("_logical")
        client.create_table(**req)
        client.get_waiter("table_exists").wait(TableName=req["TableName"])
        if ttl:
            client.update_time_to_live(
                TableName=req["TableName"], TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
            )
        created[logical] = req["TableName"]
    return created


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler: str
    environment: dict[str, Any] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)


def functions() -> dict[str, FunctionSpec]:
    tpl = load()
    glob = tpl.get("Globals", {}).get("Function", {})
    genv = glob.get("Environment", {}).get("Variables", {})
    out = {}
    for name, res in resources("AWS::Serverless::Function").items():
        props = res["Properties"]
        env = {**genv, **props.get("Environment", {}).get("Variables", {})}
        out[name] = FunctionSpec(
            logical_id=name,
            code_uri=ROOT / props["CodeUri"],
            handler=props["Handler"],
            environment=env,
            events=props.get("Events", {}),
        )
    return out


def api_routes() -> list[tuple[str, str, str, bool]]:
    """(method, path, function logical id, needs auth) for every Api event."""
    routes = []
    for fn in functions().values():
        for ev in fn.events.values():
            if ev["Type"] != "Api":
                continue
            props = ev["Properties"]
            auth = props.get("Auth", {}).get("Authorizer") != "NONE"
            routes.append((props["Method"].upper(), props["Path"], fn.logical_id, auth))
    return routes


def layer_dirs(function_logical_id: str) -> list[Path]:
    """Code folders of the layers a function uses (Globals plus its own), in order."""
    tpl = load()
    props = tpl["Resources"][function_logical_id]["Properties"]
    refs = list(tpl.get("Globals", {}).get("Function", {}).get("Layers", [])) + list(props.get("Layers", []))
    layers = resources("AWS::Serverless::LayerVersion")
    out = []
    for ref in refs:
        name = ref.get("Ref") if isinstance(ref, dict) else None
        if name in layers:
            out.append(ROOT / layers[name]["Properties"]["ContentUri"])
    return out


NO_VALUE: Any = object()  # what ``Ref: AWS::NoValue`` resolves to: the key or item is left out


def _is_no_value(value: Any) -> bool:
    return value == {"Ref": "AWS::NoValue"} or value is NO_VALUE


def resolve(value: Any, refs: dict[str, str]) -> Any:
    """Resolve the intrinsic functions a local run needs: Ref, Sub, GetAtt, Join.

    ``refs`` maps logical ids (parameters, resources) and pseudo parameters to values.
    A ``Ref: AWS::NoValue`` leaves its key (or list item) out, as CloudFormation does.
    """
    if isinstance(value, list):
        return [resolve(v, refs) for v in value if not _is_no_value(v)]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return NO_VALUE if arg == "AWS::NoValue" else refs.get(arg, arg)
        if fn == "Fn::GetAtt":
            name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            return refs.get(f"{name}.{attr}", f"arn:aws:local:us-east-1:000000000000:{name}")
        if fn == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], resolve(arg[1], refs))
            names = {**refs, **extra}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(names.get(m.group(1), m.group(0))), text)
        if fn == "Fn::Join":
            sep, parts = arg
            return sep.join(str(p) for p in resolve(parts, refs))
    return {k: resolve(v, refs) for k, v in value.items() if not _is_no_value(v)}
