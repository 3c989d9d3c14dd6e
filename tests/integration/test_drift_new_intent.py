"""A new intent at a tenth of traffic, through the whole streaming path (real broker, real
engine, real embeddings): each window with 10 % multi-hop questions is flagged, says what is new
(a group of the new questions, stored with the window), and the prompt-drift alert fires within
the two windows its rule needs, naming the group in its summary."""

from __future__ import annotations

import json
import random

import pytest

from driftwarden.core.storage.client import open_client
from driftwarden.pkg_data import path as data_path
from driftwarden.pkg_data import rows
from driftwarden.retrain_trigger.alerting.rules import default_policy_path
from driftwarden.streams.publisher import Publisher
from driftwarden.core.ingest.datasets import ReplayOptions
from driftwarden.streams.replay import replay_file
from driftwarden.tests.realstack import small_drift_windows, wait_for

pytestmark = pytest.mark.integration

WINDOW = 200
SHARE = 0.10


@pytest.fixture(scope="module")
def stack_env(stack_env, tmp_path_factory):
    """Windows of 200 (the issue's), and the default policy with its prompt-drift rule at p < 0.05
    in two windows in a row (the power curve of bench/drift.py --power: about 1.0 a window at 10 %)."""
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    text = default_policy_path().read_text()
    rule = "  - name: prompt-drift\n"
    head, tail = text.split(rule, 1)
    policy.write_text(head + rule + tail.replace("threshold: 0.01\n    clear_threshold: 0.05",
                                                 "threshold: 0.05\n    clear_threshold: 0.2", 1))
    return {**stack_env, **small_drift_windows(WINDOW), "DRIFTWARDEN_POLICY_FILE": str(policy)}


def mixed_windows(path, windows: int) -> None:
    """``windows`` windows of general prompts, ``SHARE`` of each multi-hop QA questions (ids
    ``new-…``), shuffled within the window."""
    general = [r["prompt"] for r in rows("halueval_general")]
    questions = sorted({r["question"] for r in rows("halueval_qa")})
    rng = random.Random(13)
    new = round(SHARE * WINDOW)
    lines = []
    for w in range(windows):
        window = [{"id": f"old-{w}-{i}", "prompt": p} for i, p in enumerate(rng.sample(general, WINDOW - new))]
        window += [{"id": f"new-{w}-{i}", "prompt": q} for i, q in enumerate(rng.sample(questions, new))]
        rng.shuffle(window)
        lines += [json.dumps({**r, "response": "ok"}) for r in window]
    path.write_text("\n".join(lines) + "\n")


def test_a_new_intent_at_a_tenth_of_traffic_is_flagged_named_and_alerted(stack, stack_settings, tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    mixed_windows(mixed, 2)
    with Publisher(stack.bootstrap, settings=stack_settings) as pub:
        replay_file(data_path("halueval_general"), pub.publish, ReplayOptions(id_prefix="base", shuffle=True),
                    limit=WINDOW)
        assert pub.flush(60)
        replay_file(mixed, pub.publish, ReplayOptions(id_prefix="mix"))
    wait_for(stack_settings, lambda c: c["drift_windows"] >= 2 and c["alerts_firing"] >= 1, timeout_s=400,
             stack=stack)
    stack.stop()
    client = open_client(stack_settings)
    db = stack_settings.clickhouse_database
    windows = client.query(f"SELECT window_id, method, p_value, novel_share, clusters FROM {db}.drift_windows FINAL "
                           f"WHERE field = 'prompt' ORDER BY window_id").result_rows
    alerts = client.query(f"SELECT rule, summary, example_event_ids FROM {db}.alerts FINAL "
                          f"WHERE status = 'firing'").result_rows
    client.close()
    assert len(windows) == 2
    for _, method, p_value, novel_share, clusters in windows:
        assert method == "aggregate_mmd_knn_novelty_permutation" and p_value < 0.05
        assert novel_share > 0.05  # above the share of the reference's own rows past the cut-off
        first = json.loads(clusters)[0]
        new = [e for e in first["example_event_ids"] if "new-" in e]
        assert first["size"] >= 8 and len(new) >= 2, clusters
        assert len(first["examples"]) <= 3 and all(len(t) <= 202 for t in first["examples"])
    (rule, summary, examples), = [a for a in alerts if a[0] == "prompt-drift"]
    assert "What is new: a group of" in summary and sum("new-" in e for e in examples) >= 2, summary
