"""Grounded hallucination: how poorly the event's ``context`` supports its ``response``.

Events without ``context`` are *not assessable*: their result has no score and no label, and
says so, instead of a made-up number.

Backends (``DRIFTWARDEN_DETECTORS__HALLUCINATION__BACKEND``):

- ``grounded`` (default): each response sentence is aligned to the context sentences most like
  it (:mod:`driftwarden.detectors.grounding`) and a shipped logistic head, fitted by
  ``bench/train_grounding.py`` on human-judged summaries, dialogue responses and QA answers,
  scores their support. The score is the mean of the whole response's and its least
  supported sentence's (:func:`~driftwarden.detectors.grounding.response_score`); the result's
  spans are the sentences at or above the threshold (``type`` ``unsupported``, offsets into the
  response, each with its score).
- ``lexical`` (no model): extractive support. A response that is a verbatim span of the
  context (after lower-casing and dropping punctuation) is supported (score 0). Otherwise the
  score is 0.25 + 0.75 × the share of the response's content words that the context lacks.
- ``nli``: an NLI cross-encoder from ``model_path`` (premise = context, hypothesis =
  response); score = 1 − P(entailment).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from driftwarden.core.detector_configs import ModelConfig
from driftwarden.core.errors import DetectorError
from driftwarden.core.schemas import DetectionResult, InferenceEvent, Span, make_result
from driftwarden.detectors import grounding
from driftwarden.detectors.base import BaseDetector, BatchContext
from driftwarden.detectors.grounding import STOP_WORDS, WORD
from driftwarden.detectors.heads import encoder_for, load_head
from driftwarden.detectors.hf_classifier import SequenceClassifier
from driftwarden.detectors.registry import register
from driftwarden.detectors.segments import join_context

class HallucinationConfig(ModelConfig):
    """How poorly the event's ``context`` supports its ``response``, 0 (supported) to 1."""

    threshold: float = Field(0.651, ge=0.0, le=1.0)
    """Flag at or above this score. The ``grounded`` default is chosen on the head's validation
    data (``bench/train_grounding.py``; the rule and the figures are in the head's metrics and
    the README's quality table)."""
    backend: Literal["grounded", "lexical", "nli"] = "grounded"
    """``grounded``: each response sentence aligned to the context sentences most like it and
    scored by a shipped head on their support (meaning, words, bigrams, numbers, names,
    negation); results name the unsupported sentences. ``lexical``: extractive support only (the
    share of the response's content words the context lacks; no model). ``nli``: a cross-encoder
    NLI model from ``model_path``, score = 1 - P(entailment of the response by the context)."""
    entailment_label: str = "entailment"
    """``nli``: name of the entailment class in the model's ``id2label``."""
    stem_chars: int = Field(6, ge=3, le=20)
    """``lexical``: words match on their first this-many characters (a light stemmer)."""
    max_sentences: int = Field(24, ge=1, le=1_000)
    """``grounded``: response sentences scored per event (the rest are not assessed)."""
    max_aligned: int = Field(24, ge=1, le=1_000)
    """``grounded``: context sentences embedded per event, chosen by word overlap with the
    response sentences (bounds the cost of long contexts)."""
    sample_rate: float = Field(0.5, gt=0.0, le=1.0)
    """Share of events scored, chosen by a hash of the event id (the same event is always in or
    out); the others get no hallucination result. 0.5 by default keeps the score worker at two
    thirds of its speed without this detector on RAG traffic (``bench/detector_cost.py``); 1.0
    scores every event."""


#: Named values of the ``grounded`` backend kept on each result (of the whole response).
REPORTED = ("sim_max_mean", "unsup_words_mean", "unsup_bigrams_mean", "unsup_numbers_max", "unsup_names_max")


def lexical_support(response: str, context: str, stem_chars: int = 6) -> tuple[float, dict[str, float]]:
    """(score, parts): 0 for a verbatim span of the context, else 0.25 + 0.75 × unsupported share."""
    answer = [w.lower() for w in WORD.findall(response)]
    norm_answer = " ".join(answer)
    norm_context = " ".join(w.lower() for w in WORD.findall(context))
    if norm_answer and f" {norm_answer} " in f" {norm_context} ":
        return 0.0, {"verbatim": 1.0, "unsupported_share": 0.0}
    content = [w for w in answer if w not in STOP_WORDS]
    if not content:
        return 0.25, {"verbatim": 0.0, "unsupported_share": 0.0}

    def stem(w: str) -> str:
        return w if w.isdigit() else w[:stem_chars]

    known = {stem(w) for w in norm_context.split()}
    share = sum(stem(w) not in known for w in content) / len(content)
    return 0.25 + 0.75 * share, {"verbatim": 0.0, "unsupported_share": share}


class NLIGrounding:
    """An NLI cross-encoder from a local path: the score is 1 - P(context entails response)."""

    def __init__(self, config: HallucinationConfig, encoder, detector: BaseDetector):
        self.classifier, path = SequenceClassifier.from_config(config, "the nli backend", detector.name)
        self.entail = self.classifier.label_index(config.entailment_label)
        self.version = f"nli-{path.name}"

    def score(self, events: Sequence[InferenceEvent], chosen: list[int], ctx: BatchContext) -> dict:
        premises = [join_context(events[i].context) for i in chosen]
        probs = self.classifier.predict(premises, [events[i].response for i in chosen])
        out = {}
        for row, i in enumerate(chosen):
            p = float(probs[row, self.entail])
            out[i] = (1.0 - p, {"p_entailment": p}, [])
        return out


