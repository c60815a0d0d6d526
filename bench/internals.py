"""The only module of the bench that knows stockhold's internals: key formats, ids, names, the wiring.

Everything else goes through HTTP, the API handler or raw DynamoDB. When the domain package is
renamed or split, this is the file to change. Import it only once the handler's environment is
set where it says so (stockhold's Powertools objects read the environment when imported).
"""

from __future__ import annotations

from typing import Any

# Item kinds by key (stockhold.data.schema's key formats): the first mark found in the partition key wins.
_PK_MARKS = (
    ("#AUDIT#", "audit entry"),
    ("#KEY#", "request mark"),
    ("#SKU#", "stock"),
    ("#RES#", "reservation"),
    ("#CHK#", "checkout"),
    ("#ORD#", "order"),
    ("#CART#", "cart"),
    ("EVENT#", "event marker"),
    ("APIKEY#", "api key"),
    ("STORE#", "store"),
)
_CART_SK = {"HOLD": "cart hold", "CHECKOUT": "cart checkout"}


def item_kind(pk: str, sk: str) -> str:
    """What an item of the stockhold table is, from its key: 'reservation', 'cart hold', 'stock', ..."""
    for mark, kind in _PK_MARKS:
        if mark in pk:
            return _CART_SK.get(sk, "cart ?") if kind == "cart" else kind
    return "?"


def reservation_key(store_id: str, reservation_id: str) -> dict[str, str]:
    from stockhold.data.schema import reservation_key

    return reservation_key(store_id, reservation_id)


def new_reservation_id() -> str:
    """A fresh id in the reservation id format (the bare replay of bench.operations)."""
    from stockhold.domain.ids import new_id

    return new_id("res_")


def handler_dynamodb_client() -> Any:
    """The DynamoDB client the API handler uses (shared by the repositories and the idempotency layer)."""
    from stockhold.wiring import dynamodb_client

    return dynamodb_client()
