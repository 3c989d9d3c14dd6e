"""Sentence alignment features: support by meaning, words, numbers and names, per sentence."""

from __future__ import annotations

import numpy as np
import pytest

from driftwarden.detectors import grounding

CONTEXT = ("The Eiffel Tower was completed in 1889. It is 330 metres tall. "
           "Gustave Eiffel's company designed and built it.")


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in embedding (unit-norm hashed bag of words) for pure-logic tests."""
    out = np.zeros((len(texts), 64))
    for i, t in enumerate(texts):
        for w in grounding.content_words(t):
            out[i, hash(w) % 64] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def features(response: str, prompt: str = "") -> dict[str, float]:
    a = grounding.align(response, CONTEXT, prompt, bag_of_words)
    return dict(zip(grounding.FEATURES, a.features(), strict=True))


def test_a_sentence_copied_from_the_context_is_verbatim_and_fully_supported():
    f = features("It is 330 metres tall.")
    assert f["verbatim_max"] == 1.0 and f["unsup_words_max"] == 0.0 and f["sim_max_max"] > 0.99


def test_a_changed_number_is_unsupported_even_when_every_word_is_in_the_context():
    f = features("The Eiffel Tower was completed in 1925.")
    assert f["unsup_numbers_max"] == 1.0 and f["unsup_words_max"] > 0


def test_numbers_match_whatever_their_format():
    assert grounding._numbers("1,000 and 2.50 and 007") == {"1000", "2.5", "7"}


def test_a_name_the_context_lacks_is_counted():
    assert features("It was built by Alexandre Dumas.")["unsup_names_max"] == 1.0


def test_a_negated_claim_differs_from_its_best_aligned_sentence():
    assert features("The Eiffel Tower was not completed in 1889.")["negation_flip_max"] == 1.0


def test_words_only_the_prompt_holds_are_counted_apart():
    f = features("Paris loves the tower.", prompt="Does Paris love the tower?")
    assert f["prompt_only_max"] > 0


def test_each_sentence_has_its_own_features_and_offsets():
    response = "It is 330 metres tall. It was painted green by Napoleon."
    a = grounding.align(response, CONTEXT, "", bag_of_words)
    assert [response[s:e] for s, e in a.spans] == ["It is 330 metres tall.", "It was painted green by Napoleon."]
    first, second = a.features(only=0), a.features(only=1)
    i = grounding.FEATURES.index("unsup_words_max")
    assert first[i] == 0.0 < second[i]
    assert a.features()[i] == second[i]


def test_a_response_without_words_has_no_alignment():
    assert grounding.align(" ... ", CONTEXT, "", bag_of_words) is None


def test_context_sentences_embedded_per_event_are_bounded():
    seen: list[int] = []

    def counting(texts):
        seen.append(len(texts))
        return bag_of_words(texts)

    context = " ".join([f"Tower {i} is tall." for i in range(250)] + [f"Bridge {i} is long." for i in range(250)])
    a = grounding.align("Tower is tall. Bridge is long.", context, "", counting, max_candidates=5)
    assert seen == [2 + 5]
    assert len(a.rows) == 2


def test_a_response_score_is_the_mean_of_the_whole_and_its_least_supported_sentence():
    assert grounding.response_score(0.2, [0.1, 0.9, 0.4]) == pytest.approx(0.55)
    # one sentence, or none scored: the whole response's score alone
    assert grounding.response_score(0.3, [0.3]) == pytest.approx(0.3)
    assert grounding.response_score(0.7, []) == pytest.approx(0.7)
