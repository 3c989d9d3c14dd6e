"""The :class:`~driftwarden.core.storage.store.Store` over Python dictionaries: for unit tests of the
code that reads the store (curation, the report, the retraining workflow) without ClickHouse.

It keeps ClickHouse's semantics where readers depend on them: a row replaces an earlier one with
the same key (the tables' ``ORDER BY``) unless the earlier one has a newer version column (the
``ReplacingMergeTree`` version), reads see the replaced state (``FINAL``), and times compare in
UTC. ``tests/integration/test_store_contract.py`` runs the same writes and reads on both stores.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from driftwarden.core.schemas import (
    AlertEvent,
    DetectionResult,
    DriftResult,
    EmbeddingRecord,
    Feedback,
    InferenceEvent,
    RetrainRequest,
    RetrainStatus,
)
from driftwarden.core.storage.store import DELIVERY_COLUMNS, CurationData, ReportData
from driftwarden.core.storage.writer import DeadLetter


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _bucket(dt: datetime) -> datetime:
    """``toStartOfFiveMinutes``, as a naive UTC time (as clickhouse-connect returns it)."""
    dt = _utc(dt).astimezone(UTC).replace(tzinfo=None)
    return dt.replace(minute=dt.minute - dt.minute % 5, second=0, microsecond=0)


class MemoryStore:
    """Every table a dictionary keyed like the table; the newest version of a key wins."""

    def __init__(self, database: str = "memory"):
        self.database = database
        self.events: dict[str, tuple[InferenceEvent, bool, datetime]] = {}
        self.detections: dict[tuple[str, str], DetectionResult] = {}
        self.embeddings: dict[tuple[str, str], EmbeddingRecord] = {}
        self.drift: dict[str, DriftResult] = {}
        self.alerts: dict[tuple[str, str], AlertEvent] = {}
        self.requests: dict[str, RetrainRequest] = {}
        self.jobs: dict[str, RetrainStatus] = {}
        self.dead_letters: dict[str, DeadLetter] = {}
        self.deliveries: dict[tuple[str, str, str], dict] = {}
        self.feedback: dict[tuple[str, str], Feedback] = {}
        self.states: dict[tuple[str, str], tuple[str, str]] = {}
        self.members: dict[tuple[str, int, int], tuple] = {}

    @staticmethod
    def _put(table: dict, key, row, version: datetime | None = None, current_version=None) -> None:
        if key in table and version is not None and current_version is not None and \
                _utc(current_version(table[key])) > _utc(version):
            return
        table[key] = row

    # --- writes ---

    def insert_events(self, events: Sequence[InferenceEvent], *, redacted: bool = False) -> None:
        now = datetime.now(UTC)
        for e in events:
            self.events[e.event_id] = (e, redacted, now)

    def insert_detections(self, results: Sequence[DetectionResult]) -> None:
        for r in results:
            self._put(self.detections, (r.event_id, r.detector), r, r.scored_at, lambda old: old.scored_at)

    def insert_embeddings(self, records: Sequence[EmbeddingRecord]) -> None:
        for r in records:
            self._put(self.embeddings, (r.event_id, r.field), r, r.computed_at, lambda old: old.computed_at)

    def insert_drift(self, results: Sequence[DriftResult]) -> None:
        for r in results:
            self._put(self.drift, r.window_id, r, r.computed_at, lambda old: old.computed_at)

    def insert_alerts(self, alerts: Sequence[AlertEvent]) -> None:
        for a in alerts:
            self.alerts[(a.alert_id, a.status)] = a

    def insert_retrain_requests(self, requests: Sequence[RetrainRequest]) -> None:
        for r in requests:
            self.requests[r.request_id] = r

    def insert_retrain_status(self, statuses: Sequence[RetrainStatus]) -> None:
        for s in statuses:
            self._put(self.jobs, s.job_id, s, s.updated_at, lambda old: old.updated_at)

    def insert_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        for d in letters:
            self.dead_letters[d.dlq_id] = d

    def insert_deliveries(self, rows: list[list]) -> None:
        for row in rows:
            record = dict(zip(DELIVERY_COLUMNS, row, strict=True))
            self._put(self.deliveries, (record["alert_id"], record["status"], record["receiver"]), record,
                      record["updated_at"], lambda old: old["updated_at"])

    def insert_feedback(self, items: Sequence[Feedback]) -> None:
        for f in items:
            self.feedback[(f.event_id, f.source)] = f  # the newest received wins

    def close(self) -> None:
        """Nothing to release."""

    # --- reads ---

    def stats(self, alpha: float) -> dict:
        by_detector: dict[str, dict[str, int]] = {}
        for r in sorted(self.detections.values(), key=lambda r: r.detector):
            d = by_detector.setdefault(r.detector, {"results": 0, "flagged": 0, "errors": 0})
            d["results"] += 1
            d["flagged"] += int(r.label is True)
            d["errors"] += int(r.error is not None)
        segments = Counter((e.app, e.model_version) for e, _, _ in self.events.values())
        alerts = sorted(self.alerts.values(), key=lambda a: (-_utc(a.starts_at).timestamp(), a.status))[:20]
        windows = sorted(self.drift.values(), key=lambda w: _utc(w.computed_at), reverse=True)[:50]
        jobs = sorted(self.jobs.values(), key=lambda j: _utc(j.updated_at), reverse=True)[:20]
        return {
            "events": len(self.events),
            "events_distinct_ids": len(self.events),
            "detections": len(self.detections),
            "dead_letters": len(self.dead_letters),
            "feedback": len(self.feedback),
            "feedback_negative": sum(f.score < 0 for f in self.feedback.values()),
            "embeddings": len(self.embeddings),
            "drift_windows": len(self.drift),
            "drift_alarms": sum(w.p_value < alpha for w in self.drift.values()),
            "alerts_firing": sum(a.status == "firing" for a in self.alerts.values()),
            "alerts_resolved": sum(a.status == "resolved" for a in self.alerts.values()),
            "alerts_by_rule": dict(sorted(Counter(a.rule for a in self.alerts.values()).items())),
            "retrain_requests": len(self.requests),
            "retrain_jobs_by_status": dict(sorted(Counter(j.status for j in self.jobs.values()).items())),
            "detections_by_detector": by_detector,
            "dead_letters_by_stage": dict(sorted(Counter(d.stage for d in self.dead_letters.values()).items())),
            "events_by_segment": [{"app": a, "model_version": v, "events": n} for (a, v), n in sorted(segments.items())],
            "alerts": [{"alert_id": a.alert_id, "status": a.status, "rule": a.rule, "severity": a.severity,
                        "app": a.app, "model_version": a.model_version, "field": a.field, "value": a.value,
                        "threshold": a.threshold, "window_id": a.window_id,
                        "starts_at": _utc(a.starts_at).replace(tzinfo=None).isoformat()} for a in alerts],
            "drift_windows_latest": [{"window_id": w.window_id,
                                      "window_start": _utc(w.window_start).replace(tzinfo=None).isoformat(),
                                      "p_value": w.p_value} for w in windows],
            "retrain_jobs": [{"job_id": j.job_id, "request_id": j.request_id, "status": j.status,
                              "dataset_version": j.dataset_version, "dataset_rows": j.dataset_rows,
                              "metrics": dict(j.metrics), "output_dir": j.output_dir, "message": j.message,
                              "updated_at": _utc(j.updated_at).replace(tzinfo=None).isoformat(),
                              "decision": j.decision, "decision_reasons": list(j.decision_reasons),
                              "registered_model": j.registered_model, "registered_version": j.registered_version}
                             for j in jobs],
        }

    def reference_embeddings(self, app: str, model_version: str, field: str, encoder: str, limit: int,
                             start: datetime | None = None, end: datetime | None = None) -> list[tuple]:
        rows = [r for r in self.embeddings.values()
                if (r.app, r.model_version, r.field, r.encoder) == (app, model_version, field, encoder)
                and (start is None or _utc(r.event_ts) >= _utc(start)) and (end is None or _utc(r.event_ts) <= _utc(end))]
        rows.sort(key=lambda r: (_utc(r.event_ts), r.event_id))
        return [(r.event_id, list(r.vector), r.event_ts) for r in rows[:limit]]

    def last_window_sequence(self, app: str, model_version: str, field: str) -> int:
        numbers = [w.window_id.rsplit("/", 1)[-1] for w in self.drift.values()
                   if (w.app, w.model_version, w.field) == (app, model_version, field)]
        return max((int(n) for n in numbers if n.isdigit()), default=0)

    def segments_with_stored_rows(self, segments, min_embeddings: int | None) -> set[tuple[str, str, str, str]]:
        with_windows = {(w.app, w.model_version, w.field) for w in self.drift.values()}
        counts: dict[tuple[str, str, str, str], int] = {}
        for r in self.embeddings.values():
            key = (r.app, r.model_version, r.field, r.encoder)
            counts[key] = counts.get(key, 0) + 1
        return {tuple(s) for s in segments if tuple(s)[:3] in with_windows
                or (min_embeddings is not None and counts.get(tuple(s), 0) >= min_embeddings)}

    def texts(self, field: str, event_ids: list[str]) -> dict[str, str]:
        out = {}
        for e in event_ids:
            if e in self.events:
                event = self.events[e][0]
                out[e] = (event.response if field == "response" else event.prompt) or ""
        return out

    def last_job(self, request_id: str) -> dict | None:
        jobs = sorted((j for j in self.jobs.values() if j.request_id == request_id), key=lambda j: _utc(j.updated_at))
        if not jobs:
            return None
        j = jobs[-1]
        return {"status": j.status, "dataset_version": j.dataset_version, "dataset_rows": j.dataset_rows,
                "job_id": j.job_id, "updated_at": _utc(j.updated_at), "attempts": len(jobs)}

    def unfinished_jobs(self) -> list[dict]:
        jobs = sorted((j for j in self.jobs.values() if j.status not in ("succeeded", "failed")),
                      key=lambda j: _utc(j.updated_at))
        return [{"request_id": j.request_id, "app": j.app, "model_version": j.model_version, "status": j.status,
                 "dataset_version": j.dataset_version, "dataset_rows": j.dataset_rows, "job_id": j.job_id}
                for j in jobs]

    def retrain_request(self, request_id: str) -> RetrainRequest | None:
        return self.requests.get(request_id)

    def _segment_events(self, app: str, model_version: str, start: datetime, end: datetime) -> list:
        return [(e, red) for e, red, _ in self.events.values()
                if (e.app, e.model_version) == (app, model_version) and _utc(start) <= _utc(e.timestamp) <= _utc(end)]

    def count_events(self, app: str, model_version: str, start: datetime, end: datetime) -> int:
        return len(self._segment_events(app, model_version, start, end))

    def curation_data(self, app: str, model_version: str, start: datetime, end: datetime,
                      limit: int) -> CurationData:
        events = sorted(((e, red) for e, red in self._segment_events(app, model_version, start, end)
                         if e.status == "ok" and e.response), key=lambda x: (_utc(x[0].timestamp), x[0].event_id))
        late: dict[str, float] = {}
        for f in self.feedback.values():
            late[f.event_id] = min(f.score, late.get(f.event_id, f.score))

        def lowest(e: InferenceEvent) -> float:
            trace = e.event_id.split(":", 1)[0]
            return min(s for s in (e.feedback, late.get(e.event_id), late.get(trace), 2.0) if s is not None)

        out = CurationData(events=[(e.event_id, e.timestamp, e.prompt, e.response, lowest(e), int(red))
                                   for e, red in events[:limit]])

        taken = {e[0] for e in out.events}

        def in_range(r) -> bool:
            return (r.event_id in taken and (r.app, r.model_version) == (app, model_version)
                    and _utc(start) <= _utc(r.event_ts) <= _utc(end))

        for r in self.detections.values():
            if in_range(r):
                out.versions[r.detector] = r.detector_version
                if r.label:
                    out.flags.setdefault(r.event_id, []).append(r.detector)
        out.flags = {e: sorted(names) for e, names in out.flags.items()}
        out.vectors = {r.event_id: list(r.vector) for r in self.embeddings.values()
                       if in_range(r) and r.field == "prompt"}
        out.contexts = {e.event_id: list(e.context) for e, _ in events[:limit] if e.context}
        return out

    def report_data(self, flagged: int, alpha: float, detectors: Sequence[str]) -> ReportData:
        volume = Counter((_bucket(e.timestamp), f"{e.app} {e.model_version}") for e, _, _ in self.events.values())
        rates: dict[tuple, list[int]] = {}
        for r in self.detections.values():
            if r.detector != "operational" and r.label is not None:
                rates.setdefault((_bucket(r.event_ts), r.detector), []).append(int(r.label))
        windows = sorted(self.drift.values(), key=lambda w: _utc(w.window_end))
        alerts = sorted(self.alerts.values(), key=lambda a: (_utc(a.starts_at), a.alert_id, a.status))
        jobs = sorted(self.jobs.values(), key=lambda j: _utc(j.updated_at))
        feedback: dict[datetime, list[int]] = {}
        for f in self.feedback.values():
            feedback.setdefault(_bucket(f.timestamp), []).append(int(f.score < 0))
        hits = sorted((r for r in self.detections.values()
                       if r.label is True and r.detector in detectors and r.event_id in self.events),
                      key=lambda r: (-r.score, r.event_id, r.detector))[:flagged]
        return ReportData(
            stats=self.stats(alpha),
            volume=[(t, seg, n) for (t, seg), n in sorted(volume.items())],
            rates=[(t, d, sum(v) / len(v), len(v)) for (t, d), v in sorted(rates.items())],
            drift=[(w.window_end, f"{w.app} {w.model_version} {w.field}", w.p_value, w.window_id, w.statistic)
                   for w in windows],
            alerts=[(a.starts_at, a.rule, a.severity, a.status, a.app, a.model_version, a.field, a.value,
                     a.threshold, a.summary, a.window_start, a.window_end) for a in alerts],
            jobs=[(j.updated_at, j.job_id, j.app, j.model_version, j.status, j.dataset_version, j.dataset_rows,
                   dict(j.metrics), j.message, j.decision, list(j.decision_reasons), j.registered_model,
                   j.registered_version) for j in jobs],
            flagged=[(r.event_id, r.detector, r.score, r.evidence, self.events[r.event_id][0].app,
                      self.events[r.event_id][0].model_version, self.events[r.event_id][0].prompt,
                      self.events[r.event_id][0].response) for r in hits],
            feedback=[(t, sum(v) / len(v), len(v)) for t, v in sorted(feedback.items())],
        )

    def event_segments(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        wanted = set(event_ids)
        out: dict[str, tuple[str, str]] = {}
        for event_id in sorted(self.events):
            e = self.events[event_id][0]
            key = event_id if event_id in wanted else event_id.split(":", 1)[0]
            if key in wanted:
                out[key] = (e.app, e.model_version)
        return out

    def most_drifted_window(self, field: str | None = None) -> dict | None:
        windows = [w for w in self.drift.values() if field is None or w.field == field]
        if not windows:
            return None
        w = min(windows, key=lambda w: (w.p_value, _utc(w.window_end)))
        return {"window_id": w.window_id, "app": w.app, "model_version": w.model_version, "field": w.field,
                "window_start": w.window_start, "window_end": w.window_end, "p_value": w.p_value,
                "novel_share": w.novel_share, "clusters": json.dumps([c.model_dump() for c in w.clusters])}

    def window_vectors(self, app: str, model_version: str, field: str, start: datetime, end: datetime,
                       limit: int) -> tuple[list[list[float]], list[list[float]]]:
        rows = sorted((r for r in self.embeddings.values() if (r.app, r.model_version, r.field) ==
                       (app, model_version, field)), key=lambda r: (_utc(r.event_ts), r.event_id))
        current = [list(r.vector) for r in rows if _utc(start) <= _utc(r.event_ts) <= _utc(end)][:limit]
        reference = [list(r.vector) for r in rows if _utc(r.event_ts) < _utc(start)][:limit]
        return reference, current

    def due_deliveries(self, now: datetime, limit: int) -> list[dict]:
        due = [dict(r) for r in self.deliveries.values()
               if r["state"] == "pending" and _utc(r["next_try_at"]) <= _utc(now)]
        return sorted(due, key=lambda r: _utc(r["next_try_at"]))[:limit]

    def pending_deliveries(self) -> int:
        return sum(r["state"] == "pending" for r in self.deliveries.values())

    def firing_alerts(self, limit: int) -> list[AlertEvent]:
        resolved = {a.alert_id for a in self.alerts.values() if a.status == "resolved"}
        latest: dict[str, AlertEvent] = {}
        for a in sorted((a for a in self.alerts.values() if a.status == "firing"),
                        key=lambda a: (_utc(a.starts_at), a.alert_id)):
            latest[a.dedupe_key] = a
        firing = [a for a in latest.values() if a.alert_id not in resolved]
        return sorted(firing, key=lambda a: _utc(a.starts_at))[:limit]

    def purge(self, target, *, dry_run: bool, ids_limit: int = 0):
        from driftwarden.core.storage.store import KEPT_DEAD_LETTERS, KEPT_FOR_A_USER, PurgeReport

        def before(ts) -> bool:
            return target.before is None or _utc(ts) < _utc(target.before)

        ids = {i for i, (e, _, _) in self.events.items() if e.app == target.app and before(e.timestamp)
               and (target.user_id is None or e.user_id == target.user_id)}
        tables = {"detections": (self.detections, lambda k, r: r.event_id in ids),
                  "embeddings": (self.embeddings, lambda k, r: r.event_id in ids),
                  "feedback": (self.feedback, lambda k, r: r.event_id in ids),
                  "drift_members": (self.members, lambda k, r: r[2] in ids)}
        alert_ids = {a.alert_id for a in self.alerts.values() if a.app == target.app and before(a.starts_at)}
        aggregates = {"drift_windows": (self.drift, lambda k, r: r.app == target.app and before(r.window_end)),
                      "alerts": (self.alerts, lambda k, r: k[0] in alert_ids),
                      "retrain_requests": (self.requests,
                                           lambda k, r: r.app == target.app and before(r.requested_at)),
                      "retrain_jobs": (self.jobs, lambda k, r: r.app == target.app and before(r.updated_at)),
                      "alert_deliveries": (self.deliveries, lambda k, r: r["alert_id"] in alert_ids)}
        if target.before is None:
            aggregates["segment_state"] = (self.states, lambda k, r: r[0] == target.app)
        report = PurgeReport(event_ids=sorted(ids)[:ids_limit])
        if target.user_id is None:
            tables.update(aggregates)
        else:
            for name, (table, match) in aggregates.items():
                report.kept[name] = (sum(1 for k, r in table.items() if match(k, r)), KEPT_FOR_A_USER)
        tables["inference_events"] = (self.events, lambda k, r: k in ids)
        for name, (table, match) in tables.items():
            keys = [k for k, r in table.items() if match(k, r)]
            report.deleted[name] = len(keys)
            if not dry_run:
                for k in keys:
                    del table[k]
        report.kept["dead_letters"] = (sum(1 for d in self.dead_letters.values()
                                           if bytes(d.key).decode("utf-8", "replace").startswith(f"{target.app}/")),
                                       KEPT_DEAD_LETTERS)
        return report

    def segment_states(self, kind: str, keys=None) -> dict[str, str]:
        return {k: v for (kd, k), (_, v) in self.states.items() if kd == kind and (keys is None or k in keys)}

    def save_segment_states(self, states: dict[str, dict[str, tuple[str, str]]]) -> None:
        self.states.update({(kind, k): v for kind, of_kind in states.items() for k, v in of_kind.items()})

    def insert_drift_members(self, rows: list[list]) -> None:
        members = self.members
        for segment, _app, window, position, event_id, event_ts, descriptors in rows:
            members[(segment, int(window), int(position))] = (int(window), int(position), event_id, event_ts,
                                                              dict(descriptors))

    def drift_members(self, segment: str, windows) -> list[tuple]:
        members = self.members
        wanted = set(int(w) for w in windows)
        return [row for (seg, w, p), row in sorted(members.items(), key=lambda kv: kv[0][1:])
                if seg == segment and w in wanted]

    def embedding_vectors(self, field: str, event_ids) -> dict[str, list[float]]:
        wanted = set(event_ids)
        return {r.event_id: list(r.vector) for (eid, f), r in self.embeddings.items() if f == field and eid in wanted}

    def ping(self) -> None:
        """Always answers."""

