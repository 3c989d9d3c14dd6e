"""Grounded hallucination: how poorly the event's ``context`` supports its ``response``.

Events without ``context`` are *not assessable*: their result has no score and no label, and
says so, instead of a made-up number.

Backends (``DRIFTWARDEN_DETECTORS__HALLUCINATION__BACKEND``):

- ``lexical`` (default, no model): extractive support. A response that is a verbatim span of
  the context (after lower-casing and dropping punctuation) is supported (score 0). Otherwise
  the score is 0.25 + 0.75 × the share of the response's content words (stop words dropped)
  that the context lacks, words matching on their first ``stem_chars`` characters. It reads
  support, not length: a long answer whose words all come from the context scores low.
- ``nli``: an NLI cross-encoder from ``model_path`` (premise = context, hypothesis =
  response); score = 1 − P(entailment).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from driftwarden.core.detector_configs import HallucinationConfig
from driftwarden.core.schemas import DetectionResult, InferenceEvent, make_result
from driftwarden.core.settings import Settings
from driftwarden.detectors.base import BaseDetector, BatchContext
from driftwarden.detectors.hf_classifier import SequenceClassifier
from driftwarden.detectors.registry import register

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOP_WORDS = frozenset(
    "a an and are as at be been by did do does for from had has have he her his how i in is it its "
    "me my no not of on or our she so than that the their them then there they this to was we were "
    "what when where which who whom why will with yes you your".split()
)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def lexical_support(response: str, context: str, stem_chars: int = 6) -> tuple[float, dict[str, float]]:
    """(score, parts): 0 for a verbatim span of the context, else 0.25 + 0.75 × unsupported share."""
    answer = _words(response)
    norm_answer = " ".join(answer)
    norm_context = " ".join(_words(context))
    if norm_answer and f" {norm_answer} " in f" {norm_context} ":
        return 0.0, {"verbatim": 1.0, "unsupported_share": 0.0}
    content = [w for w in answer if w not in STOP_WORDS]
    if not content:
        return 0.25, {"verbatim": 0.0, "unsupported_share": 0.0}

    def stem(w: str) -> str:
        return w if w.isdigit() else w[:stem_chars]

    known = {stem(w) for w in norm_context.split()}
    missing = sum(stem(w) not in known for w in content)
    share = missing / len(content)
    return 0.25 + 0.75 * share, {"verbatim": 0.0, "unsupported_share": share}


class HallucinationDetector(BaseDetector):
    name = "hallucination"
    config_class = HallucinationConfig
    config: HallucinationConfig

    def __init__(self, config: HallucinationConfig | None = None, encoder=None):
        super().__init__(config)
        c = self.config
        if c.backend == "nli":
            self.classifier, path = SequenceClassifier.from_config(c, "the nli backend", self.name)
            self.entail = self.classifier.label_index(c.entailment_label)
            self.version = f"nli-{path.name}"
        else:
            self.version = f"lexical-support-1.0-s{c.stem_chars}"

    def score_batch(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[DetectionResult]:
        assessable = [i for i, e in enumerate(events) if e.context and e.response.strip()]
        scored: dict[int, tuple[float, dict[str, float]]] = {}
        if assessable and self.config.backend == "nli":
            premises = ["\n".join(events[i].context or []) for i in assessable]
            hypotheses = [events[i].response for i in assessable]
            probs = self.classifier.predict(premises, hypotheses)
            for row, i in enumerate(assessable):
                p = float(probs[row, self.entail])
                scored[i] = (1.0 - p, {"p_entailment": p})
        else:
            for i in assessable:
                scored[i] = lexical_support(events[i].response, "\n".join(events[i].context or []),
                                            self.config.stem_chars)
        results = []
        for i, event in enumerate(events):
            if i not in scored:
                why = "not assessable: the event has no context" if not event.context else "not assessable: empty response"
                results.append(make_result(self, event, score=None, label=None, evidence=why))
                continue
            score, parts = scored[i]
            flagged = score >= self.config.threshold
            results.append(make_result(self, event, score=score, label=flagged, scores=parts,
                                       evidence="response not supported by the context" if flagged else None))
        return results


@register("hallucination")
def _build(settings: Settings, encoder=None) -> HallucinationDetector:
    return HallucinationDetector(settings.detectors.hallucination)
