"""DynamoDB Local for stockhold: install it, start it, stop it.

DynamoDB Local is Amazon's Java emulator of DynamoDB. Its own download site is not
reachable from every machine this project runs on, but the npm package
``amplify-dynamodb-simulator`` ships the very same emulator folder, so we take it from
the npm registry with ``npm pack`` and pin both the npm tarball and the jar by
sha256.

Library use::

    from tools.ddblocal import DynamoDBLocal

    with DynamoDBLocal() as ddb:            # a free port, data in memory
        client = boto3.client("dynamodb", **ddb.client_kwargs())

Command line::

    python -m tools.ddblocal install                 # java (apt, if missing) + jar
    python -m tools.ddblocal run [--port N] [--db-path DIR] [--shared-db]

Everything lives under ``.local/`` at the repository root (git-ignored):
``.local/dynamodb-local/`` holds the emulator and ``.local/dynamodb-local-<port>.log``
the server log of a run (only the newest 20 logs are kept).

Facts about the pinned emulator (DynamoDB Local 1.25.1, from ``-help`` and its jar):

* ``-disableTelemetry`` exists (telemetry came in 1.24.0) and is always passed.
* It listens on all interfaces (there is no ``-host`` option in 1.x); we only ever
  talk to it on 127.0.0.1.
* Without ``-sharedDb`` every (access key id, region) pair gets its own database, so
  clients must use the same dummy credentials and region (see :func:`client_kwargs`).
  An access key id with anything but letters and digits is refused
  (``UnrecognizedClientException``, since 1.23.0).
* When it cannot start (e.g. ``Failed to bind``: port taken) the JVM logs the
  exception but does not exit, so :meth:`DynamoDBLocal.start` watches the log too.
* TTL (checked by experiment): a background job looks for TTL-enabled tables every
  second and sweeps each with a Scan of ``Limit=20`` (20 items *examined*, expired or
  not) per page, deleting items whose TTL attribute (a Number, epoch seconds) lies
  between now minus 5 years and now, and sleeping 10 s between pages. So in a table
  of up to 20 items an expired item goes within about a second, but a table of N
  items takes about N/2 seconds per sweep (47 items: gone after 0.3, 10 and 20 s).
  Items that expired over 5 years ago are never deleted (as on AWS). AWS itself only
  promises "within a few days": code should still filter expired items when reading.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "DDB_LOCAL_VERSION",
    "INSTALL_DIR",
    "JAR_SHA256",
    "NPM_SPEC",
    "QUICK_START_JVM_ARGS",
    "TARBALL_SHA256",
    "ChecksumMismatch",
    "DynamoDBLocal",
    "DynamoDBLocalError",
    "client_kwargs",
    "ensure_installed",
    "ensure_java",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = REPO_ROOT / ".local"
INSTALL_DIR = LOCAL_DIR / "dynamodb-local"

NPM_PACKAGE = "amplify-dynamodb-simulator"
NPM_VERSION = "2.9.30"
NPM_SPEC = f"{NPM_PACKAGE}@{NPM_VERSION}"
TARBALL_SHA256 = "3503ffac19f183407909fecdacf4db51ab1fdad1da7b2f177016670b2d80e4b9"
JAR_NAME = "DynamoDBLocal.jar"
JAR_SHA256 = "454305e9bc3e6ebcca5b62569869e31563b8d7e346474e94557b2600702146c7"
DDB_LOCAL_VERSION = "1.25.1"
EMULATOR_PREFIX = "package/emulator/"
MARKER_NAME = ".stockhold-install.json"

JAVA_APT_PACKAGE = "openjdk-17-jre-headless"  # Debian 12 (bookworm) main

REGION = "us-east-1"
# Dummies: DynamoDB Local checks no signature, but since 1.23.0 it rejects an access
# key id (UnrecognizedClientException) that is not purely letters and digits.
ACCESS_KEY_ID = "stockholdlocal"
SECRET_ACCESS_KEY = "stockholdlocal"

START_TIMEOUT = 30.0
# For a server that should answer soon after it starts: only the JVM's quick (C1) compiler. With the
# optimising one (C2) too, a start took 4.6 CPU seconds to its first answer, with C1 alone 1.9 (2
# shared cores); and over the first ~4000 transactions+queries tried, the server used less CPU per
# request with C1 alone, not more (C2 was still compiling).
QUICK_START_JVM_ARGS = ("-XX:TieredStopAtLevel=1",)
_STARTUP_FAILURE = 'Exception in thread "main"'
STOP_GRACE = 5.0
KEEP_LOGS = 20


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local could not be installed, started or stopped."""


