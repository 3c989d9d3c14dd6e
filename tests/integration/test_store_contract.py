"""The in-memory store answers every read as the ClickHouse store does, after the same writes.

The unit tests of curation, the report and the retraining workflow run on ``MemoryStore``; this
test is what lets them: the same seeded rows (``tests/seeded.py``) go into the real embedded
engine and into memory, and every read of the ``Store`` protocol is compared."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from driftwarden.core.schemas import AlertEvent, RetrainStatus
from driftwarden.core.settings import load_settings
from driftwarden.core.storage.memory import MemoryStore
from driftwarden.core.storage.store import DELIVERY_COLUMNS
from driftwarden.tests.seeded import T0, seed, write_seed

pytestmark = pytest.mark.integration
DETECTORS = ("toxicity", "prompt_injection", "hallucination", "pii")


def plain(value):
    """Comparable form: datetimes as naive UTC, floats rounded (float32 vectors), containers recursively."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value).replace(microsecond=0)
    if isinstance(value, float | np.floating):
        return round(float(value), 5)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    settings = load_settings(data_dir=tmp_path_factory.mktemp("contract"))
    real, memory = seed(settings), write_seed(MemoryStore())
    later = T0 + timedelta(hours=1, minutes=5)
    for store in (real, memory):  # a second job, still running; and alert deliveries
        store.insert_retrain_status([RetrainStatus(job_id="job-2", request_id="r-2", app="chat", model_version="v2",
                                                   status="running", launcher="local", updated_at=later)])
        alert = AlertEvent(alert_id="rule:chat:v2:prompt@y", dedupe_key="rule:chat:v2:prompt", status="firing",
                           rule="rule", severity="warning", app="chat", model_version="v2", field="prompt",
                           metric="drift_p_value", value=0.001, threshold=0.01, summary="s", window_id="w",
                           window_start=later, window_end=later, dashboard_url="", retrain_requested=False,
                           starts_at=later, policy_fingerprint="p")
        row = [alert.alert_id, alert.status, "slack", "pending", 6, later, later + timedelta(minutes=1), "",
               alert.model_dump_json(), later]
        store.insert_deliveries([row, [*row[:2], "pagerduty", "delivered", *row[4:9], later]])
    yield real, memory
    real.close()


def test_counts_latest_rows_and_segment_reads_are_the_same(stores):
    real, memory = stores
    assert plain(memory.stats(0.05)) == plain(real.stats(0.05))
    assert plain(memory.stats(alpha=0.6)) == plain(real.stats(alpha=0.6))
    for args in (("chat", "v1", "prompt", "minilm", 10), ("chat", "v2", "prompt", "minilm", 500),
                 ("chat", "v1", "prompt", "minilm", 100, T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)),
                 ("chat", "v1", "response", "minilm", 10), ("chat", "v1", "prompt", "other", 10)):
        assert plain(memory.reference_embeddings(*args)) == plain(real.reference_embeddings(*args)), args
    assert memory.last_window_sequence("chat", "v1", "prompt") == real.last_window_sequence("chat", "v1", "prompt") == 4
    assert memory.last_window_sequence("chat", "v9", "prompt") == real.last_window_sequence("chat", "v9", "prompt") == 0
    # Which new drift segments hold anything (one probe per batch): v1 has windows; v2 only embeddings.
    segments = [("chat", "v1", "prompt", "minilm"), ("chat", "v2", "prompt", "minilm"),
                ("chat", "v2", "prompt", "other"), ("chat", "v9", "prompt", "minilm"), ("app/x", "v1", "prompt", "m")]
    n_v2 = len(real.reference_embeddings("chat", "v2", "prompt", "minilm", 10_000))
    assert n_v2 > 0
    for at_least, expected in ((n_v2, segments[:2]), (n_v2 + 1, segments[:1]), (1, segments[:2])):
        found = real.segments_with_stored_rows(segments, at_least)
        assert found == memory.segments_with_stored_rows(segments, at_least) == set(expected), at_least
    assert real.segments_with_stored_rows(segments, None) == memory.segments_with_stored_rows(segments, None) \
        == set(segments[:1])  # embeddings not asked
    assert real.segments_with_stored_rows([], 1) == set()
    ids = ["seed-1", "seed-2", "missing", "seed-17"]
    for field in ("prompt", "response"):
        assert memory.texts(field, ids) == real.texts(field, ids)
    assert memory.count_events("chat", "v1", T0, T0 + timedelta(minutes=10)) == \
        real.count_events("chat", "v1", T0, T0 + timedelta(minutes=10)) == 23  # 21 + 2 traced


