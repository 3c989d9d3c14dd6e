"""Prometheus metrics of one process (worker, sink or OTLP receiver), served on ``/metrics``.

Each process builds one :class:`Metrics` with its own ``CollectorRegistry``. The agents count into
its instruments (events, dead letters, detector seconds, batch sizes, rows written, drift windows,
alerts, retraining); counters that already live elsewhere (the alert dispatcher's, the OTLP
receiver's, a Publisher's) are read at scrape time by collectors, so nothing is counted twice.
faust's own Prometheus sensor adds the consumer's figures (messages received, end and committed
offsets per partition, rebalances) under the ``faust_`` prefix, and :class:`ConsumerLag` turns the
offsets into ``driftwarden_consumer_lag``.

Label cardinality is bounded: stages, reason classes, tables, detectors, receivers and job
statuses are closed sets of the code (anything else counts as ``other``); rule names come from
the policy file; segments (app, model version, field) get their own series only for the
``metrics_max_segments`` most recently updated ones (:class:`SegmentGauge`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

#: Dead-letter stages the code sets; a forged header's stage counts as ``other``.
STAGES = frozenset({"decode", "validate", "score", "produce", "sink", "otlp", "unknown"})
#: Reason classes: the first matching phrase of a dead letter's reason names its class.
REASON_CLASSES: tuple[tuple[str, str], ...] = (
    ("too large", "too_large"), ("longer than", "too_large"), ("more than", "too_large"), ("bytes", "too_large"),
    ("not utf-8", "encoding"), ("surrogate", "encoding"), ("not json", "not_json"), ("json ", "not_json"),
    ("nested", "not_json"), ("clickhouse refused", "store_refused"), ("timestamp", "timestamp"),
    ("field required", "schema"), ("missing", "schema"), ("validation", "schema"), ("input should", "schema"),
)
RETRAIN_STATUSES = frozenset({"queued", "running", "succeeded", "failed"})
DETECTOR_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


def reason_class(reason: str) -> str:
    """A dead letter's reason as one of a few classes (a bounded label)."""
    text = reason.lower()
    return next((cls for phrase, cls in REASON_CLASSES if phrase in text), "other")


def stage_label(stage: str) -> str:
    return stage if stage in STAGES else "other"


class SegmentGauge:
    """A gauge labelled by segment that keeps series for at most ``max_segments`` segments: setting
    a new one past the cap removes the least recently set series (counted in ``evicted``)."""

    def __init__(self, gauge: Gauge, max_segments: int) -> None:
        self.gauge = gauge
        self.max_segments = max_segments
        self._order: OrderedDict[tuple[str, ...], None] = OrderedDict()
        self.evicted = 0

    def set(self, labels: tuple[str, ...], value: float) -> None:
        if self.max_segments <= 0:
            return
        labels = tuple(label[:128] for label in labels)
        self._order[labels] = None
        self._order.move_to_end(labels)
        while len(self._order) > self.max_segments:
            old, _ = self._order.popitem(last=False)
            self.gauge.remove(*old)
            self.evicted += 1
        self.gauge.labels(*labels).set(value)


class CappedLabel:
    """Label values admitted first-come up to ``cap``; later values count as ``other``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        value = value[:128]
        if value in self.seen:
            return value
        if len(self.seen) < self.cap:
            self.seen.add(value)
            return value
        return "other"


class MappingCollector(Collector):
    """Counters read at scrape time from a function returning ``{label value(s): count}`` (a tuple
    of values when there are several labels)."""

    def __init__(self, name: str, documentation: str, labels: str | tuple[str, ...],
                 read: Callable[[], Mapping[Any, float]], kind: str = "counter") -> None:
        self.name, self.documentation, self.read, self.kind = name, documentation, read, kind
        self.labels = (labels,) if isinstance(labels, str) else tuple(labels)

    def collect(self) -> Iterable[Any]:
        family_type = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        family = family_type(self.name, self.documentation, labels=list(self.labels))
        for key, value in sorted(self.read().items()):
            values = key if isinstance(key, tuple) else (key,)
            family.add_metric([str(v)[:128] for v in values], float(value))
        yield family


class ConsumerLag(Collector):
    """``driftwarden_consumer_lag{topic, partition}``: a partition's end offset minus the offset this
    process committed, for the partitions assigned to it now (from faust's monitor and consumer)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily("driftwarden_consumer_lag", "Messages not yet committed by this process, per "
                                   "assigned partition (end offset minus committed offset)",
                                   labels=["topic", "partition"])
        try:
            assigned = set(self.app.consumer.assignment())
            lag = consumer_lag(self.app.monitor, assigned)
        except Exception:  # noqa: BLE001 - before the consumer exists, or while it restarts: no series
            lag = {}
        for (topic, partition), behind in sorted(lag.items()):
            family.add_metric([topic, str(partition)], behind)
        yield family


