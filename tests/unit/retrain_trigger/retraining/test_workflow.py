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


def run(launcher, store, settings, *calls, **options):
    """Each call on one workflow (``options``: its keyword arguments), until its watches end; the statuses."""
    statuses = []

    async def publish(status):
        statuses.append(status)
        store.insert_retrain_status([status])

    async def go():
        flow = RetrainWorkflow(settings, store, launcher, publish, redactor=lambda s: (lambda t: t),
                               settle_timeout_s=0.0, **options)
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


# --- the decision on a succeeded job: registered in MLflow, judged by the promotion rules ---

def stored(rows) -> MemoryStore:
    store = MemoryStore()
    store.insert_events(rows)
    return store


EVALUATED = {"loss_before": 3.0, "loss_after": 2.5, "eval.drifted.events": 30.0, "eval.regression.events": 30.0,
             "eval.drifted.candidate.held_out_loss": 2.5, "eval.drifted.current.held_out_loss": 3.0,
             "eval.drifted.candidate.hallucination_rate": 0.2, "eval.drifted.current.hallucination_rate": 0.5,
             "eval.regression.candidate.toxicity_rate": 0.0, "eval.regression.current.toxicity_rate": 0.0}


class TrainingLauncher(ScriptedLauncher):
    """Writes an adapter, as a finished job does, and answers with an evaluated result."""

    def __init__(self, metrics=None, **kwargs):
        super().__init__(**kwargs)
        self.metrics = metrics or EVALUATED
        self.jobs = []

    def launch(self, job):
        self.jobs.append(job)
        (job.out_dir / "adapter").mkdir(parents=True, exist_ok=True)
        (job.out_dir / "adapter" / "adapter_config.json").write_text("{}")
        return super().launch(job)

    def result(self, job):
        return JobResult(dict(self.metrics), "held-out loss 3.0 -> 2.5", {"base_model": "tiny"})


def run_deciding(launcher, store, settings, promotion, *calls):
    """:func:`run` with promotion rules, and the notices the receivers were sent."""
    notices = []

    async def notify(status, table):
        notices.append((status, table))

    return run(launcher, store, settings, *calls, promotion=promotion, notify=notify), notices


@pytest.mark.timeout(120)
def test_a_succeeded_job_is_registered_judged_promoted_and_the_next_job_starts_from_it(tmp_path):
    from driftwarden.retrain_trigger.retraining.promotion import Condition, PromotionPolicy
    from driftwarden.retrain_trigger.retraining.registry import ModelRegistry

    settings = load_settings(data_dir=tmp_path)
    store = stored(events(20))
    promote = PromotionPolicy(min_events=10, promote=[
        Condition(set="drifted", metric="hallucination_rate", improves_by_at_least=0.02)])
    launcher = TrainingLauncher()
    statuses, notices = run_deciding(launcher, store, settings, promote, lambda f: f.on_request(request()))
    done = statuses[-1]
    assert done.status == "succeeded" and done.decision == "promote" and done.registered_version == "1"
    assert done.registered_model == "driftwarden-chat" and "hallucination_rate" in done.decision_reasons[0]
    assert notices and notices[0][0].decision == "promote" and "hallucination_rate" in notices[0][1]
    registry = ModelRegistry(settings)
    champion = registry.champion("chat")
    assert champion.version == "1" and champion.tags["decided_by"] == "policy"
    assert launcher.jobs[0].current_adapter is None, "the first job starts from the base model"
    # The next episode's job starts from the promoted adapter (copied into its own directory).
    store.insert_events([e.model_copy(update={"event_id": "n" + e.event_id}) for e in events(20)])
    statuses, _ = run_deciding(launcher, store, settings, promote, lambda f: f.on_request(request("r-2")))
    assert launcher.jobs[1].current_adapter == launcher.jobs[1].out_dir / "current-adapter"
    assert (launcher.jobs[1].current_adapter / "adapter_config.json").is_file()
    assert statuses[-1].registered_version == "2"