def test_jobs_requests_and_deliveries_are_the_same(stores):
    real, memory = stores
    request_id = real.stats(0.05)["retrain_jobs"][-1]["request_id"]
    assert memory.last_job(request_id) == real.last_job(request_id) and real.last_job(request_id)["status"]
    assert memory.last_job("nothing") is real.last_job("nothing") is None
    assert plain(memory.unfinished_jobs()) == plain(real.unfinished_jobs()) != []
    assert memory.retrain_request(request_id) == real.retrain_request(request_id) is not None
    now = T0 + timedelta(hours=2)
    assert plain(memory.due_deliveries(now, 10)) == plain(real.due_deliveries(now, 10)) != []
    assert memory.due_deliveries(T0, 10) == real.due_deliveries(T0, 10) == []
    assert memory.pending_deliveries() == real.pending_deliveries() == 1
    assert set(real.due_deliveries(now, 10)[0]) == set(DELIVERY_COLUMNS)


def test_curation_report_and_drift_window_reads_are_the_same(stores):
    real, memory = stores
    args = ("chat", "v1", T0, T0 + timedelta(hours=1), 40)
    a, b = memory.curation_data(*args), real.curation_data(*args)
    assert plain(a.events) == plain(b.events) and len(b.events) == 40  # the limit
    assert a.flags == b.flags and a.versions == b.versions and a.flags
    assert plain(a.vectors) == plain(b.vectors)
    assert a.contexts == b.contexts and b.contexts["seed-3"] == ["Account 3 is in good standing."]
    ra, rb = memory.report_data(5, 0.05, DETECTORS), real.report_data(5, 0.05, DETECTORS)
    assert dict((e[0], e[4]) for e in b.events)["seed-3"] == -1.0  # the lowest of late feedback
    assert dict((e[0], e[4]) for e in b.events)["seed-5"] == -0.5  # the last write of a source wins
    assert real.stats(0.05)["feedback"] == 5 and real.stats(0.05)["feedback_negative"] == 4
    traced = [e[4] for e in b.events if e[0].startswith("0af7651916cd43dd8448eb211c80319c:")]
    assert traced == [-0.25, -0.25]  # feedback on the trace reaches each of its calls
    for name in ("volume", "rates", "drift", "alerts", "jobs", "flagged", "feedback"):
        assert plain(getattr(ra, name)) == plain(getattr(rb, name)), name
    for field in (None, "prompt", "response"):
        wa, wb = memory.most_drifted_window(field), real.most_drifted_window(field)
        assert (wa is None) == (wb is None)
        if wb is not None:
            assert plain({**wa, "clusters": json.loads(wa["clusters"])}) == \
                plain({**wb, "clusters": json.loads(wb["clusters"])})
    ids = ["seed-1", "seed-100", "nope", "0af7651916cd43dd8448eb211c80319c"]
    assert memory.event_segments(ids) == real.event_segments(ids) == {
        "seed-1": ("chat", "v1"), "seed-100": ("chat", "v2"), "0af7651916cd43dd8448eb211c80319c": ("chat", "v1")}
    worst = real.most_drifted_window()
    window = (worst["app"], worst["model_version"], worst["field"], worst["window_start"], worst["window_end"], 300)
    assert plain(memory.window_vectors(*window)) == plain(real.window_vectors(*window))


