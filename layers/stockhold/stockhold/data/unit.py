"""A unit of work: typed intents in, one conditional write or one transaction out.

Each intent becomes one action (``stockhold.data.actions``); when the unit is refused,
every intent whose condition failed comes back named (``Refused``), with its item's
current state read from the cancellation (``ReturnValuesOnConditionCheckFailure: ALL_OLD``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from stockhold.data.actions import BUILDERS
from stockhold.data.schema import (
    Item,
    checkout_from_item,
    from_av,
    order_from_item,
    reservation_from_item,
    stock_from_item,
)
from stockhold.data.transactions import CONDITION_FAILED, Cancelled, TransactionRunner, condition_failed
from stockhold.domain.intents import (
    AdjustStock,
    CreateCell,
    CreateStock,
    EndHold,
    ExtendHold,
    Failed,
    FollowHold,
    Intent,
    MoveOrder,
    MoveStock,
    PutCheckout,
    PutOrder,
    RecountStock,
    Refused,
    RegisterCell,
    RequireActive,
    SetStock,
    WarnHold,
)
from stockhold.domain.models import RequestKey


class UnitOfWork:
    def __init__(
        self, runner: TransactionRunner, after_commit: Callable[[Sequence[Intent]], None] | None = None
    ) -> None:
        self._runner = runner
        self._table = runner.table
        self._after_commit = after_commit  # told of every unit that committed (wiring.py)

    def commit(self, intents: Sequence[Intent], mark: RequestKey | None = None, now_ms: int = 0) -> Item | None:
        """All of ``intents`` or none. Raises Refused (conditions), KeyAlreadyUsed (``mark``'s
        key made its change already) or TooBusy. A unit of one write without a mark is a
        plain conditional write, and then the item's new image is returned for an update."""
        actions = [self._action(i) for i in intents]
        if len(actions) == 1 and mark is None and "ConditionCheck" not in actions[0]:
            new = self._single(intents[0], actions[0])
            self._committed(intents)
            return new
        try:
            self._runner.run(actions, mark, now_ms)
        except Cancelled as cancelled:
            raise Refused(
                tuple(
                    Failed(intent, _decode(intent, item))
                    for intent, code, item in zip(intents, cancelled.codes, cancelled.items, strict=True)
                    if code == CONDITION_FAILED
                )
            ) from None
        self._committed(intents)
        return None

    def _committed(self, intents: Sequence[Intent]) -> None:
        if self._after_commit is not None:
            self._after_commit(intents)

    def _single(self, intent: Intent, action: dict[str, Any]) -> Item | None:
        ((kind, params),) = action.items()
        call: Callable[..., Any] = {
            "Put": self._runner.client.put_item,
            "Update": self._runner.client.update_item,
            "Delete": self._runner.client.delete_item,
        }[kind]
        extra = {"ReturnValues": "ALL_NEW"} if kind == "Update" else {}
        try:
            resp = call(**params, **extra)
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            old = exc.response.get("Item")
            raise Refused((Failed(intent, _decode(intent, from_av(old) if old else None)),)) from None
        new = resp.get("Attributes")
        return from_av(new) if new else None

    def _action(self, intent: Intent) -> dict[str, Any]:
        kind, params = BUILDERS[type(intent)](intent)
        return {kind: {"TableName": self._table, **params}}


_HOLDS = (EndHold, ExtendHold, WarnHold, RequireActive)
_STOCK = (MoveStock, CreateStock, SetStock, CreateCell, RegisterCell, AdjustStock, RecountStock)


def _decode(intent: Intent, item: Item | None) -> Any:
    """The failed intent's item as a domain value (a cart slot stays a plain dict)."""
    if item is None:
        return None
    if isinstance(intent, _HOLDS):
        return reservation_from_item(item)
    if isinstance(intent, _STOCK):
        return stock_from_item(item)
    if isinstance(intent, (PutOrder, MoveOrder)):
        return order_from_item(item)
    if isinstance(intent, (PutCheckout, FollowHold)):
        return checkout_from_item(item)
    return item
