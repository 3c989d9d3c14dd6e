"""Toxicity of prompts and responses.

Backends (``DRIFTWARDEN_DETECTORS__TOXICITY__BACKEND``):

- ``builtin`` (default; everything ships its weights): profanity-check's linear model (trained
  on large public toxicity corpora) blended with a logistic head on the shipped MiniLM
  embeddings (``bench/train_heads.py``; cross-validated figures in the head's metrics);
- ``detoxify``: a detoxify checkpoint (``model_path``) with its Hugging Face config and
  tokenizer directory (``hf_config_path``), loaded through detoxify's own loader and run in
  batches; the score is detoxify's ``toxicity`` class.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from driftwarden.core.detector_configs import ModelConfig, TextField
from driftwarden.core.errors import DetectorError
from driftwarden.core.schemas import DetectionResult, InferenceEvent, make_result
from driftwarden.detectors.base import BaseDetector, BatchContext
from driftwarden.detectors.heads import load_head
from driftwarden.detectors.hf_classifier import SequenceClassifier
from driftwarden.detectors.loading import local_dir, require
from driftwarden.detectors.registry import register

log = logging.getLogger(__name__)


class ToxicityConfig(ModelConfig):
    """Toxicity of the text, 0 (benign) to 1 (toxic)."""

    threshold: float = Field(0.5, ge=0.0, le=1.0)
    """Flag at or above this probability."""
    backend: Literal["builtin", "detoxify"] = "builtin"
    """``builtin``: profanity-check's linear model blended with a logistic head on the shipped
    MiniLM embeddings (both ship their weights); ``detoxify``: a detoxify checkpoint from
    ``model_path`` with its Hugging Face config from ``hf_config_path``."""
    detoxify_model_type: Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"] = "original"
    """detoxify's model type of the checkpoint."""
    hf_config_path: Path | None = None
    """Local directory with the Hugging Face config and tokenizer of the detoxify checkpoint."""
    fields: tuple[TextField, ...] = ("prompt", "response")
    """Texts scored; the score is the highest over them."""
    lexical_weight: float = Field(0.3, ge=0.0, le=1.0)
    """``builtin``: weight of profanity-check in the blend (the rest is the embedding head)."""


