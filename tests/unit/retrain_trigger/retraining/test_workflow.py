"""The retraining workflow: a request's decision from its job's stored status, and the whole path
from a request to a finished job on the in-memory store with a scripted launcher."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from driftwarden.core.errors import RetrainError
from driftwarden.core.schemas import InferenceEvent, RetrainRequest
from driftwarden.core.settings import load_settings
from driftwarden.core.storage.memory import MemoryStore
from driftwarden.retrain_trigger.retraining.launchers import JobResult
from driftwarden.retrain_trigger.retraining.workflow import RetrainWorkflow, job_id_for, next_step


T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_a_request_without_a_job_is_started():
    assert next_step(None) == "start"


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_a_request_whose_job_has_a_final_status_is_not_started_again(status):
    assert next_step({"status": status, "updated_at": T0}, T0 - timedelta(seconds=1)) == "skip"


def test_a_succeeded_episode_is_not_run_again_even_by_a_newer_request():
    assert next_step({"status": "succeeded", "updated_at": T0}, T0 + timedelta(hours=1)) == "skip"


def test_a_new_request_for_an_episode_whose_job_failed_before_it_runs_again():
    assert next_step({"status": "failed", "updated_at": T0}, T0 + timedelta(seconds=1)) == "retry"


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_request_interrupted_while_queued_or_running_is_resumed_not_skipped(status):
    assert next_step({"status": status, "updated_at": T0}, T0 + timedelta(hours=1)) == "resume"


def test_each_attempt_of_an_episode_has_its_own_job_and_the_first_keeps_the_old_id():
    assert job_id_for("r") == job_id_for("r", 1) != job_id_for("r", 2) != job_id_for("r", 3)


def test_the_job_id_is_fixed_by_the_request_id_and_safe_as_a_path_part():
    assert job_id_for("../../x") == job_id_for("../../x")
    assert job_id_for("a").startswith("job-") and "/" not in job_id_for("../../x")


# --- the workflow on the in-memory store (a scripted launcher: the real ones have their own tests) ---


class ScriptedLauncher:
    """Answers each poll with the next state of ``states``; records what it was asked."""

    name = "scripted"
    poll_interval_s = 0.0

    def __init__(self, states=("running", "succeeded"), watchable=True, adopted=None, metrics_ok=True):
        self.states, self.watchable, self.adopted, self.metrics_ok = list(states), watchable, adopted, metrics_ok
        self.launched, self.polls = [], 0

    def launch(self, job):
        self.launched.append(job.job_id)
        return "queued"

    def poll(self, job):
        self.polls += 1
        return (self.states.pop(0) if self.states else "succeeded"), ""

    def adopt(self, job):
        return self.adopted

    def result(self, job):
        if not self.metrics_ok:
            raise RetrainError("result", "the job exited 0 but wrote no readable metrics.json")
        return JobResult({"loss_before": 3.0, "loss_after": 2.5}, "held-out loss 3.0 -> 2.5")


def events(n: int, app: str = "chat"):
    return [InferenceEvent(event_id=f"{app}-{i}", timestamp=T0 + timedelta(seconds=i), app=app, model="m",
                           model_version="v1", prompt=f"How do I change setting number {i}?",
                           response=f"Open the menu and pick item {i}.", latency_ms=1, tokens_in=1, tokens_out=1)
            for i in range(n)]


def request(rid: str = "r-1", app: str = "chat") -> RetrainRequest:
    return RetrainRequest(request_id=rid, alert_id="a", app=app, model_version="v1", reason="prompt drift",
                          start=T0, end=T0 + timedelta(hours=1), requested_at=T0)


def run(launcher, store, settings, *calls):
    statuses = []

    async def publish(status):
        statuses.append(status)
        store.insert_retrain_status([status])

    async def go():
        flow = RetrainWorkflow(settings, store, launcher, publish, redactor=lambda s: (lambda t: t),
                               settle_timeout_s=0.0)
        for call in calls:
            await call(flow)
        while flow.watches:
            await asyncio.gather(*list(flow.watches))
        return flow

    asyncio.run(go())
    return statuses


def test_a_request_becomes_a_snapshot_and_a_job_whose_result_is_reported(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    store = MemoryStore()
    store.insert_events(events(20) + events(5, app="other"))
    launcher = ScriptedLauncher()
    statuses = run(launcher, store, settings, lambda f: f.on_request(request()))
    assert [s.status for s in statuses] == ["queued", "queued", "running", "succeeded"]
    done = statuses[-1]
    assert done.dataset_rows == 20 and done.dataset_version and done.metrics["loss_after"] == 2.5
    assert "request_to_start_s" in done.metrics and done.message == "held-out loss 3.0 -> 2.5"
    assert launcher.launched == [job_id_for("r-1")]
    again = run(launcher, store, settings, lambda f: f.on_request(request()))
    assert again == [] and launcher.launched == [job_id_for("r-1")], "a finished request is not started again"


def test_too_few_rows_a_missing_result_and_a_launcher_that_cannot_be_followed(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    store = MemoryStore()
    store.insert_events(events(3))
    (failed,) = [s for s in run(ScriptedLauncher(), store, settings, lambda f: f.on_request(request()))
                 if s.status == "failed"]
    assert "only 3 training rows" in failed.message and "DRIFTWARDEN_RETRAIN__MIN_ROWS" in failed.message
    store = MemoryStore()
    store.insert_events(events(20))
    last = run(ScriptedLauncher(metrics_ok=False), store, settings, lambda f: f.on_request(request()))[-1]
    assert last.status == "failed" and "metrics.json" in last.message
    store = MemoryStore()
    store.insert_events(events(20))
    manual = ScriptedLauncher(watchable=False)
    statuses = run(manual, store, settings, lambda f: f.on_request(request()))
    assert [s.status for s in statuses] == ["queued", "queued"] and manual.polls == 0


def test_an_unfinished_job_is_resumed_from_the_store_and_a_failing_request_does_not_stop_the_next(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    store = MemoryStore()
    store.insert_events(events(20))
    first = run(ScriptedLauncher(watchable=False), store, settings, lambda f: f.on_request(request()))
    store.insert_retrain_requests([request()])
    assert store.unfinished_jobs() and first[-1].status == "queued"
    resumed = ScriptedLauncher(adopted=("running", "still running"))
    statuses = run(resumed, store, settings, lambda f: f.resume_unfinished())
    assert [s.status for s in statuses] == ["running", "succeeded"] and resumed.launched == []

    class Broken(MemoryStore):
        def last_job(self, request_id):
            if request_id == "bad":
                raise ConnectionError("store down")
            return super().last_job(request_id)

    broken = Broken()
    broken.insert_events(events(20))
    statuses = run(ScriptedLauncher(), broken, settings, lambda f: f.on_request(request("bad")),
                   lambda f: f.on_request(request("good")))
    assert [(s.request_id, s.status) for s in statuses if s.status in ("failed", "succeeded")] == [
        ("bad", "failed"), ("good", "succeeded")]
