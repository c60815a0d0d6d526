"""Tests of tools/ddblocal.py: installing, starting and stopping DynamoDB Local.

The install tests that need no download run against a fake npm tarball in a temporary
directory; the others use the real install in .local/dynamodb-local/ (installed on
first use) and real Java processes. Three JVM starts in all, about 3-4 s each here.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from tools import ddblocal
from tools.ddblocal import ChecksumMismatch, DynamoDBLocal, DynamoDBLocalError

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- helpers --------------------------------------------------------------------------


def java_pids_on_port(port: int) -> list[int]:
    """PIDs of live DynamoDB Local processes started with ``-port <port>`` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state == "Z" or b"DynamoDBLocal.jar" not in args or b"-port" not in args:
            continue
        i = args.index(b"-port")
        if i + 1 < len(args) and args[i + 1] == str(port).encode():
            pids.append(int(entry.name))
    return pids


def assert_gone(pid: int, port: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert java_pids_on_port(port) == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def client(endpoint_url: str) -> Any:
    return boto3.client("dynamodb", **ddblocal.client_kwargs(endpoint_url))


def create_table(ddb: Any, name: str) -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def fake_npm_tarball(jar: bytes = b"not really a jar") -> bytes:
    """A gzipped npm-style tarball with an emulator folder and files outside it."""
    files = {
        "package/package.json": b'{"name": "fake"}',
        "package/index.js": b"// outside emulator/, must not be unpacked",
        "package/emulator/DynamoDBLocal.jar": jar,
        "package/emulator/DynamoDBLocal_lib/libsqlite4java-linux-amd64.so": b"\x7fELF",
        "package/emulator/README.txt": b"readme",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    # gzip's header carries a time: a fixed one, so that two calls give the same bytes (and checksum)
    return gzip.compress(buf.getvalue(), mtime=0)


@pytest.fixture
def fake_npm(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace ``npm pack`` with one that writes :func:`fake_npm_tarball`; records calls."""
    calls: list[Path] = []
    tarball = fake_npm_tarball()

    def fake_pack(spec: str, dest_dir: Path) -> Path:
        assert spec == ddblocal.NPM_SPEC
        calls.append(dest_dir)
        path = dest_dir / "amplify-dynamodb-simulator-2.9.30.tgz"
        path.write_bytes(tarball)
        return path

    monkeypatch.setattr(ddblocal, "_npm_pack", fake_pack)
    return calls


def pin_fake_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ddblocal, "TARBALL_SHA256", hashlib.sha256(fake_npm_tarball()).hexdigest())
    monkeypatch.setattr(ddblocal, "JAR_SHA256", hashlib.sha256(b"not really a jar").hexdigest())


# --- install --------------------------------------------------------------------------


def test_real_install_is_idempotent_and_silent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ddblocal.ensure_installed()  # installs on a fresh machine
    jar = target / "DynamoDBLocal.jar"
    assert target == ddblocal.INSTALL_DIR
    assert (target / "DynamoDBLocal_lib").is_dir()
    assert json.loads((target / ddblocal.MARKER_NAME).read_text())["jar_sha256"] == ddblocal.JAR_SHA256
    # The tarball's mtimes are from 1985, so a re-unpacked jar would keep its mtime:
    # compare inode and ctime as well.
    before = jar.stat()
    marker_before = (target / ddblocal.MARKER_NAME).stat()
    capsys.readouterr()

    def no_download(spec: str, dest_dir: Path) -> Path:
        raise AssertionError("second ensure_installed() must not download")

    monkeypatch.setattr(ddblocal, "_npm_pack", no_download)
    assert ddblocal.ensure_installed() == target
    after = jar.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_ctime_ns,
    )
    assert (target / ddblocal.MARKER_NAME).stat().st_mtime_ns == marker_before.st_mtime_ns
    assert capsys.readouterr() == ("", "")


def test_cold_install_unpacks_only_the_emulator_then_is_a_no_op(
    tmp_path: Path,
    fake_npm: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pin_fake_checksums(monkeypatch)
    target = tmp_path / "dynamodb-local"

    assert ddblocal.ensure_installed(install_dir=target) == target
    out = capsys.readouterr().out
    assert "==> downloading DynamoDB Local (npm amplify-dynamodb-simulator@2.9.30)" in out
    assert out.count("==> verified sha256") == 2
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        ".stockhold-install.json",
        "DynamoDBLocal.jar",
        "DynamoDBLocal_lib",
        "DynamoDBLocal_lib/libsqlite4java-linux-amd64.so",
        "README.txt",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamodb-local", "dynamodb-local.lock"]
    assert len(fake_npm) == 1

    ddblocal.ensure_installed(install_dir=target)
    assert len(fake_npm) == 1
    assert capsys.readouterr().out == ""

    # A damaged jar is noticed and replaced.
    (target / "DynamoDBLocal.jar").write_bytes(b"damaged")
    ddblocal.ensure_installed(install_dir=target, quiet=True)
    assert len(fake_npm) == 2
    assert (target / "DynamoDBLocal.jar").read_bytes() == b"not really a jar"
    assert capsys.readouterr().out == ""


def test_tarball_checksum_mismatch_is_an_error(tmp_path: Path, fake_npm: list[Path]) -> None:
    target = tmp_path / "dynamodb-local"
    with pytest.raises(ChecksumMismatch) as err:
        ddblocal.ensure_installed(install_dir=target, quiet=True)
    assert err.value.expected == ddblocal.TARBALL_SHA256
    assert err.value.actual == hashlib.sha256(fake_npm_tarball()).hexdigest()
    assert ddblocal.TARBALL_SHA256 in str(err.value) and err.value.actual in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamodb-local.lock"]  # no leftovers


def test_jar_checksum_mismatch_is_an_error(
    tmp_path: Path, fake_npm: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ddblocal, "TARBALL_SHA256", hashlib.sha256(fake_npm_tarball()).hexdigest())
    target = tmp_path / "dynamodb-local"
    with pytest.raises(ChecksumMismatch) as err:
        ddblocal.ensure_installed(install_dir=target, quiet=True)
    assert err.value.what == "DynamoDBLocal.jar"
    assert err.value.expected == ddblocal.JAR_SHA256
    assert err.value.actual == hashlib.sha256(b"not really a jar").hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamodb-local.lock"]


# --- java -----------------------------------------------------------------------------


def test_ensure_java_with_java_on_path_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"nothing may be run when java is present: {args}")

    monkeypatch.setattr(ddblocal.shutil, "which", lambda name: f"/opt/jre/bin/{name}")
    monkeypatch.setattr(ddblocal, "_run", forbidden)
    monkeypatch.setattr(ddblocal.subprocess, "run", forbidden)
    assert ddblocal.ensure_java() == "/opt/jre/bin/java"


def test_ensure_java_installs_the_headless_jre_with_apt_as_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands: list[list[str]] = []
    monkeypatch.setattr(ddblocal.shutil, "which", lambda name: "/usr/bin/java" if commands else None)
    monkeypatch.setattr(ddblocal.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ddblocal, "_run", lambda cmd, **kwargs: commands.append(list(cmd)))
    assert ddblocal.ensure_java() == "/usr/bin/java"
    assert commands == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "openjdk-17-jre-headless"],
    ]
    assert "==> " in capsys.readouterr().out


def test_ensure_java_missing_without_root_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ddblocal.shutil, "which", lambda name: None)
    monkeypatch.setattr(ddblocal.os, "geteuid", lambda: 1000)
    with pytest.raises(DynamoDBLocalError, match="openjdk-17-jre-headless"):
        ddblocal.ensure_java()


# --- running --------------------------------------------------------------------------


def test_start_answers_and_stop_leaves_no_java() -> None:
    with DynamoDBLocal() as server:
        pid, port = server.pid, server.port
        assert pid is not None
        assert server.endpoint_url == f"http://127.0.0.1:{port}"
        assert java_pids_on_port(port) == [pid]
        assert os.getpgid(pid) == pid  # its own process group
        ddb = client(server.endpoint_url)
        assert ddb.list_tables()["TableNames"] == []
        create_table(ddb, "things")
        assert ddb.list_tables()["TableNames"] == ["things"]
        with pytest.raises(DynamoDBLocalError, match="already running"):
            server.start()
        # A port that is taken is refused at once, not probed (it would answer).
        with pytest.raises(DynamoDBLocalError, match="already in use"):
            DynamoDBLocal().start(port=port)
    assert not server.running and server.pid is None
    assert_gone(pid, port)
    server.stop()  # idempotent


def test_cli_run_with_db_path_stops_on_sigterm_and_data_persists(tmp_path: Path) -> None:
    ddblocal.ensure_installed(quiet=True)
    db = tmp_path / "db"
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.ddblocal", "run", "--port", str(port), "--db-path", str(db)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        assert any(f"on http://127.0.0.1:{port}" in line for line in lines), lines
        [java_pid] = java_pids_on_port(port)
        create_table(client(f"http://127.0.0.1:{port}"), "kept")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "stopping DynamoDB Local" in out
    assert_gone(java_pid, port)

    # Same data directory, library API, process left to the atexit hook: the table is
    # still there, and the interpreter exiting takes java down with it.
    script = (
        "import sys, boto3\n"
        "from pathlib import Path\n"
        "from tools.ddblocal import DynamoDBLocal, client_kwargs\n"
        "s = DynamoDBLocal().start(db_path=Path(sys.argv[1]))\n"
        "tables = boto3.client('dynamodb', **client_kwargs(s.endpoint_url)).list_tables()['TableNames']\n"
        "print(s.pid, s.port, ','.join(tables))\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script, str(db)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert time.monotonic() - started < 40
    pid_text, port_text, tables = result.stdout.split()
    assert tables == "kept"
    assert_gone(int(pid_text), int(port_text))
