"""Operator command: the reconciliation sweep, by hand.

    python -m tools.reconcile --stack stockhold --dry-run
    python -m tools.reconcile --table StockholdTable --endpoint-url http://127.0.0.1:8000
    python -m tools.reconcile --stack stockhold --correct-stuck

Prints the overdue holds it ends (or would end) and every drift with its action.
See docs/reconcile.md for the correction rule.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tools.admin import table_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.reconcile", description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="CloudFormation stack name (reads its TableName output)")
    where.add_argument("--table", help="table name, e.g. for DynamoDB Local")
    parser.add_argument("--endpoint-url", help="DynamoDB endpoint, e.g. http://127.0.0.1:8000")
    parser.add_argument("--region", default=None)
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    parser.add_argument("--correct-stuck", action="store_true", help="also lower counters that hold stuck units")
    args = parser.parse_args(argv)

    os.environ["TABLE_NAME"] = table_name(args)
    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = args.endpoint_url
    if args.region:
        os.environ["AWS_DEFAULT_REGION"] = args.region
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Stockhold")
    from stockhold import wiring

    wiring.reset()
    report = wiring.services().reconciler.run(dry_run=args.dry_run, correct_stuck=args.correct_stuck)
    verb = "would end" if args.dry_run else "ended"
    print(
        f"overdue active holds: {len(report.overdue)}; {verb}: {len(report.overdue) if args.dry_run else len(report.expired)}"
    )
    for rid in report.overdue:
        print(f"  {rid}")
    print(f"drift: {len(report.drift)}")
    for d in report.drift:
        print("  " + json.dumps(d.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
