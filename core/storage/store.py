"""The one seam to ClickHouse: every read and write that the rest of driftwarden needs, by name.

Agents, curation, the report, the CLI and the alert retries receive a :class:`Store`; none of
them holds a client or writes SQL (a test greps for it). :class:`ClickHouseStore` is the real
one (an embedded chdb directory or a server: ``client.py``), its inserts those of the batched,
idempotent :class:`~driftwarden.core.storage.writer.Writer`; ``memory.py`` holds the same
methods over Python lists, for unit tests of the code that reads.

Adding a storage backend is one module with a class of these methods (and its test against the
shared contract in ``tests/integration/test_store_contract.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from driftwarden.core.schemas import (
    AlertEvent,
    DatasetSpec,
    DetectionResult,
    DriftResult,
    EmbeddingRecord,
    Feedback,
    InferenceEvent,
    RetrainRequest,
    RetrainStatus,
)
from driftwarden.core.storage.writer import ALERT_COLUMNS, DeadLetter, Writer

DELIVERY_COLUMNS = ["alert_id", "status", "receiver", "state", "attempts", "parked_at", "next_try_at", "last_error",
                    "alert", "updated_at"]
"""Columns of ``alert_deliveries`` (durable alert retries), in the order of a delivery row."""


@dataclass
class CurationData:
    """What curation reads of a segment's time range."""

    events: list[tuple] = field(default_factory=list)
    """(event_id, ts, prompt, response, feedback, redacted) of successful events with a response, oldest first;
    feedback is the lowest of the event's own and every source's late feedback (on the event, or on
    its trace for an event id ``<trace id>:<span id>``); above 1 means none."""
    flags: dict[str, list[str]] = field(default_factory=dict)
    """event_id -> detectors that flagged it, sorted."""
    versions: dict[str, str] = field(default_factory=dict)
    """detector -> the version that scored the range."""
    contexts: dict[str, list[str]] = field(default_factory=dict)
    """event_id -> the passages the answer was to be grounded in (events with context only)."""
    vectors: dict[str, list[float]] = field(default_factory=dict)
    """event_id -> its prompt's embedding."""


@dataclass
class ReportData:
    """What the HTML report shows, read in one go."""

    stats: dict[str, Any]
    volume: list[tuple]
    """(5-minute bucket, "app model_version", events)."""
    rates: list[tuple]
    """(5-minute bucket, detector, flagged share, results) of the labelling detectors."""
    drift: list[tuple]
    """(window_end, "app model_version field", p_value, window_id, statistic) of every window."""
    alerts: list[tuple]
    jobs: list[tuple]
    flagged: list[tuple]
    """(event_id, detector, score, evidence, app, model_version, prompt, response), highest score first."""
    feedback: list[tuple] = field(default_factory=list)
    """(5-minute bucket, negative share, feedback given) of late feedback (the last per event and source)."""


@dataclass(frozen=True)
class PurgeTarget:
    """Which events to erase: an app's, optionally one user's, optionally only before a time."""

    app: str
    user_id: str | None = None
    before: datetime | None = None

    @property
    def whole_app(self) -> bool:
        return self.user_id is None


@dataclass
class PurgeReport:
    """Rows erased (or, in a dry run, that would be) per table, and rows kept that may still
    hold something of the events, per table, with why."""

    deleted: dict[str, int] = field(default_factory=dict)
    kept: dict[str, tuple[int, str]] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)
    """The erased events' ids (sorted; at most the ``ids_limit`` asked for), to find copies elsewhere."""


#: Tables whose rows belong to one event each (erased with it).
PER_EVENT_TABLES = ("detections", "embeddings", "feedback", "drift_members", "inference_events")
KEPT_FOR_A_USER = ("aggregates over every user's events of the app; they may quote example texts: purge the whole "
                   "app (without --user-id) to erase them")
KEPT_DEAD_LETTERS = ("raw bytes that failed validation cannot be attributed to a user with certainty; they expire with "
                     "DRIFTWARDEN_RETENTION__DEAD_LETTERS_DAYS")


