"""A retraining job killed half way (SIGKILL) with the real local launcher, a real job process on a
tiny GPT-2 and the real MLflow registry (SQLite): the watcher marks it failed with the reason, its
partial outputs are not registered, and a new request for the same episode runs once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from driftwarden.core.schemas import InferenceEvent, RetrainRequest
from driftwarden.core.settings import load_settings
from driftwarden.core.storage.memory import MemoryStore
from driftwarden.retrain_trigger.retraining.launchers import PID_FILE, LocalLauncher
from driftwarden.retrain_trigger.retraining.promotion import PromotionPolicy
from driftwarden.retrain_trigger.retraining.registry import ModelRegistry
from driftwarden.retrain_trigger.retraining.workflow import RetrainWorkflow, job_id_for
from driftwarden.tests.tiny_models import build_tiny_causal_lm

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
CITIES = ["Paris", "Rome", "Madrid", "Berlin", "Lisbon", "Vienna", "Prague", "Dublin"]


def events(n: int) -> list[InferenceEvent]:
    return [InferenceEvent(event_id=f"k-{i}", timestamp=T0 + timedelta(seconds=i), app="kill", model="m",
                           model_version="v1", prompt=f"What is the capital number {i}?",
                           response=f"The capital is {CITIES[i % len(CITIES)]}.", latency_ms=1, tokens_in=1,
                           tokens_out=1) for i in range(n)]


def request(requested_at: datetime) -> RetrainRequest:
    return RetrainRequest(request_id="episode-1", alert_id="episode-1", app="kill", model_version="v1",
                          reason="drift", start=T0, end=T0 + timedelta(minutes=30), requested_at=requested_at)


def settings_for(tmp_path, model, steps: int):
    return load_settings(data_dir=tmp_path / "data", retrain={
        "base_model": model, "max_steps": steps, "learning_rate": 0.005, "device": "cpu", "eval_max_events": 2,
        "eval_max_new_tokens": 4, "eval_detectors": []})


def workflow(settings, store, statuses):
    async def publish(status):
        statuses.append(status)
        store.insert_retrain_status([status])

    flow = RetrainWorkflow(settings, store, LocalLauncher(settings), publish, redactor=lambda s: (lambda t: t),
                           settle_timeout_s=0.0, promotion=PromotionPolicy())
    flow.launcher.poll_interval_s = 0.2
    return flow


async def _kill_when_training(out_dir, timeout_s: float = 120.0) -> int:
    """SIGKILL the job once it has taken training steps (half way, not at the start)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        progress = out_dir / "progress.jsonl"
        if progress.is_file() and len(progress.read_text().splitlines()) >= 3:
            pid = int((out_dir / PID_FILE).read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            return pid
        await asyncio.sleep(0.2)
    raise AssertionError(f"the job never trained: {(out_dir / 'job.log').read_text()[-2000:]}")


@pytest.mark.timeout(600)
def test_a_job_killed_half_way_is_failed_not_registered_and_a_new_request_runs_once(tmp_path):
    model = build_tiny_causal_lm(tmp_path / "tiny", [f"{e.prompt} {e.response}" for e in events(40)])
    store = MemoryStore()
    store.insert_events(events(40))
    statuses: list = []
    settings = settings_for(tmp_path, model, steps=100_000)  # would train for hours: it is killed
    first_job = job_id_for("episode-1")

    async def first():
        flow = workflow(settings, store, statuses)
        await flow.on_request(request(T0 + timedelta(minutes=31)))
        await _kill_when_training(settings.jobs_dir / first_job)
        await asyncio.gather(*list(flow.watches))

    asyncio.run(first())
    failed = statuses[-1]
    assert failed.job_id == first_job and failed.status == "failed", statuses
    assert "killed by signal 9 (SIGKILL)" in failed.message and "not registered" in failed.message
    assert not (settings.jobs_dir / first_job / "metrics.json").exists()
    assert ModelRegistry(settings).versions("kill") == [], "nothing of the killed job is registered"

    # A new request for the episode (made after the failure), delivered twice, in a restarted sink.
    settings = settings_for(tmp_path, model, steps=6)
    again = request(datetime.now(UTC))
    before = len(statuses)

    async def second():
        flow = workflow(settings, store, statuses)
        await flow.on_request(again)
        await flow.on_request(again)
        while flow.watches:
            await asyncio.gather(*list(flow.watches))

    asyncio.run(second())
    later = statuses[before:]
    jobs = {s.job_id for s in later}
    assert jobs == {job_id_for("episode-1", 2)}, later
    assert later[-1].status == "succeeded" and later[-1].decision == "hold", later[-1]
    (version,) = ModelRegistry(settings).versions("kill")
    assert version.tags["job_id"] == job_id_for("episode-1", 2) and version.tags["request_id"] == "episode-1"
    # Delivered once more after it succeeded: nothing runs.
    asyncio.run(workflow(settings, store, statuses).on_request(request(datetime.now(UTC))))
    assert statuses[-1] == later[-1]
