"""The policy engine: consecutive windows, cooldown, hysteresis, one retraining request per episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from driftwarden.core.schemas import DetectionResult
from driftwarden.retrain_trigger.policy import DetectionWindows, Observation, PolicyEngine
from driftwarden.retrain_trigger.rules import Policy

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def engine(clock, **rule):
    spec = {"name": "prompt-drift", "metric": "drift_p_value", "threshold": 0.01, "clear_threshold": 0.05,
            "consecutive": 2, "cooldown_minutes": 60, "severity": "critical", "retrain": True,
            "segment": {"field": "prompt"}, "description": "prompts moved"}
    spec.update(rule)
    return PolicyEngine(Policy(rules=[spec]), clock=clock, grafana_url="http://grafana:3000")


def drift(p: float, i: int) -> Observation:
    return Observation(app="chat", model_version="v1", field="prompt", metric="drift_p_value", value=p,
                       window_id=f"chat/v1/prompt/{i}", window_start=T0 + timedelta(minutes=i),
                       window_end=T0 + timedelta(minutes=i, seconds=50), n=200, examples=(f"e{i}a", f"e{i}b"))


def test_a_rule_fires_after_its_consecutive_windows_and_requests_retraining_once():
    clock = Clock()
    e = engine(clock)
    assert not e.observe([drift(0.5, 0)]).alerts
    assert not e.observe([drift(0.001, 1)]).alerts, "one breaching window is not enough"
    fired = e.observe([drift(0.001, 2)])
    assert [a.status for a in fired.alerts] == ["firing"]
    alert = fired.alerts[0]
    assert alert.dedupe_key == "prompt-drift:chat:v1:prompt" and alert.retrain_requested
    assert alert.example_event_ids == ["e2a", "e2b"] and alert.baseline == 0.5
    assert "0.001" in alert.summary and "threshold 0.01" in alert.summary and "2 window(s)" in alert.summary
    assert alert.dashboard_url.startswith("http://grafana:3000/d/driftwarden-drift?var-app=chat")
    assert len(fired.requests) == 1
    request = fired.requests[0]
    assert request.request_id == alert.alert_id and request.start == drift(0.001, 1).window_start
    assert request.end == drift(0.001, 2).window_end
    more = e.observe([drift(0.0001, 3), drift(0.0001, 4)])
    assert not more.alerts and not more.requests, "a firing rule does not fire again"


def test_hysteresis_keeps_it_firing_until_the_clear_threshold():
    clock = Clock()
    e = engine(clock, consecutive=1)
    assert e.observe([drift(0.001, 0)]).alerts[0].status == "firing"
    assert not e.observe([drift(0.03, 1)]).alerts, "above the threshold but below the clear threshold"
    resolved = e.observe([drift(0.2, 2)]).alerts
    assert [a.status for a in resolved] == ["resolved"] and resolved[0].ends_at is not None
    assert resolved[0].alert_id == e.states[("prompt-drift", "chat", "v1", "prompt")].alert_id


def test_no_new_alert_during_the_cooldown_but_one_after_it():
    clock = Clock()
    e = engine(clock, consecutive=1, cooldown_minutes=30)
    first = e.observe([drift(0.001, 0)]).alerts[0]
    e.observe([drift(0.5, 1)])
    clock.t = 10 * 60
    assert not e.observe([drift(0.001, 2)]).alerts, "within the cooldown"
    clock.t = 31 * 60
    e.observe([drift(0.5, 3)])
    again = e.observe([drift(0.001, 4)]).alerts
    assert [a.status for a in again] == ["firing"] and again[0].alert_id != first.alert_id


def test_a_rule_watches_only_its_segments():
    e = engine(Clock(), consecutive=1, segment={"app": "search", "field": "prompt"})
    assert not e.observe([drift(0.0001, 0)]).alerts


def result(event_id: str, detector: str, score: float, label: bool, **scores) -> DetectionResult:
    return DetectionResult(event_id=event_id, detector=detector, detector_version="1", config_fingerprint="f",
                           app="chat", model_version="v1", event_ts=T0, scored_at=T0, score=score, label=label,
                           scores=scores)


def test_detection_windows_report_rates_means_latency_errors_and_cost():
    windows = DetectionWindows(size=4, minutes=5, clock=Clock())
    out = []
    for i in range(4):
        out += windows.add([
            result(f"e{i}", "toxicity", 0.9 if i == 0 else 0.1, i == 0),
            result(f"e{i}", "operational", 0.0, False, latency_ms=100.0 * (i + 1), is_error=float(i == 3),
                   cost_usd=0.5),
        ])
    by = {(o.metric, o.detector): o for o in out}
    assert by[("detector_rate", "toxicity")].value == 0.25
    assert by[("detector_rate", "toxicity")].examples == ("e0",)
    assert abs(by[("detector_mean", "toxicity")].value - 0.3) < 1e-9
    assert by[("error_rate", None)].value == 0.25
    assert 380 <= by[("latency_p95_ms", None)].value <= 400
    assert by[("cost_per_hour", None)].value == 2.0 * 60, "four calls at $0.50 within a minute"


def test_a_detection_window_closes_by_time_when_traffic_is_thin():
    clock = Clock()
    windows = DetectionWindows(size=100, minutes=1, clock=clock)
    windows.add([result("e0", "toxicity", 0.1, False)])
    assert windows.due() == []
    clock.t = 61
    assert {o.metric for o in windows.due()} == {"detector_rate", "detector_mean"}


def test_small_detection_windows_are_not_judged():
    e = PolicyEngine(Policy(rules=[{"name": "tox", "metric": "detector_rate", "detector": "toxicity",
                                    "threshold": 0.1, "min_events": 20}]), clock=Clock())
    obs = Observation(app="chat", model_version="v1", field="*", metric="detector_rate", value=0.9,
                      window_id="w", window_start=T0, window_end=T0, n=5, detector="toxicity")
    assert not e.observe([obs]).alerts
