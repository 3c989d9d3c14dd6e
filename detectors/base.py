"""The Detector protocol, its typed config, and the base class every detector derives from.

A detector takes a batch of events and returns exactly one :class:`DetectionResult` per event,
in order. A failure on one event becomes an error result for that event; the batch goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from driftwarden.core.schemas import DetectionResult, InferenceEvent, make_error

log = logging.getLogger(__name__)


class DetectorConfig(BaseModel):
    """Settings every detector has. Subclasses add their own fields, each with a docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    """Run this detector in the score agent."""
    threshold: float = 0.5
    """Scores at or above this are labelled (flagged)."""
    batch_size: int = Field(64, ge=1)
    """Most events handed to the model at once."""

    def fingerprint(self) -> str:
        """Short, stable hash of this configuration, stored with every result."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@runtime_checkable
class Detector(Protocol):
    name: str
    version: str
    config: DetectorConfig

    def detect(self, events: Sequence[InferenceEvent]) -> list[DetectionResult]: ...


class BaseDetector:
    """Shared plumbing: batching by ``config.batch_size`` and per-event error isolation.

    Subclasses implement :meth:`score_batch` (the model call, batched) and may override
    :meth:`score_one` used to isolate a failing event when a whole batch fails.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig

    def __init__(self, config: DetectorConfig | None = None):
        self.config = config or self.config_class()

    def score_batch(self, events: Sequence[InferenceEvent]) -> list[DetectionResult]:
        raise NotImplementedError

    def detect(self, events: Sequence[InferenceEvent]) -> list[DetectionResult]:
        out: list[DetectionResult] = []
        size = self.config.batch_size
        for start in range(0, len(events), size):
            chunk = events[start : start + size]
            try:
                results = self.score_batch(chunk)
                if len(results) != len(chunk):
                    raise RuntimeError(f"returned {len(results)} results for {len(chunk)} events")
                out.extend(results)
            except Exception:
                log.warning(
                    "detector %s failed on a batch of %d; scoring them one by one to isolate the bad event",
                    self.name, len(chunk), exc_info=True,
                )
                out.extend(self._one_by_one(chunk))
        return out

    def _one_by_one(self, events: Sequence[InferenceEvent]) -> list[DetectionResult]:
        out = []
        for event in events:
            try:
                (result,) = self.score_batch([event])
            except Exception as exc:  # noqa: BLE001 - recorded on the result
                result = make_error(self, event, exc)
            out.append(result)
        return out