class ChecksumMismatch(DynamoDBLocalError):
    """A downloaded or unpacked file does not have the pinned sha256."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch for {what}: expected {expected}, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, raising :class:`DynamoDBLocalError` with its output on failure."""
    result = subprocess.run(list(cmd), text=True, check=False, **kwargs)
    if result.returncode != 0:
        output = "\n".join(s for s in (result.stdout, result.stderr) if s)
        message = f"command failed (exit {result.returncode}): {' '.join(cmd)}"
        raise DynamoDBLocalError(f"{message}\n{output}".rstrip())
    return result


# --- installing ---------------------------------------------------------------------


def _npm_pack(spec: str, dest_dir: Path) -> Path:
    """Fetch the npm tarball of ``spec`` into ``dest_dir`` and return its path."""
    npm = shutil.which("npm")
    if npm is None:
        raise DynamoDBLocalError(
            "npm is needed to fetch DynamoDB Local from the npm registry; install "
            "Node.js/npm (Debian: apt-get install -y npm) and try again"
        )
    _run([npm, "pack", spec, "--silent"], cwd=dest_dir, capture_output=True)
    tarballs = sorted(dest_dir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise DynamoDBLocalError(f"npm pack {spec} left {len(tarballs)} tarballs in {dest_dir}")
    return tarballs[0]


def _installed_ok(install_dir: Path) -> bool:
    """True if ``install_dir`` holds a finished install of the pinned version."""
    try:
        marker = json.loads((install_dir / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict):
        return False
    if marker.get("npm") != NPM_SPEC or marker.get("jar_sha256") != JAR_SHA256:
        return False
    jar = install_dir / JAR_NAME
    return jar.is_file() and _sha256(jar) == JAR_SHA256


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    """Serialise installs across processes (e.g. pytest-xdist workers) with flock."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_installed(quiet: bool = False, install_dir: Path | None = None) -> Path:
    """Install the pinned DynamoDB Local into ``install_dir`` unless already there.

    The default target is ``.local/dynamodb-local/`` at the repository root. When the
    marker file and a jar with the pinned sha256 are present this does nothing and
    prints nothing. Otherwise it runs ``npm pack`` in a temporary directory, checks
    the tarball's sha256, unpacks only ``package/emulator/`` into a temporary
    directory beside the target, checks the jar's sha256, writes the marker and
    renames the folder into place, so the target is either absent, the old install,
    or complete.

    Returns the install directory (the folder holding ``DynamoDBLocal.jar``).
    Raises :class:`ChecksumMismatch` (with expected and actual hash) if a checksum
    differs, and :class:`DynamoDBLocalError` if npm is missing or fails.
    """
    target = (install_dir if install_dir is not None else INSTALL_DIR).resolve()
    if _installed_ok(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.with_name(target.name + ".lock")):
        if _installed_ok(target):  # another process finished while we waited
            return target
        # Leftovers of an install that was killed half-way:
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        _say(f"==> downloading DynamoDB Local (npm {NPM_SPEC})", quiet)
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.tmp-", dir=target.parent) as tmp:
            staging = Path(tmp)
            download_dir = staging / "download"
            download_dir.mkdir()
            tarball = _npm_pack(NPM_SPEC, download_dir)
            actual = _sha256(tarball)
            if actual != TARBALL_SHA256:
                raise ChecksumMismatch(f"npm tarball {tarball.name}", TARBALL_SHA256, actual)
            _say(f"==> verified sha256 {actual} ({tarball.name})", quiet)

            unpack_dir = staging / "unpack"
            with tarfile.open(tarball, "r:gz") as tf:
                members = [m for m in tf.getmembers() if m.name.startswith(EMULATOR_PREFIX)]
                tf.extractall(unpack_dir, members=members, filter="data")
            tarball.unlink()
            emulator = unpack_dir / EMULATOR_PREFIX.rstrip("/")
            jar = emulator / JAR_NAME
            if not jar.is_file():
                raise DynamoDBLocalError(f"{NPM_SPEC} has no {EMULATOR_PREFIX}{JAR_NAME}")
            actual = _sha256(jar)
            if actual != JAR_SHA256:
                raise ChecksumMismatch(JAR_NAME, JAR_SHA256, actual)
            _say(f"==> verified sha256 {actual} ({JAR_NAME})", quiet)
            marker = {
                "npm": NPM_SPEC,
                "tarball_sha256": TARBALL_SHA256,
                "jar_sha256": JAR_SHA256,
                "dynamodb_local": DDB_LOCAL_VERSION,
            }
            (emulator / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")

            old = staging / "old"
            if target.exists() or target.is_symlink():
                target.rename(old)  # a broken or outdated install; dropped with staging
            emulator.rename(target)
        _say(
            f"==> DynamoDB Local {DDB_LOCAL_VERSION} installed in {_display(target)}",
            quiet,
        )
    return target


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def ensure_java(quiet: bool = False) -> str:
    """Return the path of ``java``, installing a headless JRE from Debian if missing.

    With ``java`` on PATH nothing is run. Otherwise, as root, this runs ``apt-get
    update`` and ``apt-get install -y --no-install-recommends openjdk-17-jre-headless``;
    as any other user it raises :class:`DynamoDBLocalError` saying what to install.
    """
    java = shutil.which("java")
    if java is not None:
        return java
    if os.geteuid() != 0:
        raise DynamoDBLocalError(
            "java is not on PATH and DynamoDB Local needs it; install a Java runtime "
            "(Debian/Ubuntu: sudo apt-get install -y --no-install-recommends "
            f"{JAVA_APT_PACKAGE}) and try again"
        )
    with _file_lock(LOCAL_DIR / "java-install.lock"):  # apt-get refuses to run twice at once
        java = shutil.which("java")
        if java is not None:
            return java
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        quiet_kwargs: dict[str, Any] = {"capture_output": True} if quiet else {}
        _say("==> java not found: apt-get update", quiet)
        _run(["apt-get", "update"], env=env, **quiet_kwargs)
        _say(f"==> apt-get install {JAVA_APT_PACKAGE}", quiet)
        _run(
            ["apt-get", "install", "-y", "--no-install-recommends", JAVA_APT_PACKAGE],
            env=env,
            **quiet_kwargs,
        )
        java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalError(f"installed {JAVA_APT_PACKAGE} but java is still not on PATH")
    _say(f"==> java ready: {java}", quiet)
    return java


# --- running ------------------------------------------------------------------------


def client_kwargs(endpoint_url: str) -> dict[str, str]:
    """Keyword arguments for ``boto3.client("dynamodb", ...)`` at DynamoDB Local."""
    return {
        "endpoint_url": endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": ACCESS_KEY_ID,
        "aws_secret_access_key": SECRET_ACCESS_KEY,
    }


def _bind_probe(port: int) -> int:
    """Bind ``port`` (0: any) on all interfaces, as DynamoDB Local will, and return it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # Jetty sets it too
        s.bind(("", port))
        bound: int = s.getsockname()[1]
        return bound


def _free_port() -> int:
    return _bind_probe(0)


def _port_in_use(port: int) -> bool:
    try:
        _bind_probe(port)
    except OSError:
        return True
    return False


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die (SIGKILL) when this process dies, however it
    dies: a SIGKILL, a crash, an OOM kill. The child lives in a session of its own (so Ctrl-C
    in a terminal reaches only us, and we stop it in order), which also means nothing else
    would ever stop it. Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up now: the child only calls it
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # we died before the line above took effect
            os._exit(1)

    return preexec


# The kernel sends PR_SET_PDEATHSIG when the *thread* that forked the child ends, not the
# process. So children are forked by one daemon thread that lives as long as the process,
# whichever thread calls start() (a test's, a ThreadPoolExecutor's) and however short-lived.
_Answer = queue.SimpleQueue[tuple[bool, Any]]
_spawn_requests: queue.SimpleQueue[tuple[Callable[[], Any], _Answer]] = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _spawner_loop() -> None:
    while True:
        fn, answer = _spawn_requests.get()
        try:
            answer.put((True, fn()))
        except BaseException as exc:
            answer.put((False, exc))


def _on_lasting_thread(fn: Callable[[], Any]) -> Any:
    """``fn()``, run on the process-long spawner thread."""
    global _spawner
    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_spawner_loop, name="ddblocal-spawner", daemon=True)
            _spawner.start()
    answer: _Answer = queue.SimpleQueue()
    _spawn_requests.put((fn, answer))
    ok, value = answer.get()
    if not ok:
        raise value
    return value


_running: set[DynamoDBLocal] = set()
_running_lock = threading.Lock()
_atexit_registered = False


def _stop_all_at_exit() -> None:
    with _running_lock:
        servers = list(_running)
    for server in servers:
        server.stop()


class DynamoDBLocal:
    """One DynamoDB Local server process (a context manager).

    ``with DynamoDBLocal() as ddb:`` starts it in memory on a free port (if
    :meth:`start` was not already called) and stops it on exit. The Java process runs
    in its own process group, which :meth:`stop` (and an atexit hook) tears down; and,
    on Linux, the kernel kills it if this process dies without either (SIGKILL, crash).
    """

    def __init__(self, install_dir: Path | None = None, log_dir: Path | None = None) -> None:
        self._install_dir = install_dir
        self._log_dir = log_dir if log_dir is not None else LOCAL_DIR
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._launch_args: tuple[str, Path, int | None, Path | None, bool, tuple[str, ...]] | None = None
        self.log_path: Path | None = None

    # -- lifecycle --

    def start(
        self,
        port: int | None = None,
        db_path: Path | None = None,
        *,
        shared_db: bool = False,
        timeout: float = START_TIMEOUT,
        jvm_args: Sequence[str] = (),
    ) -> Self:
        """Start the server and wait until it answers ``ListTables``.

        ``port=None`` picks a free port. ``db_path=None`` keeps all data in memory;
        otherwise data lives in ``db_path`` (created if missing) and survives a
        restart. ``shared_db`` passes ``-sharedDb`` (one database whatever the
        credentials and region). ``jvm_args`` go to ``java`` before ``-jar`` (e.g.
        :data:`QUICK_START_JVM_ARGS`). Installs java and the jar first if needed.
        Raises :class:`DynamoDBLocalError`, with the tail of the server log, if it
        does not answer within ``timeout`` seconds or exits early.

        ``start()`` is :meth:`launch` then :meth:`wait_ready`; a caller with other work
        to do while the JVM starts calls them apart.
        """
        return self.launch(port, db_path, shared_db=shared_db, jvm_args=jvm_args).wait_ready(timeout)

    def launch(
        self,
        port: int | None = None,
        db_path: Path | None = None,
        *,
        shared_db: bool = False,
        jvm_args: Sequence[str] = (),
    ) -> Self:
        """Start the JVM and return at once, before it answers (:attr:`endpoint_url` is known
        already); :meth:`wait_ready` waits for it. Arguments as for :meth:`start`."""
        if self._proc is not None:
            raise DynamoDBLocalError(f"already running on {self.endpoint_url}")
        java = ensure_java()
        emulator = ensure_installed(install_dir=self._install_dir)
        if port is not None and _port_in_use(port):
            # Checked first: a server already there would answer our ListTables probe.
            raise DynamoDBLocalError(f"port {port} is already in use")
        self._launch_args = (java, emulator, port, db_path, shared_db, tuple(jvm_args))
        self._spawn(java, emulator, port if port is not None else _free_port(), db_path, shared_db, jvm_args)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Self:
        """Wait until the server :meth:`launch` started answers ``ListTables``. If a port it
        picked itself was taken meanwhile, it starts again on another one (up to 3 tries),
        so :attr:`endpoint_url` can change here. On failure (or Ctrl-C) no java is left."""
        if self._launch_args is None or self._proc is None:
            raise DynamoDBLocalError("DynamoDB Local has not been launched")
        java, emulator, port, db_path, shared_db, jvm_args = self._launch_args
        attempts = 1 if port is not None else 3  # an auto-picked port can be taken meanwhile
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._spawn(java, emulator, _free_port(), db_path, shared_db, jvm_args)
            try:
                self._wait_ready(timeout)
                return self
            except DynamoDBLocalError:
                log = self.log_tail()
                self.stop()
                if attempt < attempts and "Address already in use" in log:
                    continue
                raise
            except BaseException:  # e.g. Ctrl-C while waiting: leave no java behind
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _spawn(
        self,
        java: str,
        emulator: Path,
        port: int,
        db_path: Path | None,
        shared_db: bool,
        jvm_args: Sequence[str] = (),
    ) -> None:
        cmd = [
            java,
            *jvm_args,
            "-Djava.library.path=DynamoDBLocal_lib",
            "-jar",
            JAR_NAME,
            "-port",
            str(port),
            "-disableTelemetry",
        ]
        if db_path is None:
            cmd.append("-inMemory")
        else:
            db_dir = db_path.resolve()
            db_dir.mkdir(parents=True, exist_ok=True)
            cmd += ["-dbPath", str(db_dir)]
        if shared_db:
            cmd.append("-sharedDb")
        self._log_dir.mkdir(parents=True, exist_ok=True)
        _prune_logs(self._log_dir)
        self.log_path = self._log_dir / f"dynamodb-local-{port}.log"
        with self.log_path.open("wb") as log:
            log.write(f"$ (cd {emulator} && {' '.join(cmd)})\n".encode())
            log.flush()
            self._proc = _on_lasting_thread(
                lambda: subprocess.Popen(
                    cmd,
                    cwd=emulator,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own session and process group (pgid == pid)
                    preexec_fn=_die_with_parent(),  # ... yet it dies with us, whatever stops us
                )
            )
        self._port = port
        global _atexit_registered
        with _running_lock:
            _running.add(self)
            if not _atexit_registered:
                atexit.register(_stop_all_at_exit)
                _atexit_registered = True

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        # Imported here so that `install` needs nothing but the standard library.
        import boto3
        import botocore.config
        import botocore.exceptions

        client = boto3.client(
            "dynamodb",
            config=botocore.config.Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1}),
            **client_kwargs(self.endpoint_url),
        )
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise DynamoDBLocalError(
                    f"DynamoDB Local exited with code {code} before answering on "
                    f"{self.endpoint_url}; log {self.log_path}:\n{self.log_tail()}"
                )
            if _STARTUP_FAILURE in self.log_tail():
                # e.g. "Failed to bind": the JVM then lingers instead of exiting.
                raise DynamoDBLocalError(
                    f"DynamoDB Local failed to start on port {self.port}; log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                client.list_tables(Limit=1)
                return
            except botocore.exceptions.BotoCoreError as exc:  # connection refused/reset
                last_error = exc
            except botocore.exceptions.ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if status < 500:  # it is up, and refuses us: waiting will not help
                    raise DynamoDBLocalError(
                        f"DynamoDB Local on {self.endpoint_url} refused ListTables: {exc}; log {self.log_path}"
                    ) from exc
                last_error = exc
            time.sleep(0.05)
        raise DynamoDBLocalError(
            f"DynamoDB Local did not answer on {self.endpoint_url} within "
            f"{timeout:g} s (last error: {last_error!r}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log ("" before the first start)."""
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop the server: SIGTERM its process group, SIGKILL after ``grace`` seconds.

        Waits for the process, so no java process is left. Safe to call twice or
        when the server was never started.
        """
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session made the child its group leader
        _killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _killpg(pgid, signal.SIGKILL)
            proc.wait()
        # Forget it only once reaped: if the wait above is interrupted (a second
        # Ctrl-C), the atexit hook still sees this server and stops it.
        self._proc = None
        with _running_lock:
            _running.discard(self)

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- facts --

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int:
        if self._port is None:
            raise DynamoDBLocalError("DynamoDB Local has not been started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("dynamodb", ...)`` at this server."""
        return client_kwargs(self.endpoint_url)


def _prune_logs(log_dir: Path, keep: int = KEEP_LOGS) -> None:
    """Keep only the newest ``keep`` server logs: every random port makes a new one."""

    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    logs = sorted(log_dir.glob("dynamodb-local-*.log"), key=mtime, reverse=True)
    for old in logs[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --- command line -------------------------------------------------------------------


def _cmd_install(args: argparse.Namespace) -> int:
    ensure_java(quiet=args.quiet)
    path = ensure_installed(quiet=args.quiet)
    if not args.quiet:
        print(
            f"==> DynamoDB Local {DDB_LOCAL_VERSION} ready in {_display(path)}",
            flush=True,
        )
    return 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_run(args: argparse.Namespace) -> int:
    # SIGTERM stops like Ctrl-C; SIGINT is set too, as a background job inherits it ignored.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    server = DynamoDBLocal()
    db_path: Path | None = args.db_path
    try:
        server.start(port=args.port, db_path=db_path, shared_db=args.shared_db)
        where = f"data in {db_path}" if db_path is not None else "in memory"
        tables = "one database for all" if args.shared_db else "a database per access key id and region"
        print(
            f"==> DynamoDB Local {DDB_LOCAL_VERSION} on {server.endpoint_url} ({where}; {tables}); "
            f"log {_display(server.log_path or LOCAL_DIR)}",
            flush=True,
        )
        print("==> Ctrl-C to stop", flush=True)
        while server.running:
            time.sleep(0.5)
        print(f"ddblocal: error: DynamoDB Local exited unexpectedly; log tail:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("==> stopping DynamoDB Local", flush=True)
        return 0
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tools.ddblocal``."""
    parser = argparse.ArgumentParser(prog="python -m tools.ddblocal", description="Install and run DynamoDB Local.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help="install java (if missing) and DynamoDB Local")
    p_install.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p_install.set_defaults(func=_cmd_install)
    p_run = sub.add_parser("run", help="run DynamoDB Local in the foreground until Ctrl-C")
    p_run.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    p_run.add_argument(
        "--db-path",
        type=Path,
        default=None,
        help="keep data in DIR (default: in memory)",
    )
    p_run.add_argument(
        "--shared-db",
        action="store_true",
        help="one database for all credentials/regions",
    )
    p_run.set_defaults(func=_cmd_run)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except DynamoDBLocalError as exc:
        print(f"ddblocal: error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
