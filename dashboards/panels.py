"""What the dashboards show: every panel's SQL and the columns it returns, apart from layout.

The SQL uses the ClickHouse data source plugin's macros (``$__timeFilter``,
``$__timeInterval``, ``$__interval_s``) and the dashboards' template variables ``app`` and
``model_version`` (``__all`` when "All" is picked). :func:`expand` turns a query into plain
ClickHouse SQL the way Grafana and the plugin do, so tests run every panel on the embedded engine.

A variable's value comes from the URL as much as from its option list, so it reaches SQL only
as ``decodeURLComponent('${app:percentencode}')`` (:func:`var`): Grafana's ``percentencode``
leaves nothing but ``[A-Za-z0-9._~-]`` and ``%XX`` in the literal, which no value can break out
of (``sqlstring`` doubles quotes but leaves backslashes, and ClickHouse reads ``\\'`` as an
escaped quote). The variables are single-valued; their option queries list only names of the
safe set (:func:`safe_name_sql`), the one the event contract accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal
from urllib.parse import quote

from driftwarden.core.schemas import NAME_PATTERN

ALL = "__all"
PanelKind = Literal["timeseries", "table", "stat"]
#: The event contract's safe names (``NAME_PATTERN``, plus "no ``..``" as a look-ahead), as a Grafana
#: variable regex (a second filter on the options).
SAFE_NAME_REGEX = "/^(?!.*\\.\\.)" + NAME_PATTERN.removeprefix("^") + "/"
#: Formats Grafana applies to a custom all value (``__all``) too; others get it as it is.
_FORMATS_APPLIED_TO_ALL = ("percentencode", "text")


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
    drift_levels: bool = False
    """Steps from the drift level and the policy's drift threshold (:func:`with_levels`), not ``thresholds``."""


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    panels: tuple[PanelSpec, ...]
    tags: tuple[str, ...] = ("driftwarden",)
    alert_annotations: bool = False
    extra: dict = field(default_factory=dict)


def var(name: str) -> str:
    """A dashboard variable as a ClickHouse string expression, safe for any value."""
    return f"decodeURLComponent('${{{name}:percentencode}}')"


def safe_name_sql(column: str) -> str:
    """True for names of the event contract's safe set: 1-128 of ``[A-Za-z0-9._-]``, starting with
    a letter or digit, without ``..`` (written without ``$``, which Grafana would read as a variable)."""
    return (f"(length({column}) BETWEEN 1 AND 128 AND match({column}, '^[A-Za-z0-9]') "
            f"AND NOT match({column}, '[^A-Za-z0-9._-]') AND position({column}, '..') = 0)")


def segment(app_col: str = "app", mv_col: str = "model_version") -> str:
    app, mv = var("app"), var("model_version")
    return f"({app} = '{ALL}' OR {app_col} = {app}) AND ({mv} = '{ALL}' OR {mv_col} = {mv})"


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
                  ("time", "segment", "error_rate"), unit="percentunit"),
        PanelSpec("Top spenders (USD, by user)", "table",
                  "SELECT e.user_id AS user_id, concat(e.app, ' ', e.model_version) AS segment, count() AS calls, "
                  "round(sum(d.scores['cost_usd']), 4) AS usd FROM {db}.detections AS d FINAL INNER JOIN "
                  "(SELECT event_id, app, model_version, user_id FROM {db}.inference_events FINAL "
                  "WHERE user_id IS NOT NULL) AS e ON e.event_id = d.event_id WHERE d.detector = 'operational' "
                  f"AND $__timeFilter(d.event_ts) AND {segment('e.app', 'e.model_version')} "
                  "GROUP BY user_id, segment ORDER BY usd DESC LIMIT 20",
                  ("user_id", "segment", "calls", "usd")),
        PanelSpec("Dead letters by stage", "table",
                  "SELECT stage, count() AS dead_letters, max(received_at) AS last_seen FROM {db}.dead_letters FINAL "
                  "WHERE $__timeFilter(received_at) GROUP BY stage ORDER BY dead_letters DESC",
                  ("stage", "dead_letters", "last_seen")),
    ),
)

#: Late feedback with its event's segment: by event id, or by trace id for a traced call.
FEEDBACK_JOIN = ("FROM {db}.feedback AS f FINAL INNER JOIN (SELECT event_id, splitByChar(':', event_id)[1] AS trace, "
                 "app, model_version FROM {db}.inference_events FINAL) AS e ON f.event_id = e.event_id OR "
                 "f.event_id = e.trace ")

