"""``make bench``: DynamoDB requests, capacity and latency of each API operation on DynamoDB Local.

python -m bench.run [--only operations|locations|local-stack|expiry|checkout|flash] [--iterations N] [--warmup N]
                   [--accounting N] [--cold-runs N] [--stack-starts N] [--stack-requests N] [--stack-serial N]
                   [--checkouts N]

Sections (docs/bench.md says what each measures and how): operations (bench.operations), locations
(bench.locations), local-stack (bench.localstack: measured first, so its cold start is the bench's first
start; printed second), expiry (bench.expiry), checkout (bench.checkout) and flash (bench.flash). Targets
are printed as PASS/MISS; they never change the exit code. Every server and process the bench starts is
stopped at the end, on error and on Ctrl-C / SIGTERM; any left is killed and named.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from importlib import metadata
from types import ModuleType

from bench import checkout, expiry, flash, harness, localstack, locations, operations, procs

SECTIONS: dict[str, ModuleType] = {
    "operations": operations,
    "locations": locations,
    "local-stack": localstack,
    "expiry": expiry,
    "checkout": checkout,
    "flash": flash,
}
MEASURED_FIRST = "local-stack"


def _header(args: argparse.Namespace, sections: Sequence[str], load_at_start: str) -> str:
    from tools.ddblocal import DDB_LOCAL_VERSION, NPM_SPEC

    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("boto3", "aws-lambda-powertools", "pydantic"))
    java = shutil.which("java")
    java_version = "java: not found"
    if java is not None:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        java_version = ((done.stderr or done.stdout).splitlines() or ["java: unknown version"])[0].strip()
    command = f"{os.path.relpath(sys.executable)} -m bench.run {' '.join(sys.argv[1:])}".rstrip()
    lines = [
        f"stockhold bench: {'; '.join(SECTIONS[s].TITLE for s in sections)}",
        f"  machine    : {len(os.sched_getaffinity(0))} CPUs (nproc), {platform.system()} {platform.release()} {platform.machine()}; "
        f"load average at start {load_at_start}",
        f"  python     : {platform.python_version()} ({sys.executable}); {versions}",
        f"  DynamoDB   : DynamoDB Local {DDB_LOCAL_VERSION} from npm {NPM_SPEC}, in memory, -sharedDb; {java_version}",
        f"  command    : {'make bench  ->  ' if os.environ.get('MAKELEVEL') else ''}{command}",
    ]
    return "\n".join(lines + [SECTIONS[s].header(args) for s in sections])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=SECTIONS, help="run one section (default: all)")
    for section in SECTIONS.values():
        section.arguments(parser)
    args = parser.parse_args(argv)
    sections = [args.only] if args.only else list(SECTIONS)
    signal.signal(signal.SIGTERM, procs.raise_interrupt)
    harness.add_import_paths()
    # Each GET (no metric added) would warn once; tests silence the same warning in pyproject.
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    started, load_at_start = time.monotonic(), harness.loadavg()
    results: dict[str, object] = {}
    failed: dict[str, str] = {}
    took: dict[str, str] = {}
    try:
        for name in sorted(sections, key=lambda s: s != MEASURED_FIRST):
            began, left = time.monotonic(), list[int]()
            try:
                with procs.no_leftovers(left):
                    results[name] = SECTIONS[name].measure(args)
            except harness.SectionFailed as exc:
                failed[name] = str(exc)
                harness.say(f"the {name} section failed (reported at the end); going on")
            took[name] = f"({name} section took {time.monotonic() - began:.0f} s; processes left behind: "
            took[name] += f"{', '.join(map(str, left)) or 'none'})"
    except KeyboardInterrupt:
        harness.say("interrupted")
        return 130
    print(_header(args, sections, load_at_start))
    for name in sections:
        print()
        if name in results:
            print(SECTIONS[name].report(results[name], args))
        else:
            print(f"{SECTIONS[name].TITLE}: FAILED, no figures\n  {failed[name]}")
        print(f"    {took[name]}")
    print(f"\n(bench took {time.monotonic() - started:.0f} s; every DynamoDB Local and local stack stopped)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
