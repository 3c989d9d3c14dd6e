"""The MLflow registry seam on a real MLflow store (SQLite under the data directory, as by default):
a job's run and version with its tags, registered once; decisions; the champion alias; its adapter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from driftwarden.core.errors import RetrainError
from driftwarden.core.schemas import RetrainRequest
from driftwarden.core.settings import load_settings
from driftwarden.retrain_trigger.retraining.registry import ModelRegistry, job_params, model_name, version_tags

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def finished_job(tmp_path, job_id: str):
    out = tmp_path / "jobs" / job_id
    (out / "adapter").mkdir(parents=True)
    (out / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8, "job": job_id}))
    raw = {"loss_before": 3.0, "loss_after": 2.0, "base_model": "tiny", "device": "cpu", "lora": {"r": 8}}
    (out / "metrics.json").write_text(json.dumps(raw))
    return out, raw


def record(registry, tmp_path, job_id="job-1", app="shop"):
    request = RetrainRequest(request_id="req-1", alert_id="alert-1", app=app, model_version="v7",
                             reason="prompt drift", start=T0, end=T0 + timedelta(hours=1), requested_at=T0)
    out, raw = finished_job(tmp_path, job_id)
    manifest = {"version": "20260101-abc", "content_sha256": "f" * 64, "rows": {"train": 10}}
    return registry.record(app=app, job_id=job_id, out_dir=out, tags=version_tags(request, job_id, manifest),
                           params=job_params(raw), metrics={"loss_after": 2.0, "eval.drifted.candidate.x": 0.5},
                           manifest=manifest)


@pytest.mark.timeout(120)
def test_a_job_is_registered_once_with_its_tags_metrics_manifest_and_adapter(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    registry = ModelRegistry(settings)
    info = record(registry, tmp_path)
    assert info.name == model_name("shop") == "driftwarden-shop" and info.version == "1"
    assert {k: info.tags[k] for k in ("app", "model_version", "request_id", "alert_id", "snapshot", "job_id")} == {
        "app": "shop", "model_version": "v7", "request_id": "req-1", "alert_id": "alert-1",
        "snapshot": "20260101-abc", "job_id": "job-1"}
    assert record(registry, tmp_path / "again").version == "1", "a job is registered once"
    # Read back through MLflow's own client: the run's metrics, params and artifacts.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    run = client.get_run(info.run_id)
    assert run.data.metrics["loss_after"] == 2.0 and run.data.params["base_model"] == "tiny"
    assert run.data.tags["snapshot_sha256"] == "f" * 64
    paths = {a.path for a in client.list_artifacts(info.run_id)}
    assert {"adapter", "snapshot", "metrics.json"} <= paths
    assert str(settings.mlflow_artifacts_dir) in client.get_run(info.run_id).info.artifact_uri
    assert registry.version("1", app="shop").metrics["loss_after"] == 2.0


@pytest.mark.timeout(120)
def test_promote_sets_the_champion_alias_and_who_and_why_and_reject_takes_it_away(tmp_path):
    registry = ModelRegistry(load_settings(data_dir=tmp_path / "data"))
    assert registry.champion("shop") is None
    first = record(registry, tmp_path, "job-1")
    second = record(registry, tmp_path / "b", "job-2")
    registry.set_decision(first.name, first.version, "hold", "policy", "too small a gain")
    done = registry.set_decision(first.name, first.version, "promote", "alice", "looked at the answers")
    assert done.champion and done.tags["decided_by"] == "alice" and done.tags["decision"] == "promote"
    assert done.tags["decision_reason"] == "looked at the answers" and done.tags["decided_at"]
    assert registry.champion("shop").version == first.version
    registry.set_decision(second.name, second.version, "promote", "bob", "better")
    assert registry.champion("shop").version == second.version, "the alias moves to the newly promoted one"
    registry.set_decision(second.name, second.version, "reject", "carol", "regressed in production")
    assert registry.champion("shop") is None
    listed = registry.versions()
    assert [(v.name, v.version) for v in listed] == [("driftwarden-shop", "2"), ("driftwarden-shop", "1")]
    fetched = registry.fetch_adapter(first, tmp_path / "job-3" / "current-adapter")
    assert json.loads((fetched / "adapter_config.json").read_text())["job"] == "job-1"


def test_an_unknown_version_and_an_unreachable_registry_are_clear_errors(tmp_path):
    registry = ModelRegistry(load_settings(data_dir=tmp_path / "data"))
    record(registry, tmp_path)
    with pytest.raises(RetrainError, match="driftwarden-shop version 9"):
        registry.version("9", app="shop")
    with pytest.raises(RetrainError, match="no adapter"):
        registry.record(app="shop", job_id="job-x", out_dir=tmp_path / "nothing", tags={}, params={}, metrics={},
                        manifest={})


@pytest.mark.timeout(120)
def test_mlflow_is_told_to_send_no_telemetry_outside_tests_and_ci_too(tmp_path):
    """MLflow turns its telemetry off by itself under pytest and CI only: the registry must turn it
    off everywhere else (a run outside both, in a child without those variables)."""
    import os
    import subprocess
    import sys

    # mlflow.telemetry.utils._is_ci_env_or_testing's variables, and the two that turn it off.
    ci_vars = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS",
               "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION",
               "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID",
               "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
    env = {k: v for k, v in os.environ.items() if k not in ci_vars}
    code = ("from pathlib import Path\n"
            "from driftwarden.core.settings import load_settings\n"
            "from driftwarden.retrain_trigger.retraining.registry import ModelRegistry\n"
            f"ModelRegistry(load_settings(data_dir=Path({str(tmp_path)!r}))).client\n"
            "from mlflow.telemetry.utils import is_telemetry_disabled, _IS_IN_CI_ENV_OR_TESTING\n"
            "from mlflow.telemetry.client import get_telemetry_client\n"
            "print(_IS_IN_CI_ENV_OR_TESTING, is_telemetry_disabled(), get_telemetry_client())\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=100,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True", "None"], done.stdout