SAFETY = DashboardSpec(
    uid="driftwarden-safety", title="driftwarden · safety",
    description="Toxicity, prompt injection, PII and hallucination rates over time, per segment, and what users "
                "say later (negative feedback).",
    panels=(
        PanelSpec("Flagged rate per detector", "timeseries",
                  "SELECT $__timeInterval(event_ts) AS time, detector, avg(label) AS flagged_rate "
                  "FROM {db}.detections FINAL WHERE detector != 'operational' AND label IS NOT NULL "
                  f"AND $__timeFilter(event_ts) AND {SEG} "
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
        PanelSpec("Negative user feedback share", "timeseries",
                  "SELECT $__timeInterval(f.given_at) AS time, concat(e.app, ' ', e.model_version) AS segment, "
                  "avg(f.score < 0) AS negative_share "
                  + FEEDBACK_JOIN +
                  f"WHERE $__timeFilter(f.given_at) AND {segment('e.app', 'e.model_version')} "
                  "GROUP BY time, segment ORDER BY time",
                  ("time", "segment", "negative_share"), unit="percentunit"),
        PanelSpec("Latest negative feedback", "table",
                  "SELECT f.given_at AS time, e.app AS app, e.model_version AS model_version, f.source AS source, "
                  "f.score AS score, f.comment AS comment, f.event_id AS event_id "
                  + FEEDBACK_JOIN +
                  f"WHERE f.score < 0 AND $__timeFilter(f.given_at) AND {segment('e.app', 'e.model_version')} "
                  "ORDER BY f.given_at DESC LIMIT 50",
                  ("time", "app", "model_version", "source", "score", "comment", "event_id")),
    ),
)

DRIFT = DashboardSpec(
    uid="driftwarden-drift", title="driftwarden · drift",
    description="Embedding drift per segment: permutation p-values, statistics and novel shares per window, with the policy's "
                "threshold and alert annotations.",
    alert_annotations=True,
    panels=(
        PanelSpec("Drift p-value per window (log scale)", "timeseries",
                  "SELECT window_end AS time, concat(app, ' ', model_version, ' ', field) AS segment, p_value "
                  f"FROM {{db}}.drift_windows FINAL WHERE $__timeFilter(window_end) AND {SEG} ORDER BY time",
                  ("time", "segment", "p_value"), width=24, log_scale=True, drift_levels=True),
        PanelSpec("Drift statistic per window (MMD² under the aggregate and mmd methods)", "timeseries",
                  "SELECT window_end AS time, concat(app, ' ', model_version, ' ', field) AS segment, statistic "
                  f"FROM {{db}}.drift_windows FINAL WHERE $__timeFilter(window_end) AND {SEG} ORDER BY time",
                  ("time", "segment", "statistic")),
        PanelSpec("Latest windows", "table",
                  "SELECT window_end AS time, window_id, method, n_current, n_reference, round(statistic, 5) AS statistic, "
                  "p_value, round(novel_share, 3) AS novel_share, reference_id FROM {db}.drift_windows FINAL "
                  f"WHERE $__timeFilter(window_end) AND {SEG} ORDER BY window_end DESC LIMIT 50",
                  ("time", "window_id", "method", "n_current", "n_reference", "statistic", "p_value", "novel_share",
                   "reference_id")),
        PanelSpec("Alerts", "table",
                  "SELECT starts_at AS time, rule, severity, status, app, model_version, field, round(value, 5) "
                  "AS value, threshold, summary FROM {db}.alerts FINAL "
                  f"WHERE $__timeFilter(starts_at) AND {SEG} ORDER BY starts_at DESC LIMIT 50",
                  ("time", "rule", "severity", "status", "value", "threshold", "summary"), width=24),
    ),
)

RETRAINING = DashboardSpec(
    uid="driftwarden-retraining", title="driftwarden · retraining",
    description="Retraining requests, jobs and their status, dataset versions and held-out loss; each finished "
                "job's candidate against the current model and the promotion decision.",
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
        PanelSpec("Candidate against current: evaluation and decision", "table",
                  "SELECT updated_at AS time, job_id, app, decision, "
                  "concat(registered_model, '/', registered_version) AS version, "
                  + ", ".join(f"if(mapContains(metrics, 'eval.{s}.{m}.{f}'), round(metrics['eval.{s}.{m}.{f}'], 3), "
                              f"NULL) AS {s}_{f.removesuffix('_rate')}_{m}"
                              for s, f in (("drifted", "held_out_loss"), ("drifted", "hallucination_rate"),
                                           ("regression", "held_out_loss"), ("regression", "toxicity_rate"),
                                           ("regression", "refusal_rate"))
                              for m in ("candidate", "current"))
                  + ", arrayStringConcat(decision_reasons, ' | ') AS reasons FROM {db}.retrain_jobs FINAL "
                  f"WHERE $__timeFilter(updated_at) AND {SEG} AND status = 'succeeded' ORDER BY updated_at DESC "
                  "LIMIT 50",
                  ("time", "job_id", "decision", "version", "drifted_held_out_loss_candidate",
                   "drifted_held_out_loss_current", "drifted_hallucination_candidate", "drifted_hallucination_current",
                   "reasons"), width=24),
    ),
)

