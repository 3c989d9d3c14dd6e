"""The retrain agent's decision for a (re)delivered request, from its job's last stored status."""

from __future__ import annotations

import pytest

from driftwarden.streams.retrain_agent import job_id_for, next_step


def test_a_request_without_a_job_is_started():
    assert next_step(None) == "start"


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_a_request_whose_job_has_a_final_status_is_not_started_again(status):
    assert next_step(status) == "skip"


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_request_interrupted_while_queued_or_running_is_resumed_not_skipped(status):
    assert next_step(status) == "resume"


def test_the_job_id_is_fixed_by_the_request_id_and_safe_as_a_path_part():
    assert job_id_for("../../x") == job_id_for("../../x")
    assert job_id_for("a").startswith("job-") and "/" not in job_id_for("../../x")
