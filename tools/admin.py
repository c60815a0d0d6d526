"""Operator command: create stores and API keys, against AWS or DynamoDB Local.

    python -m tools.admin create-store acme --stack stockhold
    python -m tools.admin create-store demo --table StockholdTable --endpoint-url http://127.0.0.1:8000 \\
        --admin-key local-admin --storefront-key local-storefront
    python -m tools.admin add-key acme --role storefront --stack stockhold
    python -m tools.admin revoke-key <key> --stack stockhold

Keys are printed once and stored only as SHA-256 hashes.
"""

from __future__ import annotations

import argparse
import sys

import boto3

from stockhold.data.repositories import TenancyRepository
from stockhold.data.transactions import TransactionRunner
from stockhold.domain.ids import now_ms
from stockhold.domain.models import Role
from stockhold.usecases.tenancy import Tenancy


def table_name(args: argparse.Namespace) -> str:
    if args.table:
        return str(args.table)
    cfn = boto3.client("cloudformation", region_name=args.region)
    stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
    for output in stack.get("Outputs", []):
        if output["OutputKey"] == "TableName":
            return str(output["OutputValue"])
    raise SystemExit(f"stack {args.stack} has no TableName output")


def _tenancy(args: argparse.Namespace) -> tuple[Tenancy, str]:
    client = boto3.client("dynamodb", endpoint_url=args.endpoint_url, region_name=args.region)
    table = table_name(args)
    return Tenancy(TenancyRepository(TransactionRunner(client, table))), table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.admin", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="CloudFormation stack name (reads its TableName output)")
    where.add_argument("--table", help="table name, e.g. for DynamoDB Local")
    common.add_argument("--endpoint-url", help="DynamoDB endpoint, e.g. http://127.0.0.1:8000 for DynamoDB Local")
    common.add_argument("--region", default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    create = sub.add_parser("create-store", parents=[common], help="create a store and one key per role")
    create.add_argument("store_id")
    create.add_argument("--name")
    create.add_argument("--admin-key", help="use this admin key instead of a random one")
    create.add_argument("--storefront-key", help="use this storefront key instead of a random one")

    add = sub.add_parser("add-key", parents=[common], help="issue one more key for a store")
    add.add_argument("store_id")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("--label")

    revoke = sub.add_parser(
        "revoke-key", parents=[common], help="revoke a key (effective within the authorizer cache, 5 min)"
    )
    revoke.add_argument("api_key")

    args = parser.parse_args(argv)
    tenancy, table = _tenancy(args)
    now = now_ms()
    if args.command == "create-store":
        created = tenancy.create_store(args.store_id, args.name, now)
        print(f"store {args.store_id}: {'created' if created else 'already existed'} (table {table})")
        admin = tenancy.add_key(args.store_id, Role.ADMIN, now, args.admin_key, label="initial admin")
        front = tenancy.add_key(args.store_id, Role.STOREFRONT, now, args.storefront_key, label="initial storefront")
        print(f"admin key:      {admin}")
        print(f"storefront key: {front}")
        print("Keep these keys now: only their hashes are stored.")
    elif args.command == "add-key":
        key = tenancy.add_key(args.store_id, Role(args.role), now, label=args.label)
        print(f"{args.role} key for {args.store_id}: {key}")
    else:
        if not tenancy.revoke_key(args.api_key):
            raise SystemExit("no such key")
        print("key revoked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
