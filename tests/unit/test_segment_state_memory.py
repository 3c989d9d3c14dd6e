"""10,000 distinct segments through the real drift windows, detection windows and policy engine:
memory stays under a bound derived from the cap on live segments (``max_segments``)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

import numpy as np

from driftwarden.core.detector_configs import DriftConfig
from driftwarden.core.schemas import DetectionResult, EmbeddingRecord
from driftwarden.detectors.drift.windows import DriftWindows
from driftwarden.retrain_trigger.alerting.policy import DetectionWindows, PolicyEngine
from driftwarden.retrain_trigger.alerting.rules import load_policy

SEGMENTS = 10_000
EVENTS_PER_SEGMENT = 1
CAP = 1_000
DIM = 384
#: What one live segment may hold across the three structures: a 384-d float32 vector (1.5 KiB)
#: with its id, time and seen-set, a detection window's sequence and last-seen entries, and three
#: rule states (latency, errors, cost) of the shipped policy with their keys.
PER_SEGMENT = 6 * 1024
#: Interpreter and allocator slack that does not grow with segments.
FIXED = 2 * 1024 * 1024
BOUND = CAP * PER_SEGMENT + FIXED
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def results(app: str, i: int) -> list[DetectionResult]:
    common = {"event_id": f"{app}-e{i}", "detector_version": "1", "config_fingerprint": "f", "app": app,
              "model_version": "v1", "event_ts": T0, "scored_at": T0}
    out = [DetectionResult(detector="operational", score=0.0, label=False,
                           scores={"latency_ms": 120.0 + i, "cost_usd": 0.002, "is_error": 0.0}, **common)]
    out += [DetectionResult(detector=d, score=0.1, label=False, **common)
            for d in ("toxicity", "prompt_injection", "pii", "hallucination")]
    return out


def drive(max_segments: int) -> tuple[int, DriftWindows, DetectionWindows, PolicyEngine]:
    """Bytes still allocated after 10,000 segments of one event each went through all three."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((16, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    lists = [v.tolist() for v in vectors]
    policy = load_policy()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    drift = DriftWindows(DriftConfig(fields=("prompt",)), max_segments=max_segments)
    windows = DetectionWindows(EVENTS_PER_SEGMENT, policy.window_minutes, max_segments=max_segments)
    engine = PolicyEngine(policy, max_segments=max_segments)
    for s in range(SEGMENTS):
        app = f"app-{s:05d}"  # what an app publishing random names looks like
        for i in range(EVENTS_PER_SEGMENT):
            drift.add(EmbeddingRecord(event_id=f"{app}-e{i}", field="prompt", app=app, model_version="v1",
                                      event_ts=T0, encoder="minilm", computed_at=T0, vector=lists[(s + i) % 16]))
            engine.observe(windows.add(results(app, i)))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used, drift, windows, engine


def test_ten_thousand_segments_hold_only_the_state_of_the_capped_thousand():
    used, drift, windows, engine = drive(CAP)
    assert drift.live_segments == windows.live_segments == engine.live_segments == CAP
    assert drift.evicted_cap == windows.evicted_cap == engine.evicted_cap == SEGMENTS - CAP
    per_segment = [r for r in engine.policy.rules if r.metric in ("latency_p95_ms", "error_rate", "cost_per_hour")]
    assert len(engine.states) == len(per_segment) * CAP  # the rules a window of one event is judged by
    assert used < BOUND, f"{used / 2**20:.1f} MiB for {CAP} live segments (bound {BOUND / 2**20:.1f} MiB)"


def test_without_the_cap_the_same_segments_would_exceed_the_bound():
    used, drift, _, engine = drive(100 * SEGMENTS)
    assert drift.live_segments == engine.live_segments == SEGMENTS
    assert used > 4 * BOUND, f"{used / 2**20:.1f} MiB for {SEGMENTS} segments"
