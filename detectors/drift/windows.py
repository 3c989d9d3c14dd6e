"""Drift windows per segment ``(app, model_version, field)``: pure logic, no Kafka.

Each segment fills a current window from embedding records; the window closes at
``window_size`` events or after ``window_minutes``, whichever comes first, and is then tested
against the segment's reference: the first ``baseline_size`` events of the model version
(``baseline``) or the window before (``previous``). State lives in memory: after a restart of
the process the windows refill from new events (stored events and embeddings are not
affected, and a restarted baseline is the next ``baseline_size`` events of the version).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from driftwarden.core.detector_configs import DriftConfig
from driftwarden.core.schemas import DriftResult, EmbeddingRecord
from driftwarden.detectors.drift.mmd import mmd_permutation_test
from driftwarden.detectors.drift.univariate import descriptor_drift

log = logging.getLogger(__name__)

VERSION = "mmd-windows-1.0"


@dataclass
class Window:
    ids: list[str] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    descriptors: list[dict[str, float]] = field(default_factory=list)
    opened_at: float | None = None

    def add(self, record: EmbeddingRecord, now: float) -> None:
        if self.opened_at is None:
            self.opened_at = now
        self.ids.append(record.event_id)
        self.vectors.append(record.vector)
        self.times.append(record.event_ts)
        if record.descriptors:
            self.descriptors.append(record.descriptors)

    def matrix(self) -> np.ndarray:
        return np.asarray(self.vectors, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Segment:
    app: str
    model_version: str
    field: str
    encoder: str
    reference: Window | None = None
    reference_id: str = ""
    current: Window = field(default_factory=Window)
    sequence: int = 0
    seen: set[str] = field(default_factory=set)

    @property
    def key(self) -> str:
        return f"{self.app}/{self.model_version}/{self.field}"


@dataclass(frozen=True)
class ClosedWindow:
    segment: Segment
    reference: Window
    reference_id: str
    current: Window
    window_id: str


#: ``(app, model_version, field, encoder, limit, start, end) -> [(event_id, vector, event_ts)]``:
#: stored embeddings, oldest first (the drift agent reads them from the ``embeddings`` table).
ReferenceLoader = Callable[[str, str, str, str, int, "datetime | None", "datetime | None"],
                           list[tuple[str, list[float], datetime]]]


class DriftWindows:
    """Feeds records in, hands closed windows out; :meth:`test` turns one into a DriftResult."""

    def __init__(self, config: DriftConfig, clock: Callable[[], float] = time.monotonic,
                 load_reference: ReferenceLoader | None = None):
        self.config = config
        self.clock = clock
        self.load_reference = load_reference
        self.segments: dict[str, Segment] = {}

    def _stored_reference(self, seg: Segment) -> None:
        """A pinned reference, or (after a restart) the version's stored baseline, when there is one."""
        c = self.config
        if self.load_reference is None or c.reference == "previous":
            if c.reference == "pinned":
                log.warning("drift reference for %s is pinned but no store is readable here; using a baseline "
                            "of the segment's first %d events instead", seg.key, c.baseline_size)
            return
        pinned = c.reference == "pinned"
        version = c.pinned_model_version if pinned else seg.model_version
        try:
            rows = self.load_reference(seg.app, version or seg.model_version, seg.field, seg.encoder,
                                       c.baseline_size, c.pinned_start if pinned else None,
                                       c.pinned_end if pinned else None)
        except Exception:  # noqa: BLE001 - the stream goes on with an in-stream baseline
            log.warning("could not read the drift reference of %s from the store; using an in-stream baseline",
                        seg.key, exc_info=True)
            return
        enough = len(rows) >= (c.min_window if pinned else c.baseline_size)
        if not enough:
            if pinned:
                log.warning("pinned drift reference %s/%s/%s has %d stored events (< %d); using an in-stream "
                            "baseline for %s", seg.app, version, seg.field, len(rows), c.min_window, seg.key)
            return
        window = Window(opened_at=self.clock())
        for event_id, vector, ts in rows:
            window.ids.append(event_id)
            window.vectors.append(vector)
            window.times.append(ts)
        label = f"{seg.app}/{version}/{seg.field}/{'pinned' if pinned else 'baseline'}"
        seg.reference, seg.reference_id = window, f"{label}:{rows[0][0]}..{rows[-1][0]} ({len(rows)} stored)"
        if not pinned:
            seg.seen = set(window.ids)
        log.info("drift reference for %s read from the store: %s", seg.key, seg.reference_id)

    def add(self, record: EmbeddingRecord) -> list[ClosedWindow]:
        if record.field not in self.config.fields:
            return []
        key = f"{record.app}/{record.model_version}/{record.field}"
        seg = self.segments.get(key)
        if seg is None or seg.encoder != record.encoder:
            if seg is not None:
                log.warning("segment %s changed encoder %s -> %s; its drift windows start again with a new "
                            "reference", key, seg.encoder, record.encoder)
            seg = Segment(record.app, record.model_version, record.field, record.encoder)
            self.segments[key] = seg
            self._stored_reference(seg)
        if record.event_id in seg.seen:  # a redelivered record
            return []
        seg.seen.add(record.event_id)
        now = self.clock()
        if seg.reference is None:
            seg.current.add(record, now)
            if len(seg.current) >= self.config.baseline_size:
                self._promote(seg, f"{key}/baseline:{seg.current.ids[0]}..{seg.current.ids[-1]}")
            return []
        seg.current.add(record, now)
        if len(seg.current) >= self.config.window_size:
            return [self._close(seg)]
        return []

    def due(self) -> list[ClosedWindow]:
        """Windows open longer than ``window_minutes`` with at least ``min_window`` events."""
        now = self.clock()
        out = []
        for seg in self.segments.values():
            w = seg.current
            if w.opened_at is None or now - w.opened_at < self.config.window_minutes * 60:
                continue
            if seg.reference is None:
                if len(w) >= self.config.min_window:  # a short baseline rather than none
                    self._promote(seg, f"{seg.key}/baseline:{w.ids[0]}..{w.ids[-1]}")
                continue
            if len(w) >= self.config.min_window:
                out.append(self._close(seg))
        return out

    def _promote(self, seg: Segment, reference_id: str) -> None:
        seg.reference, seg.reference_id = seg.current, reference_id
        seg.current = Window()
        log.info("drift reference for %s: %d events (%s)", seg.key, len(seg.reference), reference_id)

    def _close(self, seg: Segment) -> ClosedWindow:
        seg.sequence += 1
        closed = ClosedWindow(seg, seg.reference, seg.reference_id, seg.current, f"{seg.key}/{seg.sequence}")
        if self.config.reference == "previous":
            seg.reference, seg.reference_id = seg.current, closed.window_id
        seg.current = Window()
        seg.seen = set(closed.current.ids) | (set(seg.reference.ids) if seg.reference else set())
        return closed

    def test(self, closed: ClosedWindow, seed: int | None = None) -> DriftResult:
        c = self.config
        result = mmd_permutation_test(closed.reference.matrix(), closed.current.matrix(), permutations=c.permutations,
                                      seed=closed.segment.sequence if seed is None else seed, device=c.device)
        seg = closed.segment
        descriptor_p_values: dict[str, float] = {}
        if closed.reference.descriptors and closed.current.descriptors:
            try:
                descriptor_p_values = descriptor_drift(closed.reference.descriptors, closed.current.descriptors)
            except Exception:  # noqa: BLE001 - the embedding result still goes out
                log.warning("descriptor drift of %s failed; the window is reported without it", closed.window_id,
                            exc_info=True)
        return DriftResult(
            window_id=closed.window_id, app=seg.app, model_version=seg.model_version, field=seg.field,
            window_start=min(closed.current.times), window_end=max(closed.current.times),
            n_reference=result.n_reference, n_current=result.n_current, method=result.method,
            statistic=result.statistic, p_value=result.p_value, reference_policy=c.reference,
            reference_id=closed.reference_id, top_event_ids=[closed.current.ids[i] for i in result.witness_top],
            descriptor_p_values=descriptor_p_values,
            encoder=seg.encoder, detector_version=VERSION, config_fingerprint=c.fingerprint(),
            computed_at=datetime.now(UTC),
        )