@pytest.mark.timeout(120)
def test_a_candidate_the_rules_cannot_judge_is_held_and_a_worse_one_rejected(tmp_path):
    from driftwarden.retrain_trigger.retraining.promotion import Condition, PromotionPolicy

    settings = load_settings(data_dir=tmp_path)
    store = stored(events(20))
    policy = PromotionPolicy(min_events=10, promote=[
        Condition(set="drifted", metric="toxicity_rate", improves_by_at_least=0.02)],
        reject=[Condition(set="drifted", metric="held_out_loss", worsens_by_more_than=0.0)])
    statuses, _ = run_deciding(TrainingLauncher(), store, settings, policy, lambda f: f.on_request(request()))
    assert statuses[-1].decision == "hold" and any("no figure" in r for r in statuses[-1].decision_reasons)
    worse = {**EVALUATED, "eval.drifted.candidate.held_out_loss": 3.5}
    store = stored(events(20))
    statuses, _ = run_deciding(TrainingLauncher(worse), store, settings, policy, lambda f: f.on_request(request("r-9")))
    assert statuses[-1].decision == "reject"


def test_a_failed_episode_runs_once_more_on_a_new_request_and_once_only(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    store = stored(events(20))
    launcher = ScriptedLauncher(states=("running", "failed"))
    first = run(launcher, store, settings, lambda f: f.on_request(request()))
    assert first[-1].status == "failed" and launcher.launched == [job_id_for("r-1")]
    # The same request redelivered: not run again.
    assert run(launcher, store, settings, lambda f: f.on_request(request())) == []
    # A new request for the episode (made after the failure), delivered twice: one new job.
    later = request().model_copy(update={"requested_at": datetime.now(UTC)})
    launcher.states = ["running", "succeeded"]
    again = run(launcher, store, settings, lambda f: f.on_request(later), lambda f: f.on_request(later))
    assert launcher.launched == [job_id_for("r-1"), job_id_for("r-1", 2)]
    assert again[-1].status == "succeeded" and again[-1].job_id == job_id_for("r-1", 2)
    assert store.last_job("r-1")["attempts"] == 2
    # And once it succeeded, no further request for it runs.
    newest = request().model_copy(update={"requested_at": datetime.now(UTC) + timedelta(minutes=1)})
    assert run(launcher, store, settings, lambda f: f.on_request(newest)) == []


@pytest.mark.timeout(120)
def test_a_policy_with_more_reasons_than_a_status_holds_still_reports_the_decision(tmp_path):
    from driftwarden.retrain_trigger.retraining.promotion import Condition, PromotionPolicy

    settings = load_settings(data_dir=tmp_path)
    store = stored(events(20))
    many = PromotionPolicy(min_events=10, promote=[Condition(set="drifted", metric="*", worsens_by_at_most=0.1 * i)
                                                   for i in range(30)])
    statuses, _ = run_deciding(TrainingLauncher(), store, settings, many, lambda f: f.on_request(request()))
    assert statuses[-1].status == "succeeded" and len(statuses[-1].decision_reasons) == 50


@pytest.mark.timeout(120)
def test_a_candidate_compared_with_another_model_than_todays_champion_is_held(tmp_path):
    import json

    from driftwarden.retrain_trigger.retraining.launchers import JobSpec
    from driftwarden.retrain_trigger.retraining.workflow import STARTED_FROM
    from driftwarden.tests.unit.retrain_trigger.retraining.test_registry import record

    settings = load_settings(data_dir=tmp_path / "data")
    flow = RetrainWorkflow(settings, MemoryStore(), ScriptedLauncher(), publish=None)
    job = JobSpec(job_id="job-x", snapshot_dir=tmp_path, out_dir=tmp_path / "job-x")
    job.out_dir.mkdir()
    assert flow.stale_comparison("shop", job) is None, "an older job, without the file, is not checked"
    (job.out_dir / STARTED_FROM).write_text(json.dumps({"champion": ""}))
    assert flow.stale_comparison("shop", job) is None, "no champion then, none now"
    info = record(flow.get_registry(), tmp_path)
    flow.get_registry().set_decision(info.name, info.version, "promote", "alice", "good")
    assert "the champion changed since the job started (version none then, 1 now)" in flow.stale_comparison("shop",
                                                                                                             job)
    (job.out_dir / STARTED_FROM).write_text(json.dumps({"champion": "1"}))
    assert flow.stale_comparison("shop", job) is None
    (job.out_dir / STARTED_FROM).write_text(json.dumps({"champion": None}))
    assert "could not be read when the job started" in flow.stale_comparison("shop", job)
