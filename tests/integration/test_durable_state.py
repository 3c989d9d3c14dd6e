"""State that survives a crash: the sink killed with SIGKILL in the middle of a drifted window,
then started again, closes the same window (same id, same members) and raises exactly one alert
and one retraining request, as a run without the kill would; the open detection window goes on
with the events it held, so the rule that needs two of them fires on the second, of all its
events (real broker, real engine)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from driftwarden.core.storage.client import open_client
from driftwarden.core.ingest.datasets import ReplayOptions
from driftwarden.pkg_data import path as data_path
from driftwarden.streams.publisher import Publisher
from driftwarden.streams.replay import replay_file
from driftwarden.tests.realstack import small_drift_windows, wait_for

pytestmark = pytest.mark.integration
WINDOW = 40
POLICY = """
version: 1
window_size: 40
rules:
  - name: every-window
    description: fires on a segment's second detection window
    metric: error_rate
    threshold: -1
    consecutive: 2
    severity: info
  - name: prompt-drift
    description: prompts moved
    metric: drift_p_value
    segment: {field: prompt}
    threshold: 0.05
    clear_threshold: 0.2
    consecutive: 1
    severity: critical
    retrain: true
"""


@pytest.fixture(scope="module")
def stack_env(stack_env, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY)
    return {**stack_env, **small_drift_windows(WINDOW), "DRIFTWARDEN_POLICY_FILE": str(policy)}


def publish(stack, settings, file: str, prefix: str, limit: int) -> None:
    with Publisher(stack.bootstrap, settings=settings) as pub:
        replay_file(data_path(file), pub.publish, ReplayOptions(id_prefix=prefix, app="durable"), limit=limit)
        assert pub.flush(60)


def test_a_sink_killed_mid_window_closes_the_same_window_and_alerts_once(stack, stack_settings):
    settings = stack_settings
    publish(stack, settings, "halueval_general", "base", WINDOW)  # the baseline, taken whole first
    wait_for(settings, lambda c: c["embeddings"] >= 2 * WINDOW, timeout_s=240, stack=stack)
    time.sleep(3)
    half = WINDOW // 2
    publish(stack, settings, "halueval_qa", "first", half)  # half of the drifted window
    wait_for(settings, lambda c: c["embeddings"] >= 2 * (WINDOW + half), timeout_s=240, stack=stack)
    time.sleep(3)  # the drift agent's batch and checkpoint
    stack.sink.send_signal(signal.SIGKILL)
    stack.sink.wait(10)
    stack.start_sink()  # what `up` does when the sink dies
    publish(stack, settings, "halueval_qa", "second", half)
    wait_for(settings, lambda c: c["drift_windows"] >= 1 and c["retrain_requests"] >= 1, timeout_s=300, stack=stack)
    time.sleep(5)  # anything that would come twice comes now
    log = (stack.log_dir / "sink.log").read_text(errors="replace")
    stack.stop()
    assert "resumed from its checkpoint: window 1 open with" in log
    assert "1 open detection window(s) of partitions" in log
    client = open_client(settings)
    db = settings.clickhouse_database
    windows = client.query(f"SELECT window_id, n_current, n_reference, p_value FROM {db}.drift_windows FINAL "
                           f"WHERE app = 'durable'").result_rows
    members = [r[0] for r in client.query(
        f"SELECT event_id FROM {db}.drift_members FINAL WHERE startsWith(segment, 'durable/v1/prompt#') "
        f"AND window = 1 ORDER BY position").result_rows]
    lives = client.query(f"SELECT uniqExact(segment) FROM {db}.drift_members FINAL WHERE app = 'durable'").result_rows
    alerts = client.query(f"SELECT alert_id, status FROM {db}.alerts FINAL WHERE app = 'durable' "
                          f"AND rule = 'prompt-drift'").result_rows
    counted = client.query(f"SELECT window_id, summary FROM {db}.alerts FINAL WHERE app = 'durable' "
                           f"AND rule = 'every-window'").result_rows
    requests = client.query(f"SELECT request_id FROM {db}.retrain_requests FINAL WHERE app = 'durable'").result_rows
    client.close()
    assert [(w[0], w[1], w[2]) for w in windows] == [("durable/v1/prompt/1", WINDOW, WINDOW)], windows
    assert windows[0][3] < 0.05
    qa = [json.loads(line)["id"] for line in data_path("halueval_qa").read_text().splitlines()[:half]]
    assert members == [f"first-{i}" for i in qa] + [f"second-{i}" for i in qa]  # the same members, in order
    assert lives == [(1,)]  # the restarted sink went on with the segment's life, not a new one
    assert [a[1] for a in alerts] == ["firing"] and len(requests) == 1 and requests[0][0] == alerts[0][0]
    [(window_id, summary)] = counted
    assert window_id == "durable/v1/detections/2" and f"({WINDOW} events," in summary, counted
