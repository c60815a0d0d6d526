"""A mutating request's Idempotency-Key as the domain takes it (stockhold.domain.models.RequestKey).

The fingerprint covers what Powertools' payload validation covers (method, path, body), so
a key re-sent with another request is refused the same way after the Powertools record is
gone as before it (docs/operations.md, "What a crash does to a request")."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from http_common import idempotency_key

from stockhold.domain.models import RequestKey


def request_key(event: dict[str, Any], store_id: str) -> RequestKey | None:
    key = idempotency_key(event)
    if key is None:
        return None
    raw = event.get("body")
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw
    request = json.dumps([event.get("httpMethod"), event.get("path"), body], sort_keys=True, separators=(",", ":"))
    return RequestKey(store_id=store_id, value=key, fingerprint=hashlib.sha256(request.encode()).hexdigest())
