"""POST /reservations in-process, for the local-stack comparison (run as ``python -m bench.inprocess``).

A child of bench.localstack, started with the very environment the local stack gives
its ApiFunction workers (same settings; a DynamoDB Local of its own, with the
template's tables), so the only difference to the HTTP path is the runner. Measures,
one after the other:

* ``api``: tests.helpers.ApiClient (the API Gateway event, app.lambda_handler, the
  answer parsed), 1 thread: Powertools' resolver keeps the current event in module
  state, so one process cannot serve two requests at once (Lambda never asks it to);
* ``service1`` / ``service8``: ``services().reservations.reserve(...)``, the stockhold
  service layer under the handler, with 1 thread and with N threads.

The SKU is set up first with PUT /stock (admin). Prints one line ``BENCH_INPROC {json}`` with the samples and, per run, the CPU
time of this process and of DynamoDB Local (``ddb_pid``); everything else on stdout
(the functions' logs and EMF metrics, as the workers print them) is noise to skip.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from bench import procs

CONFIG_VAR = "BENCH_INPROC_CONFIG"
MARK = "BENCH_INPROC "


def run_threads(threads: int, per_thread: int, once: Callable[[], None]) -> tuple[list[int], float]:
    """``threads`` x ``per_thread`` calls of ``once`` started together: (latencies ns, wall s)."""
    samples: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    abort = threading.Event()  # set when the caller is interrupted: the threads stop at their next call

    def worker(into: list[int]) -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                if abort.is_set():
                    return
                start = time.perf_counter_ns()
                once()
                into.append(time.perf_counter_ns() - start)
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(s,), daemon=True) for s in samples]
    for t in pool:
        t.start()
    try:
        barrier.wait()
        started = time.perf_counter()
        for t in pool:
            t.join()
    except BaseException:
        abort.set()
        barrier.abort()
        raise
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return [x for s in samples for x in s], wall


def main() -> int:
    cfg: dict[str, Any] = json.loads(os.environ.pop(CONFIG_VAR))
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    from stockhold.models import Line
    from stockhold.runtime import services
    from tests.helpers import ApiClient

    store, sku = cfg["store"], cfg["sku"]
    run = uuid.uuid4().hex[:6]
    seq = itertools.count()

    def cart() -> str:
        return f"bench-inproc-{run}-{next(seq):06d}"

    api = ApiClient(store, "storefront")

    def via_api() -> None:
        resp = api.post("/reservations", {"cartId": cart(), "items": [{"sku": sku, "quantity": 1}]})
        if resp.status != 201:
            raise RuntimeError(f"POST /reservations answered {resp.status}: {resp.body}")

    svc = services().reservations  # built once, before any thread

    def via_service() -> None:
        svc.reserve(store, cart_id=cart(), customer_id=None, lines=[Line(sku=sku, quantity=1)])

    threads, serial, total = cfg["threads"], cfg["serial"], cfg["total"]
    out: dict[str, Any] = {"cpu_s": {}}

    ddb_pid = cfg["ddb_pid"]

    def phase(name: str, n_threads: int, per_thread: int, once: Callable[[], None]) -> None:
        cpu, ddb = time.process_time(), procs.cpu_seconds(ddb_pid)
        out[name] = run_threads(n_threads, per_thread, once)
        out["cpu_s"][name] = {"python": time.process_time() - cpu, "ddb": procs.cpu_seconds(ddb_pid) - ddb}

    seeded = ApiClient(store, "admin").put(f"/stock/{sku}", {"onHand": cfg["on_hand"]})
    if seeded.status != 200:
        raise RuntimeError(f"PUT /stock/{sku} answered {seeded.status}: {seeded.body}")
    run_threads(1, cfg["warmup"], via_api)
    phase("api", 1, serial, via_api)
    run_threads(threads, max(1, cfg["warmup"] // threads), via_service)
    phase("service1", 1, serial, via_service)
    phase("service8", threads, total // threads, via_service)
    sys.stdout.flush()
    print(MARK + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
