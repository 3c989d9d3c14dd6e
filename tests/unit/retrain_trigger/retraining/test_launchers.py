"""Launchers: what a job sees of the sink's environment, the Kubernetes Job's settings, and
finding a job again after the sink restarted."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time

import pytest

from driftwarden.core.settings import load_settings
from driftwarden.retrain_trigger.retraining.finetune import JOB_SETTINGS
from driftwarden.retrain_trigger.retraining.launchers import (
    MAX_LAUNCHES, PID_FILE, JobSpec, KubernetesLauncher, LocalLauncher, record,
)

SECRETS = {
    "DRIFTWARDEN_KAFKA_SASL_PASSWORD": "kafka-s3cret",
    "DRIFTWARDEN_GRAFANA_TOKEN": "glsa_grafana_s3cret",
    "DRIFTWARDEN_ALERTS__SLACK_WEBHOOK_URL": "https://hooks.slack.test/services/T0/B0/slack-s3cret",
    "DRIFTWARDEN_ALERTS__PAGERDUTY_ROUTING_KEY": "pd-routing-s3cret",
    "DRIFTWARDEN_CLICKHOUSE_DSN": "http://default:dsn-s3cret@ch.internal:8123/?password=dsn-s3cret2",
    "HF_TOKEN": "hf_s3cret",
    "AWS_SECRET_ACCESS_KEY": "aws-s3cret",
    "GITHUB_TOKEN": "gh-s3cret",
}


@pytest.fixture
def secret_env(monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("DRIFTWARDEN_RETRAIN__MAX_STEPS", "7")
    monkeypatch.setenv("DRIFTWARDEN_LOG_LEVEL", "DEBUG")


def test_a_local_job_sees_no_secret_of_the_sink_only_the_allow_list_and_its_own_settings(secret_env, monkeypatch,
                                                                                         tmp_path):
    settings = load_settings(data_dir=tmp_path)
    env = LocalLauncher(settings).environment()
    leaked = {k for k, v in env.items() for s in SECRETS.values() if s in v or s in k}
    assert not leaked, leaked
    assert env["PATH"] == os.environ["PATH"] and env["HF_HUB_OFFLINE"] == "1" and env["OMP_NUM_THREADS"] == "2"
    assert env["LC_ALL"] == "C.UTF-8" and "HF_TOKEN" not in env
    expected = {"DRIFTWARDEN_" + name.replace(".", "__").upper() for name in JOB_SETTINGS
                if functools.reduce(getattr, name.split("."), settings) is not None}
    assert {k for k in env if k.startswith("DRIFTWARDEN_")} == expected
    # What the job reads comes through: its own settings object equals the sink's where it matters.
    for key in [k for k in os.environ if k.startswith("DRIFTWARDEN_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    job = load_settings()
    assert job.retrain.max_steps == 7 and job.log_level == "DEBUG"
    assert job.retrain.model_dump(include={n.split(".")[1] for n in JOB_SETTINGS if "." in n}) == \
        settings.retrain.model_dump(include={n.split(".")[1] for n in JOB_SETTINGS if "." in n})


def test_the_kubernetes_job_gets_every_setting_the_job_reads_and_no_secret_inline(secret_env, tmp_path):
    settings = load_settings(data_dir=tmp_path, retrain={"launcher": "kubernetes", "k8s_gpu": True,
                                                         "learning_rate": 0.01, "lora_r": 4})
    launcher = KubernetesLauncher(settings)
    job = JobSpec(job_id="job-abc", snapshot_dir=settings.datasets_dir / "chat" / "v1" / "ver1",
                  out_dir=settings.jobs_dir / "job-abc")
    env = {e["name"]: e for e in launcher.manifest(job)["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("MAX_STEPS", "BATCH_SIZE", "LEARNING_RATE", "LORA_R", "LORA_ALPHA", "MAX_LENGTH", "DEVICE"):
        assert f"DRIFTWARDEN_RETRAIN__{name}" in env, name
    assert env["DRIFTWARDEN_RETRAIN__LEARNING_RATE"]["value"] == "0.01"
    assert env["DRIFTWARDEN_RETRAIN__LORA_R"]["value"] == "4" and env["DRIFTWARDEN_RETRAIN__MAX_STEPS"]["value"] == "7"
    assert env["DRIFTWARDEN_RETRAIN__DEVICE"]["value"] == "cuda", "the device follows k8s_gpu"
    text = json.dumps(launcher.manifest(job))
    assert not [s for s in SECRETS.values() if s in text]


def test_a_secret_setting_reaches_a_kubernetes_job_only_as_a_reference_to_a_kubernetes_secret(secret_env, tmp_path):
    settings = load_settings(data_dir=tmp_path, retrain={"launcher": "kubernetes", "k8s_secret": "dw-secrets"})
    env = KubernetesLauncher(settings).env(["clickhouse_dsn", "retrain.max_steps"])
    assert env[0] == {"name": "DRIFTWARDEN_CLICKHOUSE_DSN", "valueFrom": {"secretKeyRef": {
        "name": "dw-secrets", "key": "DRIFTWARDEN_CLICKHOUSE_DSN"}}}
    assert env[1] == {"name": "DRIFTWARDEN_RETRAIN__MAX_STEPS", "value": "7"}


def test_the_kubernetes_manifest_is_written_for_its_owner_only(tmp_path):
    settings = load_settings(data_dir=tmp_path, retrain={"launcher": "kubernetes"})
    job = JobSpec(job_id="job-k", snapshot_dir=settings.datasets_dir / "a" / "v" / "x", out_dir=settings.jobs_dir / "job-k")
    assert KubernetesLauncher(settings).launch(job) == "queued"
    assert (job.out_dir / "job.json").stat().st_mode & 0o777 == 0o600
    assert job.out_dir.stat().st_mode & 0o777 == 0o700


# --- after a restart -------------------------------------------------------------------------

def local_job(tmp_path) -> tuple[LocalLauncher, JobSpec]:
    settings = load_settings(data_dir=tmp_path)
    job = JobSpec(job_id="job-r", snapshot_dir=tmp_path / "snap", out_dir=settings.jobs_dir / "job-r")
    job.out_dir.mkdir(parents=True)
    return LocalLauncher(settings), job


def fake_job_process(job: JobSpec) -> subprocess.Popen:
    """A process whose command line names the job's output directory, as the real job's does."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--out", str(job.out_dir)])
    deadline = time.monotonic() + 10
    while str(job.out_dir).encode() not in open(f"/proc/{proc.pid}/cmdline", "rb").read():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def test_a_job_whose_process_still_runs_after_a_restart_is_watched_again_until_it_ends(tmp_path):
    launcher, job = local_job(tmp_path)
    proc = fake_job_process(job)
    try:
        (job.out_dir / PID_FILE).write_text(f"{proc.pid} 1\n")
        state, message = launcher.adopt(job)
        assert state == "running" and str(proc.pid) in message
        assert launcher.poll(job) == ("running", "")
    finally:
        proc.kill()
        proc.wait()
    state, message = launcher.poll(job)
    assert state == "failed" and "without writing metrics.json" in message


