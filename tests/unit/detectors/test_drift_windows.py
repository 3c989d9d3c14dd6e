"""Drift windows per segment: baseline, window closing by count and by time, references."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from driftwarden.core.detector_configs import DriftConfig
from driftwarden.core.schemas import EmbeddingRecord
from driftwarden.detectors.drift.windows import DriftWindows, join_id


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def record(i: int, vector, app="a", version="v1", field="prompt", encoder="enc") -> EmbeddingRecord:
    # model_construct: the windows must cope even with names the contract refuses (defence in depth)
    return EmbeddingRecord.model_construct(event_id=f"e{i}", field=field, app=app, model_version=version,
                                           event_ts=datetime(2026, 1, 1, tzinfo=UTC), encoder=encoder,
                                           computed_at=datetime(2026, 1, 1, tzinfo=UTC),
                                           vector=list(map(float, vector)), descriptors={})


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


# --- ids from escaped parts -----------------------------------------------------------------


def test_segment_and_window_ids_of_names_that_would_collide_differ_and_ordinary_names_are_unchanged():
    rng = np.random.default_rng(11)
    w = DriftWindows(config())
    feed(w, rng, 0, 1, app="a/b", version="c")
    feed(w, rng, 100, 1, app="a", version="b/c")
    feed(w, rng, 200, 1, app="a%2Fb", version="c")
    assert set(w.segments) == {"a%2Fb/c/prompt", "a/b%2Fc/prompt", "a%252Fb/c/prompt"}
    assert join_id("chat-eu.1", "v1_2", "prompt") == "chat-eu.1/v1_2/prompt"
    assert join_id("x\nINFO forged", "v:1", sep=":") == "x%0AINFO%20forged:v%3A1"


# --- bounded state ------------------------------------------------------------------------------


def test_a_segment_idle_for_the_idle_time_is_evicted_by_the_timer_and_counted():
    rng = np.random.default_rng(12)
    clock = Clock()
    w = DriftWindows(config(), clock=clock, idle_minutes=10)
    feed(w, rng, 0, 5, app="quiet")
    clock.t = 5 * 60
    feed(w, rng, 100, 5, app="busy")
    clock.t = 10 * 60 + 1
    assert w.due() == []
    assert set(w.segments) == {"busy/v1/prompt"} and w.evicted_idle == 1 and w.dropped_events == 5
    assert w.counters()["drift_segments_live"] == 1


def test_at_the_cap_the_least_recently_seen_segment_is_evicted_its_window_tested_and_a_warning_logged(caplog):
    rng = np.random.default_rng(13)
    w = DriftWindows(config(), max_segments=2)
    feed(w, rng, 0, 50 + 20, app="first")  # a baseline and a window of 20 (>= min_window 10) open
    feed(w, rng, 100, 3, app="second")
    feed(w, rng, 200, 1, app="first")  # first is now the most recently seen
    with caplog.at_level("WARNING"):
        assert feed(w, rng, 300, 1, app="third") == [], "second's 3 events are too few to test: dropped"
        (closed,) = feed(w, rng, 400, 1, app="fourth")  # evicts first: its window of 21 is tested
    assert closed.window_id == "first/v1/prompt/1" and len(closed.current) == 21
    assert set(w.segments) == {"third/v1/prompt", "fourth/v1/prompt"}
    assert w.evicted_cap == 2 and w.dropped_events == 3 and w.live_segments == 2
    (message,) = [r.getMessage() for r in caplog.records if "cap" in r.getMessage()]  # the second is held back
    assert "second/v1/prompt" in message and "DRIFTWARDEN_MAX_SEGMENTS" in message and "random" in message


def test_a_segment_that_comes_back_continues_its_window_numbers_after_the_stored_ones():
    rng = np.random.default_rng(14)
    stored = {("a", "v1", "prompt"): 7}
    w = DriftWindows(config(), load_last_sequence=lambda *key: stored.get(key, 0), max_segments=1)
    feed(w, rng, 0, 1, app="other")
    closed = feed(w, rng, 100, 100)  # evicts "other"; a baseline of 50, then a window
    assert [c.window_id for c in closed] == ["a/v1/prompt/8"]


def test_a_new_segment_reads_the_store_only_through_fetch_stored_so_the_agent_can_do_it_in_a_thread():
    rng = np.random.default_rng(15)
    calls = []

    def load(app, version, field, encoder, limit, start, end):
        calls.append(app)
        return stored(rng, limit)

    w = DriftWindows(config(), load_reference=load)
    rec = record(1, rng.standard_normal(8))
    assert w.needs_store(rec)
    state = w.fetch_stored(rec.app, rec.model_version, rec.field, rec.encoder)
    assert calls == ["a"] and w.segments == {}, "fetching changes nothing"
    w.load_reference = None  # add() must not read again when it is given what was read
    w.add(rec, state)
    assert not w.needs_store(record(2, rng.standard_normal(8)))
    assert w.segments["a/v1/prompt"].reference_id.startswith("a/v1/prompt/baseline:s0..s49 (50 stored)")


def test_one_probe_names_the_new_segments_the_store_holds_nothing_for(caplog):
    rng = np.random.default_rng(16)
    asked = []

    def probe(segments, min_embeddings):
        asked.append((dict(segments), min_embeddings))
        return {"a/v1/prompt"}  # the only one with a checkpoint, a window or a baseline's worth

    recs = [record(i, rng.standard_normal(8), app=app) for i, app in enumerate(["a", "b", "c/d"])]
    recs.append(record(9, rng.standard_normal(8), app="b", field="context"))  # a field not watched
    w = DriftWindows(config(), probe_stored=probe)
    assert w.nothing_stored(recs) == {"b/v1/prompt", "c%2Fd/v1/prompt"}
    assert asked == [({"a/v1/prompt": ("a", "v1", "prompt", "enc"), "b/v1/prompt": ("b", "v1", "prompt", "enc"),
                       "c%2Fd/v1/prompt": ("c/d", "v1", "prompt", "enc")}, 50)]  # baseline_size
    assert w.segments == {}, "probing changes nothing"

    # A pinned reference is another version's rows (the probe cannot tell): every segment is read.
    assert DriftWindows(config(reference="pinned", pinned_model_version="v0"), probe_stored=probe).nothing_stored(recs) == set()
    assert DriftWindows(config()).nothing_stored(recs) == set()  # no probe: every segment is read

    def broken(segments, min_embeddings):
        raise ConnectionError("store down")

    assert DriftWindows(config(), probe_stored=broken).nothing_stored(recs) == set()
    assert "each one's state is read on its own instead" in caplog.text


def test_records_with_vectors_that_are_not_finite_or_of_another_dimension_are_skipped_and_counted():
    w = DriftWindows(config())
    w.add(record(1, [0.1] * 8))
    w.add(record(2, [float("nan")] * 8))
    w.add(record(3, [0.1] * 9))
    w.add(record(4, []))
    assert len(w.segments["a/v1/prompt"].current) == 1 and w.rejected_records == 3


def test_an_encoder_change_starts_a_new_reference_but_keeps_the_window_numbers():
    rng = np.random.default_rng(16)
    w = DriftWindows(config())
    assert [c.window_id for c in feed(w, rng, 0, 100)] == ["a/v1/prompt/1"]
    later = feed(w, rng, 100, 100, encoder="enc-2")  # a new baseline of 50, then a window
    assert [c.window_id for c in later] == ["a/v1/prompt/2"], "window 1 of the old encoder is not replaced"


def test_a_window_with_a_new_group_names_the_method_the_new_share_and_a_group_of_its_events():
    from driftwarden.core.schemas import DriftResult
    from driftwarden.retrain_trigger.alerting.policy import drift_detail, drift_observations

    from tests.unit.detectors.test_drift_methods import contaminated, population

    rng = np.random.default_rng(9)
    w = DriftWindows(config(window_size=100, baseline_size=100))
    current, _ = contaminated(rng, 100, 0.12)  # rows 88..99: one new topic
    rows = np.concatenate([population(rng, 100), current])
    closed = [c for i, v in enumerate(rows) for c in w.add(record(i, v))]
    (window,) = closed
    result = w.test(window)
    assert result.method == "aggregate_mmd_knn_novelty_permutation" and result.p_value < 0.05
    assert result.novel_share > 0.05 and set(result.part_p_values) >= {"mmd", "tail_0.1"}
    first = result.clusters[0]
    assert first.size >= 5 and all(int(e[1:]) >= 188 for e in first.example_event_ids)
    assert len(first.example_event_ids) == 3
    assert DriftResult.model_validate_json(result.to_json_bytes()) == result
    detail = drift_detail(result)
    assert detail.startswith(f"What is new: a group of {first.size} events") and first.example_event_ids[0] in detail
    assert drift_observations(result)[0].examples == tuple(first.example_event_ids)
    assert drift_detail(result.model_copy(update={"clusters": []})) == ""


def test_the_method_setting_picks_the_test():
    rng = np.random.default_rng(10)
    w = DriftWindows(config(method="mmd"))
    feed(w, rng, 0, 50)
    (closed,) = feed(w, rng, 50, 50)
    result = w.test(closed)
    assert result.method == "mmd2_gaussian_permutation" and result.clusters == [] and result.part_p_values == {}


def test_what_is_new_carries_the_stored_texts_of_its_examples_and_a_failing_read_leaves_ids_alone(caplog):
    from tests.unit.detectors.test_drift_methods import contaminated, population

    from driftwarden.retrain_trigger.alerting.policy import drift_detail

    def run_with(loader):
        rng = np.random.default_rng(9)
        w = DriftWindows(config(window_size=100, baseline_size=100), load_texts=loader)
        current, _ = contaminated(rng, 100, 0.12)
        rows = np.concatenate([population(rng, 100), current])
        (window,) = [c for i, v in enumerate(rows) for c in w.add(record(i, v))]
        return w.test(window)

    asked = []

    def stored(field, ids):
        asked.append(field)
        return {e: f"question {e}\nwith   a line break " + "x" * 300 for e in ids[:-1]}  # the last: not stored yet

    result = run_with(stored)
    first = result.clusters[0]
    shown = [e for c in result.clusters for e in c.example_event_ids]
    assert asked == ["prompt"] and [len(c.examples) for c in result.clusters] == [len(c.example_event_ids)
                                                                                 for c in result.clusters]
    assert sum(1 for c in result.clusters for t in c.examples if t) == len(shown) - 1
    assert result.clusters[-1].examples[-1] == ""  # the one not stored yet: its place stays, empty
    for c in result.clusters:  # every text beside its own event id
        assert all(t.startswith(f"question {e} ") for e, t in zip(c.example_event_ids, c.examples) if t)
    assert len(first.examples[0]) <= 202 and first.examples[0].endswith("…")
    assert f'"question {first.example_event_ids[0]}' in drift_detail(result)
    quiet = drift_detail(result, texts=False)
    assert "question" not in quiet and first.example_event_ids[0] in quiet

    def broken(field, ids):
        raise ConnectionError("store down")

    result = run_with(broken)
    assert result.clusters[0].examples == [] and result.clusters[0].example_event_ids
    assert "could not read the example texts" in caplog.text