@functools.lru_cache(maxsize=2)
def load_detoxify(checkpoint: str, hf_config_path: str, device: str, half: bool, max_length: int,
                  max_batch: int, max_batch_tokens: int) -> tuple[SequenceClassifier, list[str]]:
    """A detoxify checkpoint, through detoxify's loader, with the model type pointed at the local
    Hugging Face directory (detoxify would otherwise ask the hub for the config)."""
    torch = require("torch")
    detoxify = require("detoxify.detoxify")
    try:  # tensors and plain containers only: a checkpoint is data, never code to run
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle refuses objects outside the allow-list (UnpicklingError, ...)
        raise DetectorError("toxicity", f"{checkpoint} cannot be loaded as weights only (tensors, numbers, "
                                        f"strings, lists, dicts): {type(exc).__name__}: {str(exc)[:300]}") from exc
    if "config" not in loaded or "state_dict" not in loaded:
        raise DetectorError("toxicity", f"{checkpoint} is not a detoxify checkpoint (no config/state_dict)")
    args = dict(loaded["config"]["arch"]["args"])
    args["model_type"] = hf_config_path
    model, tokenizer = detoxify.get_model_and_tokenizer(
        **args, state_dict=loaded["state_dict"], huggingface_config_path=hf_config_path,
    )
    rename = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}
    classes = [rename.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
    classifier = SequenceClassifier(model, tokenizer, device=device, half_precision=half, max_length=max_length,
                                    max_batch=max_batch, max_batch_tokens=max_batch_tokens, activation="sigmoid")
    log.info("loaded detoxify checkpoint %s (%d classes)", checkpoint, len(classes))
    return classifier, classes


class BuiltinToxicity:
    """alt-profanity-check's linear model blended with a logistic head on the shared MiniLM
    embeddings (``data/heads/toxicity.json``); ships its weights."""

    def __init__(self, config: ToxicityConfig, encoder, name: str):
        require("profanity_check")
        self.config = config
        self.head = load_head("toxicity")
        if encoder is None:
            from driftwarden.detectors.embeddings import Encoder

            encoder = Encoder()
        self.encoder = encoder
        self.version = f"builtin-profanity+head-{self.head.version}"

    def scores(self, texts: list[str], ctx: BatchContext, field: str):
        np = require("numpy")
        from profanity_check import predict_prob

        lexical = np.asarray(predict_prob(texts), dtype=np.float64)
        embedded = ctx.embeddings(field) if ctx.has_encoder else self.encoder.encode(texts)
        semantic = self.head.predict_proba(embedded)
        w = self.config.lexical_weight
        return w * lexical + (1 - w) * semantic, {"profanity": lexical, "embedding_head": semantic}


class DetoxifyToxicity:
    """A detoxify checkpoint from a local path (``model_path``, ``hf_config_path``)."""

    def __init__(self, config: ToxicityConfig, encoder, name: str):
        c = config
        checkpoint = local_dir(c.model_path, "the detoxify backend", name)
        hf_dir = local_dir(c.hf_config_path, "the detoxify backend's hf_config_path", name)
        self.classifier, self.classes = load_detoxify(
            str(checkpoint), str(hf_dir), c.device, c.half_precision, c.max_length, c.batch_size, c.max_batch_tokens,
        )
        if "toxicity" not in self.classes:
            raise DetectorError(name, f"the checkpoint has no toxicity class: {self.classes}")
        digest = hashlib.sha256(Path(checkpoint).name.encode()).hexdigest()[:6]
        self.version = f"detoxify-{c.detoxify_model_type}-{digest}"

    def scores(self, texts: list[str], ctx: BatchContext, field: str):
        probs = self.classifier.predict(texts)
        return probs[:, self.classes.index("toxicity")], {}


BACKENDS = {"builtin": BuiltinToxicity, "detoxify": DetoxifyToxicity}
"""``backend`` setting -> class: ``(config, encoder, name)``, a ``version`` and ``scores(texts, ctx, field)``
giving (combined score per text, named parts)."""


@register("toxicity", config=ToxicityConfig, offline_update={"fields": ("prompt",)})
class ToxicityDetector(BaseDetector):
    name = "toxicity"
    config_class = ToxicityConfig
    config: ToxicityConfig

    def __init__(self, config: ToxicityConfig | None = None, encoder=None):
        super().__init__(config)
        self.backend = BACKENDS[self.config.backend](self.config, encoder, self.name)
        self.version = self.backend.version

    @property
    def classes(self) -> list[str]:
        """The checkpoint's classes (the detoxify backend)."""
        return getattr(self.backend, "classes", ["toxicity"])

    def texts_to_embed(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[str]:
        if not isinstance(self.backend, BuiltinToxicity) or not ctx.has_encoder:
            return []
        return [getattr(e, field) for field in self.config.fields for e in events]

    def score_batch(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[DetectionResult]:
        per_field = {}
        for field in self.config.fields:
            texts = [getattr(e, field) for e in events]
            per_field[field] = self.backend.scores(texts, ctx, field)
        results = []
        for i, event in enumerate(events):
            scores: dict[str, float] = {}
            best, best_field = -1.0, None
            for field, (combined, parts) in per_field.items():
                if field == "response" and not event.response:
                    continue
                value = float(combined[i])
                scores[f"{field}_toxicity"] = value
                for part, values in parts.items():
                    scores[f"{field}_{part}"] = float(values[i])
                if value > best:
                    best, best_field = value, field
            if best_field is None:
                results.append(make_result(self, event, score=None, label=None, evidence="no text to score"))
                continue
            flagged = best >= self.config.threshold
            results.append(make_result(self, event, score=best, label=flagged, scores=scores,
                                       evidence=f"{best_field} toxicity {best:.2f}" if flagged else None))
        return results

