"""The self-contained HTML report: one file, plots inline, nothing fetched when it is opened.

Sections: what is stored; volume per segment; detector flag rates over time and drift p-values
per segment, both with the alerts marked; a 2-D map (PCA) of the reference against the current
prompt embeddings of the most drifted window; the most flagged events (redacted); the
retraining jobs with their dataset versions and metrics; each finished job's candidate against
the current model, with the promotion decision. ``driftwarden report --out FILE``
writes it; while the local stack runs the sink renders it (``/report/``), as it owns the store.
"""

from __future__ import annotations

import html
import itertools
import logging
from datetime import UTC, datetime
from typing import Any

import numpy as np

from driftwarden.core.storage.store import Store
from driftwarden.dashboards.levels import Levels, levels
from driftwarden.detectors.loading import require

log = logging.getLogger(__name__)

MAP_POINTS = 300
FLAGGED = 20
#: Characters of a prompt or response the report shows.
SHOWN_CHARS = 240
#: Shown instead of a text whose redaction failed or could not run.
WITHHELD = "[text withheld: PII redaction failed]"


def shown_text(text: str | None, redact, n: int = SHOWN_CHARS) -> str:
    """At most ``n`` characters of ``text``, cut before they are redacted (redaction's cost grows
    with the length of the text), never a text whose redaction failed.

    The cut keeps a margin past ``n`` and drops the last, possibly cut, word, so a piece of PII
    that the cut splits is not left unrecognised in view; ``redact`` None shows texts as stored
    (the report was asked for without redaction)."""
    text = text or ""
    head = text[:n * 4]
    if len(text) > len(head) and any(c.isspace() for c in head):
        head = (head.rsplit(None, 1) or [""])[0]
    if redact is not None and head:
        try:
            head = redact(head)
        except Exception:  # noqa: BLE001 - withheld rather than shown unredacted
            log.warning("PII redaction of a text in the report failed; it is withheld (shown as %r). Check the PII "
                        "detector's set-up", WITHHELD, exc_info=True)
            return WITHHELD
        if not isinstance(head, str):
            return WITHHELD
    return head if len(text) <= n and len(head) <= n else head[:n] + "…"


def _withhold(text: str) -> str:
    raise RuntimeError("PII redaction is unavailable")


def collect(store: Store, levels: Levels | None = None) -> dict[str, Any]:
    """Everything the report shows, read from the store, with the levels its drift plot draws."""
    levels = levels or Levels()
    alpha, drift_thresholds = levels.alpha, levels.drift_rules
    from driftwarden.detectors.registry import offline_names

    read = store.report_data(FLAGGED, alpha, offline_names())
    data: dict[str, Any] = {"stats": read.stats, "generated_at": datetime.now(UTC), "volume": read.volume,
                            "rates": read.rates, "drift": read.drift, "alerts": read.alerts, "jobs": read.jobs,
                            "flagged": read.flagged, "alpha": alpha, "drift_thresholds": drift_thresholds,
                            "feedback": read.feedback}
    data["map"] = _drift_map(store)
    data["new"] = _what_is_new(store)
    return data


def _what_is_new(store: Store) -> dict[str, Any] | None:
    """The groups of new events of the window with the lowest p-value, with their example texts:
    those the window stored (as stored: redacted when PII redaction is on), else the events' own
    text of the window's field (prompt or response)."""
    import json

    worst = store.most_drifted_window()
    if worst is None:
        return None
    try:
        groups = [g for g in json.loads(worst["clusters"] or "[]") if isinstance(g, dict)]
    except ValueError:
        groups = []
    pairs = [[(str(e), t if isinstance(t, str) else "")
              for e, t in itertools.zip_longest(g.get("example_event_ids") or [], g.get("examples") or [])
              if e is not None] for g in groups]
    missing = [e for group_pairs in pairs for e, t in group_pairs if not t][:9]
    field = "response" if worst["field"] == "response" else "prompt"
    stored = store.texts(field, missing) if missing else {}
    return {"window_id": worst["window_id"], "field": field, "p_value": worst["p_value"],
            "novel_share": worst["novel_share"],
            "groups": [(int(g.get("size", 0)), [(e, t or stored.get(e, "")) for e, t in group_pairs])
                       for g, group_pairs in zip(groups, pairs, strict=True)]}


