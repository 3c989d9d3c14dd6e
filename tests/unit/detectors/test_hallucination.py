"""Grounded hallucination: lexical support by default, an NLI cross-encoder from a local path."""

from __future__ import annotations

import pytest

from driftwarden.core.detector_configs import HallucinationConfig
from driftwarden.core.errors import DetectorError
from driftwarden.core.schemas import event_from_mapping
from driftwarden.detectors.hallucination import HallucinationDetector, lexical_support
from driftwarden.tests.cases import valid_event
from driftwarden.tests.tiny_models import build_bert_classifier

CONTEXT = "Paris is the capital and most populous city of France. Berlin is the capital of Germany."


def event(eid: str, response: str, context=CONTEXT):
    return event_from_mapping(valid_event(eid, prompt="What is the capital of France?", response=response,
                                          context=context))


def test_an_answer_copied_from_the_context_is_supported():
    assert lexical_support("Paris", CONTEXT)[0] == 0.0
    assert lexical_support("the capital of Germany.", CONTEXT)[0] == 0.0


def test_an_answer_the_context_does_not_contain_scores_high():
    score, parts = lexical_support("Lyon", CONTEXT)
    assert score == 1.0 and parts["unsupported_share"] == 1.0


def test_a_long_answer_built_from_the_context_scores_low_so_length_is_not_the_signal():
    long_supported = "Paris, the most populous city of France, is its capital; Berlin is the capital of Germany"
    short_unsupported = "Marseille"
    assert lexical_support(long_supported, CONTEXT)[0] < lexical_support(short_unsupported, CONTEXT)[0]


def test_events_without_context_are_not_assessable_never_a_made_up_score():
    detector = HallucinationDetector()
    (result,) = detector.detect([event("h-1", "Paris", context=None)])
    assert result.score is None and result.label is None
    assert "not assessable" in result.evidence


def test_the_detector_flags_the_unsupported_answer_and_passes_the_supported_one():
    detector = HallucinationDetector()
    good, bad = detector.detect([event("h-2", "Paris"), event("h-3", "Lyon is the capital")])
    assert good.label is False and bad.label is True
    assert good.detector_version.startswith("lexical")


def test_the_nli_backend_loads_a_cross_encoder_from_a_local_path(tmp_path):
    path = build_bert_classifier(tmp_path / "nli", ["contradiction", "entailment", "neutral"])
    detector = HallucinationDetector(HallucinationConfig(backend="nli", model_path=path))
    results = detector.detect([event("n-1", "Paris"), event("n-2", "Lyon"), event("n-3", "x", context=None)])
    assert [r.error for r in results] == [None, None, None]
    for r in results[:2]:
        assert 0.0 <= r.score <= 1.0 and abs(r.score - (1 - r.scores["p_entailment"])) < 1e-6
    assert results[2].score is None
    assert detector.version == "nli-nli"


def test_the_nli_backend_names_a_missing_entailment_class(tmp_path):
    path = build_bert_classifier(tmp_path / "nli2", ["yes", "no"])
    with pytest.raises(ValueError, match="no class 'entailment'"):
        HallucinationDetector(HallucinationConfig(backend="nli", model_path=path))


def test_the_nli_backend_without_a_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(DetectorError, match="does not exist"):
        HallucinationDetector(HallucinationConfig(backend="nli", model_path=tmp_path / "missing"))
