"""Drift windows per segment: baseline, window closing by count and by time, references."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from driftwarden.core.detector_configs import DriftConfig
from driftwarden.core.schemas import EmbeddingRecord
from driftwarden.detectors.drift.windows import DriftWindows


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def record(i: int, vector, app="a", version="v1", field="prompt", encoder="enc") -> EmbeddingRecord:
    return EmbeddingRecord(event_id=f"e{i}", field=field, app=app, model_version=version,
                           event_ts=datetime(2026, 1, 1, tzinfo=UTC), encoder=encoder,
                           computed_at=datetime(2026, 1, 1, tzinfo=UTC), vector=list(map(float, vector)))


def feed(w: DriftWindows, rng, start: int, n: int, shift: float = 0.0, **kw):
    closed = []
    for i in range(start, start + n):
        closed += w.add(record(i, rng.standard_normal(8) + shift, **kw))
    return closed


def config(**kw) -> DriftConfig:
    return DriftConfig(**{"window_size": 50, "baseline_size": 50, "permutations": 200, "min_window": 10, **kw})


def test_the_first_events_of_a_version_form_the_baseline_then_windows_close_at_n():
    rng = np.random.default_rng(0)
    w = DriftWindows(config())
    assert feed(w, rng, 0, 50) == []  # the baseline
    closed = feed(w, rng, 50, 50)
    assert len(closed) == 1
    result = w.test(closed[0])
    assert result.window_id == "a/v1/prompt/1" and result.n_reference == result.n_current == 50
    assert result.reference_policy == "baseline" and result.reference_id.startswith("a/v1/prompt/baseline:e0..e49")
    assert result.p_value > 0.01


def test_a_population_switch_is_flagged_in_the_first_window_after_it():
    rng = np.random.default_rng(1)
    w = DriftWindows(config())
    feed(w, rng, 0, 100)
    (closed,) = feed(w, rng, 100, 50, shift=1.0)
    assert w.test(closed).p_value < 0.01


def test_segments_are_separate_per_app_version_and_field():
    rng = np.random.default_rng(2)
    w = DriftWindows(config())
    feed(w, rng, 0, 60, version="v1")
    feed(w, rng, 100, 60, version="v2")
    feed(w, rng, 200, 60, field="response")
    assert set(w.segments) == {"a/v1/prompt", "a/v2/prompt", "a/v1/response"}


def test_a_window_closes_by_time_when_it_has_enough_events():
    rng = np.random.default_rng(3)
    clock = Clock()
    w = DriftWindows(config(window_minutes=1.0), clock=clock)
    feed(w, rng, 0, 50)
    feed(w, rng, 50, 5)
    clock.t = 61
    assert w.due() == []  # five events are too few: they carry over
    feed(w, rng, 55, 10)
    (closed,) = w.due()
    assert len(closed.current) == 15


def test_the_previous_policy_compares_each_window_with_the_one_before():
    rng = np.random.default_rng(4)
    w = DriftWindows(config(reference="previous"))
    feed(w, rng, 0, 50)
    (first,) = feed(w, rng, 50, 50)
    (second,) = feed(w, rng, 100, 50)
    assert second.reference_id == first.window_id


def test_a_redelivered_record_is_counted_once():
    rng = np.random.default_rng(5)
    w = DriftWindows(config())
    v = rng.standard_normal(8)
    w.add(record(1, v))
    w.add(record(1, v))
    assert len(w.segments["a/v1/prompt"].current) == 1


def test_fields_not_watched_are_ignored():
    w = DriftWindows(config(fields=("prompt",)))
    assert w.add(record(1, [0.0] * 8, field="response")) == [] and w.segments == {}


def test_descriptors_are_tested_with_evidently_beside_the_embeddings():
    rng = np.random.default_rng(6)
    w = DriftWindows(config())
    closed = []
    for i in range(100):
        latency = float(rng.lognormal(6, 0.2)) * (3.0 if i >= 50 else 1.0)  # calls got three times slower
        rec = record(i, rng.standard_normal(8)).model_copy(update={"descriptors": {"latency_ms": latency,
                                                                                   "tokens_in": float(i % 7)}})
        closed += w.add(rec)
    (window,) = closed
    result = w.test(window)
    assert result.descriptor_p_values["latency_ms"] < 0.001
    assert result.descriptor_p_values["tokens_in"] > 0.05


def stored(rng, n: int, shift: float = 0.0):
    return [(f"s{i}", list(map(float, rng.standard_normal(8) + shift)), datetime(2026, 1, 1, tzinfo=UTC))
            for i in range(n)]


def test_after_a_restart_the_baseline_is_read_back_from_the_store():
    rng = np.random.default_rng(7)
    asked = []

    def load(app, version, field, encoder, limit, start, end):
        asked.append((app, version, field, encoder, limit))
        return stored(rng, limit)

    w = DriftWindows(config(), load_reference=load)
    closed = feed(w, rng, 0, 50)  # no baseline to build: the first 50 events already form a window
    assert asked == [("a", "v1", "prompt", "enc", 50)]
    (window,) = closed
    assert window.reference_id.startswith("a/v1/prompt/baseline:s0..s49 (50 stored)")


def test_a_pinned_reference_is_another_versions_stored_embeddings():
    rng = np.random.default_rng(8)

    def load(app, version, field, encoder, limit, start, end):
        assert version == "v0" and start is not None
        return stored(rng, 40, shift=2.0)  # the old version lived somewhere else

    cfg = config(reference="pinned", pinned_model_version="v0", pinned_start=datetime(2025, 1, 1, tzinfo=UTC))
    w = DriftWindows(cfg, load_reference=load)
    (window,) = feed(w, rng, 0, 50, version="v1")
    result = w.test(window)
    assert result.reference_policy == "pinned" and result.reference_id.startswith("a/v0/prompt/pinned:")
    assert result.p_value < 0.01


def test_a_pinned_reference_with_too_few_stored_events_falls_back_to_a_baseline():
    w = DriftWindows(config(reference="pinned", pinned_model_version="v0"), load_reference=lambda *a: [])
    rng = np.random.default_rng(9)
    assert feed(w, rng, 0, 50) == []  # the first 50 became the baseline
    assert w.segments["a/v1/prompt"].reference_id.startswith("a/v1/prompt/baseline:")


def test_a_store_that_cannot_be_read_does_not_stop_the_windows():
    def broken(*args):
        raise ConnectionError("store down")

    w = DriftWindows(config(), load_reference=broken)
    rng = np.random.default_rng(10)
    assert feed(w, rng, 0, 50) == [] and len(feed(w, rng, 50, 50)) == 1
