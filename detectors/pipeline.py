"""Runs every enabled detector over a batch of events: the score agent's unit of work.

Per batch: every text any detector will embed (prompts, responses, context sentences and
chunks) is encoded once, in one call grouped by length (shared by the detectors, and the prompt
and response embeddings sent on for storage and drift); each detector runs batched, and, when
redaction is on, the events are redacted with what the PII detector found. Kept free of Kafka
so the benchmarks can time the same work alone.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from driftwarden.core.detector_configs import uses_encoder
from driftwarden.core.errors import DetectorError
from driftwarden.core.schemas import DetectionResult, EmbeddingRecord, InferenceEvent, make_error
from driftwarden.core.settings import Settings
from driftwarden.detectors.base import BaseDetector, BatchContext, sampled
from driftwarden.detectors.registry import build_enabled, config_of, enabled_names

log = logging.getLogger(__name__)

EMBEDDED_FIELDS = ("prompt", "response")


@dataclass
class BatchOutput:
    results: list[DetectionResult] = field(default_factory=list)
    """One result per event and detector, except for the events a detector did not sample."""
    events: list[InferenceEvent] = field(default_factory=list)
    """The events as they are to be stored (redacted when asked)."""
    embeddings: list[EmbeddingRecord] = field(default_factory=list)
    """Prompt and response embeddings, when they are stored."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds each detector took on the batch; the embeddings of every text the batch needs,
    encoded in one call before them, under ``embeddings``; redaction under ``redaction``."""


class ScoringPipeline:
    def __init__(self, detectors: Sequence[BaseDetector], encoder=None, *, redact: bool = False,
                 store_embeddings: bool = False):
        self.detectors = list(detectors)
        self.encoder = encoder
        self.redact = redact
        self.store_embeddings = store_embeddings and encoder is not None
        self._encoding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        """Runs each batch's encoding beside the detectors that need no embeddings."""
        if redact and not any(d.name == "pii" for d in self.detectors):
            raise DetectorError("pii", "DRIFTWARDEN_REDACT_PII is true but the PII detector is disabled; "
                                       "enable it (DRIFTWARDEN_DETECTORS__PII__ENABLED=true) or turn redaction off")
        if redact and next(d for d in self.detectors if d.name == "pii").config.sample_rate < 1.0:
            raise DetectorError("pii", "DRIFTWARDEN_REDACT_PII is true, so every event must be scanned for PII "
                                       "before it is stored; set DRIFTWARDEN_DETECTORS__PII__SAMPLE_RATE=1 or turn "
                                       "redaction off")

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoringPipeline:
        needs_encoder = settings.detectors.embeddings.enabled or any(
            uses_encoder(config_of(n, settings)) for n in enabled_names(settings)
        )
        encoder = None
        if needs_encoder:
            from driftwarden.detectors.embeddings import Encoder

            encoder = Encoder.from_settings(settings)
        detectors = build_enabled(settings, encoder)
        log.info("scoring with %s%s", ", ".join(f"{d.name} {d.version}" for d in detectors),
                 f"; embeddings {encoder.version} on {encoder.device}" if encoder else "")
        return cls(detectors, encoder, redact=settings.redact_pii,
                   store_embeddings=settings.detectors.embeddings.enabled and settings.detectors.embeddings.store)

    def run(self, events: Sequence[InferenceEvent]) -> BatchOutput:
        """Results of every detector (a detector that fails whole marks errors, no raise)."""
        out = BatchOutput(events=list(events))
        if not events:
            return out
        ctx = BatchContext(events, self.encoder.encode if self.encoder is not None else None)
        samples = {d.name: self._sample(d, events, ctx) for d in self.detectors}  # once per batch
        encoding = self._start_encoding(samples, events, ctx, out) if self.encoder is not None else None
        by_detector: dict[str, list[DetectionResult | None]] = {}
        results: dict[str, list[DetectionResult]] = {}
        # Detectors that read no embeddings (PII, operational) and redaction run while the batch is
        # encoded on the other threads (the encoder releases the GIL); the rest once it is done.
        for detector in sorted(self.detectors, key=lambda d: d.reads_embeddings):
            if encoding is not None and detector.reads_embeddings:
                encoding.result()
                encoding = None
            results[detector.name], by_detector[detector.name] = self._detect(detector, *samples[detector.name],
                                                                              events, out)
            if self.redact and detector.name == "pii":
                self._redact(detector, events, by_detector["pii"], out)
        if encoding is not None:
            encoding.result()
        for detector in self.detectors:  # in the configured order
            out.results.extend(results[detector.name])
        if self.store_embeddings:
            now = datetime.now(UTC)
            described = descriptors(events, by_detector)
            for name in EMBEDDED_FIELDS:
                matrix = ctx.embeddings(name)
                for event, vector, desc in zip(events, matrix, described, strict=True):
                    if name == "response" and not event.response:
                        continue
                    out.embeddings.append(EmbeddingRecord(
                        event_id=event.event_id, field=name, app=event.app, model_version=event.model_version,
                        event_ts=event.timestamp, encoder=self.encoder.version, computed_at=now,
                        vector=vector.tolist(), descriptors=desc if name == "prompt" else {},
                    ))
        return out

    def _detect(self, detector: BaseDetector, mine: list[InferenceEvent], sub: BatchContext,
                events: Sequence[InferenceEvent], out: BatchOutput
                ) -> tuple[list[DetectionResult], list[DetectionResult | None]]:
        """``detector``'s results on the events it samples (``mine``, in ``sub``), and the same
        spread one per event of the batch."""
        started = time.perf_counter()
        try:
            results = detector.detect(mine, sub) if mine else []
            if len(results) != len(mine):
                raise DetectorError(detector.name, f"returned {len(results)} results for {len(mine)} events")
        except Exception as exc:  # noqa: BLE001 - the stream goes on
            log.exception("detector %s failed on a whole batch; its results are marked as errors", detector.name)
            results = [make_error(detector, e, exc) for e in mine]
        out.seconds[detector.name] = time.perf_counter() - started
        return results, _spread(results, mine, events)

    @staticmethod
    def _redact(pii: Any, events: Sequence[InferenceEvent], found: list[DetectionResult | None],
                out: BatchOutput) -> None:
        started = time.perf_counter()
        spent_by = time.monotonic() + pii.config.batch_budget_ms / 1000  # redaction's own batch budget
        out.events = [pii.redact(e, r, spent_by) for e, r in zip(events, found, strict=True)]
        out.seconds["redaction"] = time.perf_counter() - started

    def _sample(self, detector: BaseDetector, events: Sequence[InferenceEvent], ctx: BatchContext
                ) -> tuple[list[InferenceEvent], BatchContext]:
        """The events ``detector`` scores (its ``sample_rate`` share, by event id) and their context."""
        rate = detector.config.sample_rate
        if rate >= 1.0:
            return list(events), ctx
        keep = [i for i, e in enumerate(events) if sampled(e.event_id, rate)]
        return [events[i] for i in keep], ctx.subset(keep)

    def _start_encoding(self, samples: dict[str, tuple[list[InferenceEvent], BatchContext]],
                        events: Sequence[InferenceEvent], ctx: BatchContext, out: BatchOutput) -> Future:
        """Encode every text the batch needs, in one call on the encoding thread: the stored
        prompt and response embeddings and what each detector says it will embed. If that call
        fails, each detector encodes what it asks for when it scores, with its own error
        isolation (and the stored embeddings are computed again; if they fail too, the batch
        fails and the score agent takes its events one by one)."""
        wanted: list[str] = []
        if self.store_embeddings:
            wanted += [e.prompt for e in events] + [e.response for e in events]
        for detector in self.detectors:
            try:
                mine, sub = samples[detector.name]
                wanted += detector.texts_to_embed(mine, sub) if mine else []
            except Exception:  # noqa: BLE001 - the detector asks again when it scores
                log.warning("detector %s could not say which texts it will embed; they are encoded when it "
                            "scores", detector.name, exc_info=True)

        def encode() -> None:
            started = time.perf_counter()
            try:
                ctx.prefetch(wanted)
            except Exception:  # noqa: BLE001 - detectors encode on demand and isolate the bad event
                log.warning("encoding the batch's %d texts in one call failed; each detector now encodes its own "
                            "texts when it scores and marks the event that fails", len(wanted), exc_info=True)
            out.seconds["embeddings"] = time.perf_counter() - started

        return self._encoding.submit(encode)


