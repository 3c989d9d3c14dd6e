"""What the dashboards show: every panel's SQL and the columns it returns, apart from layout.

The SQL uses the ClickHouse data source plugin's macros (``$__timeFilter``,
``$__timeInterval``, ``$__interval_s``) and the dashboards' template variables ``app`` and
``model_version`` (``__all`` when "All" is picked). :func:`expand` turns a query into plain
ClickHouse SQL the way the plugin does, so tests run every panel on the embedded engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ALL = "__all"
PanelKind = Literal["timeseries", "table", "stat"]


@dataclass(frozen=True)
class PanelSpec:
    title: str
    kind: PanelKind
    sql: str
    """With ``{db}`` for the database, plugin macros and ``${app:sqlstring}``-style variables."""
    columns: tuple[str, ...]
    """Columns the panel reads (a test checks the query returns them)."""
    description: str = ""
    unit: str = ""
    width: int = 12
    height: int = 8
    thresholds: tuple[tuple[str, float | None], ...] = ()
    """(colour, from-value) steps; the first step's value is None (base)."""
    log_scale: bool = False


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    panels: tuple[PanelSpec, ...]
    tags: tuple[str, ...] = ("driftwarden",)
    alert_annotations: bool = False
    extra: dict = field(default_factory=dict)


def segment(app_col: str = "app", mv_col: str = "model_version") -> str:
    return (f"(${{app:sqlstring}} = '{ALL}' OR {app_col} = ${{app:sqlstring}}) AND "
            f"(${{model_version:sqlstring}} = '{ALL}' OR {mv_col} = ${{model_version:sqlstring}})")


SEG = segment()

OVERVIEW = DashboardSpec(
    uid="driftwarden-overview", title="driftwarden · overview",
    description="Traffic, latency, tokens, cost and errors per app and model version.",
    panels=(
        PanelSpec("Events per second", "timeseries",
                  "SELECT $__timeInterval(ts) AS time, concat(app, ' ', model_version) AS segment, "
                  "count() / $__interval_s AS events_per_s FROM {db}.inference_events FINAL "
                  f"WHERE $__timeFilter(ts) AND {SEG} GROUP BY time, segment ORDER BY time",
                  ("time", "segment", "events_per_s"), unit="reqps"),
        PanelSpec("Latency p50 / p95", "timeseries",
                  "SELECT $__timeInterval(ts) AS time, quantile(0.5)(latency_ms) AS p50_ms, "
                  "quantile(0.95)(latency_ms) AS p95_ms FROM {db}.inference_events FINAL "
                  f"WHERE $__timeFilter(ts) AND {SEG} GROUP BY time ORDER BY time",
                  ("time", "p50_ms", "p95_ms"), unit="ms"),
        PanelSpec("Tokens per interval", "timeseries",
                  "SELECT $__timeInterval(ts) AS time, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out "
                  f"FROM {{db}}.inference_events FINAL WHERE $__timeFilter(ts) AND {SEG} GROUP BY time ORDER BY time",
                  ("time", "tokens_in", "tokens_out")),
        PanelSpec("Cost per hour (USD)", "timeseries",
                  "SELECT $__timeInterval(event_ts) AS time, sum(scores['cost_usd']) * 3600 / $__interval_s "
                  "AS usd_per_hour FROM {db}.detections FINAL WHERE detector = 'operational' "
                  f"AND $__timeFilter(event_ts) AND {SEG} GROUP BY time ORDER BY time",
                  ("time", "usd_per_hour"), unit="currencyUSD"),
        PanelSpec("Error rate per app and model version", "timeseries",
                  "SELECT $__timeInterval(ts) AS time, concat(app, ' ', model_version) AS segment, "
                  "countIf(status = 'error') / count() AS error_rate FROM {db}.inference_events FINAL "
                  f"WHERE $__timeFilter(ts) AND {SEG} GROUP BY time, segment ORDER BY time",
                  ("time", "segment", "error_rate"), unit="percentunit",
                  thresholds=(("green", None), ("red", 0.05))),
        PanelSpec("Dead letters by stage", "table",
                  "SELECT stage, count() AS dead_letters, max(received_at) AS last_seen FROM {db}.dead_letters FINAL "
                  "WHERE $__timeFilter(received_at) GROUP BY stage ORDER BY dead_letters DESC",
                  ("stage", "dead_letters", "last_seen")),
    ),
)

