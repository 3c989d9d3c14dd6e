"""Batched, idempotent inserts, retried until ClickHouse acknowledges them.

A batch carries an ``insert_deduplication_token`` derived from its content, so a retry of the
same batch is not inserted twice; rows that reach ClickHouse twice by another path (a
redelivery after a crash) collapse in the ReplacingMergeTree on ``event_id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from driftwarden.core.errors import RowRejectedError
from driftwarden.core.secrets import scrub
from driftwarden.core.schemas import (
    AlertEvent,
    DetectionResult,
    DriftResult,
    Feedback,
    EmbeddingRecord,
    InferenceEvent,
    RetrainRequest,
    RetrainStatus,
)

log = logging.getLogger(__name__)

EVENT_COLUMNS = [
    "event_id", "ts", "app", "model", "model_version", "prompt", "response", "context",
    "latency_ms", "tokens_in", "tokens_out", "cost_usd", "status", "error", "user_id",
    "session_id", "feedback", "metadata", "redacted", "ingested_at",
]
DETECTION_COLUMNS = [
    "event_id", "detector", "detector_version", "config_fingerprint", "app", "model_version",
    "event_ts", "scored_at", "score", "label", "scores", "spans", "evidence", "error",
]
EMBEDDING_COLUMNS = ["event_id", "field", "app", "model_version", "event_ts", "encoder", "computed_at", "vector"]
DRIFT_COLUMNS = [
    "window_id", "app", "model_version", "field", "window_start", "window_end", "n_reference", "n_current",
    "method", "statistic", "p_value", "reference_policy", "reference_id", "top_event_ids", "descriptor_p_values",
    "novel_share", "clusters", "part_p_values", "encoder",
    "detector_version", "config_fingerprint", "computed_at",
]
ALERT_COLUMNS = [
    "alert_id", "status", "dedupe_key", "rule", "severity", "app", "model_version", "field", "metric", "detector",
    "value", "threshold", "baseline", "summary", "example_event_ids", "window_id", "window_start", "window_end",
    "labels", "dashboard_url", "retrain_requested", "starts_at", "ends_at", "policy_fingerprint",
]
REQUEST_COLUMNS = ["request_id", "alert_id", "app", "model_version", "reason", "start", "end", "dataset",
                   "requested_at"]
JOB_COLUMNS = ["job_id", "request_id", "app", "model_version", "status", "launcher", "dataset_version",
               "dataset_rows", "metrics", "message", "output_dir", "updated_at", "decision", "decision_reasons",
               "registered_model", "registered_version"]
FEEDBACK_COLUMNS = ["event_id", "source", "score", "comment", "given_at", "received_at"]
DEAD_LETTER_COLUMNS = [
    "dlq_id", "received_at", "source_topic", "source_partition", "source_offset", "stage",
    "reason", "message_key", "raw",
]


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed, as read back from the dead-letter topic."""

    source_topic: str
    source_partition: int
    source_offset: int
    stage: str
    reason: str
    key: bytes
    raw: bytes
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def dlq_id(self) -> str:
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}"


def event_row(event: InferenceEvent, *, redacted: bool, now: datetime) -> list:
    return [
        event.event_id, event.timestamp, event.app, event.model, event.model_version,
        event.prompt, event.response, list(event.context or []), event.latency_ms,
        event.tokens_in, event.tokens_out, event.cost_usd, event.status, event.error,
        event.user_id, event.session_id, event.feedback, dict(event.metadata), int(redacted), now,
    ]


def detection_row(r: DetectionResult) -> list:
    spans = json.dumps([s.model_dump() for s in r.spans]) if r.spans else "[]"
    label = None if r.label is None else int(r.label)
    return [
        r.event_id, r.detector, r.detector_version, r.config_fingerprint, r.app, r.model_version,
        r.event_ts, r.scored_at, r.score, label, dict(r.scores), spans, r.evidence, r.error,
    ]