def test_a_job_whose_process_is_gone_is_launched_again_and_one_that_finished_is_taken_as_done(tmp_path):
    launcher, job = local_job(tmp_path)
    proc = fake_job_process(job)
    proc.kill()
    proc.wait()
    (job.out_dir / PID_FILE).write_text(f"{proc.pid} 1\n")
    assert launcher.adopt(job) is None, "gone without outputs: the caller launches it again"
    (job.out_dir / "metrics.json").write_text("{}")
    assert launcher.adopt(job) == ("succeeded", "")


def test_an_unrelated_process_that_reuses_the_pid_is_not_taken_for_the_job(tmp_path):
    launcher, job = local_job(tmp_path)
    (job.out_dir / PID_FILE).write_text(f"{os.getpid()} 1\n")  # alive, but not this job
    assert launcher.adopt(job) is None


def test_a_recorded_outcome_wins_and_a_job_is_not_launched_again_forever(tmp_path):
    launcher, job = local_job(tmp_path)
    (job.out_dir / PID_FILE).write_text(f"999999999 {MAX_LAUNCHES}\n")
    state, message = launcher.adopt(job)
    assert state == "failed" and f"after {MAX_LAUNCHES} launches" in message
    record(job, "failed", "exit code 2")
    assert launcher.adopt(job) == ("failed", "exit code 2")
    assert (job.out_dir / "outcome.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.timeout(120)
def test_a_launched_local_job_writes_its_pid_and_log_for_its_owner_only(tmp_path):
    launcher, job = local_job(tmp_path)
    assert launcher.launch(job) == "running"  # no snapshot there: the job fails fast, which is fine here
    try:
        pid, launches = (job.out_dir / PID_FILE).read_text().split()
        assert int(pid) == job.handle.pid and launches == "1"
        assert {(job.out_dir / f).stat().st_mode & 0o777 for f in (PID_FILE, "job.log")} == {0o600}
    finally:
        deadline = time.monotonic() + 90
        while job.handle.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if job.handle.poll() is None:
            job.handle.kill()
    state, message = launcher.poll(job)
    assert state == "failed" and "is not a dataset snapshot" in message, "the job ran driftwarden in its own environment"
    assert LocalLauncher._launches(job) == 1


def test_a_jobs_result_is_its_metrics_file_and_a_missing_or_broken_one_is_an_error(tmp_path):
    import json

    from driftwarden.core.errors import RetrainError
    from driftwarden.retrain_trigger.retraining.launchers import JobSpec, read_result

    job = JobSpec(job_id="job-x", snapshot_dir=tmp_path, out_dir=tmp_path)
    with pytest.raises(RetrainError, match="metrics.json"):
        read_result(job)
    (tmp_path / "metrics.json").write_text(json.dumps({"loss_before": 3.0, "loss_after": 2.0, "held_out_rows": 4,
                                                       "note": "text", "flag": True}))
    result = read_result(job)
    assert result.metrics == {"loss_before": 3.0, "loss_after": 2.0, "held_out_rows": 4.0}
    assert result.message.startswith("held-out loss 3.0000 -> 2.0000 on 4 rows")
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(RetrainError):
        read_result(job)
