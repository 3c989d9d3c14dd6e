"""The streaming drift path: a population switch in replayed traffic raises a drift result
within one window of the switch (real broker, real engine, real embeddings)."""

from __future__ import annotations

import pytest

from driftwarden.core.storage.client import open_client
from driftwarden.pkg_data import path as data_path
from driftwarden.streams.publisher import Publisher
from driftwarden.core.ingest.datasets import ReplayOptions
from driftwarden.streams.replay import replay_file
from driftwarden.tests.realstack import small_drift_windows, wait_for

pytestmark = pytest.mark.integration

WINDOW = 100


@pytest.fixture(scope="module")
def stack_env(stack_env):
    return {**stack_env, **small_drift_windows(WINDOW)}


def test_a_switch_from_general_prompts_to_qa_questions_is_flagged_within_one_window(stack, stack_settings):
    with Publisher(stack.bootstrap, settings=stack_settings) as pub:
        replay_file(data_path("halueval_general"), pub.publish, ReplayOptions(id_prefix="before", shuffle=True),
                    limit=3 * WINDOW)
        assert pub.flush(60)
        replay_file(data_path("halueval_qa"), pub.publish, ReplayOptions(id_prefix="after", shuffle=True),
                    limit=WINDOW)
    wait_for(stack_settings, lambda c: c["drift_windows"] >= 3, timeout_s=300, stack=stack)
    stack.stop()
    client = open_client(stack_settings)
    rows = client.query(
        f"SELECT window_id, p_value, n_current, reference_policy, arrayStringConcat(top_event_ids, ','), "
        f"mapKeys(descriptor_p_values), descriptor_p_values['prompt_chars'] "
        f"FROM {stack_settings.clickhouse_database}.drift_windows FINAL WHERE field = 'prompt' "
        f"ORDER BY toUInt32(splitByChar('/', window_id)[4])").result_rows
    client.close()
    assert [r[0] for r in rows] == ["demo-chat/v1/prompt/1", "demo-chat/v1/prompt/2", "demo-chat/v1/prompt/3"]
    before, after = rows[:2], rows[2]
    assert after[1] < 0.05, f"the switch was not flagged: {rows}"
    assert sum(r[1] < 0.05 for r in before) <= 1  # at the 5 % level, two clean windows rarely both alarm
    assert all(r[2] == WINDOW and r[3] == "baseline" for r in rows)
    assert all(e.startswith("after-") for e in after[4].split(","))  # nearest the change: the new population
    assert {"prompt_chars", "latency_ms", "toxicity_score", "prompt_injection_score"} <= set(after[5])
    assert after[6] < 0.05  # QA questions are much shorter than general prompts: Evidently's KS sees it too

