"""The policy: turns detection windows and drift windows into alerts and retraining requests.

Pure logic, no Kafka: :class:`DetectionWindows` aggregates each event's detection results per
segment (app, model_version) into windows and reports their metrics as :class:`Observation`\\ s;
:func:`drift_observations` does the same for a closed drift window; :class:`PolicyEngine` keeps
one small state machine per rule and segment (consecutive breaches, firing, cooldown,
hysteresis) and says what to emit. The policy agent (``streams/policy_agent.py``) feeds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import numpy as np

from driftwarden.core.schemas import AlertEvent, DatasetSpec, DetectionResult, DriftResult, RetrainRequest
from driftwarden.retrain_trigger.rules import DETECTOR_METRICS, Policy, Rule

log = logging.getLogger(__name__)

EXAMPLES = 5
METRIC_WORDS = {
    "detector_rate": "the share of events flagged by {detector}",
    "detector_mean": "the mean {detector} score",
    "drift_p_value": "the embedding drift p-value",
    "drift_statistic": "the embedding drift statistic (MMD²)",
    "latency_p95_ms": "the 95th percentile latency (ms)",
    "error_rate": "the share of failed calls",
    "cost_per_hour": "the cost per hour (USD)",
}
DASHBOARDS = {"drift_p_value": "driftwarden-drift", "drift_statistic": "driftwarden-drift",
              "detector_rate": "driftwarden-safety", "detector_mean": "driftwarden-safety"}


@dataclass(frozen=True)
class Observation:
    """One metric of one segment in one closed window."""

    app: str
    model_version: str
    field: str
    metric: str
    value: float
    window_id: str
    window_start: datetime
    window_end: datetime
    n: int
    detector: str | None = None
    examples: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------
# Windows of detection results
# ------------------------------------------------------------------------------------------


@dataclass
class _Window:
    opened: float
    ids: list[str] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    scores: dict[str, list[tuple[float, bool, str]]] = field(default_factory=dict)
    latency: list[float] = field(default_factory=list)
    errors: int = 0
    cost: float = 0.0


class DetectionWindows:
    """Per (app, model_version): windows of ``size`` events or ``minutes``, whichever first."""

    def __init__(self, size: int, minutes: float, clock: Callable[[], float] = time.monotonic):
        self.size = size
        self.seconds = minutes * 60
        self.clock = clock
        self._open: dict[tuple[str, str], _Window] = {}
        self._sequence: dict[tuple[str, str], int] = {}

    def add(self, results: Iterable[DetectionResult]) -> list[Observation]:
        """The results of one event; the observations of the window this closes, if any."""
        results = list(results)
        if not results:
            return []
        first = results[0]
        key = (first.app, first.model_version)
        window = self._open.setdefault(key, _Window(opened=self.clock()))
        window.ids.append(first.event_id)
        window.times.append(first.event_ts)
        for r in results:
            if r.detector == "operational":
                window.latency.append(r.scores.get("latency_ms", 0.0))
                window.errors += int(r.scores.get("is_error", 0.0) > 0)
                window.cost += r.scores.get("cost_usd", 0.0)
            elif r.score is not None and r.label is not None:
                window.scores.setdefault(r.detector, []).append((r.score, r.label, r.event_id))
        return self._close(key) if len(window.ids) >= self.size else []

    def due(self) -> list[Observation]:
        """Observations of windows open longer than ``minutes`` (called by a timer)."""
        now = self.clock()
        out: list[Observation] = []
        for key in [k for k, w in self._open.items() if now - w.opened >= self.seconds and w.ids]:
            out.extend(self._close(key))
        return out

    def _close(self, key: tuple[str, str]) -> list[Observation]:
        window = self._open.pop(key)
        seq = self._sequence[key] = self._sequence.get(key, 0) + 1
        app, mv = key
        start, end = min(window.times), max(window.times)
        n = len(window.ids)
        common = {"app": app, "model_version": mv, "field": "*", "window_id": f"{app}/{mv}/detections/{seq}",
                  "window_start": start, "window_end": end}
        out = []
        for detector, values in sorted(window.scores.items()):
            flagged = sorted((v for v in values if v[1]), key=lambda v: -v[0])
            examples = tuple(v[2] for v in flagged[:EXAMPLES]) or tuple(
                v[2] for v in sorted(values, key=lambda v: -v[0])[:EXAMPLES])
            out.append(Observation(metric="detector_rate", value=len(flagged) / len(values), n=len(values),
                                   detector=detector, examples=examples, **common))
            out.append(Observation(metric="detector_mean", value=float(np.mean([v[0] for v in values])),
                                   n=len(values), detector=detector, examples=examples, **common))
        if window.latency:
            slowest = tuple(window.ids[i] for i in np.argsort(window.latency)[::-1][:EXAMPLES])
            out.append(Observation(metric="latency_p95_ms", value=float(np.percentile(window.latency, 95)), n=n,
                                   examples=slowest, **common))
            out.append(Observation(metric="error_rate", value=window.errors / len(window.latency), n=n, **common))
            hours = max((end - start).total_seconds(), 60.0) / 3600
            out.append(Observation(metric="cost_per_hour", value=window.cost / hours, n=n, **common))
        return out


def drift_observations(result: DriftResult) -> list[Observation]:
    """The p-value and statistic of a closed drift window."""
    common = {"app": result.app, "model_version": result.model_version, "field": result.field,
              "window_id": result.window_id, "window_start": result.window_start, "window_end": result.window_end,
              "n": result.n_current, "examples": tuple(result.top_event_ids[:EXAMPLES])}
    return [Observation(metric="drift_p_value", value=result.p_value, **common),
            Observation(metric="drift_statistic", value=result.statistic, **common)]


# ------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------


@dataclass
class RuleState:
    streak: int = 0
    streak_start: datetime | None = None
    firing: bool = False
    alert_id: str | None = None
    started_at: datetime | None = None
    last_fired: float | None = None
    baseline: float | None = None
    suppressed: int = 0


@dataclass
class Decision:
    alerts: list[AlertEvent] = field(default_factory=list)
    requests: list[RetrainRequest] = field(default_factory=list)


class PolicyEngine:
    """One state machine per (rule, app, model_version, field)."""

    def __init__(self, policy: Policy, *, grafana_url: str = "http://localhost:3000",
                 dataset: DatasetSpec | None = None, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.policy = policy
        self.fingerprint = policy.fingerprint()
        self.grafana_url = grafana_url.rstrip("/")
        self.dataset = dataset or DatasetSpec()
        self.clock = clock
        self.now = now
        self.states: dict[tuple[str, str, str, str], RuleState] = {}

    def rules_for(self, obs: Observation) -> list[Rule]:
        return [r for r in self.policy.rules
                if r.metric == obs.metric and (r.detector is None or r.detector == obs.detector)
                and r.segment.matches(obs.app, obs.model_version, obs.field)
                and not (r.metric in DETECTOR_METRICS and obs.n < r.min_events)]

    def observe(self, observations: Iterable[Observation]) -> Decision:
        decision = Decision()
        for obs in observations:
            for rule in self.rules_for(obs):
                self._step(rule, obs, decision)
        return decision

    def _step(self, rule: Rule, obs: Observation, decision: Decision) -> None:
        key = (rule.name, obs.app, obs.model_version, obs.field)
        st = self.states.setdefault(key, RuleState())
        if st.baseline is None:
            st.baseline = obs.value
        if st.firing:
            if rule.cleared(obs.value):
                decision.alerts.append(self._alert(rule, obs, st, "resolved"))
                log.info("rule %s resolved for %s/%s/%s: %s = %.4g", rule.name, obs.app, obs.model_version,
                         obs.field, obs.metric, obs.value)
                st.firing, st.streak, st.streak_start = False, 0, None
            return
        if not rule.breached(obs.value):
            st.streak, st.streak_start = 0, None
            return
        st.streak += 1
        st.streak_start = st.streak_start or obs.window_start
        if st.streak < rule.consecutive:
            return
        if st.last_fired is not None and self.clock() - st.last_fired < rule.cooldown_minutes * 60:
            st.suppressed += 1
            log.info("rule %s breached again for %s/%s/%s within its %.0f-minute cooldown: no new alert",
                     rule.name, obs.app, obs.model_version, obs.field, rule.cooldown_minutes)
            return
        st.firing, st.last_fired, st.started_at = True, self.clock(), self.now()
        st.alert_id = f"{self._dedupe(rule, obs)}@{st.started_at:%Y%m%dT%H%M%S%fZ}/{obs.window_id}"
        alert = self._alert(rule, obs, st, "firing")
        decision.alerts.append(alert)
        log.warning("rule %s fired for %s/%s/%s: %s", rule.name, obs.app, obs.model_version, obs.field, alert.summary)
        if rule.retrain:
            decision.requests.append(RetrainRequest(
                request_id=st.alert_id, alert_id=st.alert_id, app=obs.app, model_version=obs.model_version,
                reason=f"{rule.name}: {alert.summary}", start=st.streak_start, end=obs.window_end,
                dataset=self.dataset, requested_at=self.now(),
            ))

    @staticmethod
    def _dedupe(rule: Rule, obs: Observation) -> str:
        return f"{rule.name}:{obs.app}:{obs.model_version}:{obs.field}"

    def _alert(self, rule: Rule, obs: Observation, st: RuleState, status: str) -> AlertEvent:
        labels = {"alertname": rule.name, "severity": rule.severity, "app": obs.app,
                  "model_version": obs.model_version, "field": obs.field, "metric": obs.metric,
                  "service": "driftwarden"}
        if obs.detector:
            labels["detector"] = obs.detector
        return AlertEvent(
            alert_id=st.alert_id or "", dedupe_key=self._dedupe(rule, obs), status=status, rule=rule.name,
            severity=rule.severity, app=obs.app, model_version=obs.model_version, field=obs.field,
            metric=obs.metric, detector=obs.detector, value=obs.value, threshold=rule.threshold,
            baseline=st.baseline, summary=self._summary(rule, obs, st, status),
            example_event_ids=list(obs.examples), window_id=obs.window_id, window_start=obs.window_start,
            window_end=obs.window_end, labels=labels, dashboard_url=self._link(obs),
            retrain_requested=rule.retrain and status == "firing", starts_at=st.started_at or self.now(),
            ends_at=self.now() if status == "resolved" else None, policy_fingerprint=self.fingerprint,
        )

    def _summary(self, rule: Rule, obs: Observation, st: RuleState, status: str) -> str:
        what = METRIC_WORDS[obs.metric].format(detector=obs.detector or "")
        segment = f"{obs.app} {obs.model_version}" + (f" ({obs.field})" if obs.field != "*" else "")
        window = (f"window {obs.window_id} ({obs.n} events, {obs.window_start:%Y-%m-%d %H:%M:%S}–"
                  f"{obs.window_end:%H:%M:%S} UTC)")
        moved = f"; it was {st.baseline:.4g} in the first window seen" if st.baseline is not None else ""
        head = f"{rule.description[:1].upper()}{rule.description[1:]}. " if rule.description else ""
        if status == "resolved":
            return (f"{head}Resolved: {what} of {segment} is back at {obs.value:.4g} in {window}, past the clear "
                    f"threshold {rule.clear:.4g}.")
        follow = (" A retraining request for this segment follows, on its events since the first breaching window."
                  if rule.retrain else "")
        return (f"{head}{what[:1].upper()}{what[1:]} of {segment} is {obs.value:.4g} in {window}, "
                f"{rule.worse_when} the threshold {rule.threshold:.4g} for {st.streak} window(s) in a row{moved}."
                f"{follow}")

    def _link(self, obs: Observation) -> str:
        uid = DASHBOARDS.get(obs.metric, "driftwarden-overview")
        span = timedelta(minutes=30)
        query = urlencode({"var-app": obs.app, "var-model_version": obs.model_version,
                           "from": int((obs.window_start - span).timestamp() * 1000),
                           "to": int((obs.window_end + span).timestamp() * 1000)})
        return f"{self.grafana_url}/d/{uid}?{query}"
