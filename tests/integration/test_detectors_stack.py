"""Detectors in the running stack: results per detector, embeddings stored, PII redacted before storage."""

from __future__ import annotations

import json

import pytest

from driftwarden.core.storage.client import open_client
from driftwarden.streams.publisher import Publisher
from driftwarden.tests.cases import valid_event
from driftwarden.tests.realstack import all_scored, wait_for

pytestmark = pytest.mark.integration

EMAIL = "maria.lopez@example.com"
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def stack_env(stack_env):
    return {**stack_env, "DRIFTWARDEN_REDACT_PII": "true"}


def test_each_event_gets_every_detector_its_embeddings_and_is_stored_without_pii(stack, stack_settings):
    events = [
        valid_event("pii-1", prompt=f"My card {CARD} was charged twice, mail me at {EMAIL}",
                    response=f"Sorry! We will write to {EMAIL} today."),
        valid_event("tox-1", prompt="You are a useless idiot, shut up and answer me you moron"),
        valid_event("ctx-1", prompt="What is the capital of France?", response="Lyon",
                    context=["Paris is the capital of France."]),
        valid_event("plain-1", prompt="How do I bake bread?", response="Mix flour, water, yeast and salt."),
    ]
    with Publisher(stack.bootstrap, settings=stack_settings) as pub:
        for e in events:
            pub.publish(e)
    wait_for(stack_settings, all_scored(stack_settings, len(events)), timeout_s=180, stack=stack)
    # Embeddings travel on their own topic and sink agent: they may trail the detections a little.
    counts = wait_for(stack_settings, lambda c: c["embeddings"] >= 2 * len(events), timeout_s=60, stack=stack)
    assert set(counts["detections_by_detector"]) == {"hallucination", "operational", "pii", "prompt_injection",
                                                     "toxicity"}
    assert counts["embeddings"] == 2 * len(events)
    assert all(d["errors"] == 0 for d in counts["detections_by_detector"].values())
    stack.stop()  # the store is read directly below; the sink must let go of it first

    client = open_client(stack_settings)
    db = stack_settings.clickhouse_database
    stored = {r[0]: r[1:] for r in client.query(
        f"SELECT event_id, prompt, response, redacted FROM {db}.inference_events FINAL").result_rows}
    prompt, response, redacted = stored["pii-1"]
    assert EMAIL not in prompt + response and CARD not in prompt
    assert "<EMAIL_ADDRESS>" in prompt and "<CREDIT_CARD>" in prompt and redacted == 1
    assert stored["plain-1"][0] == "How do I bake bread?"

    rows = client.query(f"SELECT event_id, detector, score, label, spans, evidence, detector_version, "
                        f"config_fingerprint FROM {db}.detections FINAL").result_rows
    by = {(r[0], r[1]): r[2:] for r in rows}
    assert by[("tox-1", "toxicity")][1] == 1 and by[("plain-1", "toxicity")][1] == 0
    assert by[("ctx-1", "hallucination")][1] == 1
    assert by[("plain-1", "hallucination")][0] is None and "not assessable" in by[("plain-1", "hallucination")][3]
    spans = json.loads(by[("pii-1", "pii")][2])
    assert {s["type"] for s in spans} >= {"EMAIL_ADDRESS", "CREDIT_CARD"}
    assert EMAIL not in by[("pii-1", "pii")][2]
    assert all(v[4] and v[5] for v in by.values())  # every result names its version and config

    vectors = client.query(f"SELECT event_id, field, length(vector), encoder FROM {db}.embeddings FINAL").result_rows
    assert {(r[0], r[1]) for r in vectors} >= {("pii-1", "prompt"), ("pii-1", "response")}
    assert {r[2] for r in vectors} == {384}
    client.close()