class GroundedHead:
    """The default: each response sentence aligned to its best context sentences (MiniLM), features
    of what is unsupported (words, bigrams, numbers, names), a shipped logistic head
    (``data/heads/grounding.json``) scoring the response and each sentence (spans)."""

    def __init__(self, config: HallucinationConfig, encoder, detector: BaseDetector):
        self.config = config
        self.detector = detector
        self.head = load_head("grounding")
        if self.head.features != grounding.FEATURES:
            raise DetectorError(detector.name, "the shipped grounding head was fitted on other features than this "
                                               "code computes; refit it with bench/train_grounding.py")
        self.encoder = encoder_for(self.head, encoder, detector.name)
        self.version = f"grounded-{self.head.version}-{grounding.RESPONSE_SCORE}"

    def _plan(self, event: InferenceEvent, ctx: BatchContext) -> grounding.AlignmentPlan | None:
        c = self.config
        return ctx.memo(("grounding", id(event)), lambda: grounding.plan(
            event.response, join_context(event.context), max_candidates=c.max_aligned, max_sentences=c.max_sentences))

    def texts_to_embed(self, events: Sequence[InferenceEvent], chosen: list[int], ctx: BatchContext) -> list[str]:
        return [t for i in chosen if (p := self._plan(events[i], ctx)) is not None for t in p.to_embed]

    def score(self, events: Sequence[InferenceEvent], chosen: list[int], ctx: BatchContext) -> dict:
        embed = ctx.texts if ctx.has_encoder else self.encoder.encode
        return {i: self._grounded(events[i], ctx, embed, self.detector.deadline()) for i in chosen}

    def _grounded(self, event: InferenceEvent, ctx: BatchContext, embed, deadline: float
                  ) -> tuple[float, dict[str, float], list[Span]]:
        c = self.config
        planned = self._plan(event, ctx)
        if planned is None:
            return 0.0, {"sentences": 0.0}, []
        alignment = grounding.align_planned(planned, event.prompt, embed)
        self.detector.check_deadline(deadline, "aligning the response to its context")
        whole = float(self.head.predict_proba([alignment.features()])[0])
        per_sentence = self.head.predict_proba([alignment.features(only=n) for n in range(len(alignment.spans))])
        score = grounding.response_score(whole, per_sentence.tolist())
        spans = [Span(field="response", start=s, end=e, type="unsupported", score=round(float(p), 4))
                 for (s, e), p in zip(alignment.spans, per_sentence, strict=True) if p >= c.threshold]
        if score >= c.threshold and not spans:
            n = int(per_sentence.argmax())
            s, e = alignment.spans[n]
            spans = [Span(field="response", start=s, end=e, type="unsupported", score=round(float(per_sentence[n]), 4))]
        named = dict(zip(grounding.FEATURES, alignment.features(), strict=True))
        parts = {k: named[k] for k in REPORTED}
        parts["sentences"] = float(len(alignment.spans))
        parts["unsupported_sentences"] = float(sum(p >= c.threshold for p in per_sentence))
        parts["whole_response_score"] = whole
        return score, parts, spans


class LexicalSupport:
    """No model: the share of the response's content words (stemmed) found in the context."""

    def __init__(self, config: HallucinationConfig, encoder, detector: BaseDetector):
        self.config = config
        self.version = f"lexical-support-1.0-s{config.stem_chars}"

    def score(self, events: Sequence[InferenceEvent], chosen: list[int], ctx: BatchContext) -> dict:
        out = {}
        for i in chosen:
            score, parts = lexical_support(events[i].response, join_context(events[i].context), self.config.stem_chars)
            out[i] = (score, parts, [])
        return out


BACKENDS = {"grounded": GroundedHead, "lexical": LexicalSupport, "nli": NLIGrounding}
"""``backend`` setting -> class: ``(config, encoder, detector)``, a ``version`` and
``score(events, chosen, ctx)`` giving {event index: (score, parts, spans)} for the chosen events."""


@register("hallucination", config=HallucinationConfig, needs_context=True, scores_response=True)
class HallucinationDetector(BaseDetector):
    name = "hallucination"
    config_class = HallucinationConfig
    config: HallucinationConfig

    def __init__(self, config: HallucinationConfig | None = None, encoder=None):
        super().__init__(config)
        self.backend = BACKENDS[self.config.backend](self.config, encoder, self)
        self.version = self.backend.version

    @staticmethod
    def _chosen(events: Sequence[InferenceEvent]) -> list[int]:
        """The events it can judge: words in both the context and the response."""
        return [i for i, e in enumerate(events) if WORD.search(join_context(e.context)) and WORD.search(e.response)]

    def texts_to_embed(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[str]:
        planner = getattr(self.backend, "texts_to_embed", None)
        return planner(events, self._chosen(events), ctx) if planner is not None and ctx.has_encoder else []

    def score_batch(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[DetectionResult]:
        c = self.config
        chosen = self._chosen(events)
        scored = self.backend.score(events, chosen, ctx) if chosen else {}
        results = []
        for i, event in enumerate(events):
            if i not in scored:
                if not WORD.search(join_context(event.context)):
                    why = "not assessable: the event has no context (or none with words)"
                else:
                    why = "not assessable: the response has no words"
                results.append(make_result(self, event, score=None, label=None, evidence=why))
                continue
            score, parts, spans = scored[i]
            flagged = score >= c.threshold
            evidence = None
            if flagged:
                evidence = (f"{len(spans)} of {int(parts['sentences'])} response sentence(s) not supported by the context"
                            if spans else "response not supported by the context")
            results.append(make_result(self, event, score=score, label=flagged, scores=parts,
                                       spans=spans if flagged else [], evidence=evidence))
        return results

