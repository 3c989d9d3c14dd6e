"""Operating the stack with real tools: Prometheus scrapes every process, Alertmanager takes the alerts.

One module stack (broker, sink, a worker, the OTLP receiver) with a real Alertmanager as its alert
receiver and a real Prometheus scraping each process's ``/metrics`` (Debian's packages, started by
``deploy/local/ops.py``), with the shipped rules loaded.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from driftwarden.core.schemas import AlertEvent
from driftwarden.deploy.local.ops import start_alertmanager, start_prometheus
from driftwarden.streams.web import live_processes
from driftwarden.tests.cases import encode, valid_event
from driftwarden.tests.realstack import _apply, all_scored, dump_logs_on_failure, producer, start, wait_for

pytestmark = pytest.mark.integration
RESOLVE_TIMEOUT_S = 6.0
RESEND_S = 1.5
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    with start_alertmanager(tmp_path_factory.mktemp("am"), resolve_timeout_s=RESOLVE_TIMEOUT_S) as am:
        yield am


@pytest.fixture(scope="module")
def ops_stack(stack_env, alertmanager):
    from driftwarden.core.settings import get_settings

    env = {**stack_env, "DRIFTWARDEN_ALERTS__ALERTMANAGER_URL": alertmanager.url,
           "DRIFTWARDEN_ALERTS__RESEND_INTERVAL_S": str(RESEND_S), "DRIFTWARDEN_OTLP__ENABLED": "true"}
    mp = _apply(env)
    settings = get_settings()
    stack = start(settings)
    try:
        yield stack, settings
    finally:
        stack.stop()
        dump_logs_on_failure(stack.log_dir)
        mp.undo()
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def prometheus(ops_stack, tmp_path_factory):
    stack, settings = ops_stack
    deadline = time.monotonic() + 60
    while len({p["role"] for p in live_processes(settings)}) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)  # the worker registers its port once its web server runs
    targets: dict[str, list[str]] = {}
    for p in live_processes(settings):
        targets.setdefault(f"driftwarden-{p['role']}", []).append(f"127.0.0.1:{p['port']}")
        while time.monotonic() < deadline:  # registered at start; its web server answers after the models load
            try:
                get(f"http://127.0.0.1:{p['port']}/healthz")
                break
            except OSError:
                time.sleep(0.5)
    assert set(targets) == {"driftwarden-sink", "driftwarden-score", "driftwarden-otlp"}, targets
    with start_prometheus(tmp_path_factory.mktemp("prom"), targets, rules=[RULES], scrape_interval_s=1.0) as prom:
        yield prom


def promql(prom, query: str) -> list[dict]:
    out = prom.get_json("/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    assert out["status"] == "success", out
    return out["data"]["result"]


def scalar(prom, query: str) -> float | None:
    result = promql(prom, query)
    return float(result[0]["value"][1]) if result else None


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_every_process_is_healthy_ready_and_says_what_it_checked(ops_stack, prometheus):
    _, settings = ops_stack
    by_role = {p["role"]: p["port"] for p in live_processes(settings)}
    for role, port in by_role.items():
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and body["status"] == "ok", (role, body)
    deadline = time.monotonic() + 60
    while True:
        answers = {role: get(f"http://127.0.0.1:{port}/readyz") for role, port in by_role.items()}
        if all(status == 200 for status, _ in answers.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {role: status for role, (status, _) in answers.items()} == {"sink": 200, "score": 200, "otlp": 200}, answers
    assert set(answers["score"][1]["checks"]) == {"partitions_assigned", "models_loaded"}
    assert set(answers["sink"][1]["checks"]) == {"partitions_assigned", "store_reachable"}


def test_prometheus_counts_the_same_events_as_clickhouse_after_a_replay(ops_stack, prometheus):
    stack, settings = ops_stack
    n = 30
    bad = 3
    with producer(stack.bootstrap) as p:
        for i in range(n):
            p.send(settings.topic_inference, encode(valid_event(f"ops-{i}", app="ops-app")))
        for i in range(bad):
            p.send(settings.topic_inference, b"{not json " + str(i).encode())
        p.flush()
    counts = wait_for(settings, lambda c: all_scored(settings, n)(c) and c["dead_letters"] >= bad, stack=stack)
    stored = counts["events"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        scored = scalar(prometheus, "sum(driftwarden_events_scored_total)")
        written = scalar(prometheus, 'sum(driftwarden_rows_written_total{table="inference_events"})')
        if scored == stored and written == stored:
            break
        time.sleep(1)
    assert (scored, written) == (stored, stored)
    assert scalar(prometheus, 'sum(driftwarden_app_events_total{app="ops-app"})') == n
    assert scalar(prometheus, 'sum(driftwarden_dead_letters_total{stage="decode", reason="not_json"})') == bad
    assert scalar(prometheus, 'count(driftwarden_detector_seconds_count)') >= 4  # one series per detector
    assert scalar(prometheus, 'sum(up{job=~"driftwarden.*"})') == 3
    deadline = time.monotonic() + 60  # lag is known once each process has committed (every few seconds)
    while scalar(prometheus, "sum(driftwarden_consumer_lag)") != 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert scalar(prometheus, "sum(driftwarden_consumer_lag)") == 0  # everything stored: nothing behind
    assert scalar(prometheus, 'sum(faust_messages_received_total)') is not None  # faust's own sensor
    rules = prometheus.get_json("/api/v1/rules")["data"]["groups"][0]["rules"]
    assert len(rules) == 8 and all(r["health"] == "ok" for r in rules), rules


def am_alerts(am, **labels) -> list[dict]:
    alerts = am.get_json("/api/v2/alerts?active=true&silenced=false&inhibited=false")
    return [a for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())]


def test_alertmanager_keeps_a_firing_alert_past_its_resolve_timeout_and_ends_it_on_resolve(ops_stack, alertmanager):
    stack, settings = ops_stack
    now = datetime.now(UTC)

    def alert(status: str) -> AlertEvent:
        return AlertEvent(
            alert_id=f"ops-drift:ops-app:v1:prompt@{now.isoformat()}", dedupe_key="ops-drift:ops-app:v1:prompt",
            status=status, rule="ops-drift", severity="critical", app="ops-app", model_version="v1", field="prompt",
            metric="drift_p_value", value=0.0004, threshold=0.01, summary="Prompts of ops-app moved.",
            example_event_ids=["ops-1"], window_id="ops-app/v1/prompt/1", window_start=now, window_end=now,
            labels={"alertname": "ops-drift", "severity": "critical", "app": "ops-app", "model_version": "v1"},
            dashboard_url="http://grafana.example/d/x", starts_at=now,
            ends_at=now + timedelta(seconds=1) if status == "resolved" else None, policy_fingerprint="ops")

    with producer(stack.bootstrap) as p:
        p.send(settings.topic_alerts, alert("firing").to_json_bytes(), key=b"ops-drift:ops-app:v1:prompt")
        p.flush()
    deadline = time.monotonic() + 60
    while not (listed := am_alerts(alertmanager, alertname="ops-drift")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert listed, "Alertmanager never listed the alert"
    first = listed[0]
    assert first["labels"]["app"] == "ops-app" and first["status"]["state"] == "active"
    assert first["annotations"]["summary"] == "Prompts of ops-app moved."
    assert first["annotations"]["value"] == "0.0004" and first["generatorURL"] == "http://grafana.example/d/x"
    # Without re-sending, Alertmanager would end it after its resolve_timeout.
    time.sleep(RESOLVE_TIMEOUT_S * 2)
    still = am_alerts(alertmanager, alertname="ops-drift")
    assert still and still[0]["status"]["state"] == "active", "the firing alert ended: it was not re-sent"
    with producer(stack.bootstrap) as p:
        p.send(settings.topic_alerts, alert("resolved").to_json_bytes(), key=b"ops-drift:ops-app:v1:prompt")
        p.flush()
    deadline = time.monotonic() + 60
    while am_alerts(alertmanager, alertname="ops-drift") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not am_alerts(alertmanager, alertname="ops-drift"), "the resolve did not end the alert"
    time.sleep(RESEND_S * 3)  # and the re-sending stopped with it: the alert does not come back
    assert not am_alerts(alertmanager, alertname="ops-drift")
