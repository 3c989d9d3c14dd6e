"""Runs every enabled detector over a batch of events: the score agent's unit of work.

Kept free of Kafka so the benchmark can time the same work alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from driftwarden.core.errors import DetectorError
from driftwarden.core.schemas import DetectionResult, InferenceEvent, make_error
from driftwarden.core.settings import Settings
from driftwarden.detectors.base import BaseDetector
from driftwarden.detectors.registry import build_enabled

log = logging.getLogger(__name__)


class ScoringPipeline:
    def __init__(self, detectors: Sequence[BaseDetector]):
        self.detectors = list(detectors)

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoringPipeline:
        detectors = build_enabled(settings)
        if settings.redact_pii and not any(d.name == "pii" for d in detectors):
            raise DetectorError(
                "pii", "DRIFTWARDEN_REDACT_PII is true but no PII detector is registered and enabled"
            )
        return cls(detectors)

    def run(self, events: Sequence[InferenceEvent]) -> list[DetectionResult]:
        """One result per event and detector. A detector that fails whole marks errors, no raise."""
        results: list[DetectionResult] = []
        for detector in self.detectors:
            try:
                results.extend(detector.detect(events))
            except Exception as exc:  # noqa: BLE001 - the stream goes on
                log.exception("detector %s failed on a whole batch; its results are marked as errors", detector.name)
                results.extend(make_error(detector, e, exc) for e in events)
        return results
