"""The one transaction runner: TransactWriteItems with the bounded, jittered conflict
retry and the Idempotency-Key mark rule (docs/operations.md, "What a crash does to a
request"). Every other module of the data room writes through it or through a single
conditional write."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from stockhold.data.schema import REQUEST_MARK, Item, from_av, request_mark_key, to_av
from stockhold.domain.errors import TooBusy
from stockhold.domain.models import RequestKey
from stockhold.domain.rules import MAX_UNIT_ACTIONS

CONDITION_FAILED = "ConditionalCheckFailed"


@dataclass
class Cancelled(Exception):
    """A transaction cancelled on conditions: the code and current item (ALL_OLD) per action."""

    codes: list[str]
    items: list[Item | None]


@dataclass
class KeyAlreadyUsed(Exception):
    """The request's Idempotency-Key already made a change (its mark is in the table), so
    nothing was written. ``same_request``: the mark's fingerprint is this request's."""

    same_request: bool


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


class TransactionRunner:
    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        conflict_retries: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        mark_ttl_seconds: int = 86400,
    ) -> None:
        self.client = client
        self.table = table_name
        self._conflict_retries = conflict_retries
        self._sleep = sleep
        self._mark_ttl_seconds = mark_ttl_seconds

    def run(self, actions: list[dict[str, Any]], mark: RequestKey | None = None, now_ms: int = 0) -> None:
        """TransactWriteItems, retrying TransactionConflict with full-jitter backoff.

        With ``mark`` (a request's Idempotency-Key) the key's mark is written as one more
        action, only if the key has made no change yet: a re-run of a request whose change
        committed (its answer lost in a crash, however long ago within the key's lifetime)
        raises KeyAlreadyUsed and writes nothing. Every attempt carries the same mark, so
        whichever attempt commits, a later re-run finds it. No ClientRequestToken of our
        own: botocore fills one per call (the same across its retries of that call), and
        the mark and the items' own conditions outlive DynamoDB's 10-minute token window.
        Raises Cancelled (conditions), TooBusy (conflicts that never cleared)."""
        if mark is not None:
            actions = [*actions, self._mark_action(mark, now_ms)]
        if len(actions) > MAX_UNIT_ACTIONS:
            raise ValueError(f"{len(actions)} actions exceed DynamoDB's {MAX_UNIT_ACTIONS} per transaction")
        for attempt in range(self._conflict_retries + 1):
            try:
                self.client.transact_write_items(TransactItems=actions)
                return
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons") or [{}] * len(actions)
                codes = [r.get("Code", "None") for r in reasons]
                items = [from_av(r["Item"]) if r.get("Item") else None for r in reasons]
                if mark is not None:
                    if codes[-1] == CONDITION_FAILED:
                        old = items[-1] or {}
                        raise KeyAlreadyUsed(same_request=old.get("fingerprint") == mark.fingerprint) from None
                    codes, items = codes[:-1], items[:-1]
                if CONDITION_FAILED in codes:
                    raise Cancelled(codes, items) from None
                if "TransactionConflict" not in codes:
                    raise
            if attempt < self._conflict_retries:
                self.backoff(attempt + 1)
        raise TooBusy("the stock is being changed by many requests at once; retry shortly", {"retryAfterSeconds": 1})

    def backoff(self, attempt: int) -> None:
        self._sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))

    def get(self, key: Mapping[str, str]) -> Item | None:
        resp = self.client.get_item(TableName=self.table, Key=to_av(key), ConsistentRead=True)
        raw = resp.get("Item")
        return from_av(raw) if raw else None

    def key_used(self, key: RequestKey) -> bool | None:
        """Whether ``key`` has made a change: None (no live mark), True (by this very request:
        the same fingerprint) or False (by another request)."""
        item = self.get(request_mark_key(key.store_id, key.value))
        if item is None or item.get("purgeAt", 0) < int(time.time()):
            return None
        return bool(item.get("fingerprint") == key.fingerprint)

    def _mark_action(self, mark: RequestKey, now_ms: int) -> dict[str, Any]:
        """Put the key's mark unless a live one is there (a mark outlives its TTL until DynamoDB deletes it)."""
        now_s = (now_ms or int(time.time() * 1000)) // 1000
        item = {
            **request_mark_key(mark.store_id, mark.value),
            "type": REQUEST_MARK,
            "storeId": mark.store_id,
            "fingerprint": mark.fingerprint,
            "purgeAt": now_s + self._mark_ttl_seconds,
        }
        return {
            "Put": {
                "TableName": self.table,
                "Item": to_av(item),
                "ConditionExpression": "attribute_not_exists(pk) OR purgeAt < :now",
                "ExpressionAttributeValues": to_av({":now": now_s}),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