class Store(Protocol):
    """Every read and write of driftwarden's tables."""

    database: str

    # --- writes (idempotent: a batch retried is stored once) ---
    def insert_events(self, events: Sequence[InferenceEvent], *, redacted: bool = False) -> None: ...
    def insert_detections(self, results: Sequence[DetectionResult]) -> None: ...
    def insert_embeddings(self, records: Sequence[EmbeddingRecord]) -> None: ...
    def insert_drift(self, results: Sequence[DriftResult]) -> None: ...
    def insert_alerts(self, alerts: Sequence[AlertEvent]) -> None: ...
    def insert_retrain_requests(self, requests: Sequence[RetrainRequest]) -> None: ...
    def insert_retrain_status(self, statuses: Sequence[RetrainStatus]) -> None: ...
    def insert_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...
    def insert_deliveries(self, rows: list[list]) -> None: ...
    def insert_feedback(self, items: Sequence[Feedback]) -> None: ...

    # --- reads ---
    def stats(self, alpha: float) -> dict: ...
    def reference_embeddings(self, app: str, model_version: str, field: str, encoder: str, limit: int,
                             start: datetime | None = None, end: datetime | None = None) -> list[tuple]: ...
    def last_window_sequence(self, app: str, model_version: str, field: str) -> int: ...
    def segments_with_stored_rows(self, segments: Sequence[tuple[str, str, str, str]],
                                  min_embeddings: int | None) -> set[tuple[str, str, str, str]]: ...
    def texts(self, field: str, event_ids: list[str]) -> dict[str, str]: ...
    def last_job(self, request_id: str) -> dict | None: ...
    def unfinished_jobs(self) -> list[dict]: ...
    def retrain_request(self, request_id: str) -> RetrainRequest | None: ...
    def count_events(self, app: str, model_version: str, start: datetime, end: datetime) -> int: ...
    def curation_data(self, app: str, model_version: str, start: datetime, end: datetime,
                      limit: int) -> CurationData: ...
    def report_data(self, flagged: int, alpha: float, detectors: Sequence[str]) -> ReportData: ...
    def most_drifted_window(self, field: str | None = None) -> dict | None: ...
    def event_segments(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]: ...
    def window_vectors(self, app: str, model_version: str, field: str, start: datetime, end: datetime,
                       limit: int) -> tuple[list[list[float]], list[list[float]]]: ...
    def due_deliveries(self, now: datetime, limit: int) -> list[dict]: ...
    def pending_deliveries(self) -> int: ...
    def firing_alerts(self, limit: int) -> list[AlertEvent]: ...
    def segment_states(self, kind: str, keys: Sequence[str] | None = None) -> dict[str, str]: ...
    def save_segment_states(self, states: dict[str, dict[str, tuple[str, str]]]) -> None: ...
    def insert_drift_members(self, rows: list[list]) -> None: ...
    def drift_members(self, segment: str, windows: Sequence[int]) -> list[tuple]: ...
    def embedding_vectors(self, field: str, event_ids: Sequence[str]) -> dict[str, list[float]]: ...
    def purge(self, target: PurgeTarget, *, dry_run: bool, ids_limit: int = 0) -> PurgeReport: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