SAFETY = DashboardSpec(
    uid="driftwarden-safety", title="driftwarden · safety",
    description="Toxicity, prompt injection, PII and hallucination rates over time, per segment.",
    panels=(
        PanelSpec("Flagged rate per detector", "timeseries",
                  "SELECT $__timeInterval(event_ts) AS time, detector, avg(label) AS flagged_rate "
                  "FROM {db}.detections FINAL WHERE detector IN ('toxicity', 'prompt_injection', 'pii', "
                  f"'hallucination') AND label IS NOT NULL AND $__timeFilter(event_ts) AND {SEG} "
                  "GROUP BY time, detector ORDER BY time",
                  ("time", "detector", "flagged_rate"), unit="percentunit", width=24),
        PanelSpec("Rates per segment", "table",
                  "SELECT app, model_version, detector, count() AS assessed, avg(label) AS flagged_rate, "
                  "avg(score) AS mean_score, countIf(error IS NOT NULL) AS errors FROM {db}.detections FINAL "
                  "WHERE detector != 'operational' AND $__timeFilter(event_ts) "
                  f"AND {SEG} GROUP BY app, model_version, detector ORDER BY app, model_version, detector",
                  ("app", "model_version", "detector", "assessed", "flagged_rate", "mean_score", "errors")),
        PanelSpec("Most recent flagged events", "table",
                  "SELECT d.event_ts AS time, d.app AS app, d.model_version AS model_version, d.detector AS detector, "
                  "round(d.score, 3) AS score, d.evidence AS evidence, d.event_id AS event_id "
                  "FROM {db}.detections AS d FINAL WHERE d.label = 1 AND d.detector != 'operational' "
                  f"AND $__timeFilter(d.event_ts) AND {segment('d.app', 'd.model_version')} "
                  "ORDER BY d.event_ts DESC LIMIT 50",
                  ("time", "app", "model_version", "detector", "score", "evidence", "event_id")),
    ),
)

DRIFT = DashboardSpec(
    uid="driftwarden-drift", title="driftwarden · drift",
    description="Embedding drift per segment: permutation p-values and MMD² per window, with the policy's "
                "threshold and alert annotations.",
    alert_annotations=True,
    panels=(
        PanelSpec("Drift p-value per window (log scale; policy threshold 0.01)", "timeseries",
                  "SELECT window_end AS time, concat(app, ' ', model_version, ' ', field) AS segment, p_value "
                  f"FROM {{db}}.drift_windows FINAL WHERE $__timeFilter(window_end) AND {SEG} ORDER BY time",
                  ("time", "segment", "p_value"), width=24, log_scale=True,
                  thresholds=(("red", None), ("orange", 0.01), ("green", 0.05))),
        PanelSpec("MMD² per window", "timeseries",
                  "SELECT window_end AS time, concat(app, ' ', model_version, ' ', field) AS segment, statistic "
                  f"FROM {{db}}.drift_windows FINAL WHERE $__timeFilter(window_end) AND {SEG} ORDER BY time",
                  ("time", "segment", "statistic")),
        PanelSpec("Latest windows", "table",
                  "SELECT window_end AS time, window_id, n_current, n_reference, round(statistic, 5) AS statistic, "
                  "p_value, reference_id FROM {db}.drift_windows FINAL "
                  f"WHERE $__timeFilter(window_end) AND {SEG} ORDER BY window_end DESC LIMIT 50",
                  ("time", "window_id", "n_current", "n_reference", "statistic", "p_value", "reference_id")),
        PanelSpec("Alerts", "table",
                  "SELECT starts_at AS time, rule, severity, status, app, model_version, field, round(value, 5) "
                  "AS value, threshold, summary FROM {db}.alerts FINAL "
                  f"WHERE $__timeFilter(starts_at) AND {SEG} ORDER BY starts_at DESC LIMIT 50",
                  ("time", "rule", "severity", "status", "value", "threshold", "summary"), width=24),
    ),
)

