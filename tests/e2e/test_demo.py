"""The README's main job, as a user runs it: `driftwarden demo` on a fresh data directory.

Smaller than the default run (500 events, windows of 100, a tiny GPT-2 as the base model so the
job takes seconds), but the same path: stack, replay with a population switch, drift alert at
the local receiver, retraining to completion, report and dashboards written, summary printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from driftwarden.deploy.local.broker import free_port
from driftwarden.tests.tiny_models import build_tiny_qa_lm

pytestmark = pytest.mark.integration

GRAFANA_TOKEN = "glsa_demoSecretToken1234567890"
ROUTING_KEY = "R0UT1NGKEYdemo0000000000000000ab"


@pytest.mark.timeout(900)
def test_the_demo_shows_drift_an_alert_retraining_the_report_and_where_everything_is(tmp_path, monkeypatch):
    model = build_tiny_qa_lm(tmp_path / "tiny-gpt2")
    env = {"DRIFTWARDEN_LOCAL_BROKER_PORT": str(free_port()), "DRIFTWARDEN_SINK_WEB_PORT": str(free_port()),
           "DRIFTWARDEN_OTLP__PORT": str(free_port()),
           "DRIFTWARDEN_DRIFT__WINDOW_SIZE": "100", "DRIFTWARDEN_DRIFT__BASELINE_SIZE": "100",
           "DRIFTWARDEN_DRIFT__PERMUTATIONS": "500", "DRIFTWARDEN_RETRAIN__BASE_MODEL": str(model),
           "DRIFTWARDEN_RETRAIN__MAX_STEPS": "5", "DRIFTWARDEN_RETRAIN__DEVICE": "cpu",
           # Secrets that must reach no output: a Grafana token, and a PagerDuty receiver that fails.
           "DRIFTWARDEN_GRAFANA_TOKEN": GRAFANA_TOKEN, "DRIFTWARDEN_ALERTS__PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
           "DRIFTWARDEN_ALERTS__PAGERDUTY_URL": f"http://127.0.0.1:{free_port()}/v2/enqueue",
           "DRIFTWARDEN_ALERTS__MAX_ATTEMPTS": "2", "DRIFTWARDEN_ALERTS__BACKOFF_S": "0.1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    data_dir = tmp_path / "dw"
    out = subprocess.run(
        [sys.executable, "-m", "driftwarden", "demo", "--limit", "500", "--data-dir", str(data_dir), "--json"],
        capture_output=True, text=True, timeout=850, check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout[out.stdout.index("\n{") + 1:])
    assert summary["events_stored"] == 500
    assert summary["detections_by_detector"]["operational"]["results"] == 500
    assert any(a.startswith("prompt-drift demo-chat v1 prompt") for a in summary["alerts_firing"]), summary
    assert summary["alerts_at_receiver"] >= 1 and "ALERT FIRING at the receiver: [critical] prompt-drift" in out.stdout
    job = summary["retraining_job"]
    assert job["status"] == "succeeded" and job["dataset_rows"] > 0 and job["held_out_loss_after"] is not None
    report = Path(summary["report"])
    assert report.is_file() and "prompt-drift" in report.read_text()
    assert sorted(p.name for p in Path(summary["dashboards"]).glob("*.json")) == [
        "driftwarden-drift.json", "driftwarden-overview.json", "driftwarden-retraining.json",
        "driftwarden-safety.json"]
    for line in ("driftwarden demo: done", "HTML report", "Grafana dashboards", "held-out loss", "snapshots",
                 "evaluation             candidate", "drifted     held_out_loss", "regression  toxicity_rate",
                 "decision  "):
        assert line in out.stdout
    assert job["decision"] in ("promote", "hold", "reject") and job["registered"] == "driftwarden-demo-chat/1", job
    assert job["decision_reasons"] and "drifted" in job["evaluation"] and "regression" in job["evaluation"]
    # No secret in anything the demo printed or left behind (logs, job logs, report, snapshots).
    assert "pagerduty" in (data_dir / "logs" / "sink.log").read_text()  # the failing receiver was tried
    for secret in (GRAFANA_TOKEN, ROUTING_KEY):
        assert secret not in out.stdout + out.stderr
        leaked = [p for p in data_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert not leaked, (secret, leaked)