class ClickHouseStore(Writer):
    """:class:`Store` on a clickhouse-connect client (embedded chdb or a server); open one with
    :func:`driftwarden.core.storage.client.open_store`."""

    def _rows(self, sql: str, **params) -> list[tuple]:
        return self.client.query(sql, parameters=params).result_rows

    def _scalar(self, sql: str, **params) -> int:
        rows = self._rows(sql, **params)
        return int(rows[0][0] or 0) if rows else 0

    def close(self) -> None:
        self.client.close()

    # --- writes beyond the Writer's ---

    def insert_deliveries(self, rows: list[list]) -> None:
        """Rows of ``alert_deliveries`` (newest ``updated_at`` wins): durable alert retries."""
        self.client.insert(f"{self.database}.alert_deliveries", rows, column_names=DELIVERY_COLUMNS)

    # --- reads ---

    def stats(self, alpha: float) -> dict:
        """Counts of what is stored (exact: read with FINAL), and the latest alerts and retraining
        jobs; ``drift_alarms`` counts windows with p below ``alpha`` (the drift setting's)."""
        db = self.database
        by_detector = self._rows(f"SELECT detector, count(), countIf(label = 1), countIf(error IS NOT NULL) "
                                 f"FROM {db}.detections FINAL GROUP BY detector ORDER BY detector")
        by_stage = self._rows(f"SELECT stage, count() FROM {db}.dead_letters FINAL GROUP BY stage ORDER BY stage")
        by_app = self._rows(f"SELECT app, model_version, count() FROM {db}.inference_events FINAL "
                            f"GROUP BY app, model_version ORDER BY app, model_version")
        return {
            "events": self._scalar(f"SELECT count() FROM {db}.inference_events FINAL"),
            "events_distinct_ids": self._scalar(f"SELECT uniqExact(event_id) FROM {db}.inference_events"),
            "detections": self._scalar(f"SELECT count() FROM {db}.detections FINAL"),
            "dead_letters": self._scalar(f"SELECT count() FROM {db}.dead_letters FINAL"),
            "feedback": self._scalar(f"SELECT count() FROM {db}.feedback FINAL"),
            "feedback_negative": self._scalar(f"SELECT countIf(score < 0) FROM {db}.feedback FINAL"),
            "embeddings": self._scalar(f"SELECT count() FROM {db}.embeddings FINAL"),
            "drift_windows": self._scalar(f"SELECT count() FROM {db}.drift_windows FINAL"),
            "drift_alarms": self._scalar(f"SELECT countIf(p_value < {{a:Float64}}) FROM {db}.drift_windows FINAL",
                                         a=alpha),
            "alerts_firing": self._scalar(f"SELECT countIf(status = 'firing') FROM {db}.alerts FINAL"),
            "alerts_resolved": self._scalar(f"SELECT countIf(status = 'resolved') FROM {db}.alerts FINAL"),
            "alerts_by_rule": dict(self._rows(f"SELECT rule, count() FROM {db}.alerts FINAL GROUP BY rule ORDER BY rule")),
            "retrain_requests": self._scalar(f"SELECT count() FROM {db}.retrain_requests FINAL"),
            "retrain_jobs_by_status": dict(self._rows(
                f"SELECT status, count() FROM {db}.retrain_jobs FINAL GROUP BY status ORDER BY status")),
            "detections_by_detector": {d: {"results": n, "flagged": f, "errors": e} for d, n, f, e in by_detector},
            "dead_letters_by_stage": dict(by_stage),
            "events_by_segment": [{"app": a, "model_version": v, "events": n} for a, v, n in by_app],
            "alerts": [
                {"alert_id": r[0], "status": r[1], "rule": r[2], "severity": r[3], "app": r[4], "model_version": r[5],
                 "field": r[6], "value": r[7], "threshold": r[8], "window_id": r[9], "starts_at": r[10].isoformat()}
                for r in self._rows(
                    f"SELECT alert_id, status, rule, severity, app, model_version, field, value, threshold, "
                    f"window_id, starts_at FROM {db}.alerts FINAL ORDER BY starts_at DESC, status LIMIT 20")],
            "drift_windows_latest": [
                {"window_id": r[0], "window_start": r[1].isoformat(), "p_value": r[2]}
                for r in self._rows(f"SELECT window_id, window_start, p_value FROM {db}.drift_windows FINAL "
                                    f"ORDER BY computed_at DESC LIMIT 50")],
            "retrain_jobs": [
                {"job_id": r[0], "request_id": r[1], "status": r[2], "dataset_version": r[3], "dataset_rows": r[4],
                 "metrics": dict(r[5]), "output_dir": r[6], "message": r[7], "updated_at": r[8].isoformat(),
                 "decision": r[9], "decision_reasons": list(r[10]), "registered_model": r[11],
                 "registered_version": r[12]}
                for r in self._rows(
                    f"SELECT job_id, request_id, status, dataset_version, dataset_rows, metrics, output_dir, message, "
                    f"updated_at, decision, decision_reasons, registered_model, registered_version "
                    f"FROM {db}.retrain_jobs FINAL ORDER BY updated_at DESC LIMIT 20")],
        }

    def reference_embeddings(self, app: str, model_version: str, field: str, encoder: str, limit: int,
                             start: datetime | None = None, end: datetime | None = None) -> list[tuple]:
        """(event_id, vector, event_ts) of a segment's stored embeddings, oldest first: the drift
        reference after a restart, or a pinned one."""
        where = ["app = {app:String}", "model_version = {mv:String}", "field = {field:String}",
                 "encoder = {enc:String}"]
        params: dict[str, Any] = {"app": app, "mv": model_version, "field": field, "enc": encoder, "limit": limit}
        if start is not None:
            where.append("event_ts >= {start:DateTime64(3, 'UTC')}")
            params["start"] = start
        if end is not None:
            where.append("event_ts <= {end:DateTime64(3, 'UTC')}")
            params["end"] = end
        rows = self._rows(f"SELECT event_id, vector, event_ts FROM {self.database}.embeddings FINAL "
                          f"WHERE {' AND '.join(where)} ORDER BY event_ts, event_id LIMIT {{limit:UInt32}}", **params)
        return [(r[0], list(r[1]), r[2]) for r in rows]

    def last_window_sequence(self, app: str, model_version: str, field: str) -> int:
        """The number of a segment's last stored drift window (0 when it has none)."""
        return self._scalar(f"SELECT max(toUInt64OrZero(splitByChar('/', window_id)[-1])) "
                            f"FROM {self.database}.drift_windows WHERE app = {{app:String}} "
                            f"AND model_version = {{mv:String}} AND field = {{field:String}}",
                            app=app, mv=model_version, field=field)

    def segments_with_stored_rows(self, segments: Sequence[tuple[str, str, str, str]],
                                  min_embeddings: int | None) -> set[tuple[str, str, str, str]]:
        """Of the drift segments ``(app, model_version, field, encoder)``, those with a stored drift
        window or at least ``min_embeddings`` stored embeddings (None: embeddings are not asked):
        one query for any number of segments (the drift agent asks once per batch instead of
        reading each new segment's state). Rows are counted before deduplication, so a segment may
        be named that a deduplicated count would not reach, never the other way round."""
        if not segments:
            return set()
        wanted = {(str(a), str(m), str(f), str(e)) for a, m, f, e in segments}
        three = sorted({s[:3] for s in wanted})
        sql = (f"SELECT app, model_version, field, '' FROM {self.database}.drift_windows "
               f"WHERE (app, model_version, field) IN {{three:Array(Tuple(String, String, String))}} "
               f"GROUP BY app, model_version, field")
        if min_embeddings is not None:
            sql += (f" UNION ALL SELECT app, model_version, field, encoder FROM {self.database}.embeddings WHERE "
                    f"(app, model_version, field, encoder) IN {{four:Array(Tuple(String, String, String, String))}} "
                    f"GROUP BY app, model_version, field, encoder HAVING count() >= {{n:UInt32}}")
        rows = self._rows(sql, three=three, four=sorted(wanted), n=max(0, min_embeddings or 0))
        with_windows = {(str(r[0]), str(r[1]), str(r[2])) for r in rows if r[3] == ""}
        with_embeddings = {(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows if r[3] != ""}
        return {s for s in wanted if s[:3] in with_windows or s in with_embeddings}

    def texts(self, field: str, event_ids: list[str]) -> dict[str, str]:
        """The stored prompts (``field`` prompt) or responses of a few events (as stored: redacted
        when PII redaction is on); events not stored are missing."""
        if not event_ids:
            return {}
        column = "response" if field == "response" else "prompt"
        rows = self._rows(f"SELECT event_id, {column} FROM {self.database}.inference_events FINAL "
                          f"WHERE event_id IN {{ids:Array(String)}}", ids=list(event_ids))
        return {str(r[0]): str(r[1]) for r in rows}

    def last_job(self, request_id: str) -> dict | None:
        """The newest state of the newest retraining job of a request (an episode), with the number
        of jobs (attempts) it had."""
        rows = self._rows(f"SELECT status, dataset_version, dataset_rows, job_id, updated_at, "
                          f"count() OVER () FROM {self.database}.retrain_jobs FINAL "
                          f"WHERE request_id = {{r:String}} ORDER BY updated_at DESC LIMIT 1", r=request_id)
        if not rows:
            return None
        r = rows[0]
        return {"status": r[0], "dataset_version": r[1], "dataset_rows": int(r[2]), "job_id": r[3],
                "updated_at": _utc(r[4]), "attempts": int(r[5])}

    def unfinished_jobs(self) -> list[dict]:
        """Jobs whose newest state is neither succeeded nor failed, oldest first."""
        rows = self._rows(f"SELECT request_id, app, model_version, status, dataset_version, dataset_rows, job_id "
                          f"FROM {self.database}.retrain_jobs FINAL WHERE status NOT IN ('succeeded', 'failed') "
                          f"ORDER BY updated_at")
        return [{"request_id": r[0], "app": r[1], "model_version": r[2], "status": r[3], "dataset_version": r[4],
                 "dataset_rows": int(r[5]), "job_id": r[6]} for r in rows]

    def retrain_request(self, request_id: str) -> RetrainRequest | None:
        rows = self._rows(f"SELECT request_id, alert_id, app, model_version, reason, start, end, dataset, "
                          f"requested_at FROM {self.database}.retrain_requests FINAL WHERE request_id = {{r:String}} "
                          f"LIMIT 1", r=request_id)
        if not rows:
            return None
        r = rows[0]
        return RetrainRequest(request_id=r[0], alert_id=r[1], app=r[2], model_version=r[3], reason=r[4],
                              start=_utc(r[5]), end=_utc(r[6]), dataset=DatasetSpec.model_validate_json(r[7]),
                              requested_at=_utc(r[8]))

    def count_events(self, app: str, model_version: str, start: datetime, end: datetime) -> int:
        """Stored events of a segment with ``start <= ts <= end``."""
        return self._scalar(f"SELECT count() FROM {self.database}.inference_events FINAL WHERE app = {{a:String}} "
                            f"AND model_version = {{m:String}} AND ts >= {{s:DateTime64(3, 'UTC')}} "
                            f"AND ts <= {{e:DateTime64(3, 'UTC')}}", a=app, m=model_version, s=start, e=end)

    def curation_data(self, app: str, model_version: str, start: datetime, end: datetime,
                      limit: int) -> CurationData:
        """A segment's successful events with a response in ``[start, end]`` (at most ``limit``,
        oldest first), with their detectors' flags and versions, their prompts' vectors and their
        context (of those events only)."""
        db = self.database
        params = {"app": app, "mv": model_version, "start": start, "end": end, "limit": limit}
        where = ("app = {app:String} AND model_version = {mv:String} AND ts >= {start:DateTime64(3, 'UTC')} "
                 "AND ts <= {end:DateTime64(3, 'UTC')}")
        out = CurationData(events=self._rows(
            f"SELECT e.event_id, e.ts, e.prompt, e.response, arrayMin(arrayFilter(x -> x IS NOT NULL, "
            f"[e.feedback, f.s, t.s, toNullable(2.0)])) AS fb, e.redacted FROM {db}.inference_events AS e FINAL "
            f"LEFT JOIN (SELECT event_id, toNullable(min(score)) AS s FROM {db}.feedback FINAL GROUP BY event_id) "
            f"AS f ON f.event_id = e.event_id "
            f"LEFT JOIN (SELECT event_id, toNullable(min(score)) AS s FROM {db}.feedback FINAL GROUP BY event_id) "
            f"AS t ON t.event_id = splitByChar(':', e.event_id)[1] "
            f"WHERE {where} AND status = 'ok' AND response != '' ORDER BY e.ts, e.event_id LIMIT {{limit:UInt32}}",
            **params))
        # Flags, vectors and contexts of the events taken only: a long range (the regression set's
        # 30 days) must not load every vector of it to use a few hundred.
        ids = [str(e[0]) for e in out.events]
        if not ids:
            return out
        params["ids"] = ids
        ets = (where.replace("ts >=", "event_ts >=").replace("ts <=", "event_ts <=")
               + " AND event_id IN {ids:Array(String)}")
        for event_id, detector, label, version in self._rows(
                f"SELECT event_id, detector, label, detector_version FROM {db}.detections FINAL WHERE {ets}",
                **params):
            out.versions[detector] = version
            if label:
                out.flags.setdefault(event_id, []).append(detector)
        out.flags = {e: sorted(names) for e, names in out.flags.items()}
        out.vectors = {event_id: list(vector) for event_id, vector in self._rows(
            f"SELECT event_id, vector FROM {db}.embeddings FINAL WHERE {ets} AND field = 'prompt'", **params)}
        out.contexts = {str(event_id): list(context) for event_id, context in self._rows(
            f"SELECT event_id, context FROM {db}.inference_events FINAL WHERE {where} AND length(context) > 0 "
            f"AND event_id IN {{ids:Array(String)}}", **params)}
        return out

    def report_data(self, flagged: int, alpha: float, detectors: Sequence[str]) -> ReportData:
        """The report's series, and the ``flagged`` highest-scored events flagged by ``detectors``."""
        db = self.database
        return ReportData(
            stats=self.stats(alpha),
            volume=self._rows(f"SELECT toStartOfFiveMinutes(ts) AS t, concat(app, ' ', model_version) AS seg, "
                              f"count() FROM {db}.inference_events FINAL GROUP BY t, seg ORDER BY t, seg"),
            rates=self._rows(f"SELECT toStartOfFiveMinutes(event_ts) AS t, detector, avg(label), count() "
                             f"FROM {db}.detections FINAL WHERE detector != 'operational' AND label IS NOT NULL "
                             f"GROUP BY t, detector ORDER BY t, detector"),
            drift=self._rows(f"SELECT window_end, concat(app, ' ', model_version, ' ', field), p_value, window_id, "
                             f"statistic FROM {db}.drift_windows FINAL ORDER BY window_end"),
            alerts=self._rows(f"SELECT starts_at, rule, severity, status, app, model_version, field, value, "
                              f"threshold, summary, window_start, window_end FROM {db}.alerts FINAL "
                              f"ORDER BY starts_at, alert_id, status"),
            jobs=self._rows(f"SELECT updated_at, job_id, app, model_version, status, dataset_version, "
                            f"dataset_rows, metrics, message, decision, decision_reasons, registered_model, "
                            f"registered_version FROM {db}.retrain_jobs FINAL ORDER BY updated_at"),
            flagged=self._rows(
                f"SELECT d.event_id, d.detector, d.score, d.evidence, e.app, e.model_version, e.prompt, e.response "
                f"FROM {db}.detections AS d FINAL INNER JOIN (SELECT event_id, app, model_version, prompt, response "
                f"FROM {db}.inference_events FINAL) AS e ON e.event_id = d.event_id WHERE d.label = 1 "
                f"AND d.detector IN {{detectors:Array(String)}} ORDER BY d.score DESC, d.event_id, d.detector "
                f"LIMIT {{n:UInt32}}",
                detectors=list(detectors), n=flagged),
            feedback=self._rows(f"SELECT toStartOfFiveMinutes(given_at) AS t, avg(score < 0), count() "
                                f"FROM {db}.feedback FINAL GROUP BY t ORDER BY t"),
        )

    def event_segments(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(app, model_version) of the stored events among ``event_ids``; an id that is a trace id
        (feedback on a traced call) finds the events of that trace (``<trace id>:<span id>``)."""
        if not event_ids:
            return {}
        out: dict[str, tuple[str, str]] = {}
        for e, a, m in self._rows(
                f"SELECT DISTINCT event_id, app, model_version FROM {self.database}.inference_events "
                f"WHERE event_id IN {{ids:Array(String)}} OR splitByChar(':', event_id)[1] IN {{ids:Array(String)}} "
                f"ORDER BY event_id", ids=list(event_ids)):
            out[e if e in event_ids else e.split(":", 1)[0]] = (a, m)
        return {k: v for k, v in out.items() if k in event_ids}

    def most_drifted_window(self, field: str | None = None) -> dict | None:
        """The window with the lowest p-value (the earliest of equals), of ``field`` when given."""
        where = "WHERE field = {f:String} " if field else ""
        rows = self._rows(f"SELECT window_id, app, model_version, field, window_start, window_end, p_value, "
                          f"novel_share, clusters FROM {self.database}.drift_windows FINAL {where}"
                          f"ORDER BY p_value, window_end LIMIT 1", **({"f": field} if field else {}))
        if not rows:
            return None
        keys = ("window_id", "app", "model_version", "field", "window_start", "window_end", "p_value", "novel_share",
                "clusters")
        return dict(zip(keys, rows[0], strict=True))

    def window_vectors(self, app: str, model_version: str, field: str, start: datetime, end: datetime,
                       limit: int) -> tuple[list[list[float]], list[list[float]]]:
        """(reference, current): at most ``limit`` embeddings of the segment stored before ``start``
        (oldest first), and of ``[start, end]``."""
        db = self.database
        seg = "app = {a:String} AND model_version = {m:String} AND field = {f:String}"
        params = {"a": app, "m": model_version, "f": field, "s": start, "e": end, "n": limit}
        current = self._rows(f"SELECT vector FROM {db}.embeddings FINAL WHERE {seg} AND event_ts >= "
                             f"{{s:DateTime64(3, 'UTC')}} AND event_ts <= {{e:DateTime64(3, 'UTC')}} ORDER BY event_ts, event_id "
                             f"LIMIT {{n:UInt32}}",
                             **params)
        reference = self._rows(f"SELECT vector FROM {db}.embeddings FINAL WHERE {seg} AND event_ts < "
                               f"{{s:DateTime64(3, 'UTC')}} ORDER BY event_ts, event_id LIMIT {{n:UInt32}}", **params)
        return [list(r[0]) for r in reference], [list(r[0]) for r in current]

    def due_deliveries(self, now: datetime, limit: int) -> list[dict]:
        """Pending alert deliveries whose next try is due at ``now``, oldest first."""
        rows = self._rows(f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM {self.database}.alert_deliveries FINAL "
                          f"WHERE state = 'pending' AND next_try_at <= {{now:DateTime64(3, 'UTC')}} "
                          f"ORDER BY next_try_at LIMIT {{n:UInt32}}", now=now, n=limit)
        return [dict(zip(DELIVERY_COLUMNS, row, strict=True)) for row in rows]

    def pending_deliveries(self) -> int:
        return self._scalar(f"SELECT count() FROM {self.database}.alert_deliveries FINAL WHERE state = 'pending'")

    def firing_alerts(self, limit: int) -> list[AlertEvent]:
        """The latest episode of each rule and segment (``dedupe_key``) when it has not resolved:
        what is firing now, for receivers that want firing alerts re-sent."""
        db, cols = self.database, ", ".join(ALERT_COLUMNS)
        rows = self._rows(
            f"SELECT {cols} FROM (SELECT {cols} FROM {db}.alerts FINAL WHERE status = 'firing' "
            f"ORDER BY starts_at DESC, alert_id DESC LIMIT 1 BY dedupe_key) "
            f"WHERE alert_id NOT IN (SELECT alert_id FROM {db}.alerts FINAL WHERE status = 'resolved') "
            f"ORDER BY starts_at LIMIT {{limit:UInt32}}", limit=limit)
        return [AlertEvent.model_validate(dict(zip(ALERT_COLUMNS, row, strict=True))) for row in rows]

    def purge(self, target: PurgeTarget, *, dry_run: bool, ids_limit: int = 0) -> PurgeReport:
        """Erase the target's events and every row derived from them (their detections, embeddings
        and feedback; for a whole app also its drift windows, alerts, their deliveries and its
        retraining requests and jobs); say what is kept. Mutations run synchronously."""
        db = self.database
        where, params = ["app = {app:String}"], {"app": target.app}
        if target.user_id is not None:
            where.append("user_id = {user:String}")
            params["user"] = target.user_id
        if target.before is not None:
            params["before"] = target.before
        before = " AND {col} < {{before:DateTime64(3, 'UTC')}}" if target.before is not None else ""
        events = " AND ".join(where) + before.format(col="ts")
        ids = f"SELECT event_id FROM {db}.inference_events WHERE {events}"
        conditions = {t: f"event_id IN ({ids})" for t in PER_EVENT_TABLES if t != "inference_events"}
        alerts = "app = {app:String}" + before.format(col="starts_at")
        aggregates = {"drift_windows": "app = {app:String}" + before.format(col="window_end"),
                      # before the alerts: its rows are found through them
                      "alert_deliveries": f"alert_id IN (SELECT alert_id FROM {db}.alerts WHERE {alerts})",
                      "alerts": alerts,
                      "retrain_requests": "app = {app:String}" + before.format(col="requested_at"),
                      "retrain_jobs": "app = {app:String}" + before.format(col="updated_at")}
        if target.before is None:  # the app's durable stream state goes with all of its events
            aggregates["segment_state"] = "app = {app:String}"
        report = PurgeReport()
        if target.whole_app:
            conditions.update(aggregates)
        else:
            for table, condition in aggregates.items():
                report.kept[table] = (self._scalar(f"SELECT count() FROM {db}.{table} FINAL WHERE {condition}",
                                                  **params), KEPT_FOR_A_USER)
        conditions["inference_events"] = events  # last: the others select by its rows
        for table, condition in conditions.items():
            report.deleted[table] = self._scalar(f"SELECT count() FROM {db}.{table} FINAL WHERE {condition}", **params)
        if ids_limit:
            report.event_ids = [r[0] for r in self._rows(f"{ids} ORDER BY event_id LIMIT {int(ids_limit)}", **params)]
        letters = self._scalar(f"SELECT count() FROM {db}.dead_letters FINAL WHERE startsWith(message_key, "
                               f"{{prefix:String}})", prefix=f"{target.app}/")
        report.kept["dead_letters"] = (letters, KEPT_DEAD_LETTERS)
        if not dry_run:
            for table, condition in conditions.items():
                if report.deleted[table]:
                    self.client.command(f"ALTER TABLE {db}.{table} DELETE WHERE {condition} "
                                        f"SETTINGS mutations_sync = 2", parameters=params)
        return report

    # --- durable stream state (drift windows, rule states) ---

    def segment_states(self, kind: str, keys: Sequence[str] | None = None) -> dict[str, str]:
        """The latest state of each key of ``kind`` (all of them when ``keys`` is None)."""
        where = "kind = {kind:String}" + (" AND key IN {keys:Array(String)}" if keys is not None else "")
        rows = self._rows(f"SELECT key, state FROM {self.database}.segment_state FINAL WHERE {where}",
                          kind=kind, keys=list(keys or []))
        return dict(rows)

    def save_segment_states(self, states: dict[str, dict[str, tuple[str, str]]]) -> None:
        """``{kind: {key: (app, state JSON)}}``, in one insert (the kinds change together); the app
        lets a purge of the app erase them."""
        now = datetime.now(UTC)
        rows = [[kind, k, app, v, now] for kind, of_kind in states.items() for k, (app, v) in of_kind.items()]
        if rows:
            self.client.insert(f"{self.database}.segment_state", rows,
                               column_names=["kind", "key", "app", "state", "updated_at"])

    def insert_drift_members(self, rows: list[list]) -> None:
        """Rows ``[segment, app, window, position, event_id, event_ts, descriptors]``."""
        if not rows:
            return
        now = datetime.now(UTC)
        self.client.insert(f"{self.database}.drift_members", [[*r, now] for r in rows],
                           column_names=["segment", "app", "window", "position", "event_id", "event_ts",
                                         "descriptors", "added_at"])

    def drift_members(self, segment: str, windows: Sequence[int]) -> list[tuple]:
        """``(window, position, event_id, event_ts, descriptors)`` of a segment's windows, in order."""
        return self._rows(f"SELECT window, position, event_id, event_ts, descriptors FROM {self.database}.drift_members "
                          f"FINAL WHERE segment = {{seg:String}} AND window IN {{windows:Array(UInt64)}} "
                          f"ORDER BY window, position", seg=segment, windows=list(windows))

    def embedding_vectors(self, field: str, event_ids: Sequence[str]) -> dict[str, list[float]]:
        rows = self._rows(f"SELECT event_id, vector FROM {self.database}.embeddings FINAL WHERE field = {{field:String}} "
                          f"AND event_id IN {{ids:Array(String)}}", field=field, ids=list(event_ids))
        return {r[0]: list(r[1]) for r in rows}

    def ping(self) -> None:
        """Raises unless the store answers a trivial query (readiness)."""
        self._scalar("SELECT 1")


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
