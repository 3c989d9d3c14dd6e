"""Metrics: bounded labels, segment series capped, lag from offsets, counters read when scraped."""

from __future__ import annotations

from collections import Counter, namedtuple

from prometheus_client.parser import text_string_to_metric_families

from driftwarden.streams.metrics import CappedLabel, Metrics, consumer_lag, delivery_counts, reason_class, stage_label

TP = namedtuple("TP", "topic partition")


def samples(metrics: Metrics) -> dict[tuple, float]:
    body, _ = metrics.exposition()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def test_dead_letter_reasons_fall_into_a_few_classes_and_forged_stages_count_as_other():
    assert reason_class("not JSON (Expecting value: line 1 column 1)") == "not_json"
    assert reason_class("prompt: String should have at most 100 characters, longer than the limit") == "too_large"
    assert reason_class("not UTF-8 (invalid start byte at byte 0)") == "encoding"
    assert reason_class("ClickHouse refused the row for detections: ...") == "store_refused"
    assert reason_class("something nobody foresaw") == "other"
    assert stage_label("validate") == "validate" and stage_label("x" * 500) == "other"


def test_drift_p_values_keep_series_for_the_most_recent_segments_only():
    metrics = Metrics("sink", max_segments=2)
    for i in range(5):
        metrics.drift_window(f"app{i}", "v1", "prompt", 0.5, alpha=0.01)
    metrics.drift_window("app4", "v1", "prompt", 0.001, alpha=0.01)
    got = samples(metrics)
    apps = {dict(k[1])["app"] for k in got if k[0] == "driftwarden_drift_last_p_value"}
    assert apps == {"app3", "app4"}
    assert got[("driftwarden_drift_last_p_value", (("app", "app4"), ("field", "prompt"), ("model_version", "v1")))] \
        == 0.001
    assert got[("driftwarden_metric_segments_evicted_total", (("series", "drift_last_p_value"),))] == 3
    assert got[("driftwarden_drift_windows_closed_total", (("drifted", "true"), ("field", "prompt")))] == 1
    assert got[("driftwarden_drift_windows_closed_total", (("drifted", "false"), ("field", "prompt")))] == 5


def test_apps_beyond_the_cap_are_counted_as_other():
    label = CappedLabel(2)
    assert [label(a) for a in ("a", "b", "c", "a", "d")] == ["a", "b", "other", "a", "other"]


def test_lag_is_end_minus_committed_for_assigned_partitions_only():
    monitor = type("M", (), {"tp_end_offsets": {TP("t", 0): 120, TP("t", 1): 50, TP("t", 2): 9},
                             "tp_committed_offsets": {TP("t", 0): 100, TP("t", 1): 60}})()
    assert consumer_lag(monitor, {TP("t", 0), TP("t", 1)}) == {("t", 0): 20, ("t", 1): 0}
    assert ("t", 2) not in consumer_lag(monitor)  # not committed by this process yet: unknown, not 9


def test_counters_kept_elsewhere_are_read_when_scraped():
    counts: Counter[str] = Counter()
    metrics = Metrics("sink")
    metrics.add_counters("driftwarden_alert_deliveries", "d", ("receiver", "outcome"),
                         lambda: delivery_counts(counts, ["alertmanager"]))
    counts["alertmanager_delivered"] += 3
    key = ("driftwarden_alert_deliveries_total", (("outcome", "delivered"), ("receiver", "alertmanager")))
    assert samples(metrics)[key] == 3
    counts["alertmanager_delivered"] += 1
    assert samples(metrics)[key] == 4