def _spread(results: list[DetectionResult], scored: list[InferenceEvent], events: Sequence[InferenceEvent]
            ) -> list[DetectionResult | None]:
    """One entry per event of the batch: its result, or None where the detector did not sample it."""
    if len(scored) == len(events):
        return list(results)
    by_id = {id(e): r for e, r in zip(scored, results, strict=True)}
    return [by_id.get(id(e)) for e in events]


def descriptors(events: Sequence[InferenceEvent], by_detector: dict[str, list[DetectionResult | None]]
                ) -> list[dict[str, float]]:
    """Scalar descriptors per event: lengths, latency, tokens, and each detector's score."""
    out = []
    for i, event in enumerate(events):
        desc = {"prompt_chars": len(event.prompt), "response_chars": len(event.response),
                "latency_ms": event.latency_ms, "tokens_in": event.tokens_in, "tokens_out": event.tokens_out}
        for name, results in by_detector.items():
            result = results[i]
            if name != "operational" and result is not None and result.score is not None:
                desc[f"{name}_score"] = result.score
        out.append({k: f for k, v in desc.items() if math.isfinite(f := _as_float(v))})
    return out


def _as_float(value: float | int) -> float:
    """``value`` as a float; NaN when it has none (an integer beyond a float's range)."""
    try:
        return float(value)
    except (OverflowError, TypeError, ValueError):
        return math.nan
