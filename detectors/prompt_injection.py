"""Prompt injection and jailbreak attempts: in the prompt, and hidden in the context.

An event is scored on its prompt and, when ``scan_context`` is on, on each chunk of its
``context`` (retrieved documents, tool output: instructions hidden there reach the model as
surely as the prompt's). The result's score is the highest piece's; its span says where that
piece is (``field`` prompt, or context with offsets into the passages joined by newlines), and
``scores`` holds the prompt's and the context's highest scores apart.

Backends (``DRIFTWARDEN_DETECTORS__PROMPT_INJECTION__BACKEND``):

- ``builtin`` (default): a logistic head on TF-IDF word n-grams beside the shipped MiniLM
  embedding of each piece, fitted by ``bench/train_heads.py`` on direct jailbreaks and benign
  prompts, clean user queries, clean documents full of instructions to the reader, and BIPIA
  documents with and without hidden instructions, with weights shared by prompts and context
  chunks plus each one's own (a chunk scores the higher of its context and its prompt
  weights); its figures on attack types and sources it never saw are in the head's metrics.
- ``classifier``: a Hugging Face sequence classifier from ``model_path`` (for example a
  fine-tuned DeBERTa injection model copied to local disk); score = P(attack class).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from driftwarden.core.detector_configs import ModelConfig
from driftwarden.core.schemas import DetectionResult, InferenceEvent, Span, make_result
from driftwarden.detectors.base import BaseDetector, BatchContext
from driftwarden.detectors.heads import encoder_for, load_head
from driftwarden.detectors.hf_classifier import SequenceClassifier
from driftwarden.detectors.loading import require
from driftwarden.detectors.registry import register
from driftwarden.detectors.segments import chunks, join_context


class PromptInjectionConfig(ModelConfig):
    """Likelihood that the prompt, or a passage of the context, is a jailbreak or injection, 0 to 1."""

    threshold: float = Field(0.84, ge=0.0, le=1.0)
    """Flag at or above this probability. The ``builtin`` default is chosen on the head's
    validation data for a stated precision (``bench/train_heads.py``; figures in the head's
    metrics and the README's quality table)."""
    backend: Literal["builtin", "classifier"] = "builtin"
    """``builtin``: a logistic head on the shipped MiniLM embeddings of each piece scored;
    ``classifier``: a Hugging Face sequence classifier from ``model_path``."""
    positive_label: str | None = None
    """``classifier``: name of the attack class in ``id2label``; None: the last class."""
    scan_context: bool = True
    """Also score the event's ``context`` (retrieved documents, tool output), chunk by chunk:
    instructions hidden there (indirect injection) reach the model as surely as the prompt.
    The result's score is the highest piece's; its span says where that piece is."""
    chunk_chars: int = Field(256, ge=0, le=10_000)
    """Consecutive sentences of one context passage merge into one scored chunk while it stays
    within this many characters (0: every sentence and line alone); must match what the head was
    fitted on."""
    embed_chunks: int = Field(8, ge=1, le=10_000)
    """Context chunks per event that are embedded and fully scored: the ones whose words alone
    (the head's word part, the higher of its context and prompt weights, no embedding) look most
    like an attack. Bounds the embedding cost of long contexts; a head without a word part
    embeds every chunk."""
    max_chunks: int = Field(64, ge=1, le=10_000)
    """Context chunks scanned per event, half from the start and half from the end (bounds the
    cost of long contexts; the result counts the chunks left out in ``chunks_skipped``)."""


def context_pieces(passages: Sequence[str], chunk_chars: int, max_chunks: int) -> tuple[list[tuple[int, int]], int]:
    """The chunks of the context to score, as offsets into its passages joined by newlines, and
    how many were left out. A chunk never spans two passages. At most ``max_chunks``, half from
    the start and half from the end (instructions are hidden at either end as often as inside),
    every one when they fit."""
    every: list[tuple[int, int]] = []
    offset = 0
    for passage in passages:
        every.extend((offset + s, offset + e) for s, e in chunks(passage, chunk_chars, max_chunks=10**9))
        offset += len(passage) + 1
    if len(every) <= max_chunks:
        return every, 0
    head = (max_chunks + 1) // 2
    return every[:head] + every[len(every) - (max_chunks - head):], len(every) - max_chunks


class BuiltinHead:
    """The shipped head (``data/heads/prompt_injection.json``): word n-grams and the shared MiniLM
    embeddings, logistic, with weights of its own for context chunks (an instruction a user may
    give in a prompt is an injection inside a retrieved document); a chunk scores the higher of
    its context and its prompt weights, and their word parts shortlist which chunks get embedded."""

    def __init__(self, config: PromptInjectionConfig, encoder, name: str):
        self.config = config
        self.head = load_head("prompt_injection")
        self.context_head = self.head.domain("context") if self.head.domains else self.head
        self.encoder = encoder_for(self.head, encoder, name)
        self.version = f"builtin-head-{self.head.version}"

    def probabilities(self, texts: list[str], ctx: BatchContext, prompts: bool, words=None) -> list[float]:
        if prompts and ctx.has_encoder:
            embedded = ctx.embeddings("prompt")
        else:
            embedded = ctx.texts(texts) if ctx.has_encoder else self.encoder.encode(texts)
        if prompts or self.context_head is self.head:
            return [float(x) for x in self.head.predict_proba(embedded, texts if self.head.text else None)]
        # What is an attack as a prompt is one anywhere (a jailbreak pasted into a page: each of
        # its chunks is also scored with the prompt weights); the context weights add what is an
        # attack only inside a document.
        if words is None and self.head.text:
            words = self.head.words(texts)
        p = require("numpy").maximum(self.head.predict_proba(embedded, texts, words),
                                     self.context_head.predict_proba(embedded, texts, words))
        return [float(x) for x in p]

    def shortlist(self, pieces: list[tuple[int, int, int]], texts: list[str]
                  ) -> tuple[list[tuple[int, int, int]], list[str], object]:
        """Per event, the ``embed_chunks`` context chunks whose words look most like an attack,
        with their TF-IDF rows when they were computed to choose them (None otherwise), so that
        scoring them does not compute them again."""
        k = self.config.embed_chunks
        if not self.head.text or len(texts) <= k:
            return pieces, texts, None
        words = self.head.words(texts)
        logits = self.head.word_logits(texts, words)
        if self.context_head is not self.head:
            # Each with its own intercept: the two are compared, as their probabilities will be.
            logits = require("numpy").maximum(logits + self.head.intercept,
                                              self.context_head.word_logits(texts, words) + self.context_head.intercept)
        by_event: dict[int, list[int]] = {}
        for n, (i, _, _) in enumerate(pieces):
            by_event.setdefault(i, []).append(n)
        keep = sorted(n for ns in by_event.values() for n in sorted(ns, key=lambda n: -logits[n])[:k])
        return [pieces[n] for n in keep], [texts[n] for n in keep], words[keep]


class ClassifierBackend:
    """A sequence classifier from a local path (for example ProtectAI's DeBERTa v2 injection model)."""

    def __init__(self, config: PromptInjectionConfig, encoder, name: str):
        self.classifier, path = SequenceClassifier.from_config(config, "the classifier backend", name)
        self.positive = self.classifier.label_index(config.positive_label)
        self.version = f"classifier-{path.name}"

    def probabilities(self, texts: list[str], ctx: BatchContext, prompts: bool, words=None) -> list[float]:
        return [float(p) for p in self.classifier.predict(texts)[:, self.positive]]

    def shortlist(self, pieces, texts):
        return pieces, texts, None  # every chunk is classified


BACKENDS = {"builtin": BuiltinHead, "classifier": ClassifierBackend}
"""``backend`` setting -> class: ``(config, encoder, name)``, a ``version``,
``probabilities(texts, ctx, prompts, words=None)`` and ``shortlist(pieces, texts) -> (pieces,
texts, words)`` (``words``: whatever the shortlist computed that scoring can reuse, or None)."""


@register("prompt_injection", config=PromptInjectionConfig, reads_context=True)
class PromptInjectionDetector(BaseDetector):
    name = "prompt_injection"
    config_class = PromptInjectionConfig
    config: PromptInjectionConfig

    def __init__(self, config: PromptInjectionConfig | None = None, encoder=None):
        super().__init__(config)
        self.backend = BACKENDS[self.config.backend](self.config, encoder, self.name)
        self.version = self.backend.version

    def _probabilities(self, texts: list[str], ctx: BatchContext, prompts: bool, words=None) -> list[float]:
        return self.backend.probabilities(texts, ctx, prompts, words) if texts else []

    def _chunks(self, events: Sequence[InferenceEvent], ctx: BatchContext
                ) -> tuple[list[tuple[int, int, int]], list[str], object, Counter, dict[int, int]]:
        """The context chunks to score, once per batch: (event, start, end) into the joined
        context, their texts and what the backend's shortlist computed of them (its ``words``),
        after the shortlist; chunks scanned and left out per event."""
        def work() -> tuple[list[tuple[int, int, int]], list[str], object, Counter, dict[int, int]]:
            c = self.config
            pieces: list[tuple[int, int, int]] = []
            texts: list[str] = []
            skipped: dict[int, int] = {}
            if c.scan_context:
                for i, event in enumerate(events):
                    if not event.context:
                        continue
                    joined = join_context(event.context)
                    spans, skipped[i] = context_pieces(event.context, c.chunk_chars, c.max_chunks)
                    for s, e in spans:
                        pieces.append((i, s, e))
                        texts.append(joined[s:e])
            scanned = Counter(i for i, _, _ in pieces)
            return *self.backend.shortlist(pieces, texts), scanned, skipped

        return ctx.memo(("prompt_injection", tuple(id(e) for e in events)), work)

    def texts_to_embed(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[str]:
        if not isinstance(self.backend, BuiltinHead) or not ctx.has_encoder:
            return []
        return [e.prompt for e in events] + self._chunks(events, ctx)[1]

    def score_batch(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[DetectionResult]:
        c = self.config
        prompt_p = self._probabilities([e.prompt for e in events], ctx, prompts=True)
        pieces, texts, words, scanned, skipped = self._chunks(events, ctx)
        context_p = self._probabilities(texts, ctx, prompts=False, words=words)
        best: dict[int, tuple[float, int, int]] = {}
        for (i, s, e), p in zip(pieces, context_p, strict=True):
            if i not in best or p > best[i][0]:
                best[i] = (p, s, e)
        results = []
        for i, event in enumerate(events):
            scores = {"prompt_score": prompt_p[i]}
            score, span = prompt_p[i], Span(field="prompt", start=0, end=len(event.prompt), type="injection",
                                            score=round(prompt_p[i], 4))
            where = "the prompt"
            if i in best:
                p, s, e = best[i]
                scores["context_score"] = p
                scores["chunks_scanned"] = float(scanned[i])
                scores["chunks_skipped"] = float(skipped.get(i, 0))
                if p > score:
                    score, where = p, "the context (retrieved text)"
                    span = Span(field="context", start=s, end=e, type="injection", score=round(p, 4))
            flagged = score >= c.threshold
            results.append(make_result(
                self, event, score=score, label=flagged, scores=scores, spans=[span] if flagged else [],
                evidence=f"instructions that look like an injection or jailbreak in {where}" if flagged else None))
        return results

