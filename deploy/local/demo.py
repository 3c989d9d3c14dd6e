"""The README's main job: the whole product on real data, on this machine.

1. the local stack starts (broker, sink with drift, policy, alerts and retraining; a worker),
   and a local alert receiver (Alertmanager's API) stands in for on-call;
2. two hours of traffic are replayed: HaluEval general prompts, then, for the last hour, HaluEval
   QA questions — a population switch;
3. detections, embeddings and drift windows are stored; the shipped policy fires a drift alert,
   which the receiver gets, and requests retraining;
4. a snapshot of the new population is curated and a LoRA job fine-tunes SmolLM2 on it, then
   evaluates the candidate against the base model (on held-out events of the new population and
   on a regression set from before the switch); the run and the adapter are registered in MLflow
   and the shipped promotion rules decide (promote, hold for a person, reject);
5. the HTML report and the Grafana dashboards are written, and a summary says where everything is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from driftwarden.core.errors import DriftwardenError
from driftwarden.core.settings import Settings
from driftwarden.retrain_trigger.retraining.evaluation import Table
from driftwarden.streams.sink_pages import read_report, read_stats
from driftwarden.deploy.local.receiver import AlertReceiver
from driftwarden.deploy.local.stack import configured_ports, start_stack
from driftwarden.detectors.registry import unsampled_names
from driftwarden.pkg_data import path as data_path
from driftwarden.streams.publisher import Publisher
from driftwarden.core.ingest.datasets import ReplayOptions
from driftwarden.streams.replay import replay_file

BEFORE, AFTER = 1000, 600


class DemoTimeoutError(DriftwardenError):
    def __init__(self, what: str, timeout_s: float, log_dir: str):
        super().__init__(f"the demo waited {timeout_s:.0f} s for {what}; the stack is too slow or a process is "
                         f"stuck. Look at the logs in {log_dir}.")


class _Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __str__(self) -> str:
        s = int(time.monotonic() - self.started)
        return f"{s // 60:02d}:{s % 60:02d}"


def run_demo(settings: Settings, *, limit: int | None = None, workers: int = 1, timeout_s: float = 1800.0,
             retrain: bool = True, echo: Callable[[str], None] = print) -> dict:
    """Run the demo; returns the summary it prints at the end."""
    clock = _Clock()
    before = BEFORE if limit is None else max(1, round(limit * BEFORE / (BEFORE + AFTER)))
    after = AFTER if limit is None else max(1, limit - before)
    data_dir = settings.data_dir.resolve()
    deadline = time.monotonic() + timeout_s

    def say(text: str) -> None:
        echo(f"[{clock}] {text}")

    def on_alert(alert: dict) -> None:
        labels, notes = alert.get("labels", {}), alert.get("annotations", {})
        state = "RESOLVED" if alert.get("endsAt") else "FIRING"
        say(f"ALERT {state} at the receiver: [{labels.get('severity')}] {labels.get('alertname')} "
            f"{labels.get('app')} {labels.get('model_version')} {labels.get('field', '')}: "
            f"{notes.get('summary', '')[:400]}")

    with AlertReceiver(data_dir / "alerts-received.jsonl", on_alert,
                       avoid=configured_ports(settings, workers)) as receiver:
        settings = settings.model_copy(update={
            "alerts": settings.alerts.model_copy(update={"alertmanager_url": receiver.url}),
            "retrain": settings.retrain.model_copy(update={"enabled": retrain, **{
                k: v for k, v in DEMO_EVALUATION.items() if k not in settings.retrain.model_fields_set}}),
        })
        say(f"starting the local stack in {data_dir} (broker, sink + drift + policy + retraining, "
            f"{workers} worker); alerts go to the local receiver at {receiver.url}")
        with start_stack(settings, workers=workers) as stack:
            base = read_stats(settings)
            run_id = f"demo{int(time.time())}"
            now = datetime.now(UTC)
            switch_at = now - timedelta(minutes=59)
            say(f"replaying {before} HaluEval general prompts (2 h to 1 h ago), then {after} HaluEval QA "
                f"questions (the last hour): a population switch at {switch_at:%H:%M} UTC")
            with Publisher(stack.bootstrap, settings=settings) as publisher:
                replay_file(data_path("halueval_general"), publisher.publish, ReplayOptions(
                    id_prefix=f"{run_id}-before", shuffle=True, end=now - timedelta(hours=1)), limit=before)
                publisher.flush()
                replay_file(data_path("halueval_qa"), publisher.publish, ReplayOptions(
                    id_prefix=f"{run_id}-after", shuffle=True, end=now, span=timedelta(minutes=59)), limit=after)
                publisher.flush()
            sent = publisher.stats.sent
            expected = base["events"] + sent
            say(f"published {sent} events; scoring them (toxicity, hallucination, PII, prompt injection, "
                f"embeddings) ...")
            detectors = unsampled_names(settings)  # a sampled detector (hallucination) has fewer results
            last_print = 0.0
            while True:
                stack.check()
                counts = read_stats(settings)
                per = counts["detections_by_detector"]
                scored = min([counts["events"]] + [per.get(d, {}).get("results", 0) for d in detectors])
                if time.monotonic() - last_print > 5 or scored >= expected:
                    say(f"  stored {counts['events'] - base['events']}/{sent} events, "
                        f"{counts['drift_windows']} drift windows ({counts['drift_alarms']} with p < 0.05), "
                        f"{counts['alerts_firing']} alerts")
                    last_print = time.monotonic()
                if scored >= expected:
                    break
                if time.monotonic() > deadline:
                    raise DemoTimeoutError(f"{sent} events to be stored", timeout_s, str(stack.log_dir))
                time.sleep(1.0)
            counts = _wait_for_retraining(settings, stack, say, deadline, timeout_s) if retrain else counts
            say("writing the HTML report (rendered by the sink, which owns the store) ...")
            report = data_dir / "report.html"
            report.write_text(read_report(settings), encoding="utf-8")
            counts = read_stats(settings)
    from driftwarden.dashboards.grafana import export

    dashboards = export(data_dir / "dashboards", settings.clickhouse_database)
    summary = _summary(counts, base, settings, switch_at, receiver, report, dashboards, clock)
    for line in _closing(summary):
        echo(line)
    return summary


#: The demo's evaluation, smaller than the default (64 prompts per set, 48 new tokens), so that the
#: whole demo stays short on two CPU cores beside the stack (it took 104 s of a 486 s demo with
#: AMX, 237 s of about 1,000 s on AVX2 alone; 24 prompts and 32 tokens took 242 s of 706 s with
#: AMX); a setting given in the environment wins.
DEMO_EVALUATION = {"eval_max_events": 20, "eval_max_new_tokens": 24}


def _wait_for_retraining(settings: Settings, stack, say, deadline: float, timeout_s: float) -> dict:
    """Wait for the drift alert's retraining job to finish, showing its progress."""
    say("waiting for the drift windows, the alert and the retraining it requests ...")
    seen_step, shown_at = -1, 0.0
    quiet_since = time.monotonic()
    while True:
        stack.check()
        counts = read_stats(settings)
        jobs = counts["retrain_jobs"]
        if any(j["status"] in ("succeeded", "failed") for j in jobs):
            return counts
        if jobs:
            job = jobs[0]
            progress = Path(job["output_dir"] or settings.jobs_dir / job["job_id"]) / "progress.jsonl"
            lines = progress.read_text().splitlines() if progress.is_file() else []
            if lines:
                last = json.loads(lines[-1])
                done = last["step"] >= settings.retrain.max_steps
                if last["step"] != seen_step and (time.monotonic() - shown_at >= 10 or done or seen_step < 0):
                    seen_step, shown_at = last["step"], time.monotonic()
                    say(f"  job {job['job_id']} on {job['dataset_version']} ({job['dataset_rows']} rows): step "
                        f"{last['step']}/{settings.retrain.max_steps}, training loss {last['loss']:.3f}")
                    if done:
                        say(f"  job {job['job_id']}: evaluating the candidate against the current model (answers to "
                            f"up to {settings.retrain.eval_max_events} held-out and {settings.retrain.eval_max_events} "
                            f"regression prompts, scored by the detectors) ...")
            elif time.time() % 10 < 1:
                say(f"  job {job['job_id']}: {job['status']} (loading the base model) ...")
        elif not counts["retrain_requests"] and time.monotonic() - quiet_since > 120:
            say("no retraining was requested (no rule with retrain: true fired); going on")
            return counts
        if time.monotonic() > deadline:
            raise DemoTimeoutError("the retraining job", timeout_s, str(stack.log_dir))
        time.sleep(1.0)


