"""Policy agent: detections and drift windows in, alerts and retraining requests out.

Consumes ``llm.detections`` (one record per event) into detection windows per app and model
version, and ``llm.drift`` (closed drift windows); the :class:`PolicyEngine` judges each
window's metrics against the rules and the agent sends what it decides to ``llm.alerts`` and
``llm.retrain``. Runs in the sink process (one instance: the rules' state is in memory, so a
restart starts each rule's count of consecutive windows afresh).
"""

from __future__ import annotations

import logging

import faust

from driftwarden.core.schemas import DriftResult, parse_detections
from driftwarden.core.settings import Settings
from driftwarden.retrain_trigger.policy import Decision, DetectionWindows, PolicyEngine, drift_observations
from driftwarden.retrain_trigger.rules import load_policy
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.validation import parsed

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: TopicNames) -> PolicyEngine:
    policy = load_policy(settings.policy_file)
    engine = PolicyEngine(policy, grafana_url=settings.grafana_url)
    windows = DetectionWindows(policy.window_size, policy.window_minutes)
    alerts = app.topic(topics.alerts, value_serializer="raw", key_serializer="raw")
    retrain = app.topic(topics.retrain, value_serializer="raw", key_serializer="raw")
    log.info("policy %s: %d rules from %s", engine.fingerprint, len(policy.rules),
             settings.policy_file or "the shipped default")

    async def emit(decision: Decision) -> None:
        for alert in decision.alerts:
            await (await alerts.send(key=alert.dedupe_key.encode(), value=alert.to_json_bytes()))
        for request in decision.requests:
            log.warning("retraining requested for %s/%s (events %s .. %s): %s", request.app, request.model_version,
                        request.start, request.end, request.reason[:200])
            await (await retrain.send(key=f"{request.app}/{request.model_version}".encode(),
                                      value=request.to_json_bytes()))

    @app.agent(app.topic(topics.detections, value_serializer="raw", key_serializer="raw"), name="policy-detections")
    async def policy_detections(stream):
        async for results in parsed(stream, parse_detections, "policy agent"):
            await emit(engine.observe(windows.add(results)))

    @app.agent(app.topic(topics.drift, value_serializer="raw", key_serializer="raw"), name="policy-drift")
    async def policy_drift(stream):
        async for result in parsed(stream, DriftResult.model_validate_json, "policy agent"):
            await emit(engine.observe(drift_observations(result)))

    @app.timer(interval=5.0)
    async def close_detection_windows():
        await emit(engine.observe(windows.due()))

    return engine