def test_firing_alerts_are_the_latest_unresolved_episode_of_each_rule_and_segment(stores):
    real, memory = stores
    t = T0 + timedelta(hours=3)

    def alert(key: str, episode: int, status: str) -> AlertEvent:
        start = t + timedelta(minutes=episode)
        return AlertEvent(alert_id=f"{key}@{episode}", dedupe_key=key, status=status, rule="r", severity="warning",
                          app="chat", model_version="v9", field="prompt", metric="m", value=1.0, threshold=0.5,
                          summary="s", window_id=f"w{episode}", window_start=start, window_end=start,
                          dashboard_url="", starts_at=start, ends_at=start if status == "resolved" else None,
                          policy_fingerprint="p", labels={"alertname": "r"})

    rows = [alert("a", 1, "firing"), alert("a", 1, "resolved"), alert("a", 2, "firing"),  # a: episode 2 fires
            alert("b", 1, "firing"), alert("b", 1, "resolved"),  # b: over
            alert("c", 1, "firing"), alert("c", 2, "firing"), alert("c", 2, "resolved")]  # c: its latest is over
    for store in (real, memory):
        store.insert_alerts(rows)
    mine = lambda alerts: [a for a in alerts if a.model_version == "v9"]  # noqa: E731
    assert [a.alert_id for a in mine(real.firing_alerts(100))] == ["a@2"]
    assert plain([a.model_dump() for a in memory.firing_alerts(100)]) == \
        plain([a.model_dump() for a in real.firing_alerts(100)])
    assert len(real.firing_alerts(1)) == 1
    real.ping()


def test_purge_erases_a_users_events_with_what_derives_from_them_and_lists_what_it_keeps(stores):
    from driftwarden.core.storage.ddl import migrate
    from driftwarden.core.storage.store import ClickHouseStore, PurgeTarget
    from driftwarden.tests.seeded import write_seed

    shared, _ = stores
    migrate(shared.client, "purged")  # a database of its own: the other tests' rows stay
    real, memory = write_seed(ClickHouseStore(shared.client, "purged")), write_seed(MemoryStore())
    user = PurgeTarget("chat", user_id="user-3")
    dry = real.purge(user, dry_run=True, ids_limit=5)
    assert dry == memory.purge(user, dry_run=True, ids_limit=5)
    assert dry.event_ids == sorted(f"seed-{i}" for i in range(120) if i % 7 == 3)[:5]
    n = sum(1 for i in range(120) if i % 7 == 3)
    assert dry.deleted["inference_events"] == n and dry.deleted["embeddings"] == n
    assert dry.deleted["detections"] == 5 * n and set(dry.deleted) == {"detections", "embeddings", "feedback",
                                                                        "drift_members", "inference_events"}
    assert dry.kept["drift_windows"][0] > 0 and "aggregates" in dry.kept["drift_windows"][1]
    assert real.stats(0.05)["events"] == memory.stats(0.05)["events"] > n  # a dry run erases nothing
    assert real.purge(user, dry_run=False, ids_limit=5) == memory.purge(user, dry_run=False, ids_limit=5) == dry
    assert sum(real.purge(user, dry_run=True).deleted.values()) == 0
    assert plain(memory.stats(0.05)) == plain(real.stats(0.05))
    assert real.texts("prompt", [f"seed-{i}" for i in (3, 10, 4)]) == memory.texts("prompt", ["seed-3", "seed-10",
                                                                                                 "seed-4"])
    whole = PurgeTarget("chat", before=T0 + timedelta(minutes=30))
    report = real.purge(whole, dry_run=False)
    assert report == memory.purge(whole, dry_run=False)
    assert report.deleted["drift_windows"] > 0 and "drift_windows" not in report.kept
    assert plain(memory.stats(0.05)) == plain(real.stats(0.05))
    everything = PurgeTarget("chat")
    assert real.purge(everything, dry_run=False) == memory.purge(everything, dry_run=False)
    left = real.stats(0.05)
    assert left["events"] == left["detections"] == 0 and left["alerts"] == []
