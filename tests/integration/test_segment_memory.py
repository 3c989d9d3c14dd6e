"""2,000 distinct segments through the running sink (real broker, real engine): the drift and
detection windows keep at most ``DRIFTWARDEN_MAX_SEGMENTS`` live segments, evict the rest, and
the sink's memory grows by less than :data:`GROWTH_BOUND_MB` (the in-process measure of the same
state is ``tests/unit/test_segment_state_memory.py``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from driftwarden.core.schemas import DetectionResult, EmbeddingRecord, encode_records
from driftwarden.streams.sink_pages import read_progress
from driftwarden.tests.integration.test_hostile import rss_mb
from driftwarden.tests.realstack import producer

pytestmark = pytest.mark.integration

SEGMENTS = 2_000
CAP = 200
GROWTH_BOUND_MB = 600
"""Most growth of the sink's resident memory over the run, store caches included (measured:
+266 MB with 10,000 segments and a cap of 1,000, most of it the store's caches). It catches gross growth only:
each live drift segment holds a few kB, so 2,000 unbounded segments would fit under it; the live and evicted
counters are what show the cap holds (unbounded state grows with every new app name, which a hostile app can
make up at will)."""


@pytest.fixture(scope="module")
def stack_env(stack_env):
    return {**stack_env, "DRIFTWARDEN_MAX_SEGMENTS": str(CAP), "DRIFTWARDEN_DRIFT__FIELDS": '["prompt"]'}


def _records(i: int, vector: list[float]) -> tuple[bytes, bytes]:
    now = datetime.now(UTC)
    common = {"event_id": f"seg-{i}", "app": f"app-{i}", "model_version": "v1", "event_ts": now}
    embedding = EmbeddingRecord(field="prompt", encoder="test-encoder", computed_at=now, vector=vector, **common)
    detection = DetectionResult(detector="operational", detector_version="1", config_fingerprint="f", scored_at=now,
                                score=0.0, label=False, scores={"latency_ms": 100.0, "cost_usd": 0.001}, **common)
    return encode_records([embedding]), encode_records([detection])


def test_thousands_of_new_segments_keep_the_sinks_state_at_its_cap(stack, stack_settings):
    sink = stack.sink.pid
    before = rss_mb(sink)
    rng = np.random.default_rng(5)
    p = producer(stack.bootstrap)
    for i in range(SEGMENTS):
        vector = rng.normal(size=384)
        embedding, detection = _records(i, (vector / np.linalg.norm(vector)).tolist())
        key = f"app-{i}/v1".encode()
        p.send(stack_settings.topic_embeddings, key=key, value=embedding)
        p.send(stack_settings.topic_detections, key=key, value=detection)
    p.flush()
    p.close()
    sent = time.monotonic()
    deadline = sent + 600  # not a timing test: each new segment reads the store (~30 ms on a busy CI machine)
    while time.monotonic() < deadline:
        stack.check()
        progress = read_progress(stack_settings)
        seen = {kind: progress["segments"].get(f"{kind}_segments_live", 0)
                + progress["segments"].get(f"{kind}_segments_evicted_cap", 0) for kind in ("drift", "detection")}
        if progress["rows_written"].get("embeddings", 0) >= SEGMENTS and min(seen.values()) >= SEGMENTS:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the sink did not take {SEGMENTS} segments in time: {progress}")
    segments = progress["segments"]
    assert segments["drift_segments_live"] <= CAP and segments["detection_segments_live"] <= CAP
    assert segments["drift_segments_evicted_cap"] >= SEGMENTS - CAP
    assert segments["detection_segments_evicted_cap"] >= SEGMENTS - CAP
    growth = rss_mb(sink) - before
    print(f"\nsink RSS {before:.0f} MB -> {rss_mb(sink):.0f} MB (+{growth:.0f}) for {SEGMENTS} segments, taken in "
          f"{time.monotonic() - sent:.0f} s; {segments}")
    assert growth < GROWTH_BOUND_MB
    assert stack.sink.pid == sink
    stack.check()
