"""Prompt injection and jailbreak attempts in the prompt.

Backends (``DRIFTWARDEN_DETECTORS__PROMPT_INJECTION__BACKEND``):

- ``builtin`` (default): a logistic head on the shipped MiniLM embedding of the prompt, fitted
  on the shipped labelled prompts (``bench/train_heads.py``; cross-validated figures in the
  head's metrics). It has seen in-the-wild jailbreaks and system-prompt extraction, not
  indirect (document-borne) injections.
- ``classifier``: a Hugging Face sequence classifier from ``model_path`` (for example a
  fine-tuned DeBERTa injection model copied to local disk); score = P(attack class).
"""

from __future__ import annotations

from collections.abc import Sequence

from driftwarden.core.detector_configs import PromptInjectionConfig
from driftwarden.core.schemas import DetectionResult, InferenceEvent, make_result
from driftwarden.core.settings import Settings
from driftwarden.detectors.base import BaseDetector, BatchContext
from driftwarden.detectors.heads import load_head
from driftwarden.detectors.hf_classifier import SequenceClassifier
from driftwarden.detectors.registry import register


class PromptInjectionDetector(BaseDetector):
    name = "prompt_injection"
    config_class = PromptInjectionConfig
    config: PromptInjectionConfig

    def __init__(self, config: PromptInjectionConfig | None = None, encoder=None):
        super().__init__(config)
        c = self.config
        if c.backend == "classifier":
            self.classifier, path = SequenceClassifier.from_config(c, "the classifier backend", self.name)
            self.positive = self.classifier.label_index(c.positive_label)
            self.version = f"classifier-{path.name}"
        else:
            self.head = load_head("prompt_injection")
            if encoder is None:
                from driftwarden.detectors.embeddings import Encoder

                encoder = Encoder()
            self.encoder = encoder
            self.version = f"builtin-head-{self.head.version}"

    def score_batch(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[DetectionResult]:
        prompts = [e.prompt for e in events]
        if self.config.backend == "classifier":
            probs = self.classifier.predict(prompts)[:, self.positive]
        else:
            embedded = ctx.embeddings("prompt") if ctx.has_encoder else self.encoder.encode(prompts)
            probs = self.head.predict_proba(embedded)
        results = []
        for event, p in zip(events, probs, strict=True):
            score = float(p)
            flagged = score >= self.config.threshold
            results.append(make_result(self, event, score=score, label=flagged,
                                       evidence="prompt looks like an injection or jailbreak" if flagged else None))
        return results


@register("prompt_injection")
def _build(settings: Settings, encoder=None) -> PromptInjectionDetector:
    return PromptInjectionDetector(settings.detectors.prompt_injection, encoder=encoder)