def _drift_map(store: Store) -> dict[str, Any] | None:
    """Reference (events of the segment before the window) and current prompt embeddings of the
    window with the lowest p-value, projected on their first two principal components."""
    worst = store.most_drifted_window("prompt")
    if worst is None:
        return None
    reference, current = store.window_vectors(worst["app"], worst["model_version"], worst["field"],
                                              worst["window_start"], worst["window_end"], MAP_POINTS)
    if len(current) < 2 or len(reference) < 2:
        return None
    ref = np.asarray(reference, dtype=np.float32)
    cur = np.asarray(current, dtype=np.float32)
    both = np.vstack([ref, cur])
    centred = both - both.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    return {"window_id": worst["window_id"], "p_value": worst["p_value"], "reference": xy[:len(ref)],
            "current": xy[len(ref):]}


def render(data: dict[str, Any], redact=None) -> str:
    """The report as one HTML string (plotly's script inline, once)."""
    go = require("plotly.graph_objects", "dashboards")
    offline = require("plotly.offline", "dashboards")
    esc = html.escape
    alerts = [a for a in data["alerts"] if a[3] == "firing"]

    def figure(fig, title: str, y_title: str = "", log_y: bool = False) -> str:
        # Alerts are marked at the end of the window that fired them (event time, like the x axis).
        for i, a in enumerate(alerts):
            fig.add_vline(x=a[11], line_dash="dash", line_color="crimson")
            fig.add_annotation(x=a[11], y=1 - 0.08 * (i % 4), yref="paper", text=f"alert: {a[1]}", showarrow=False,
                               font={"color": "crimson", "size": 11}, xanchor="right", bgcolor="white")
        fig.update_layout(title=title, height=360, margin={"l": 60, "r": 20, "t": 50, "b": 40}, yaxis_title=y_title,
                          template="plotly_white", legend={"orientation": "h", "y": -0.2})
        if log_y:
            fig.update_yaxes(type="log")
        return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})

    parts = []
    volume = go.Figure()
    for seg in sorted({r[1] for r in data["volume"]}):
        pts = [r for r in data["volume"] if r[1] == seg]
        volume.add_bar(x=[r[0] for r in pts], y=[r[2] for r in pts], name=seg)
    parts.append(figure(volume.update_layout(barmode="stack"), "Events per 5 minutes", "events"))
    rates = go.Figure()
    for det in sorted({r[1] for r in data["rates"]}):
        pts = [r for r in data["rates"] if r[1] == det]
        rates.add_scatter(x=[r[0] for r in pts], y=[r[2] for r in pts], mode="lines+markers", name=det)
    parts.append(figure(rates, "Share of events flagged, per detector", "flagged rate"))
    if data.get("feedback"):
        fb = go.Figure()
        fb.add_bar(x=[r[0] for r in data["feedback"]], y=[r[2] for r in data["feedback"]], name="feedback given",
                   yaxis="y2", marker={"color": "lightgrey"})
        fb.add_scatter(x=[r[0] for r in data["feedback"]], y=[r[1] for r in data["feedback"]], mode="lines+markers",
                       name="negative share", marker={"color": "crimson"})
        fb.update_layout(yaxis2={"overlaying": "y", "side": "right", "title": "feedback"})
        parts.append(figure(fb, "Late user feedback: negative share per 5 minutes", "negative share"))
    drift = go.Figure()
    for seg in sorted({r[1] for r in data["drift"]}):
        pts = [r for r in data["drift"] if r[1] == seg]
        drift.add_scatter(x=[r[0] for r in pts], y=[max(r[2], 1e-4) for r in pts], mode="lines+markers", name=seg,
                          text=[r[3] for r in pts], hovertemplate="%{text}<br>p = %{y}<extra></extra>")
    drift.add_hline(y=data["alpha"], line_color="grey", line_dash="dot",
                    annotation_text=f"test level {data['alpha']:g}", annotation_position="top left")
    for rule, threshold in data.get("drift_thresholds", ()):
        drift.add_hline(y=threshold, line_color="orange", annotation_text=f"policy rule {rule}: {threshold:g}",
                        annotation_position="bottom left")
    parts.append(figure(drift, "Embedding drift p-value per window (permutation test)", "p-value", log_y=True))
    if data["map"] is not None:
        m = data["map"]
        emb = go.Figure()
        emb.add_scatter(x=m["reference"][:, 0], y=m["reference"][:, 1], mode="markers", name="reference",
                        marker={"color": "steelblue", "opacity": 0.6})
        emb.add_scatter(x=m["current"][:, 0], y=m["current"][:, 1], mode="markers", name="current window",
                        marker={"color": "crimson", "opacity": 0.7})
        emb.update_layout(title=f"Prompt embeddings, reference vs {m['window_id']} (p = {m['p_value']:.4g}), PCA",
                          height=420, template="plotly_white", xaxis_title="PC 1", yaxis_title="PC 2")
        parts.append(emb.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
    else:
        parts.append("<p class=note>No drift window with stored embeddings on both sides yet.</p>")

    def cut(text: str, n: int = SHOWN_CHARS) -> str:
        return esc(shown_text(text, redact, n))

    new = data.get("new")
    if new is not None and new["groups"]:
        rows_ = "".join(
            f"<tr><td>{size}</td><td>{'<br>'.join(f'{esc(e)}: {cut(t)}' for e, t in examples)}</td></tr>"
            for size, examples in new["groups"])
        parts.append(f"<h3>What is new in {esc(new['window_id'])} (p = {new['p_value']:.4g}; "
                     f"{new['novel_share']:.0%} of its events unlike the reference)</h3>"
                     f"<table><tr><th>events</th><th>example {esc(new['field'])}s (redacted)</th></tr>{rows_}</table>")

    flagged = "".join(
        f"<tr><td>{esc(r[0])}</td><td>{esc(r[4])} {esc(r[5])}</td><td>{esc(r[1])}</td><td>{r[2]:.3f}</td>"
        f"<td>{esc(r[3] or '')}</td><td>{cut(r[6])}</td><td>{cut(r[7])}</td></tr>" for r in data["flagged"])
    jobs = "".join(
        f"<tr><td>{r[0]:%Y-%m-%d %H:%M:%S}</td><td>{esc(r[1])}</td><td>{esc(r[2])} {esc(r[3])}</td>"
        f"<td class={esc(r[4])}>{esc(r[4])}</td><td>{esc(r[5])}</td><td>{r[6]}</td>"
        f"<td>{_num(r[7].get('loss_before'))}</td><td>{_num(r[7].get('loss_after'))}</td><td>{esc(r[8][:300])}</td></tr>"
        for r in data["jobs"])
    candidates = "".join(_candidate(r, esc) for r in data["jobs"] if r[4] == "succeeded" and any(
        k.startswith("eval.") for k in r[7]))
    alert_rows = "".join(
        f"<tr><td>{r[0]:%Y-%m-%d %H:%M:%S}</td><td>{esc(r[1])}</td><td>{esc(r[2])}</td><td>{esc(r[3])}</td>"
        f"<td>{esc(r[4])} {esc(r[5])} {esc(r[6])}</td><td>{esc(r[9])}</td></tr>" for r in data["alerts"])
    s = data["stats"]
    cards = "".join(f"<div class=card><b>{v}</b><span>{esc(k)}</span></div>" for k, v in (
        ("events", s["events"]), ("detections", s["detections"]), ("dead letters", s["dead_letters"]),
        ("drift windows", s["drift_windows"]), ("alerts firing", s.get("alerts_firing", 0)),
        ("negative feedback", f"{s.get('feedback_negative', 0)} / {s.get('feedback', 0)}"),
        ("retraining jobs", sum(s.get("retrain_jobs_by_status", {}).values()))))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>driftwarden report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }}
