"""The Detector protocol, the batch context detectors share, and the base class they derive from.

A detector takes a batch of events and returns exactly one :class:`DetectionResult` per event,
in order. A failure on one event becomes an error result for that event; the batch goes on.
Embeddings are computed once per batch by the :class:`BatchContext` and shared by every
detector that needs them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from driftwarden.core.detector_configs import DetectorConfig
from driftwarden.core.errors import DetectorError, DetectorTimeoutError
from driftwarden.core.schemas import DetectionResult, InferenceEvent, make_error
from driftwarden.detectors.loading import require

log = logging.getLogger(__name__)

__all__ = ["BaseDetector", "BatchContext", "Detector", "DetectorConfig", "sampled"]


class BatchContext:
    """What the detectors of one batch share: the events and their embeddings, computed once."""

    def __init__(self, events: Sequence[InferenceEvent], encode: Callable[[list[str]], Any] | None = None):
        self.events = list(events)
        self._encode = encode
        self._cache: dict[str, Any] = {}
        self._texts: dict[str, Any] = {}
        self._memo: dict[Any, Any] = {}

    @property
    def has_encoder(self) -> bool:
        return self._encode is not None

    def embeddings(self, field: str) -> Any:
        """Unit-norm embeddings (numpy, one row per event) of ``prompt`` or ``response``."""
        if field not in self._cache:
            self._cache[field] = self.texts([getattr(e, field) for e in self.events])
        return self._cache[field]

    def prefetch(self, texts: Sequence[str]) -> None:
        """Encode every one of ``texts`` not encoded yet, in one call (the encoder groups them by
        length, so one call over all a batch needs pads far less than one call per detector)."""
        if self._encode is None:
            raise DetectorError("embeddings", "no embedding encoder is configured for this batch")
        todo = list(dict.fromkeys(t for t in texts if t not in self._texts))
        if todo:
            self._texts.update(zip(todo, self._encode(todo), strict=True))

    def texts(self, texts: Sequence[str]) -> Any:
        """Unit-norm embeddings of any ``texts`` (prompts, context sentences, chunks), each text
        encoded once per batch whichever detector asks first."""
        np = require("numpy")
        self.prefetch(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._texts[t] for t in texts])

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per batch for ``key`` (shared with the batch's subsets): what a
        detector works out to say which texts it will embed, kept for when it scores."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def subset(self, indices: Sequence[int]) -> BatchContext:
        """The context of some of the events (embeddings already computed are sliced, not redone)."""
        sub = BatchContext([self.events[i] for i in indices], self._encode)
        sub._texts = self._texts
        sub._memo = self._memo
        for field, matrix in self._cache.items():
            sub._cache[field] = matrix[list(indices)]
        return sub


def sampled(event_id: str, rate: float) -> bool:
    """Whether ``event_id`` falls in a ``rate`` share of ids (stable across processes and replays)."""
    if rate >= 1.0:
        return True
    digest = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")
    return digest / 2**64 < rate


@runtime_checkable
class Detector(Protocol):
    name: str
    version: str
    config: DetectorConfig

    def detect(self, events: Sequence[InferenceEvent], ctx: BatchContext | None = None) -> list[DetectionResult]: ...


class BaseDetector:
    """Shared plumbing: batching by ``config.batch_size`` and per-event error isolation.

    Subclasses implement :meth:`score_batch` (the model call, batched). When a whole batch
    fails, its events are scored one by one so that only the bad one is marked as an error.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig
    reads_embeddings: ClassVar[bool] = True
    """False for a detector that never asks the batch context for embeddings: the pipeline runs
    it while the batch's texts are being encoded."""

    def __init__(self, config: DetectorConfig | None = None, encoder=None):
        """``encoder``: the shared embedding encoder, for detectors that read it (others ignore it)."""
        self.config = config or self.config_class()

    def score_batch(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[DetectionResult]:
        raise NotImplementedError

    def texts_to_embed(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[str]:
        """The texts this detector will ask ``ctx`` to embed when it scores ``events``, so that the
        pipeline encodes every detector's texts in one call. Default: none (a detector that does
        not say still gets its embeddings, encoded when it asks)."""
        return []

    def deadline(self) -> float:
        """When work on one event must stop (``time.monotonic()`` units): now plus the budget."""
        return time.monotonic() + self.config.budget_ms / 1000

    def check_deadline(self, deadline: float, detail: str) -> None:
        """Raise :class:`DetectorTimeoutError` when ``deadline`` has passed."""
        if time.monotonic() > deadline:
            raise DetectorTimeoutError(self.name, self.config.budget_ms, detail)

    def detect(self, events: Sequence[InferenceEvent], ctx: BatchContext | None = None) -> list[DetectionResult]:
        ctx = ctx if ctx is not None else BatchContext(events)
        out: list[DetectionResult] = []
        size = self.config.batch_size
        started = time.monotonic()
        for start in range(0, len(events), size):
            indices = list(range(start, min(start + size, len(events))))
            chunk = [events[i] for i in indices]
            spent_ms = (time.monotonic() - started) * 1000
            if spent_ms > self.config.batch_budget_ms:
                left = len(events) - start
                log.warning("detector %s spent its batch budget of %g ms; %d event(s) of the batch get an "
                            "over-budget error result instead of a score (raise DETECTORS__%s__BATCH_BUDGET_MS "
                            "if this happens on ordinary traffic)", self.name, self.config.batch_budget_ms, left,
                            self.name.upper())
                exc = DetectorTimeoutError(self.name, self.config.batch_budget_ms,
                                           f"batch budget spent after {start} of {len(events)} events")
                out.extend(make_error(self, events[i], exc) for i in range(start, len(events)))
                break
            try:
                results = self.score_batch(chunk, ctx.subset(indices) if len(indices) != len(events) else ctx)
                if len(results) != len(chunk):
                    raise RuntimeError(f"returned {len(results)} results for {len(chunk)} events")
                out.extend(results)
            except Exception:
                log.warning(
                    "detector %s failed on a batch of %d; scoring them one by one to isolate the bad event",
                    self.name, len(chunk), exc_info=True,
                )
                out.extend(self._one_by_one(indices, ctx))
        return out

    def _one_by_one(self, indices: Sequence[int], ctx: BatchContext) -> list[DetectionResult]:
        out = []
        for i in indices:
            event = ctx.events[i]
            try:
                (result,) = self.score_batch([event], ctx.subset([i]))
            except Exception as exc:  # noqa: BLE001 - recorded on the result
                result = make_error(self, event, exc)
            out.append(result)
        return out
