"""Toxicity: the shipped default, and detoxify loading a checkpoint of its own format."""

from __future__ import annotations

import pytest

from driftwarden.detectors.toxicity import ToxicityConfig
from driftwarden.core.errors import DetectorError
from driftwarden.core.schemas import event_from_mapping
from driftwarden.detectors.toxicity import ToxicityDetector
from driftwarden.tests.cases import valid_event
from driftwarden.tests.tiny_models import build_detoxify_checkpoint


def ev(eid: str, prompt: str, response: str = ""):
    return event_from_mapping(valid_event(eid, prompt=prompt, response=response))


@pytest.fixture(scope="module")
def builtin():
    return ToxicityDetector()


def test_the_default_scores_abuse_above_a_polite_request(builtin):
    polite, abusive = builtin.detect([
        ev("t-1", "Could you help me plan a birthday party for my daughter?", "Of course! Here are some ideas."),
        ev("t-2", "You are a worthless idiot and I hate you, shut up you moron", "I'm sorry you feel that way."),
    ])
    assert abusive.score > 0.5 > polite.score
    assert abusive.label is True and polite.label is False
    assert abusive.evidence.startswith("prompt toxicity")
    assert set(abusive.scores) >= {"prompt_toxicity", "response_toxicity", "prompt_profanity", "prompt_embedding_head"}


def test_the_score_is_the_highest_over_prompt_and_response(builtin):
    (result,) = builtin.detect([ev("t-3", "Tell me about the weather", "Shut up, you pathetic idiot, nobody cares.")])
    assert result.score == max(result.scores["prompt_toxicity"], result.scores["response_toxicity"])
    assert result.scores["response_toxicity"] > result.scores["prompt_toxicity"]


def test_an_empty_response_is_skipped_not_scored_as_benign_text(builtin):
    (result,) = builtin.detect([ev("t-4", "hello there")])
    assert "response_toxicity" not in result.scores


def test_detoxify_loads_a_checkpoint_of_its_own_format_from_local_paths(tmp_path):
    checkpoint, hf_dir = build_detoxify_checkpoint(tmp_path)
    detector = ToxicityDetector(ToxicityConfig(backend="detoxify", model_path=checkpoint, hf_config_path=hf_dir))
    results = detector.detect([ev("d-1", "you idiot", "hello"), ev("d-2", "nice day", "")])
    assert all(r.error is None and 0.0 <= r.score <= 1.0 for r in results)
    assert detector.version.startswith("detoxify-original-")
    assert "toxicity" in detector.classes and "identity_attack" in detector.classes


def test_detoxify_without_its_config_directory_is_a_clear_error(tmp_path):
    checkpoint, _ = build_detoxify_checkpoint(tmp_path)
    with pytest.raises(DetectorError, match="hf_config_path"):
        ToxicityDetector(ToxicityConfig(backend="detoxify", model_path=checkpoint))


def test_a_file_that_is_not_a_detoxify_checkpoint_is_refused(tmp_path):
    import torch

    bad = tmp_path / "bad.ckpt"
    torch.save({"weights": 1}, bad)
    _, hf_dir = build_detoxify_checkpoint(tmp_path / "ok")
    with pytest.raises(DetectorError, match="not a detoxify checkpoint"):
        ToxicityDetector(ToxicityConfig(backend="detoxify", model_path=bad, hf_config_path=hf_dir))
