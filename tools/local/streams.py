"""DynamoDB Streams -> Lambda, locally, with Lambda's event-source semantics.

For each stream event of a function: its FilterCriteria (matched with moto's
EventBridge pattern matcher, the same filter language), BatchSize,
ParallelizationFactor (up to N batches of a shard at once, each item's records in one
of them and in order), the ``ReportBatchItemFailures`` response (retry from the first
failed record), bounded retries (MaximumRetryAttempts) and, once exhausted, the batch
logged as sent to the OnFailure destination.
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

from moto.events.models import EventPattern

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
        self._start = properties.get("StartingPosition", "LATEST")
        filters = properties.get("FilterCriteria", {}).get("Filters", [])
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
                    if iterator is None:
                        continue
                    page = self._client.get_records(ShardIterator=iterator, Limit=self._batch)
                    iterators[sid] = page.get("NextShardIterator")
                    records = [r for r in (lambda_record(x) for x in page.get("Records", [])) if self.matches(r)]
                    if records:
                        self._deliver_parallel(records)
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
        """Invoke with the batch; retry from the first failed record, as Lambda does."""
        attempt = 0
        while records and not self._stop.is_set():
            with self._count_lock:
                self.invocations += 1
            result = self._fn.invoke({"Records": records})
            failed_from: int | None = None
            if result.failed:
                failed_from = 0
            elif self._report_failures and isinstance(result.payload, dict):
                ids = [f.get("itemIdentifier") for f in result.payload.get("batchItemFailures", [])]
                seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
                positions = [seqs.index(i) for i in ids if i in seqs]
                if positions:
                    failed_from = min(positions)
            if failed_from is None:
                return
            records = records[failed_from:]
            attempt += 1
            if self._retries >= 0 and attempt > self._retries:
                self.discarded.extend(records)
                sys.stderr.write(
                    f"[stream {self._fn.name}] {len(records)} record(s) failed {attempt} times: "
                    f"sent to the OnFailure destination (first sequence {records[0]['dynamodb']['SequenceNumber']})\n"
                )
                return
