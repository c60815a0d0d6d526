"""The two control-flow rules every use case shares: bounded re-reading when the data
moved under a decision (``settle``), and at-most-once under an Idempotency-Key (``once``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from stockhold.data.transactions import KeyAlreadyUsed, TransactionRunner
from stockhold.domain.errors import IdempotencyKeyReused, StockholdError, TooBusy
from stockhold.domain.models import RequestKey
from stockhold.observability import count, logger

T = TypeVar("T")
RETRIES: Final = 4


class Again:
    """Returned by a ``settle`` step: what it read has changed; read again and decide again."""


AGAIN: Final = Again()


def settle(what: str, step: Callable[[], T | Again], retries: int = RETRIES) -> T:
    """Run ``step`` until it decides (returns a value), at most ``retries`` times; then
    answer 503 TOO_BUSY: ``what`` kept changing. Nothing was written by the failed tries."""
    for _ in range(retries):
        result = step()
        if not isinstance(result, Again):
            return result
    raise TooBusy(f"{what} kept changing; retry shortly")


def once(
    marks: TransactionRunner, key: RequestKey | None, run: Callable[[], T], current: Callable[[], T], what: str
) -> T:
    """Run a change made under an Idempotency-Key at most once, for the key's whole lifetime.

    ``run`` writes the key's mark in the change's own transaction. A re-run of a request
    whose change committed (its answer lost in a crash) finds the mark, changes nothing, and
    answers ``current()``: what a GET shows now. So does a re-run that the rules would now
    refuse (the extension it used was the last): the mark is read on that path only. The
    same key with another request is IDEMPOTENCY_KEY_REUSED."""
    try:
        return run()
    except KeyAlreadyUsed as used:
        same = used.same_request
    except StockholdError as refused:
        if key is None or refused.status >= 500 or isinstance(refused, IdempotencyKeyReused):
            raise
        found = marks.key_used(key)
        if found is None:
            raise
        same = found
    if not same:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    count("RequestsAnsweredFromState")
    logger.info("request already took effect; answering from the current state", what=what)
    return current()
