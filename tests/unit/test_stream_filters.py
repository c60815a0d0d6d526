"""The table stream's two readers admit what its four readers did (docs/decisions.md, "Two
readers per stream shard"), plus the hold stream's one new record: a hold that stays
ACTIVE (an extension: the slot of its new deadline is armed, docs/expiry.md).

Every filter is matched by tools/local's matcher (moto's EventBridge pattern matcher: the
same filter language Lambda uses) over a grid of records: every event name, item type,
old and new status, ``lastAction``, ``unlimited`` and stream ``userIdentity``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from stockhold.data.schema import to_av
from tests.helpers import load_function
from tools import template
from tools.local.streams import StreamSource
from tools.template import ROOT

# The FilterCriteria of the four readers before the merge, as template.yaml had them.
OLD = {
    "TimerStarterFunction": [
        '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"type": {"S": ["RESERVATION"]}, "status": {"S": ["ACTIVE"]}}}}',
    ],
    "TtlReleaseFunction": [
        '{"eventName": ["REMOVE"], "userIdentity": {"type": ["Service"], "principalId": ["dynamodb.amazonaws.com"]}, "dynamodb": {"OldImage": {"type": {"S": ["RESERVATION"]}, "status": {"S": ["ACTIVE"]}}}}',
    ],
    "AuditFunction": [
        '{"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {"type": {"S": ["RESERVATION", "STOCK", "CHECKOUT", "ORDER"]}}}}',
    ],
    "EventsFunction": [
        '{"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {"type": {"S": ["STOCK"]}, "unlimited": {"BOOL": [false]}}}}',
        '{"eventName": ["MODIFY"], "dynamodb": {"OldImage": {"type": {"S": ["RESERVATION"]}, "status": {"S": ["ACTIVE"]}}, "NewImage": {"status": {"S": ["EXPIRED"]}}}}',
        '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"type": {"S": ["RESERVATION"]}, "status": {"S": ["EXPIRED"]}}}}',
        '{"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"type": {"S": ["RESERVATION"]}, "status": {"S": ["ACTIVE"]}, "lastAction": {"S": ["reservation_expiring"]}}}}',
        '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"type": {"S": ["ORDER"]}}}}',
    ],
}

TYPES = ["RESERVATION", "STOCK", "CHECKOUT", "ORDER", "AUDIT", "EVENT_SENT", "CART_HOLD"]
STATUSES = [None, "ACTIVE", "CONFIRMED", "RELEASED", "EXPIRED"]
ACTIONS = [None, "reservation_expiring", "reservation_extended"]
UNLIMITED = [None, False, True]
TTL_SERVICE = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
IDENTITIES = [None, TTL_SERVICE, {"type": "Service", "principalId": "other.amazonaws.com"}]


class _Nobody:
    name = "nobody"


def _source(patterns: list[str]) -> StreamSource:
    props = {"FilterCriteria": {"Filters": [{"Pattern": p} for p in patterns]}}
    return StreamSource(function=_Nobody(), streams_client=None, stream_arn="", properties=props)  # type: ignore[arg-type]


def _template_source(function: str) -> StreamSource:
    (event,) = [e for e in template.functions()[function].events.values() if e["Type"] == "DynamoDB"]
    return StreamSource(function=_Nobody(), streams_client=None, stream_arn="", properties=event["Properties"])  # type: ignore[arg-type]


def _image(kind: str, status: str | None, action: str | None, unlimited: bool | None) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": f"PK#{kind}", "sk": "SK", "type": kind, "storeId": "demo"}
    for name, value in (("status", status), ("lastAction", action), ("unlimited", unlimited)):
        if value is not None:
            item[name] = value
    return to_av(item)


def _records() -> list[dict[str, Any]]:
    out = []
    seq = itertools.count(1)
    for kind, was, now, action, unlimited, identity in itertools.product(
        TYPES, STATUSES, STATUSES, ACTIONS, UNLIMITED, IDENTITIES
    ):
        for name in ("INSERT", "MODIFY", "REMOVE"):
            if (name == "INSERT" and was is not None) or (name == "REMOVE" and now is not None):
                continue  # one image only: vary it once
            ddb: dict[str, Any] = {"SequenceNumber": str(next(seq)), "Keys": to_av({"pk": f"PK#{kind}", "sk": "SK"})}
            if name != "INSERT":
                ddb["OldImage"] = _image(kind, was, action, unlimited)
            if name != "REMOVE":
                ddb["NewImage"] = _image(kind, now, action, unlimited)
            record: dict[str, Any] = {"eventID": f"e{ddb['SequenceNumber']}", "eventName": name, "dynamodb": ddb}
            if identity is not None:
                record["userIdentity"] = identity
            out.append(record)
    return out


RECORDS = _records()


def _status(record: dict[str, Any], image: str) -> str | None:
    status: str | None = record["dynamodb"].get(image, {}).get("status", {}).get("S")
    return status


def _stays_active(record: dict[str, Any]) -> bool:
    """The one kind of record the hold stream admits that no reader did before."""
    old, new = record["dynamodb"].get("OldImage", {}), record["dynamodb"].get("NewImage", {})
    return (
        record["eventName"] == "MODIFY"
        and old.get("type") == new.get("type") == {"S": "RESERVATION"}
        and old.get("status") == new.get("status") == {"S": "ACTIVE"}
    )


def test_the_grid_covers_every_kind_of_record() -> None:
    old = {name: _source(patterns) for name, patterns in OLD.items()}
    for name, source in old.items():
        assert any(source.matches(r) for r in RECORDS), name
    assert any(_stays_active(r) for r in RECORDS)
    assert len(RECORDS) > 3000


def test_the_hold_stream_admits_what_the_timer_starter_and_ttl_release_did_and_holds_staying_active() -> None:
    hold_stream = _template_source("HoldStreamFunction")
    starter, ttl = _source(OLD["TimerStarterFunction"]), _source(OLD["TtlReleaseFunction"])
    wrong = [r for r in RECORDS if hold_stream.matches(r) != (starter.matches(r) or ttl.matches(r) or _stays_active(r))]
    assert wrong == []


def test_the_change_feed_admits_what_the_audit_and_events_functions_did() -> None:
    feed = _template_source("ChangeFeedFunction")
    audit, events = _source(OLD["AuditFunction"]), _source(OLD["EventsFunction"])
    wrong = [r for r in RECORDS if feed.matches(r) != (audit.matches(r) or events.matches(r))]
    assert wrong == []


def test_the_hold_streams_dispatch_agrees_with_its_filter() -> None:
    """Each admitted record goes to exactly the handler its filter pattern stands for; nothing else
    is handled. A hold that stays ACTIVE is handled only when its deadline moved (the grid's
    images have none: a warning's or a payment step's write that left the deadline alone)."""
    app = load_function("hold_stream")
    hold_stream = _template_source("HoldStreamFunction")
    starter, ttl = _source(OLD["TimerStarterFunction"]), _source(OLD["TtlReleaseFunction"])
    for r in RECORDS:
        change = app.change_of(r)
        assert (change is not None or _stays_active(r)) == hold_stream.matches(r), r
        if change is app.Change.NEW_HOLD:
            assert starter.matches(r), r
        elif change is app.Change.TTL_DELETED:
            assert ttl.matches(r), r
        else:
            assert change is None, r


def test_only_a_moved_deadline_of_an_active_hold_is_an_extension() -> None:
    app = load_function("hold_stream")
    (record,) = json.loads((ROOT / "events/hold_stream-hold-extended.json").read_text())["Records"]
    assert app.change_of(record) is app.Change.EXTENDED
    same = json.loads(json.dumps(record))
    same["dynamodb"]["NewImage"]["expiresAt"] = same["dynamodb"]["OldImage"]["expiresAt"]
    assert _template_source("HoldStreamFunction").matches(same) and app.change_of(same) is None
    confirmed = json.loads(json.dumps(record))
    confirmed["dynamodb"]["NewImage"]["status"] = {"S": "CONFIRMED"}
    assert not _template_source("HoldStreamFunction").matches(confirmed) and app.change_of(confirmed) is None


def test_expired_holds_are_not_the_hold_streams() -> None:
    """ACTIVE -> EXPIRED: the timer ended it itself, or another path did while the timer is at or past
    the deadline; stopping it would save at most a wake-up (docs/expiry.md)."""
    hold_stream = _template_source("HoldStreamFunction")
    expired = [r for r in RECORDS if r["eventName"] == "MODIFY" and _status(r, "NewImage") == "EXPIRED"]
    assert expired and not any(hold_stream.matches(r) for r in expired)


@pytest.mark.parametrize(
    ("sample", "change"),
    [
        ("hold_stream-new-hold.json", "new_hold"),
        ("hold_stream-ttl-remove.json", "ttl_deleted"),
        ("hold_stream-hold-extended.json", "extended"),
    ],
)
def test_each_hold_stream_sample_is_admitted_and_dispatched(sample: str, change: str) -> None:
    (record,) = json.loads((ROOT / "events" / sample).read_text())["Records"]
    assert _template_source("HoldStreamFunction").matches(record)
    assert load_function("hold_stream").change_of(record) == change


@pytest.mark.parametrize("sample", ["change_feed-reservation-confirmed.json", "change_feed-stock-low.json"])
def test_each_change_feed_sample_is_admitted(sample: str) -> None:
    (record,) = json.loads((ROOT / "events" / sample).read_text())["Records"]
    assert _template_source("ChangeFeedFunction").matches(record)
