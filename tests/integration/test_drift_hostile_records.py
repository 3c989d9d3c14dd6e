"""Hostile records reach the sink's drift and policy agents straight from their topics (as a
producer with write access to ``llm.embeddings`` and ``llm.detections`` could send them): each
is skipped (names outside the contract's safe set included) and dead-lettered by the sink, and
the agents go on. The valid records around them still close drift windows and fire alerts, with
finite values and a clamped link (real broker, real sink process). That ids of names which
would collide keep apart is tested on the windows and the engine themselves (unit tests)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from driftwarden.core.schemas import DetectionResult, EmbeddingRecord, encode_records
from driftwarden.detectors.drift.windows import join_id
from driftwarden.streams.topics import TopicNames
from driftwarden.tests.realstack import consume_all, producer, small_drift_windows

pytestmark = pytest.mark.integration

WINDOW = 10
POLICY = """version: 1
window_size: 2
window_minutes: 60
rules:
  - {name: cost, metric: cost_per_hour, threshold: 50, consecutive: 1, cooldown_minutes: 0}
"""
#: Records no agent can parse: not JSON, nested past any parser's depth, the wrong shape.
UNPARSEABLE = (b"not json", b"[" * 5000 + b"]" * 5000, b'{"a": 1}', b"[1, 2]", b"\xff\xfe")
T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def stack_env(stack_env, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY)
    return {**stack_env, **small_drift_windows(WINDOW, permutations="100"), "DRIFTWARDEN_POLICY_FILE": str(policy)}


def detections(app: str, mv: str, i: int, ts: datetime, cost: float) -> bytes:
    # model_construct: forged records need not pass the contract the sink applies
    return encode_records([DetectionResult.model_construct(spans=[], evidence=None, error=None,
        event_id=f"{len(app)}-{i}", detector="operational", detector_version="1", config_fingerprint="f", app=app,
        model_version=mv, event_ts=ts, scored_at=T0, score=0.0, label=False,
        scores={"latency_ms": 100.0, "cost_usd": cost, "is_error": 0.0})])


def embedding(app: str, mv: str, i: int, vector) -> bytes:
    return encode_records([EmbeddingRecord.model_construct(
        event_id=f"{app[:20]}-{i}".replace("/", "-"), field="prompt", app=app, model_version=mv,
        event_ts=T0 + timedelta(seconds=i), encoder="enc", computed_at=T0, vector=[float(x) for x in vector],
        descriptors={})])


def test_hostile_records_are_skipped_and_the_drift_and_policy_agents_go_on(stack, stack_settings):
    topics = TopicNames.from_settings(stack_settings)
    rng = np.random.default_rng(0)
    segments = [("valid", "v1"), ("a/b", "c"), ("a", "b/c")]
    with producer(stack.bootstrap) as out:
        for raw in UNPARSEABLE:
            out.send(topics.detections, raw)
            out.send(topics.embeddings, raw)
        # Detection windows of two events: year 1 with costs of 1e308, and two names that would collide.
        for i in range(2):
            out.send(topics.detections, detections("ancient", "v1", i, datetime(1, 1, 1, tzinfo=UTC), 1e308))
            out.send(topics.detections, detections("x\nERROR forged", "v1", 10 + i, T0, 1.0))
            for app, mv in segments[1:]:
                out.send(topics.detections, detections(app, mv, 20 + i, T0, 1.0))
        # Drift: a baseline and a window per segment, with vectors no window can take between them
        # (keyed by segment, as the score workers send them, so each segment's order holds).
        for i in range(2 * WINDOW):
            for app, mv in segments:
                out.send(topics.embeddings, embedding(app, mv, i, rng.standard_normal(8)),
                         key=join_id(app, mv).encode())
            for j, vector in ((1000 + i, rng.standard_normal(9)), (2000 + i, [])):
                out.send(topics.embeddings, embedding("valid", "v1", j, vector), key=b"valid/v1")
        out.flush()
    alerts = [json.loads(r.value) for r in consume_all(stack.bootstrap, topics.alerts, 1, timeout_s=180)]
    stack.check()
    (alert,) = alerts
    assert alert["app"] == "ancient" and isinstance(alert["value"], float) and math.isfinite(alert["value"])
    assert "from=0&to=0" in alert["dashboard_url"], "year 1 is clamped to the epoch"
    drift = [json.loads(r.value) for r in consume_all(stack.bootstrap, topics.drift, 1, timeout_s=180)]
    stack.check()
    (valid,) = drift
    assert valid["window_id"] == "valid/v1/prompt/1"
    assert valid["n_current"] == WINDOW and valid["n_reference"] == WINDOW
    assert valid["reference_id"] == "valid/v1/prompt/baseline:valid-0..valid-9", "9-d and empty vectors skipped"
    # Every record the agents skipped is dead-lettered by the sink, once, and nothing else is.
    refused = 2 * len(UNPARSEABLE) + 2 * 3 + 2 * 2 * WINDOW
    letters = consume_all(stack.bootstrap, topics.dlq, refused, timeout_s=60, linger_s=5)  # and no more after them
    assert len(letters) == refused
    assert {dict(r.headers)["dw.stage"] for r in letters} == {b"sink"}
    assert len(consume_all(stack.bootstrap, topics.alerts, 2, timeout_s=3)) == 1
    assert len(consume_all(stack.bootstrap, topics.drift, 2, timeout_s=3)) == 1