def _summary(counts: dict, base: dict, settings: Settings, switch_at: datetime, receiver: AlertReceiver,
             report: Path, dashboards: list[Path], clock: _Clock) -> dict:
    firing = [a for a in counts["alerts"] if a["status"] == "firing"]
    drift_alerts = [a for a in firing if a["rule"].endswith("drift") and a["field"] == "prompt"]
    out: dict = {
        "seconds": round(time.monotonic() - clock.started, 1),
        "events_stored": counts["events"] - base["events"],
        "detections_by_detector": counts["detections_by_detector"],
        "embeddings": counts["embeddings"],
        "drift_windows": counts["drift_windows"],
        "drift_windows_p_below_0_05": counts["drift_alarms"],
        "alerts_firing": [f"{a['rule']} {a['app']} {a['model_version']} {a['field']} ({a['severity']})" for a in firing],
        "alerts_at_receiver": len(receiver.distinct),
        "alert_posts_at_receiver": len(receiver.received),
        "data_dir": str(settings.data_dir.resolve()),
        "store": settings.clickhouse_url_masked,
        "report": str(report),
        "dashboards": str(dashboards[0].parent) if dashboards else "",
        "alerts_log": str(receiver.log_file),
    }
    out["switch_at"] = switch_at.isoformat(timespec="seconds")
    if drift_alerts:
        alert = drift_alerts[-1]
        prefix, seq = alert["window_id"].rsplit("/", 1)
        after_switch = sorted(int(w["window_id"].rsplit("/", 1)[1]) for w in counts["drift_windows_latest"]
                              if w["window_id"].startswith(prefix + "/")
                              and datetime.fromisoformat(w["window_start"]).replace(tzinfo=UTC) >= switch_at)
        out["drift_alert_window"] = alert["window_id"]
        if after_switch:
            out["windows_from_switch_to_alert"] = int(seq) - after_switch[0] + 1
    jobs = counts["retrain_jobs"]
    if jobs:
        job = jobs[0]
        m = job["metrics"]
        out["retraining_job"] = {
            "job_id": job["job_id"], "status": job["status"], "dataset_version": job["dataset_version"],
            "dataset_rows": job["dataset_rows"], "held_out_loss_before": m.get("loss_before"),
            "held_out_loss_after": m.get("loss_after"), "train_seconds": m.get("train_seconds"),
            "seconds_per_1000_examples": m.get("seconds_per_1000_examples"),
            "seconds_from_alert_to_job_start": m.get("request_to_start_s"), "output_dir": job["output_dir"],
            "message": job["message"][:300], "decision": job.get("decision", ""),
            "decision_reasons": job.get("decision_reasons", []),
            "registered": (f"{job['registered_model']}/{job['registered_version']}"
                           if job.get("registered_version") else ""),
            "evaluation": Table.from_flat(m).render() if any(k.startswith("eval.") for k in m) else "",
            "eval_seconds": m.get("eval_seconds"),
        }
        out["snapshot"] = str(settings.datasets_dir)
    return out


