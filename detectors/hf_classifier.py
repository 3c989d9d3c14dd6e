"""Batched inference of a Hugging Face sequence classifier from a local path (or given objects).

Used by the NLI hallucination backend, the prompt-injection classifier backend and the detoxify
backend. Texts are grouped by length under a token budget; on a GPU the model runs in float16.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from driftwarden.detectors.loading import local_dir, pick_device, require, token_budget_batches, use_half

log = logging.getLogger(__name__)


class SequenceClassifier:
    """Wraps a model and tokenizer; :meth:`predict` returns probabilities per class."""

    def __init__(self, model: Any, tokenizer: Any, *, device: str = "auto", half_precision: bool = True,
                 max_length: int = 256, max_batch: int = 64, max_batch_tokens: int = 16_384,
                 activation: str = "softmax"):
        torch = require("torch")
        self.device = pick_device(device)
        self.half = use_half(self.device, half_precision)
        self.model = model.to(self.device)
        if self.half:
            self.model = self.model.half()
        self.model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.activation = activation
        self._torch = torch

    @classmethod
    def from_dir(cls, path: Path, **kwargs: Any) -> SequenceClassifier:
        transformers = require("transformers")
        transformers.utils.logging.disable_progress_bar()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        log.info("loaded sequence classifier %s", path)
        return cls(model, tokenizer, **kwargs)

    @classmethod
    def from_config(cls, config: Any, what: str, detector: str) -> tuple[SequenceClassifier, Path]:
        """The classifier at ``config.model_path`` (which must exist locally), run as ``config`` says."""
        path = local_dir(config.model_path, what, detector)
        classifier = cls.from_dir(path, device=config.device, half_precision=config.half_precision,
                                  max_length=config.max_length, max_batch=config.batch_size,
                                  max_batch_tokens=config.max_batch_tokens)
        return classifier, path

    @property
    def labels(self) -> list[str]:
        id2label = getattr(self.model.config, "id2label", None) or {}
        n = int(getattr(self.model.config, "num_labels", len(id2label)))
        return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]

    def label_index(self, name: str | None) -> int:
        """Index of the class called ``name`` (case-insensitive); None: the last class."""
        labels = [label.lower() for label in self.labels]
        if name is None:
            return len(labels) - 1
        try:
            return labels.index(name.lower())
        except ValueError:
            raise ValueError(f"the model has no class {name!r}; its classes are {self.labels}") from None

    def _count(self, text: str) -> int:
        return min(self.max_length, max(1, len(text) // 4))

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Any:
        """Probabilities, shape (len(texts), classes). ``pairs`` makes (text, pair) inputs."""
        np = require("numpy")
        torch = self._torch
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        lengths = [t + (pairs[i] if pairs is not None else "") for i, t in enumerate(texts)]
        for batch in token_budget_batches(lengths, self._count, self.max_batch, self.max_batch_tokens):
            first = [texts[i] for i in batch]
            second = [pairs[i] for i in batch] if pairs is not None else None
            enc = self.tokenizer(first, second, truncation=True, padding=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = self.model(**enc).logits.float()
            probs = torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, dim=-1)
            out[batch] = probs.cpu().numpy()
        return out
