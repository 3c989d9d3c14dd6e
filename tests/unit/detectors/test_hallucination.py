"""Grounded hallucination: the grounded head by default (sentence spans), lexical support, an NLI
cross-encoder from a local path."""

from __future__ import annotations

import pytest

from driftwarden.detectors.hallucination import HallucinationConfig
from driftwarden.core.errors import DetectorError
from driftwarden.core.schemas import event_from_mapping
from driftwarden.detectors import grounding
from driftwarden.detectors.hallucination import HallucinationDetector, lexical_support
from driftwarden.detectors.heads import load_head
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
    detector = HallucinationDetector(HallucinationConfig(sample_rate=1.0))
    results = detector.detect([event("h-1", "Paris", context=None), event("h-1b", "Paris", context=["", " ... "]),
                               event("h-1c", "😀" * 1000)])
    assert [r.score for r in results] == [None, None, None] and [r.label for r in results] == [None, None, None]
    assert all("not assessable" in r.evidence for r in results)


def test_one_invented_sentence_among_copied_ones_is_still_flagged():
    detector = HallucinationDetector(HallucinationConfig(sample_rate=1.0))
    invented = "It was secretly funded by the Russian navy, which paid 40 million roubles for its steel."
    response = ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris. " + invented +
                " Gustave Eiffel's engineering company designed and built it.")
    (result,) = detector.detect([event("h-9", response, context=[ARTICLE])])
    assert result.label and [response[s.start:s.end] for s in result.spans] == [invented]
    # the mean of the whole response's score and the invented sentence's (the least supported)
    assert result.score == pytest.approx((result.scores["whole_response_score"] + result.spans[0].score) / 2, abs=1e-3)


def test_the_last_sentences_of_a_long_copied_answer_are_aligned_too():
    sentences = [f"Station {i} opened in {1900 + i} beside the river {chr(65 + i)}." for i in range(12)]
    detector = HallucinationDetector(HallucinationConfig(sample_rate=1.0))
    (result,) = detector.detect([event("h-10", " ".join(sentences), context=[" ".join(sentences)])])
    assert not result.label and result.spans == []


def test_the_lexical_backend_flags_the_unsupported_answer_and_passes_the_supported_one():
    detector = HallucinationDetector(HallucinationConfig(backend="lexical", threshold=0.3, sample_rate=1.0))
    good, bad = detector.detect([event("h-2", "Paris"), event("h-3", "Lyon is the capital")])
    assert good.label is False and bad.label is True
    assert good.detector_version.startswith("lexical")


ARTICLE = ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris. It is 330 metres tall and was "
           "the tallest man-made structure in the world until 1930. Gustave Eiffel's engineering company "
           "designed and built it. About seven million people visit it every year.")


def test_the_default_names_the_unsupported_sentence_of_a_long_answer():
    detector = HallucinationDetector(HallucinationConfig(sample_rate=1.0))
    assert detector.version.startswith("grounded-")
    supported = "The Eiffel Tower was completed in 1889. It is 330 metres tall."
    mixed = ("The Eiffel Tower was completed in 1889 for the World's Fair. "
             "It was secretly funded by the Russian navy, which paid 40 million roubles for its steel.")
    good, bad = detector.detect([event("g-1", supported, context=[ARTICLE]), event("g-2", mixed, context=[ARTICLE])])
    assert good.score < bad.score
    assert not good.label and bad.label
    assert [mixed[sp.start:sp.end] for sp in bad.spans] == [
        "It was secretly funded by the Russian navy, which paid 40 million roubles for its steel."]
    assert all(sp.field == "response" and sp.type == "unsupported" for sp in bad.spans)
    assert bad.scores["sentences"] == 2 and bad.scores["unsupported_sentences"] == 1
    assert "1 of 2" in bad.evidence


def test_the_shipped_grounding_head_matches_the_features_and_its_threshold_was_chosen_on_validation_data():
    head = load_head("grounding")
    assert head.features == grounding.FEATURES and len(head.coef) == len(grounding.FEATURES)
    assert head.metrics["threshold"] == HallucinationConfig().threshold
    assert head.metrics["cv_precision_at_threshold"] >= 0.8


def test_the_nli_backend_loads_a_cross_encoder_from_a_local_path(tmp_path):
    path = build_bert_classifier(tmp_path / "nli", ["contradiction", "entailment", "neutral"])
    detector = HallucinationDetector(HallucinationConfig(backend="nli", model_path=path, sample_rate=1.0))
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
