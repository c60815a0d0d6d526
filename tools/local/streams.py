"""DynamoDB Streams -> Lambda, locally, with Lambda's event-source semantics.

For each stream event of a function: its FilterCriteria (matched with moto's
EventBridge pattern matcher, the same filter language), BatchSize,
ParallelizationFactor (up to N batches of a shard at once, each item's records in one
of them and in order), the ``ReportBatchItemFailures`` response (retry from the first
failed record), a failed invocation (an error, or an execution environment that died:
the batch again, halved first with BisectBatchOnFunctionError), bounded retries
(MaximumRetryAttempts) and, once exhausted, the records logged as sent to the OnFailure
destination. The shard moves past a page of records only once every record of it was
handled that way, so a failure never drops a batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from tools.local.functions import FunctionPool

log = logging.getLogger("stockhold.local")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return value


def lambda_record(record: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB Streams API record (as boto3 returns it) in the shape Lambda delivers."""
    out = _plain(record)
    identity = out.get("userIdentity")
    if identity:
        out["userIdentity"] = {"type": identity.get("Type"), "principalId": identity.get("PrincipalId")}
    return out


class StreamSource:
    """Polls one table's stream for one function event."""

    def __init__(
        self,
        *,
        function: FunctionPool,
        streams_client: Any,
        stream_arn: str,
        properties: dict[str, Any],
        poll_seconds: float = 0.25,
    ) -> None:
        self._fn = function
        self._client = streams_client
        self._arn = stream_arn
        self._batch = int(properties.get("BatchSize", 100))
        self._parallel = max(1, int(properties.get("ParallelizationFactor", 1)))
        self._count_lock = threading.Lock()
        self._retries = int(properties.get("MaximumRetryAttempts", -1))
        self._report_failures = "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", [])
        self._bisect = bool(properties.get("BisectBatchOnFunctionError", False))
        self._start = properties.get("StartingPosition", "LATEST")
        filters = properties.get("FilterCriteria", {}).get("Filters", [])
        from moto.events.models import EventPattern  # here: `make run` imports moto only once its API answers

        self._patterns = [EventPattern(None, json.loads(f["Pattern"])) for f in filters]
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{function.name}", daemon=True)
        self.invocations = 0
        self.discarded: list[dict[str, Any]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def matches(self, record: dict[str, Any]) -> bool:
        return not self._patterns or any(p.matches_event(record) for p in self._patterns)  # type: ignore[arg-type]

    def _run(self) -> None:
        iterators: dict[str, str | None] = {}
        first = True
        while not self._stop.is_set():
            try:
                shards = self._client.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
                for shard in shards:
                    sid = shard["ShardId"]
                    if sid not in iterators:
                        kind = self._start if first else "TRIM_HORIZON"
                        iterators[sid] = self._client.get_shard_iterator(
                            StreamArn=self._arn, ShardId=sid, ShardIteratorType=kind
                        )["ShardIterator"]
                first = False
                for sid, iterator in list(iterators.items()):
                    if iterator is None or self._stop.is_set():
                        continue
                    page = self._client.get_records(ShardIterator=iterator, Limit=self._batch)
                    records = [r for r in (lambda_record(x) for x in page.get("Records", [])) if self.matches(r)]
                    if records:
                        self._deliver_parallel(records)
                    if self._stop.is_set():
                        break  # stopped mid-batch: not delivered, so not passed (as a restarted mapping would)
                    # Only now, with every record of the page handled (or sent to OnFailure), does the
                    # shard move on: an invocation that fails or dies is retried, never skipped.
                    iterators[sid] = page.get("NextShardIterator")
            except Exception as exc:
                if not self._stop.is_set():
                    sys.stderr.write(f"[stream {self._fn.name}] poll failed: {exc}\n")
            self._stop.wait(self._poll)

    def _deliver_parallel(self, records: list[dict[str, Any]]) -> None:
        """Split by item key into ParallelizationFactor batches (an item's records keep their
        order, in one batch) and deliver them at once, as Lambda does for a shard."""
        if self._parallel == 1:
            self._deliver(records)
            return
        lanes: list[list[dict[str, Any]]] = [[] for _ in range(self._parallel)]
        for record in records:
            key = json.dumps(record.get("dynamodb", {}).get("Keys", {}), sort_keys=True)
            lanes[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % self._parallel].append(record)
        busy = [lane for lane in lanes if lane]
        if len(busy) == 1:
            self._deliver(busy[0])
            return
        with ThreadPoolExecutor(max_workers=len(busy), thread_name_prefix=f"stream-{self._fn.name}") as pool:
            list(pool.map(self._deliver, busy))

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        """Invoke with the batch until every record is handled, as Lambda does: after a reported
        batch item failure, retry from the first failed record; after a failed invocation (an
        error, or an environment that died), retry the batch, split in two first with
        BisectBatchOnFunctionError. Each failed try counts against MaximumRetryAttempts (-1:
        forever); records that exhaust it go to the OnFailure destination and the shard moves on."""
        # Parts still to deliver, in stream order, each with the tries it has failed so far.
        parts: list[tuple[list[dict[str, Any]], int]] = [(records, 0)]
        while parts and not self._stop.is_set():
            batch, failures = parts.pop(0)
            with self._count_lock:
                self.invocations += 1
            result = self._fn.invoke({"Records": batch})
            failed_from = 0 if result.failed else self._first_reported_failure(batch, result.payload)
            if failed_from is None:
                continue  # every record handled
            failures += 1
            rest = batch[failed_from:]
            if self._retries >= 0 and failures > self._retries:
                self._send_to_on_failure(rest, failures)
                continue
            if result.failed and self._bisect and len(rest) > 1:
                half = len(rest) // 2
                parts[0:0] = [(rest[:half], failures), (rest[half:], failures)]
            else:
                parts.insert(0, (rest, failures))
            self._stop.wait(min(0.05 * 2 ** min(failures, 6), 2.0))  # Lambda backs off between retries

    def _first_reported_failure(self, batch: list[dict[str, Any]], payload: Any) -> int | None:
        """Index of the first record the function reported failed (ReportBatchItemFailures), if any."""
        if not self._report_failures or not isinstance(payload, dict):
            return None
        seqs = [r["dynamodb"]["SequenceNumber"] for r in batch]
        failures = payload.get("batchItemFailures") or []
        if not isinstance(failures, list):
            return 0  # a malformed answer: Lambda treats the whole batch as failed
        positions = []
        for failure in failures:
            ident = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if ident not in seqs:
                return 0  # an empty or unknown identifier also fails the whole batch
            positions.append(seqs.index(ident))
        return min(positions) if positions else None

    def _send_to_on_failure(self, records: list[dict[str, Any]], tries: int) -> None:
        self.discarded.extend(records)
        sys.stderr.write(
            f"[stream {self._fn.name}] {len(records)} record(s) failed {tries} times: "
            f"sent to the OnFailure destination (first sequence {records[0]['dynamodb']['SequenceNumber']})\n"
        )
