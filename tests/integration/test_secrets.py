"""Secrets never reach output: ``driftwarden up`` (its console and every log of the stack it
starts, with a store it cannot reach and with the embedded one), the demo's summary, failing
alert receivers, and a local fine-tuning job's environment are all searched for each secret.

Real parts: the CLI in a subprocess with the local broker and the embedded ClickHouse engine,
real HTTP to dead and malformed receiver URLs, a real job process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.core.settings import load_settings
from driftwarden.deploy.local.broker import free_port
from driftwarden.retrain_trigger.alerting.dispatch import Dispatcher
from driftwarden.retrain_trigger.retraining.launchers import JobSpec, LocalLauncher

pytestmark = pytest.mark.integration

DSN_PASSWORD, DSN_QUERY_PASSWORD = "dsnS3cretUser", "dsnS3cretQuery"
GRAFANA_TOKEN = "glsa_S3cretGrafanaToken"
SLACK_PATH_SECRET = "XoXbS3cretHookPath"
PD_KEY = "R0utingS3cretKey42"
SECRETS = (DSN_PASSWORD, DSN_QUERY_PASSWORD, GRAFANA_TOKEN, SLACK_PATH_SECRET, PD_KEY)
T0 = datetime(2026, 5, 1, 8, tzinfo=UTC)


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWARDEN_")}
    env.update({
        "DRIFTWARDEN_DATA_DIR": str(tmp_path),
        "DRIFTWARDEN_SINK_WEB_PORT": str(free_port()),
        "DRIFTWARDEN_LOCAL_BROKER_PORT": str(free_port()),
        "DRIFTWARDEN_RETRAIN__ENABLED": "false",
        "DRIFTWARDEN_GRAFANA_TOKEN": GRAFANA_TOKEN,
        "DRIFTWARDEN_ALERTS__SLACK_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/services/T0/B0/{SLACK_PATH_SECRET}",
        "DRIFTWARDEN_ALERTS__PAGERDUTY_ROUTING_KEY": PD_KEY,
        "DRIFTWARDEN_ALERTS__PAGERDUTY_URL": f"http://127.0.0.1:{free_port()}/v2/enqueue",
        "DRIFTWARDEN_LOG_LEVEL": "DEBUG",
    })
    return env


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def all_logs(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*.log"))


@pytest.mark.parametrize("dsn", [f"http://user:{DSN_PASSWORD}@127.0.0.1:1/?database=driftwarden",
                                 f"http://user@127.0.0.1:1/?database=driftwarden&password={DSN_QUERY_PASSWORD}"],
                         ids=["password-in-user-info", "password-in-query"])
def test_up_against_a_store_it_cannot_reach_says_so_without_the_dsns_password(tmp_path, dsn):
    env = base_env(tmp_path)
    env["DRIFTWARDEN_CLICKHOUSE_DSN"] = dsn
    done = subprocess.run([sys.executable, "-m", "driftwarden", "up"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode != 0, done.stdout
    sink_log = (tmp_path / "logs" / "sink.log").read_text(errors="replace")
    assert "ClickHouse failed to connect to http://127.0.0.1:1/***" in sink_log, sink_log[-2000:]
    assert "sink exited" in done.stderr, done.stderr
    assert not leaks(done.stdout + done.stderr + all_logs(tmp_path))


@pytest.mark.timeout(180)
def test_up_and_its_stack_print_and_log_no_secret(tmp_path):
    env = base_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "driftwarden", "up"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "driftwarden is up" in line:
                break
        assert any("driftwarden is up" in line for line in lines), "".join(lines)[-3000:]
        assert any("store chdb://" in line for line in lines)
        sink_log = tmp_path / "logs" / "sink.log"
        deadline = time.monotonic() + 30
        while "alerts go to" not in sink_log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.5)  # the sink's tasks start once it runs: the receivers are read then
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    text = "".join(lines) + out + all_logs(tmp_path)
    assert "alerts go to pagerduty, slack" in text, "the sink read the receivers' secrets"
    assert not leaks(text)


def test_the_demo_summary_shows_the_store_with_its_passwords_masked(tmp_path):
    from driftwarden.deploy.local.demo import _Clock, _closing, _summary

    settings = load_settings(data_dir=tmp_path, clickhouse_dsn=f"http://user:{DSN_PASSWORD}@127.0.0.1:1/"
                                                                f"?password={DSN_QUERY_PASSWORD}")
    counts = {"events": 3, "detections_by_detector": {}, "embeddings": 0, "drift_windows": 0, "drift_alarms": 0,
              "alerts": [], "drift_windows_latest": [], "retrain_jobs": []}

    class Receiver:
        received: list = []
        distinct: dict = {}
        log_file = tmp_path / "alerts.jsonl"

    summary = _summary(counts, {"events": 0}, settings, T0, Receiver(), tmp_path / "r.html", [], _Clock())
    printed = "\n".join(_closing(summary))
    assert summary["store"] == "http://user:***@127.0.0.1:1/?password=***" and summary["store"] in printed
    assert not leaks(printed + repr(summary) + repr(settings))


def test_failing_receivers_log_no_webhook_url_and_no_routing_key(tmp_path, caplog):
    alert = AlertEvent(
        alert_id="rule:chat:v1:prompt@x", dedupe_key="rule:chat:v1:prompt", status="firing", rule="rule",
        severity="critical", app="chat", model_version="v1", field="prompt", metric="drift_p_value", value=0.001,
        threshold=0.01, summary="moved", window_id="chat/v1/prompt/1", window_start=T0, window_end=T0,
        dashboard_url="http://grafana:3000/d/x", starts_at=T0, policy_fingerprint="p")
    configs = [
        AlertsConfig(slack_webhook_url=f"http://127.0.0.1:{free_port()}/services/T0/B0/{SLACK_PATH_SECRET}",
                     pagerduty_routing_key=PD_KEY, pagerduty_url=f"http://127.0.0.1:{free_port()}/v2/enqueue",
                     backoff_s=0.01, max_attempts=2),
        AlertsConfig(slack_webhook_url=f"hooks.slack.com/services/T0/B0/{SLACK_PATH_SECRET}", max_attempts=2,
                     backoff_s=0.01),
    ]

    async def go(config):
        d = Dispatcher(config)
        await d.start()
        outcome = await d.deliver(alert)
        await d.stop()
        return d, outcome

    with caplog.at_level(logging.DEBUG):
        for config in configs:
            d, outcome = asyncio.run(go(config))
            assert outcome and not any(outcome.values()), outcome
            assert d.counts["slack_undelivered"] == 1
            assert not leaks(repr(d.receivers) + repr(config))
    assert "not delivered to slack" in caplog.text
    assert not leaks(caplog.text + "".join(r.getMessage() for r in caplog.records))


@pytest.mark.timeout(120)
def test_a_local_fine_tuning_job_runs_without_any_secret_in_its_environment(tmp_path, monkeypatch):
    for key, value in base_env(tmp_path).items():
        if key.startswith("DRIFTWARDEN_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DRIFTWARDEN_CLICKHOUSE_DSN",
                       f"http://user:{DSN_PASSWORD}@127.0.0.1:1/?password={DSN_QUERY_PASSWORD}")
    monkeypatch.setenv("HF_TOKEN", GRAFANA_TOKEN)  # an unrelated secret of the sink's environment
    # The job's interpreter is a shell that writes the environment it was given, then runs the real
    # Python: reading /proc/PID/environ races a job that fails at once (it reads empty once exited).
    seen = tmp_path / "job-environ"
    interpreter = tmp_path / "python"
    interpreter.write_text(f'#!/bin/sh\nenv > "{seen}"\nexec "{sys.executable}" "$@"\n')
    interpreter.chmod(0o700)
    monkeypatch.setattr("driftwarden.retrain_trigger.retraining.launchers.sys.executable", str(interpreter))
    settings = load_settings()
    job = JobSpec(job_id="job-secrets", snapshot_dir=tmp_path / "no-snapshot", out_dir=settings.jobs_dir / "job-s")
    launcher = LocalLauncher(settings)
    launcher.launch(job)
    job.handle.wait(90)
    environ = seen.read_text(errors="replace")
    assert "DRIFTWARDEN_RETRAIN__MAX_STEPS=" in environ and "PATH=" in environ
    state, message = launcher.poll(job)
    assert state == "failed" and "is not a dataset snapshot" in message, "the job ran with what it was given"
    assert not leaks(environ + message + all_logs(job.out_dir))