RETRAINING = DashboardSpec(
    uid="driftwarden-retraining", title="driftwarden · retraining",
    description="Retraining requests, jobs and their status, dataset versions and held-out loss.",
    panels=(
        PanelSpec("Jobs by status", "stat",
                  "SELECT status, count() AS jobs FROM {db}.retrain_jobs FINAL "
                  f"WHERE $__timeFilter(updated_at) AND {SEG} GROUP BY status ORDER BY status",
                  ("status", "jobs"), width=8),
        PanelSpec("Requests", "table",
                  "SELECT requested_at AS time, app, model_version, reason, start, end, request_id "
                  f"FROM {{db}}.retrain_requests FINAL WHERE $__timeFilter(requested_at) AND {SEG} "
                  "ORDER BY requested_at DESC LIMIT 50",
                  ("time", "app", "model_version", "reason", "request_id"), width=16),
        PanelSpec("Jobs", "table",
                  "SELECT updated_at AS time, job_id, app, model_version, status, dataset_version, dataset_rows, "
                  "round(metrics['loss_before'], 4) AS loss_before, round(metrics['loss_after'], 4) AS loss_after, "
                  "message FROM {db}.retrain_jobs FINAL "
                  f"WHERE $__timeFilter(updated_at) AND {SEG} ORDER BY updated_at DESC LIMIT 50",
                  ("time", "job_id", "status", "dataset_version", "dataset_rows", "loss_before", "loss_after"),
                  width=24),
    ),
)

DASHBOARDS = (OVERVIEW, SAFETY, DRIFT, RETRAINING)

VARIABLE_SQL = {
    "app": "SELECT DISTINCT app FROM {db}.inference_events ORDER BY app",
    "model_version": "SELECT DISTINCT model_version FROM {db}.inference_events "
                     "WHERE (${app:sqlstring} = '__all' OR app = ${app:sqlstring}) ORDER BY model_version",
}
ANNOTATION_SQL = ("SELECT starts_at AS time, concat('[', severity, '] ', rule, ' ', app, ' ', model_version) AS title, "
                  "summary AS text, rule AS tags FROM {db}.alerts FINAL WHERE status = 'firing' "
                  "AND $__timeFilter(starts_at)")


def _sqlstring(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def expand(sql: str, *, db: str, start: datetime, end: datetime, interval_s: int = 60,
           variables: dict[str, str] | None = None) -> str:
    """The query as the ClickHouse plugin sends it: macros and variables replaced."""
    variables = {"app": ALL, "model_version": ALL, **(variables or {})}
    fmt = "%Y-%m-%d %H:%M:%S"
    out = sql.replace("{db}", db)
    out = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1)} >= toDateTime('{start.strftime(fmt)}', 'UTC') AND "
                           f"{m.group(1)} <= toDateTime('{end.strftime(fmt)}', 'UTC')", out)
    out = re.sub(r"\$__timeInterval\(([^)]+)\)",
                 lambda m: f"toStartOfInterval({m.group(1)}, INTERVAL {interval_s} second)", out)
    out = out.replace("$__interval_s", str(interval_s))
    for name, value in variables.items():
        out = out.replace(f"${{{name}:sqlstring}}", _sqlstring(value))
    if "$" in out:
        raise ValueError(f"unexpanded macro or variable in: {out}")
    return out