def dead_letter_row(d: DeadLetter) -> list:
    return [
        d.dlq_id, d.received_at, d.source_topic, d.source_partition, d.source_offset, d.stage,
        d.reason, d.key, d.raw,
    ]


def _drift_value(r: DriftResult, column: str):
    """A drift_windows cell: the clusters as one JSON text, everything else as it is."""
    if column == "clusters":
        return json.dumps([c.model_dump() for c in r.clusters])
    return getattr(r, column)


def dedup_token(table: str, ids: Sequence[str]) -> str:
    digest = hashlib.sha256(table.encode())
    for item in ids:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest()


class StoreDownError(ConnectionError):
    """Raised by :class:`ChaosClient` while its fault file exists."""


class ChaosClient:
    """Wraps a client; every insert fails while ``down_file`` exists (drills and tests)."""

    def __init__(self, client, down_file):
        self._client = client
        self._down_file = down_file

    def insert(self, *args, **kwargs):
        if self._down_file.exists():
            raise StoreDownError(f"chaos: ClickHouse made unavailable by {self._down_file}")
        return self._client.insert(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class Writer:
    """Inserts rows into driftwarden's tables through one clickhouse-connect client."""

    def __init__(self, client, database: str):
        self.client = client
        self.database = database

    def insert(self, table: str, columns: list[str], rows: list[list], ids: Sequence[str]) -> None:
        if not rows:
            return
        self.client.insert(
            f"{self.database}.{table}",
            rows,
            column_names=columns,
            settings={"insert_deduplication_token": dedup_token(table, ids)},
        )

    def insert_events(self, events: Sequence[InferenceEvent], *, redacted: bool = False) -> None:
        now = datetime.now(UTC)
        rows = [event_row(e, redacted=redacted, now=now) for e in events]
        self.insert("inference_events", EVENT_COLUMNS, rows, [e.event_id for e in events])

    def insert_detections(self, results: Sequence[DetectionResult]) -> None:
        rows = [detection_row(r) for r in results]
        self.insert("detections", DETECTION_COLUMNS, rows, [f"{r.event_id}/{r.detector}" for r in results])

    def insert_embeddings(self, records: Sequence[EmbeddingRecord]) -> None:
        rows = [[r.event_id, r.field, r.app, r.model_version, r.event_ts, r.encoder, r.computed_at, r.vector]
                for r in records]
        self.insert("embeddings", EMBEDDING_COLUMNS, rows, [f"{r.event_id}/{r.field}" for r in records])

    def insert_drift(self, results: Sequence[DriftResult]) -> None:
        rows = [[_drift_value(r, c) for c in DRIFT_COLUMNS] for r in results]
        self.insert("drift_windows", DRIFT_COLUMNS, rows, [r.window_id for r in results])

    def insert_alerts(self, alerts: Sequence[AlertEvent]) -> None:
        rows = [[getattr(a, c) for c in ALERT_COLUMNS] for a in alerts]
        self.insert("alerts", ALERT_COLUMNS, rows, [f"{a.alert_id}/{a.status}" for a in alerts])

    def insert_retrain_requests(self, requests: Sequence[RetrainRequest]) -> None:
        rows = [[r.request_id, r.alert_id, r.app, r.model_version, r.reason, r.start, r.end,
                 r.dataset.model_dump_json(), r.requested_at] for r in requests]
        self.insert("retrain_requests", REQUEST_COLUMNS, rows, [r.request_id for r in requests])

    def insert_retrain_status(self, statuses: Sequence[RetrainStatus]) -> None:
        rows = [[getattr(s, c) for c in JOB_COLUMNS] for s in statuses]
        tokens = [f"{s.job_id}/{s.status}/{s.decision}/{s.updated_at.isoformat()}" for s in statuses]
        self.insert("retrain_jobs", JOB_COLUMNS, rows, tokens)

    def insert_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        rows = [dead_letter_row(d) for d in letters]
        self.insert("dead_letters", DEAD_LETTER_COLUMNS, rows, [d.dlq_id for d in letters])

    def insert_feedback(self, items: Sequence[Feedback]) -> None:
        now = datetime.now(UTC)
        rows = [[f.event_id, f.source, f.score, f.comment or "", f.timestamp, now] for f in items]
        self.insert("feedback", FEEDBACK_COLUMNS, rows,
                    [f"{f.event_id}/{f.source}/{f.timestamp.isoformat()}/{f.score}" for f in items])


#: ClickHouse error codes that mean "this data", not "this server": type mismatches, values out of
#: range, unparsable input. Anything else (network, memory, too many parts, ...) is retried.
DATA_ERROR_CODES = frozenset({6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 321, 395})


def is_data_error(exc: BaseException) -> bool:
    """True when a failed insert was refused for its rows (retrying the same rows cannot help)."""
    from clickhouse_connect.driver import exceptions as ch

    if isinstance(exc, ConnectionError | TimeoutError | ch.OperationalError):
        return False
    # Not ProgrammingError: the chdb backend raises it for a closed client, which is no fault of the rows.
    if isinstance(exc, ch.DataError | ValueError | TypeError | OverflowError | struct.error):
        return True
    code = getattr(exc, "code", None)
    return isinstance(exc, ch.DatabaseError) and code in DATA_ERROR_CODES


async def insert_splitting(
    write: Callable[[list], None],
    items: list,
    *,
    what: str,
    max_backoff_s: float,
    on_failure: Callable[[int, BaseException], None] | None = None,
    on_rejected: Callable[[object, RowRejectedError], Awaitable[None]],
    on_written: Callable[[list], None] | None = None,
) -> int:
    """Insert ``items`` with ``write`` until ClickHouse acknowledges them; rows it refuses as data
    are split out (halving the batch) and handed one by one to ``on_rejected``, so a bad row never
    stalls a table. Outages are retried as in :func:`until_acknowledged`. Returns rows written."""
    written = 0
    pending = [items] if items else []
    while pending:
        chunk = pending.pop()
        try:
            await until_acknowledged(partial(write, chunk), what=f"{len(chunk)} {what}", max_backoff_s=max_backoff_s,
                                     on_failure=on_failure, give_up=is_data_error)
            written += len(chunk)
            if on_written is not None:
                on_written(chunk)
        except RowRejectedError as exc:
            if len(chunk) == 1:
                await on_rejected(chunk[0], exc)
            else:
                log.warning("ClickHouse refused a batch of %d %s as data (%s); splitting it to find the bad rows",
                            len(chunk), what, scrub(str(exc.cause))[:200])
                middle = len(chunk) // 2
                pending.extend((chunk[middle:], chunk[:middle]))
    return written


async def until_acknowledged(
    write: Callable[[], None],
    *,
    what: str,
    max_backoff_s: float,
    on_failure: Callable[[int, BaseException], None] | None = None,
    give_up: Callable[[BaseException], bool] | None = None,
) -> int:
    """Run the blocking ``write`` in a thread until it succeeds; returns the attempts it took.

    Never gives up on an outage: while ClickHouse refuses, the caller (an agent) stays here, so
    its stream stops consuming and no offset past the batch is committed (back-pressure, nothing
    lost). A failure for which ``give_up`` is true raises :class:`RowRejectedError` instead.
    """
    attempt = 0
    backoff = 0.2
    while True:
        attempt += 1
        try:
            await asyncio.to_thread(write)
        except Exception as exc:  # noqa: BLE001 - every failure is retried or handed back
            if on_failure is not None:
                on_failure(attempt, exc)
            if give_up is not None and give_up(exc):
                raise RowRejectedError(what, exc) from exc
            log.warning(
                "ClickHouse write of %s failed (attempt %d: %s: %s); consumption is paused and the "
                "write is retried in %.1f s. Check that ClickHouse is up and writable.",
                what, attempt, type(exc).__name__, scrub(str(exc))[:300], backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        if attempt > 1:
            log.info("ClickHouse write of %s succeeded after %d attempts; consumption resumes", what, attempt)
        return attempt
