"""``make run``: the whole stockhold application on DynamoDB Local at http://127.0.0.1:3000.

Environment: STOCKHOLD_PORT (3000), STOCKHOLD_DATA_DIR (keep data between runs),
STOCKHOLD_ADMIN_KEY / STOCKHOLD_STOREFRONT_KEY (local-admin / local-storefront),
STOCKHOLD_CONCURRENCY (4 workers per function), STOCKHOLD_EVENTS_LOG (.local/events.jsonl:
every published stock event, one JSON per line; "" for none), and any variable the template
gives a function (e.g. MIN_HOLD_SECONDS=1) to override it.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

# The standard library only, so far: Java is started before the heavy imports (boto3, moto, cfn-lint).
from tools.local.config import StackConfig, launch_dynamodb, where
from tools.local.progress import Progress


def main() -> int:
    started = time.monotonic()
    config = StackConfig.from_env()
    progress = Progress(started)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if not config.ddb_endpoint:
            progress.say(f"starting DynamoDB Local ({where(config)}); Java boots while the rest loads")
        ddb = launch_dynamodb(config)
        from tools import invoke
        from tools.local.stack import LocalStack

        stack = LocalStack(config, ddb=ddb, progress=progress)
        stack.start()
    except Exception as exc:
        print(f"stockhold: the local stack did not start: {exc}", file=sys.stderr)
        return 1
    invoke.publish(stack)  # .local/stack.json and sam-env.json: for `make invoke` and `sam local invoke`
    url = stack.url
    progress.emit(
        f"""
stockhold is running at {url}  (ready in {time.monotonic() - started:.1f} s)
  DynamoDB Local: {stack.endpoint}   tables: {", ".join(stack.tables.values())}
  admin key:      {config.admin_key}
  storefront key: {config.storefront_key}
  API document:   {url}/openapi.json
  stock events:   printed below as [event] lines{f"; every one also in {config.events_log}" if config.events_log else ""}

Try:
  curl -s {url}/stock/MUG -H 'Authorization: Bearer {config.storefront_key}'
  curl -s -X POST {url}/reservations -H 'Authorization: Bearer {config.storefront_key}' \\
       -H 'Content-Type: application/json' -d '{{"cartId": "cart-1", "items": [{{"sku": "MUG", "quantity": 2}}]}}'

Ctrl-C stops everything.
"""
    )
    stop.wait()
    print("==> stopping", flush=True)
    invoke.unpublish()
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