DASHBOARDS = (OVERVIEW, SAFETY, DRIFT, RETRAINING)


def with_levels(spec: DashboardSpec, alpha: float, drift_threshold: float | None) -> DashboardSpec:
    """``spec`` with its drift-level panels stepped at the policy's threshold and the test's level
    (red below the threshold: alerting; orange up to the level: drifted; green above it), both
    named in the title."""
    panels = []
    for p in spec.panels:
        if p.drift_levels:
            at = () if drift_threshold is None else (("orange", min(drift_threshold, alpha)),)
            steps = (("red", None), *at, ("green", alpha))  # ascending, as Grafana reads steps
            named = f"test level {alpha:g}" + (f", policy threshold {drift_threshold:g}"
                                               if drift_threshold is not None else "")
            p = replace(p, title=p.title[:-1] + f"; {named})" if p.title.endswith(")") else f"{p.title} ({named})",
                        thresholds=steps)
        panels.append(p)
    return replace(spec, panels=tuple(panels))

VARIABLE_SQL = {
    "app": f"SELECT DISTINCT app FROM {{db}}.inference_events WHERE {safe_name_sql('app')} ORDER BY app",
    "model_version": f"SELECT DISTINCT model_version FROM {{db}}.inference_events "
                     f"WHERE ({var('app')} = '{ALL}' OR app = {var('app')}) AND {safe_name_sql('model_version')} "
                     f"ORDER BY model_version",
}
ANNOTATION_SQL = ("SELECT starts_at AS time, concat('[', severity, '] ', rule, ' ', app, ' ', model_version) AS title, "
                  "summary AS text, rule AS tags FROM {db}.alerts FINAL WHERE status = 'firing' "
                  "AND $__timeFilter(starts_at)")


def percentencode(value: str) -> str:
    """Grafana's ``percentencode`` (JavaScript's ``encodeURIComponent``, plus ``!'()*``): UTF-8,
    everything but ``[A-Za-z0-9._~-]`` as ``%XX``."""
    return quote(value, safe="~")


def sqlstring(value: str) -> str:
    """Grafana's ``sqlstring``: quotes doubled, backslashes left as they are."""
    return "'" + value.replace("'", "''") + "'"


FORMATS = {"percentencode": percentencode, "sqlstring": sqlstring, "raw": str, "text": str}


def _variable(value: str, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"variable format {fmt!r} is not one expand() knows")
    if value == ALL and fmt not in _FORMATS_APPLIED_TO_ALL:
        return ALL  # Grafana skips formatting of a custom all value
    return FORMATS[fmt](value)


def expand(sql: str, *, db: str, start: datetime, end: datetime, interval_s: int = 60,
           variables: dict[str, str] | None = None) -> str:
    """The query as Grafana and the ClickHouse plugin send it: macros and variables replaced,
    each variable in its format (``${name:format}``) as Grafana formats it."""
    variables = {"app": ALL, "model_version": ALL, **(variables or {})}
    fmt = "%Y-%m-%d %H:%M:%S"
    out = sql.replace("{db}", db)
    out = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1)} >= toDateTime('{start.strftime(fmt)}', 'UTC') AND "
                           f"{m.group(1)} <= toDateTime('{end.strftime(fmt)}', 'UTC')", out)
    out = re.sub(r"\$__timeInterval\(([^)]+)\)",
                 lambda m: f"toStartOfInterval({m.group(1)}, INTERVAL {interval_s} second)", out)
    out = out.replace("$__interval_s", str(interval_s))
    out = re.sub(r"\$\{(\w+):(\w+)\}",
                 lambda m: _variable(variables[m.group(1)], m.group(2)) if m.group(1) in variables else m.group(0), out)
    if "$" in out:
        raise ValueError(f"unexpanded macro or variable in: {out}")
    return out