def _closing(s: dict) -> list[str]:
    lines = ["", "=" * 78, "driftwarden demo: done in %.0f s" % s["seconds"], "=" * 78,
             f"events stored          {s['events_stored']}",
             f"drift windows          {s['drift_windows']} ({s['drift_windows_p_below_0_05']} with p < 0.05)",
             f"alerts firing          {len(s['alerts_firing'])}: " + "; ".join(s["alerts_firing"]),
             f"alerts at the receiver {s['alerts_at_receiver']} (firing or resolved; {s['alert_posts_at_receiver']} "
             f"posted in all: a firing alert is sent again every minute; log: {s['alerts_log']})"]
    if "windows_from_switch_to_alert" in s:
        lines.append(f"drift alert            at {s['drift_alert_window']}: window {s['windows_from_switch_to_alert']} "
                     f"after the switch")
    job = s.get("retraining_job")
    if job:
        lines.append(f"retraining job         {job['job_id']} {job['status']} on snapshot {job['dataset_version']} "
                     f"({job['dataset_rows']} rows)")
        if job["seconds_from_alert_to_job_start"] is not None:
            lines.append(f"job timing             started {job['seconds_from_alert_to_job_start']:.1f} s after the alert"
                         + (f"; {job['seconds_per_1000_examples']:.0f} s per 1,000 training examples"
                            if job["seconds_per_1000_examples"] else ""))
        if job["held_out_loss_before"] is not None:
            lines.append(f"held-out loss          {job['held_out_loss_before']:.4f} -> {job['held_out_loss_after']:.4f}"
                         f"  (adapter in {job['output_dir']}/adapter)")
        if job.get("evaluation"):
            lines.append(f"evaluation             candidate (the new adapter) against the current model, "
                         f"{job['eval_seconds']:.0f} s:")
            lines += ["    " + line for line in job["evaluation"].splitlines()]
        if job.get("decision"):
            lines.append(f"decision               {job['decision']}"
                         + (f" ({job['registered']} in the MLflow registry: driftwarden models list)"
                            if job["registered"] else ""))
            lines += [f"    {reason[:150]}" for reason in job["decision_reasons"][:6]]
        lines.append(f"snapshots              {s['snapshot']}  (driftwarden datasets list)")
    lines += [f"HTML report            {s['report']}",
              f"Grafana dashboards     {s['dashboards']}  (driftwarden dashboards push)",
              f"store                  {s['store']}  (driftwarden stats)", ""]
    return lines
