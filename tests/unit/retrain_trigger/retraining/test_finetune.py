"""The fine-tuning job on a snapshot, with a tiny GPT-2 built in code and loaded from its directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from driftwarden.core.errors import RetrainError
from driftwarden.core.loop_configs import RetrainConfig
from driftwarden.core.schemas import RetrainRequest
from driftwarden.retrain_trigger.retraining.curation import Curated, Row
from driftwarden.retrain_trigger.retraining.finetune import run, split
from driftwarden.retrain_trigger.retraining.snapshots import write_snapshot
from driftwarden.tests.tiny_models import build_tiny_causal_lm

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def qa_rows(n: int) -> list[Row]:
    cities = ["Paris", "Rome", "Madrid", "Berlin", "Lisbon", "Vienna", "Prague", "Dublin"]
    return [Row(event_id=f"ft-{i}", ts=T0 + timedelta(seconds=i), prompt=f"What is the capital number {i}?",
                response=f"The capital is {cities[i % len(cities)]}.") for i in range(n)]


def snapshot_of(tmp_path, rows):
    request = RetrainRequest(request_id="r-ft", alert_id="a-ft", app="qa", model_version="v1", reason="test",
                             start=T0, end=T0 + timedelta(hours=1), requested_at=T0)
    return write_snapshot(tmp_path / "datasets", request, Curated(train=rows))


@pytest.mark.timeout(300)
def test_a_lora_job_on_a_tiny_model_lowers_the_held_out_loss_and_saves_the_adapter(tmp_path):
    rows = qa_rows(40)
    model_dir = build_tiny_causal_lm(tmp_path / "tiny-gpt2", [f"{r.prompt} {r.response}" for r in rows])
    snap = snapshot_of(tmp_path, rows)
    config = RetrainConfig(base_model=model_dir, max_steps=30, batch_size=4, learning_rate=5e-3, device="cpu")
    metrics = run(snap.path, tmp_path / "job", config, progress=False)
    assert metrics["dataset_version"] == snap.version
    assert metrics["steps"] == 30 and metrics["held_out_rows"] >= 1
    assert metrics["loss_after"] < metrics["loss_before"]
    assert (tmp_path / "job" / "adapter" / "adapter_config.json").is_file()
    written = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert written["loss_before"] == metrics["loss_before"] and written["precision"] == "float32"
    assert len((tmp_path / "job" / "progress.jsonl").read_text().splitlines()) == 30
    # The adapter learnt from prompts and responses: the owner's only, like everything the job wrote.
    written_paths = [tmp_path / "job", *(tmp_path / "job").rglob("*")]
    assert {p.stat().st_mode & 0o777 for p in written_paths if p.is_dir()} == {0o700}
    assert {p.stat().st_mode & 0o777 for p in written_paths if p.is_file()} == {0o600}


def test_a_base_model_that_is_not_there_is_a_clear_error(tmp_path):
    snap = snapshot_of(tmp_path, qa_rows(10))
    with pytest.raises(RetrainError, match="cannot load the base model"):
        run(snap.path, tmp_path / "job", RetrainConfig(base_model=tmp_path / "missing", device="cpu"), progress=False)


def test_the_held_out_split_is_stable_and_never_empty():
    rows = qa_rows(30)
    from driftwarden.retrain_trigger.retraining.finetune import Example

    examples = [Example(r.event_id, r.prompt, r.response) for r in rows]
    first, again = split(examples, 0.2), split(list(reversed(examples)), 0.2)
    assert {e.event_id for e in first[1]} == {e.event_id for e in again[1]}
    assert split(examples[:2], 0.01)[1], "one example is held out even when the fraction rounds to none"


def test_the_loss_is_on_the_response_tokens_only(tmp_path):
    from transformers import AutoTokenizer

    from driftwarden.retrain_trigger.retraining.finetune import Example, encode

    model_dir = build_tiny_causal_lm(tmp_path / "tiny", ["What is the capital? The capital is Paris."])
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ids, labels = encode(tokenizer, Example("e", "What is the capital?", "The capital is Paris."), 256)
    kept = [i for i, label in zip(ids, labels, strict=True) if label != -100]
    assert labels[0] == -100 and kept
    assert tokenizer.decode(kept).startswith("The capital is Paris.")
    assert "What is the capital?" not in tokenizer.decode(kept)