def consumer_lag(monitor: Any, assigned: set | None = None) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition) from a faust monitor's end and committed offsets (committed
    offsets are the next offset to read, like end offsets), for ``assigned`` partitions only."""
    end = getattr(monitor, "tp_end_offsets", None) or {}
    committed = getattr(monitor, "tp_committed_offsets", None) or {}
    out = {}
    for tp, end_offset in end.items():
        if end_offset is None or committed.get(tp) is None or (assigned is not None and tp not in assigned):
            continue  # not committed by this process yet (just started, or just assigned): unknown
        out[(tp.topic, tp.partition)] = max(0, int(end_offset) - int(committed[tp]))
    return out


class Metrics:
    """The instruments of one process and the registry that serves them."""

    def __init__(self, role: str, max_segments: int = 100) -> None:
        self.role = role
        self.registry = CollectorRegistry()
        r = self.registry
        Gauge("driftwarden_up", "1 while this process runs", ["role"], registry=r).labels(role).set(1)
        self.events_consumed = Counter("driftwarden_events_consumed", "Messages taken from llm.inference",
                                       registry=r)
        self.events_scored = Counter("driftwarden_events_scored", "Events scored and sent on", registry=r)
        self.app_events = Counter("driftwarden_app_events", "Events scored per app (the first metrics_max_segments "
                                  "apps by name; the rest as other)", ["app"], registry=r)
        self.app_label = CappedLabel(max_segments)
        self.dead_letters = Counter("driftwarden_dead_letters", "Messages sent to the dead-letter topic",
                                    ["stage", "reason"], registry=r)
        self.detector_seconds = Histogram("driftwarden_detector_seconds", "Seconds one detector took on one batch",
                                          ["detector"], buckets=DETECTOR_BUCKETS, registry=r)
        self.batch_size = Histogram("driftwarden_batch_size", "Messages per batch an agent took", ["agent"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.rows_written = Counter("driftwarden_rows_written", "Rows ClickHouse acknowledged", ["table"], registry=r)
        self.write_retries = Counter("driftwarden_write_retries", "Failed ClickHouse writes that were retried",
                                     ["table"], registry=r)
        self.write_failures = Counter("driftwarden_write_failures", "Rows ClickHouse refused as data "
                                      "(dead-lettered with stage sink)", ["table"], registry=r)
        self.drift_windows = Counter("driftwarden_drift_windows_closed", "Drift windows tested",
                                     ["field", "drifted"], registry=r)
        self.segment_gauge = SegmentGauge(
            Gauge("driftwarden_drift_last_p_value", "p-value of the last drift window of a segment (the "
                  "metrics_max_segments most recently updated segments)", ["app", "model_version", "field"],
                  registry=r), max_segments)
        self.alerts = Counter("driftwarden_alerts", "Alerts the policy emitted", ["rule", "status"], registry=r)
        self.retrain_requests = Counter("driftwarden_retrain_requests", "Retraining requests", registry=r)
        self.retrain_jobs = Counter("driftwarden_retrain_jobs", "Retraining job status updates", ["status"],
                                    registry=r)
        r.register(MappingCollector("driftwarden_metric_segments_evicted", "Segments whose series were dropped at "
                                    "the metrics_max_segments cap", "series",
                                    lambda: {"drift_last_p_value": self.segment_gauge.evicted}))

    # --- counting helpers the agents call --------------------------------------------------------

    def dead_letter(self, stage: str, reason: str) -> None:
        self.dead_letters.labels(stage_label(stage), reason_class(reason)).inc()

    def drift_window(self, app: str, model_version: str, field: str, p_value: float, alpha: float) -> None:
        self.drift_windows.labels(field[:64], str(p_value < alpha).lower()).inc()
        self.segment_gauge.set((app, model_version, field), p_value)

    def retrain_job(self, status: str) -> None:
        self.retrain_jobs.labels(status if status in RETRAIN_STATUSES else "other").inc()

    def add_counters(self, name: str, documentation: str, labels: str | tuple[str, ...],
                     read: Callable[[], Mapping[Any, float]], kind: str = "counter") -> None:
        """Serve counters kept elsewhere, read when scraped."""
        self.registry.register(MappingCollector(name, documentation, labels, read, kind))

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type of a ``/metrics`` answer."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def delivery_counts(counts: Mapping[str, int], receivers: Iterable[str]) -> dict[tuple[str, str], int]:
    """The alert dispatcher's ``<receiver>_<outcome>`` counters keyed ``(receiver, outcome)``."""
    return {(receiver, outcome): counts.get(f"{receiver}_{outcome}", 0) for receiver in receivers
            for outcome in ("delivered", "failed_attempts", "undelivered", "resent", "resend_failed")}
