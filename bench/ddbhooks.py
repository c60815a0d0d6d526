"""botocore event hooks on a DynamoDB client: count requests, account capacity, capture parameters.

``before-call`` fires once per API call (retries of that call do not fire it again, so
HTTP attempts are counted separately with ``before-send``). With ``capacity`` on,
``ReturnConsumedCapacity='TOTAL'`` is added to every request that accepts it and the
``ConsumedCapacity`` of each answer is summed.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
_ids = itertools.count()


@dataclass
class CallRecord:
    operation: str
    params: dict[str, Any]  # as the caller passed them (before any injection); {} unless capturing
    rcu: float = 0.0
    wcu: float = 0.0
    capacity_reported: bool = False  # False: the answer carried no ConsumedCapacity
    failed: bool = False

    @property
    def actions(self) -> int:
        """Items in a transaction or batch request (1 for single-item calls)."""
        if "TransactItems" in self.params:
            return len(self.params["TransactItems"])
        if "RequestItems" in self.params:
            return sum(
                len(v.get("Keys", v) if isinstance(v, dict) else v) for v in self.params["RequestItems"].values()
            )
        return 1


class DynamoRecorder:
    """Hooks on one client. ``calls`` holds the API calls made since the last :meth:`reset`."""

    def __init__(self, client: Any) -> None:
        self._events = client.meta.events
        self._uid = f"stockhold-bench-{next(_ids)}"
        self.capacity = False  # inject ReturnConsumedCapacity and keep a copy of each request's parameters
        self.calls: list[CallRecord] = []
        self.attempts = 0
        self._pending: dict[str, Any] = {}
        self._hooks = [
            ("before-parameter-build.dynamodb.*", self._on_params),
            ("before-call.dynamodb.*", self._on_call),
            ("before-send.dynamodb.*", self._on_send),
            ("after-call.dynamodb.*", self._on_answer),
        ]
        for event, handler in self._hooks:
            self._events.register(event, handler, unique_id=f"{self._uid}-{event}")

    def close(self) -> None:
        for event, _ in self._hooks:
            self._events.unregister(event, unique_id=f"{self._uid}-{event}")

    def reset(self) -> None:
        self.calls = []
        self.attempts = 0

    # -- hooks

    def _on_params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if not self.capacity:
            return  # while timing: count only, no copying
        self._pending = copy.deepcopy(params)
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params["ReturnConsumedCapacity"] = "TOTAL"

    def _on_call(self, model: Any, **_: Any) -> None:
        self.calls.append(CallRecord(model.name, self._pending))
        self._pending = {}

    def _on_send(self, **_: Any) -> None:
        self.attempts += 1

    def _on_answer(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if not self.calls:
            return
        record = self.calls[-1]
        record.failed = "Error" in parsed
        consumed = parsed.get("ConsumedCapacity")
        if consumed is None:
            return
        record.capacity_reported = True
        for entry in consumed if isinstance(consumed, list) else [consumed]:
            if "ReadCapacityUnits" in entry or "WriteCapacityUnits" in entry:
                record.rcu += float(entry.get("ReadCapacityUnits", 0))
                record.wcu += float(entry.get("WriteCapacityUnits", 0))
            elif model.name in READ_OPERATIONS:
                record.rcu += float(entry.get("CapacityUnits", 0))
            else:
                record.wcu += float(entry.get("CapacityUnits", 0))


# --- item size, by the rules DynamoDB bills with ---------------------------------------


def item_size(item: dict[str, Any]) -> int:
    """Approximate DynamoDB size in bytes of an item in wire (AttributeValue) form."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        digits = Decimal(str(raw)).normalize().as_tuple().digits
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in raw.items())
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: v}) for v in raw)
    raise ValueError(f"unknown attribute type {kind}")
