"""Detection windows that survive a restart: checkpoint, kill, read back, replay from the last commit,
and the same windows close with the same events as a run that was never cut."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from driftwarden.core.schemas import DetectionResult
from driftwarden.retrain_trigger.alerting.policy import DetectionWindows

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
SIZE = 7


class Clock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def event(i: int, app: str) -> list[DetectionResult]:
    """Event ``i`` of ``app``: a toxicity score, a hallucination score on every other event (sampled),
    and the operational metrics with a cost per user."""
    rng = random.Random(f"{app}-{i}")
    common = {"event_id": f"{app}-e{i}", "detector_version": "1", "config_fingerprint": "f", "app": app,
              "model_version": "v1", "event_ts": T0 + timedelta(seconds=i), "scored_at": T0, "spans": [],
              "evidence": None, "error": None}
    toxic = rng.random()
    out = [DetectionResult.model_construct(detector="toxicity", score=toxic, label=toxic > 0.8, scores={}, **common)]
    if i % 2:
        out.append(DetectionResult.model_construct(detector="hallucination", score=rng.random(), label=rng.random() > 0.5,
                                                   scores={}, **common))
    out.append(DetectionResult.model_construct(
        detector="operational", score=None, label=None, subject=f"user{i % 3}",
        scores={"latency_ms": rng.uniform(10, 900), "cost_usd": rng.uniform(0, 0.01), "is_error": float(i % 11 == 0)},
        **common))
    return out


STREAM = [event(i, app) for i in range(40) for app in ("chat", "rag")]


def windows(clock: Clock) -> DetectionWindows:
    return DetectionWindows(size=SIZE, minutes=5, clock=clock, max_subjects=2,
                            now=lambda: T0 + timedelta(seconds=clock.t))


def uncut() -> list:
    w = windows(Clock())
    out = []
    for results in STREAM:
        out += w.add(results)
    return out


@pytest.mark.parametrize("cut", [3, SIZE, 2 * SIZE + 1, 41, 79])
@pytest.mark.parametrize("behind", [0, 1, 5])
def test_a_process_killed_after_a_checkpoint_and_replayed_from_its_last_commit_closes_the_same_windows(cut, behind):
    """Checkpoints after every batch of 4; the kill comes at ``cut``; the last commit was ``behind``
    records before the last checkpoint, so those are delivered again after the restart."""
    clock = Clock()
    first, saved, judged = windows(clock), {}, []
    checkpointed = 0
    for i, results in enumerate(STREAM[:cut]):
        judged += first.add(results)
        if (i + 1) % 4 == 0:
            saved.update({k: v for k, (_, v) in first.checkpoint().items()})
            checkpointed = i + 1
    # killed: what was judged after the last checkpoint was never acknowledged, so it comes again
    judged = judged[:len(_observations_until(checkpointed))]
    clock.t += 30
    second = windows(clock)
    second.restore(saved)
    replay_from = max(0, checkpointed - behind)
    for results in STREAM[replay_from:]:
        judged += second.add(results)
    assert [_ident(o) for o in judged] == [_ident(o) for o in uncut()]
    assert second.duplicates == checkpointed - replay_from


def _observations_until(n: int) -> list:
    w = windows(Clock())
    out = []
    for results in STREAM[:n]:
        out += w.add(results)
    return out


def _ident(o) -> tuple:
    return (o.window_id, o.metric, o.detector, o.subject, round(o.value, 12), o.n, o.examples, o.window_start,
            o.window_end)


def test_an_event_delivered_again_after_its_window_closed_is_not_counted_in_the_next_one():
    w = windows(Clock())
    out = []
    for results in STREAM[:2 * SIZE:2]:  # chat events 0..6: the window closes
        out += w.add(results)
    assert len({o.window_id for o in out}) == 1
    assert w.add(STREAM[10]) == [] and w.duplicates == 1  # chat event 5, again
    assert w.add(STREAM[14]) == [] and w.duplicates == 1  # chat event 7: the next window, counted


def test_the_open_window_is_read_back_with_its_opening_time_so_it_still_closes_by_time():
    clock = Clock(100.0)
    first = windows(clock)
    first.add(STREAM[0])
    saved = {k: v for k, (_, v) in first.checkpoint().items()}
    clock2 = Clock(5_000.0)  # another process: another monotonic clock
    second = DetectionWindows(size=SIZE, minutes=5, clock=clock2, now=lambda: T0 + timedelta(seconds=100 + 200))
    assert second.restore(saved) == 1
    clock2.t += 99  # opened 200 s before the restart: 299 s now, not yet 300
    assert second.due() == []
    clock2.t += 2
    [*obs] = second.due()
    assert {o.n for o in obs} == {1} and obs[0].window_id.endswith("/1")


def test_only_the_segments_this_process_owns_are_read_back_and_a_rebalance_replaces_them():
    w = windows(Clock())
    for results in STREAM[:4]:
        w.add(results)
    saved = {k: v for k, (_, v) in w.checkpoint().items()}
    other = windows(Clock())
    other.add(STREAM[5])  # rag: will be replaced by what the store holds
    assert other.restore(saved, lambda key: key[0] == "chat", replace=True) == 1
    assert other.live_segments == 1
    assert other.checkpoint() == {}, "reading back is not a change to write"
    assert other.forget(lambda key: False) == 1 and other.checkpoint() == {}, "handed over, not deleted"


def test_a_stored_window_that_cannot_be_read_is_skipped_and_its_segment_starts_again(caplog):
    w = windows(Clock())
    w.add(STREAM[0])
    saved = {k: v for k, (_, v) in w.checkpoint().items()}
    saved['["x", "v1"]'] = json.dumps({"window": {"ids": 5}, "sequence": 1})
    saved["not json"] = "{"
    saved['["y", "v1"]'] = "null"
    fresh = windows(Clock())
    assert fresh.restore(saved) == 1
    assert "could not be read" in caplog.text


def test_a_forgotten_segment_is_written_as_null_so_a_restart_does_not_bring_it_back():
    clock = Clock()
    w = DetectionWindows(size=SIZE, minutes=5, clock=clock, idle_minutes=1)
    w.add(STREAM[0])
    w.checkpoint()
    clock.t += 120
    w.due()
    assert list(w.checkpoint().values()) == [("chat", "null")]


def test_an_erased_app_is_forgotten_without_writing_its_state_again():
    w = windows(Clock())
    w.add(STREAM[0])
    w.add(STREAM[1])
    w.forget_app("chat")
    assert [v[0] for v in w.checkpoint().values()] == ["rag"]
    assert w.live_segments == 1