h1 {{ margin-bottom: 0 }} .sub {{ color: #666; margin-top: 4px }}
.cards {{ display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0 }}
.card {{ border: 1px solid #ddd; border-radius: 8px; padding: 10px 16px; min-width: 120px }}
.card b {{ display: block; font-size: 24px }} .card span {{ color: #666 }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; margin: 8px 0 24px }}
th, td {{ border-bottom: 1px solid #eee; padding: 4px 6px; text-align: left; vertical-align: top }}
td.succeeded, .promote {{ color: #080 }} td.failed, .reject {{ color: #b00 }} .hold {{ color: #a60 }} .note {{ color: #666 }}
</style>
<script>{offline.get_plotlyjs()}</script>
</head><body>
<h1>driftwarden report</h1>
<p class=sub>Generated {data['generated_at']:%Y-%m-%d %H:%M:%S} UTC. Self-contained: nothing is fetched when it is opened.</p>
<div class=cards>{cards}</div>
<h2>Traffic, safety and drift</h2>
{''.join(parts)}
<h2>Alerts</h2>
<table><tr><th>started</th><th>rule</th><th>severity</th><th>status</th><th>segment</th><th>summary</th></tr>
{alert_rows or '<tr><td colspan=6 class=note>none</td></tr>'}</table>
<h2>Most flagged events (redacted)</h2>
<table><tr><th>event</th><th>segment</th><th>detector</th><th>score</th><th>evidence</th><th>prompt</th><th>response</th></tr>
{flagged or '<tr><td colspan=7 class=note>none</td></tr>'}</table>
<h2>Retraining jobs</h2>
<table><tr><th>updated</th><th>job</th><th>segment</th><th>status</th><th>dataset version</th><th>rows</th>
<th>held-out loss before</th><th>after</th><th>message</th></tr>
{jobs or '<tr><td colspan=9 class=note>none</td></tr>'}</table>
<h2>Candidate vs current</h2>
<p class=note>Each finished job's adapter (the candidate) against the model it would replace (the champion
adapter, or the base model), on the drifted traffic it held out and on the regression set from before the
drift; lower is better for every figure but answer length. The promotion policy's decision and its reasons
follow (a held candidate waits for <code>driftwarden models promote | reject</code>).</p>
{candidates or '<p class=note>no evaluated job yet</p>'}
</body></html>
"""


def _candidate(row, esc) -> str:
    """One job's evaluation table and decision, as HTML."""
    from driftwarden.retrain_trigger.retraining.evaluation import Table

    metrics, decision, reasons, model, version = row[7], row[9], row[10], row[11], row[12]
    table = Table.from_flat(metrics)
    lines = "".join(
        f"<tr><td>{esc(set_name)}</td><td>{esc(metric)}</td><td>{_num(cand)}</td><td>{_num(cur)}</td>"
        f"<td>{'' if cand is None or cur is None else f'{cand - cur:+.4f}'}</td></tr>"
        for set_name, metric, cand, cur in table.rows())
    counts = ", ".join(f"{n} {esc(k)} events" for k, n in sorted(table.counts.items()))
    registered = f"{esc(model)} version {esc(version)}" if version else "not registered"
    why = "".join(f"<li>{esc(r[:400])}</li>" for r in reasons[:12])
    return (f"<h3>Job {esc(row[1])} ({esc(row[2])} {esc(row[3])}): <span class={esc(decision or 'none')}>"
            f"{esc(decision or 'undecided')}</span> — {registered}</h3><p class=note>{counts}</p>"
            f"<table><tr><th>set</th><th>metric</th><th>candidate</th><th>current</th><th>change</th></tr>{lines}"
            f"</table><ul>{why}</ul>")


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}"


def build_report(store: Store, settings=None) -> str:
    redact = None
    if settings is not None:
        try:
            from driftwarden.retrain_trigger.retraining.curation import pii_redactor

            redact = pii_redactor(settings)
        except Exception:  # noqa: BLE001 - the report goes out, with the flagged texts withheld
            log.warning("PII redaction is unavailable for the report; flagged prompts and responses are withheld "
                        "(shown as %r). Check the PII detector's set-up (presidio)", WITHHELD, exc_info=True)
            redact = _withhold
    return render(collect(store, None if settings is None else levels(settings)), redact)
