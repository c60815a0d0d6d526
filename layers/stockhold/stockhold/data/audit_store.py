"""Data access for AUDIT items: the only code that builds their keys and expressions.

An entry lives at ``pk = STORE#{store}#AUDIT#{trail}#{id}``, ``sk = {at:015d}#{record id}``
(docs/data-model.md), so one Query reads a trail newest first. Writes are conditional
(``attribute_not_exists``): a stream record delivered again finds its entries written and
changes nothing. ``purgeAt`` (DynamoDB TTL, epoch seconds) ends each entry's retention.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from stockhold.data.audit import AuditEntity, AuditEntry, Trail
from stockhold.data.schema import AUDIT, from_av, to_av
from stockhold.data.transactions import condition_failed
from stockhold.domain.errors import ValidationFailed

AUDIT_TYPE = AUDIT
MAX_PAGE = 100
_SK = re.compile(r"^\d{15}#[^\s]{1,128}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,2048}$")


def trail_pk(store_id: str, trail: Trail, trail_id: str) -> str:
    return f"STORE#{store_id}#AUDIT#{trail.value}#{trail_id}"


def audit_key(entry: AuditEntry) -> dict[str, str]:
    return {"pk": trail_pk(entry.store_id, entry.trail, entry.trail_id), "sk": f"{entry.at:015d}#{entry.record_id}"}


class AuditPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[AuditEntry]
    next_token: str | None


class AuditStore:
    """Idempotent writes and newest-first, paginated reads of audit trails."""

    def __init__(
        self, client: Any, table_name: str, *, retention_days: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table_name
        self._retention_seconds = retention_days * 86400
        self._clock = clock

    def put(self, entries: Iterable[AuditEntry]) -> int:
        """Write each entry unless it is there already. Returns how many were new."""
        written = 0
        for entry in entries:
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=to_av(self._item(entry)),
                    ConditionExpression="attribute_not_exists(pk)",
                )
                written += 1
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
                # Already written: this stream record was delivered before.
        return written

    def trail(self, store_id: str, trail: Trail, trail_id: str, *, limit: int, next_token: str | None) -> AuditPage:
        """One page of a trail, newest first. ``next_token`` is the previous page's; a token
        that is not one (or is from another trail or store) raises ValidationFailed."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationFailed(f"limit is 1 to {MAX_PAGE}", {"fields": [{"field": "query.limit"}]})
        pk = trail_pk(store_id, trail, trail_id)
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_av({":pk": pk}),
            "ScanIndexForward": False,
            # One more than asked: a next page is announced only when there is one.
            "Limit": limit + 1,
        }
        if next_token is not None:
            kwargs["ExclusiveStartKey"] = to_av(decode_token(next_token, pk))
        page = self._client.query(**kwargs)
        raw = page.get("Items", [])
        items = [entry_from_item(from_av(x)) for x in raw[:limit]]
        if len(raw) > limit:
            last = from_av(raw[limit - 1])
            token: str | None = encode_token({"pk": last["pk"], "sk": last["sk"]})
        elif page.get("LastEvaluatedKey"):  # the 1 MB page limit cut it short
            token = encode_token(from_av(page["LastEvaluatedKey"]))
        else:
            token = None
        return AuditPage(items=items, next_token=token)

    def _item(self, entry: AuditEntry) -> dict[str, Any]:
        return {
            **audit_key(entry),
            "type": AUDIT_TYPE,
            "storeId": entry.store_id,
            "recordId": entry.record_id,
            "at": entry.at,
            "action": entry.action,
            "entity": {"type": entry.entity.type, "id": entry.entity.id},
            "ref": entry.ref,
            "before": _numbers(entry.before),
            "after": _numbers(entry.after),
            "actor": entry.actor,
            "reason": entry.reason,
            "purgeAt": int(self._clock()) + self._retention_seconds,
        }


def entry_from_item(item: Mapping[str, Any]) -> AuditEntry:
    _, store_id, _, trail, trail_id = str(item["pk"]).split("#", 4)
    return AuditEntry(
        store_id=store_id,
        trail=Trail(trail),
        trail_id=trail_id,
        record_id=str(item["recordId"]),
        at=int(item["at"]),
        action=str(item["action"]),
        entity=AuditEntity.model_validate(item["entity"]),
        ref=item.get("ref"),
        before=item.get("before"),
        after=item.get("after"),
        actor=str(item["actor"]),
        reason=item.get("reason"),
    )


# --- pagination tokens: opaque to callers, checked on the way in ---------------------------


def encode_token(key: Mapping[str, Any]) -> str:
    raw = json.dumps({"pk": key["pk"], "sk": key["sk"]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, expected_pk: str) -> dict[str, str]:
    """The key a token continues from, if it is a token of this very trail."""
    bad = ValidationFailed(
        "nextToken is not a token from this trail's previous page", {"fields": [{"field": "query.nextToken"}]}
    )
    if not _TOKEN.match(token):
        raise bad
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(key, dict) or set(key) != {"pk", "sk"}:
        raise bad
    pk, sk = key["pk"], key["sk"]
    if pk != expected_pk or not isinstance(sk, str) or not _SK.match(sk):
        raise bad
    return {"pk": pk, "sk": sk}


def _numbers(value: Any) -> Any:
    """Floats as Decimal (boto3 takes no floats); everything else as is."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value
