"""The stockhold layer as `sam build` builds it: locked, without boto3/botocore, aarch64 wheels, compiled.

`sam build` runs `make build-StockholdLayer` (template.yaml: BuildMethod makefile) in a scratch
copy of layers/stockhold/; the build test below does exactly that, without the SAM CLI. The
whole `make build` (SAM CLI included) is checked by hand: docs/deploy.md.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import marshal
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import layer, template
from tools.template import ROOT

LAYER_SRC = ROOT / "layers/stockhold"
LOCK = LAYER_SRC / layer.LOCK_NAME


def test_the_template_builds_the_layer_with_the_makefile_target() -> None:
    res = template.load()["Resources"]["StockholdLayer"]
    assert res["Metadata"]["BuildMethod"] == "makefile"
    assert res["Metadata"]["BuildArchitecture"] == "arm64"
    assert (ROOT / res["Metadata"]["ContextPath"]).resolve() == ROOT  # the root Makefile
    assert re.search(r"^build-StockholdLayer:", (ROOT / "Makefile").read_text(), re.M)
    globals_ = template.load()["Globals"]["Function"]
    assert globals_["Architectures"] == ["arm64"] and globals_["Runtime"] == "python3.13"


def test_the_lock_pins_every_package_with_hashes_and_leaves_boto_to_the_runtime() -> None:
    assert layer.unpinned_lines(LOCK) == []
    pins = layer.locked_pins(LOCK)
    assert not set(pins) & layer.FORBIDDEN
    assert not set(pins) & {"urllib3", "python-dateutil", "six"}  # botocore's own dependencies
    for line in (LAYER_SRC / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([\w.-]+)(?:\[[^\]]*\])?==(\S+)", line)
        if m:
            assert pins[layer.canonical(m.group(1))] == m.group(2), f"{line} is not what the lock pins"


def test_the_tests_run_the_versions_the_layer_ships() -> None:
    """scripts/bootstrap-python.sh holds the dev venv to the lock: local runs are the layer's code."""
    for name, version in layer.locked_pins(LOCK).items():
        assert importlib.metadata.version(name) == version, f"{name}: .venv has another version (make setup)"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make build-StockholdLayer` as sam build runs it: in a scratch copy of the layer's folder."""
    scratch = tmp_path_factory.mktemp("scratch")
    shutil.copytree(LAYER_SRC, scratch / "src", ignore=shutil.ignore_patterns("__pycache__"))
    artifacts = tmp_path_factory.mktemp("StockholdLayer")
    env = {**os.environ, "ARTIFACTS_DIR": str(artifacts)}
    result = subprocess.run(
        ["make", "--makefile", str(ROOT / "Makefile"), "build-StockholdLayer", f"LAYER_PYTHON={sys.executable}"],
        cwd=scratch / "src",
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return artifacts


def test_the_built_layer_has_exactly_the_lock_no_boto_and_aarch64_binaries(built: Path) -> None:
    report = layer.check(built, LOCK)
    assert report.problems == []
    assert set(report.dists) == set(layer.locked_pins(LOCK))
    site = built / "python"
    assert not (site / "botocore").exists() and not (site / "boto3").exists()
    binaries = list(site.rglob("*.so"))
    assert any(p.parent.name == "pydantic_core" for p in binaries), "pydantic-core's compiled module is missing"
    for so in binaries:
        assert "aarch64" in so.name or "x86" not in so.name, so
    assert report.size_bytes < 20_000_000, f"the layer is {report.size_bytes / 1e6:.1f} MB unzipped"


def test_the_built_layer_carries_the_package_as_source(built: Path) -> None:
    package = built / "python" / "stockhold"
    sources = {p.relative_to(LAYER_SRC / "stockhold") for p in (LAYER_SRC / "stockhold").rglob("*.py")}
    assert {p.relative_to(package) for p in package.rglob("*.py")} == sources


def test_every_module_of_the_built_layer_has_bytecode_the_runtime_uses_as_it_is(built: Path) -> None:
    """/opt is read-only on Lambda: a module without valid bytecode is compiled again at every cold start."""
    site = built / "python"
    assert layer.missing_bytecode(site) == []
    assert layer.check(built, LOCK).warnings == []
    for pyc in [site / "stockhold/__pycache__/wiring.cpython-313.pyc", *list(site.rglob("*.pyc"))[:50]]:
        head = pyc.read_bytes()[:8]
        assert head[:4] == importlib.util.MAGIC_NUMBER, pyc  # CPython 3.13's (the tests run on 3.13)
        # PEP 552 flags: hash-based (bit 0), source not checked (bit 1 clear): valid whatever the zip's file times.
        assert int.from_bytes(head[4:8], "little") == 0b01, pyc
    code = marshal.loads((site / "stockhold/__pycache__/wiring.cpython-313.pyc").read_bytes()[16:])
    assert code.co_filename == "/opt/python/stockhold/wiring.py"  # where Lambda puts it; the same bytes every build


def test_a_layer_without_bytecode_is_reported(tmp_path: Path) -> None:
    site = tmp_path / "python" / "stockhold"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    warnings = layer.check(tmp_path, LOCK).warnings
    assert len(warnings) == 1 and "no cpython-313 bytecode" in warnings[0]
    assert layer.compile_bytecode(tmp_path / "python")
    assert layer.check(tmp_path, LOCK).warnings == []


def _fake_dist(site: Path, name: str, version: str, tag: str, requires: tuple[str, ...] = ()) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    meta = [f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(["Metadata-Version: 2.1", *meta]) + "\n")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nTag: {tag}\n")


def test_the_check_names_botocore_x86_wheels_missing_dependencies_and_unlocked_packages(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock.txt"
    h = "0" * 64
    lock.write_text(f"good==1.0 \\\n    --hash=sha256:{h}\nfast==2.0 \\\n    --hash=sha256:{h}\nloose>=1\n")
    site = tmp_path / "layer" / "python"
    _fake_dist(site, "good", "1.0", "py3-none-any", ("botocore>=1.0", "absent>=1", 'extra-only ; extra == "x"'))
    _fake_dist(site, "fast", "2.0", "cp313-cp313-manylinux_2_17_x86_64")
    _fake_dist(site, "botocore", "1.44.8", "py3-none-any")
    (site / "fast").mkdir()
    # An x86-64 ELF header: e_machine 62.
    (site / "fast" / "_speedups.cpython-313-x86_64-linux-gnu.so").write_bytes(
        b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (62).to_bytes(2, "little")
    )
    problems = "\n".join(layer.check(tmp_path / "layer", lock).problems)
    assert "not pinned with a hash: loose>=1" in problems
    assert "botocore 1.44.8 is in the layer" in problems
    assert "fast 2.0: wheel tags" in problems and "_speedups.cpython-313-x86_64-linux-gnu.so is not aarch64" in problems
    assert "needs absent>=1, which is not in the layer" in problems
    assert "botocore>=1.0" not in problems.replace("botocore 1.44.8", "")  # the runtime provides botocore
    assert "extra-only" not in problems  # an extra nobody asked for
    assert "the stockhold package is not in the layer" in problems


def test_the_layer_command_reports_problems_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "python").mkdir()
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/layer.py"), "check", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1 and "is locked but not in the layer" in out.stderr
