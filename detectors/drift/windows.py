"""Drift windows per segment ``(app, model_version, field)``: pure logic, no Kafka.

Each segment fills a current window from embedding records; the window closes at
``window_size`` events or after ``window_minutes``, whichever comes first, and is then tested
against the segment's reference: the first ``baseline_size`` events of the model version
(``baseline``) or the window before (``previous``). With a store, each segment's open window is
durable (:mod:`driftwarden.detectors.drift.checkpoint`): the agent writes it after every batch
and a restarted sink, or the sink its partition moved to, reads it back and closes the same
windows; without one, state lives in memory and the windows refill after a restart.

State is bounded: a segment not seen for ``idle_minutes`` is evicted (by :meth:`DriftWindows.due`,
which the agent's timer calls), and at ``max_segments`` live segments the least recently seen one
is evicted to make room (its window is tested when it can be, else dropped; a WARNING says so).
A segment that comes back starts again as after a restart: its reference is read back from the
store, and its window numbers continue after the last stored one, so no stored window is replaced.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import numpy as np

from driftwarden.core.detector_configs import DriftConfig
from driftwarden.core.schemas import DriftCluster, DriftResult, EmbeddingRecord
from driftwarden.detectors.drift.checkpoint import Member, Saved, SavedLoader, StateProbe, member_row
from driftwarden.detectors.drift.checkpoint import head as checkpoint_head
from driftwarden.detectors.drift.clusters import group
from driftwarden.detectors.drift.methods import run as run_test
from driftwarden.detectors.drift.univariate import descriptor_drift

log = logging.getLogger(__name__)

VERSION = "mmd-windows-1.0"

#: Characters an id part keeps as they are; any other is percent-encoded (UTF-8). ``*`` is the
#: field of detection windows (``rule:app:version:*``), in dedupe keys receivers already hold.
ID_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-*")
_ID_SAFE_RE = re.compile(r"[A-Za-z0-9._*-]*")


def id_part(value: str) -> str:
    """One part of a segment, window or dedupe id, percent-encoded outside ``[A-Za-z0-9._*-]``.

    Parts joined with ``/`` or ``:`` then never collide (``a/b`` + ``c`` is ``a%2Fb/c``, ``a`` +
    ``b/c`` is ``a/b%2Fc``), no id holds a newline or a quote, and ordinary names stay as they
    are, so ids already stored remain valid.
    """
    value = str(value)
    if _ID_SAFE_RE.fullmatch(value):
        return value
    return quote(value, safe="*").replace("~", "%7E")


def join_id(*parts: object, sep: str = "/") -> str:
    """Parts joined by ``sep``, each escaped with :func:`id_part`."""
    return sep.join(id_part(str(p)) for p in parts)


class Throttled:
    """Rate-limits one repeated WARNING: the first at once, then at most one per ``interval_s``,
    which says how many were held back since the one before."""

    def __init__(self, clock: Callable[[], float], interval_s: float = 60.0):
        self.clock = clock
        self.interval_s = interval_s
        self.last: float | None = None
        self.held_back = 0

    def warning(self, logger: logging.Logger, message: str, *args: object) -> None:
        now = self.clock()
        if self.last is not None and now - self.last < self.interval_s:
            self.held_back += 1
            return
        if self.held_back:
            message += f" ({self.held_back} more like it in the last {self.interval_s:.0f} s not logged)"
        logger.warning(message, *args)
        self.last, self.held_back = now, 0


TextLoader = Callable[[str, list[str]], dict[str, str]]
"""(field, event ids) -> {event id: the stored prompt or response}."""
EXAMPLE_CHARS = 200


def cut_example(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """One line of at most ``limit`` characters, cut at a space."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    head = flat[:limit].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    return head + " …"


@dataclass
class Window:
    ids: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    """float32 (a quarter of the memory of Python floats, and what the test computes in)."""
    times: list[datetime] = field(default_factory=list)
    descriptors: list[dict[str, float]] = field(default_factory=list)
    opened_at: float | None = None
    pending: set[str] = field(default_factory=set)
    """Members read back from a checkpoint whose vector the store did not hold yet: their record
    is delivered again (its offset was not committed) and :meth:`fill` puts the vector in place."""

    def add(self, record: EmbeddingRecord, now: float, vector: np.ndarray | None = None) -> None:
        if self.opened_at is None:
            self.opened_at = now
        self.ids.append(record.event_id)
        self.vectors.append(np.asarray(record.vector, dtype=np.float32) if vector is None else vector)
        self.times.append(record.event_ts)
        if record.descriptors:
            self.descriptors.append(record.descriptors)

    def restore(self, members, vectors: dict, now: float) -> None:
        """Members read back from the store, in their order (vectors by event id; missing ones pending)."""
        self.opened_at = now if members else None
        for m in members:
            self.ids.append(m.event_id)
            vector = vectors.get(m.event_id)
            self.vectors.append(None if vector is None else np.asarray(vector, dtype=np.float32))
            if vector is None:
                self.pending.add(m.event_id)
            self.times.append(m.event_ts)
            if m.descriptors:
                self.descriptors.append(m.descriptors)

    def fill(self, record: EmbeddingRecord, vector: np.ndarray) -> bool:
        """Put a pending member's vector in place; False when the record is not pending here."""
        if record.event_id not in self.pending:
            return False
        self.vectors[self.ids.index(record.event_id)] = vector
        self.pending.discard(record.event_id)
        return True

    def drop_pending(self) -> int:
        """Remove members whose vector never came (before a test); returns how many."""
        if not self.pending:
            return 0
        keep = [i for i, event_id in enumerate(self.ids) if event_id not in self.pending]
        dropped = len(self.ids) - len(keep)
        self.ids = [self.ids[i] for i in keep]
        self.vectors = [self.vectors[i] for i in keep]
        self.times = [self.times[i] for i in keep]
        self.pending = set()
        return dropped

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
    last_seen: float = 0.0
    dimension: int | None = None
    reference_ref: dict | None = None
    """Where the reference lives, for the checkpoint: ``{"window": n}``, the members of window ``n``
    of this segment (0: its baseline, collected in-stream or read from the store when first seen)."""
    position: tuple[int, int] | None = None
    """(partition, offset) of the last record taken: an older one is a redelivery."""
    unsaved: list = field(default_factory=list)
    """Members not yet written to the store (checkpoint.Member)."""
    epoch: int = 0
    """This life of the segment (a new one after an eviction or an encoder change): its members are
    stored under ``<key>#<epoch>``, so a reused window number never reads an older life's rows."""
    counter: int = 0
    """Position of the next member stored (increasing within the epoch)."""
    dirty: bool = False
    """Changed since the last checkpoint."""

    @property
    def key(self) -> str:
        """``app/model_version/field``, each part escaped (:func:`id_part`)."""
        return join_id(self.app, self.model_version, self.field)


@dataclass(frozen=True)
class StoredState:
    """What the store holds for a segment seen for the first time (see :meth:`DriftWindows.fetch_stored`)."""

    reference: Window | None = None
    reference_id: str = ""
    baseline: bool = False
    """The reference is the segment's own stored baseline (its events count as seen)."""
    last_sequence: int = 0
    """Number of the segment's last stored window: new windows continue after it."""
    saved: object = None
    """The segment's checkpoint (checkpoint.Saved), when it has one."""


NOTHING_STORED = StoredState()


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
#: ``(app, model_version, field) -> n``: the number of the segment's last stored window (0: none).
SequenceLoader = Callable[[str, str, str], int]


class DriftWindows:
    """Feeds records in, hands closed windows out; :meth:`test` turns one into a DriftResult.

    At most ``max_segments`` segments live at once, and a segment not seen for ``idle_minutes``
    is evicted. :attr:`live_segments`, :attr:`evicted_idle`, :attr:`evicted_cap`,
    :attr:`dropped_events` and :attr:`rejected_records` count what happened (:meth:`counters`).
    """

    def __init__(self, config: DriftConfig, clock: Callable[[], float] = time.monotonic,
                 load_reference: ReferenceLoader | None = None, *,
                 load_last_sequence: SequenceLoader | None = None,
                 load_texts: TextLoader | None = None,
                 load_saved: SavedLoader | None = None,
                 probe_stored: StateProbe | None = None,
                 idle_minutes: float = 1440.0, max_segments: int = 2_000):
        if max_segments < 1 or not idle_minutes > 0:
            raise ValueError("max_segments must be at least 1 and idle_minutes above 0")
        self.config = config
        self.clock = clock
        self.load_reference = load_reference
        self.load_last_sequence = load_last_sequence
        self.load_texts = load_texts
        self.load_saved = load_saved
        """Reads a segment's checkpoint (None: windows live in memory only)."""
        self.probe_stored = probe_stored
        """Tells in one call which of a batch's new segments the store holds anything for
        (:meth:`nothing_stored`); None: each new segment's state is read (:meth:`fetch_stored`)."""
        self.retired: dict[str, tuple[str, int]] = {}
        """Segments evicted since the last checkpoint: (app, window count) (their heads say so)."""
        self.pending_dropped = 0
        """Members read back from a checkpoint whose vector never came (dropped before the test)."""
        self.idle_seconds = idle_minutes * 60
        self.max_segments = max_segments
        #: Least recently seen first.
        self.segments: OrderedDict[str, Segment] = OrderedDict()
        self.evicted_idle = 0
        """Segments evicted after ``idle_minutes`` without an event."""
        self.evicted_cap = 0
        """Segments evicted because ``max_segments`` were live (each one is a hit of the cap)."""
        self.dropped_events = 0
        """Events of evicted segments' windows that were too few to test (their baseline included)."""
        self.rejected_records = 0
        """Records whose vector is empty, not finite, or of another dimension than the segment's."""
        self._cap_warning = Throttled(clock)
        self._reject_warning = Throttled(clock)

    @property
    def live_segments(self) -> int:
        return len(self.segments)

    def counters(self) -> dict[str, int]:
        """For a progress page: live segments, evictions (idle, cap), dropped events, rejected records."""
        return {"drift_segments_live": self.live_segments, "drift_segments_evicted_idle": self.evicted_idle,
                "drift_segments_evicted_cap": self.evicted_cap, "drift_events_dropped": self.dropped_events,
                "drift_records_rejected": self.rejected_records, "drift_members_without_vector": self.pending_dropped}

    def key_of(self, record: EmbeddingRecord) -> str | None:
        """The record's segment id, or None when its field is not watched."""
        if record.field not in self.config.fields:
            return None
        return join_id(record.app, record.model_version, record.field)

    def needs_store(self, record: EmbeddingRecord) -> bool:
        """True when :meth:`add` would read the store for this record (its segment is new, or its
        encoder changed): the agent reads it in a thread first, with :meth:`fetch_stored`."""
        if self.load_reference is None and self.load_last_sequence is None and self.load_saved is None:
            return False
        key = self.key_of(record)
        if key is None:
            return False
        seg = self.segments.get(key)
        return seg is None or seg.encoder != record.encoder

    def nothing_stored(self, records: list[EmbeddingRecord]) -> set[str]:
        """Keys of the segments of ``records`` that the store holds nothing for: no drift window, no
        checkpoint, and too few stored embeddings to be read as their reference. :meth:`fetch_stored`
        would find :data:`NOTHING_STORED` for them, so :meth:`add` may take that without reading
        (a burst of new segments costs one probe, not three queries each). Blocking; empty without
        a probe, with a pinned reference (read from another version), or when the probe fails."""
        c = self.config
        if self.probe_stored is None or c.reference == "pinned" or not records:
            return set()
        segments = {key: (r.app, r.model_version, r.field, r.encoder)
                    for r in records if (key := self.key_of(r)) is not None}
        # A baseline is read back once the store holds baseline_size of the segment's embeddings;
        # "previous" never reads one.
        min_embeddings = c.baseline_size if c.reference == "baseline" else None
        try:
            found = self.probe_stored(segments, min_embeddings)
        except Exception:  # noqa: BLE001 - each segment's state is read as before
            log.warning("could not ask the store which of %d new drift segment(s) it holds state for; each one's "
                        "state is read on its own instead (slower). If this repeats, check the store",
                        len(segments), exc_info=True)
            return set()
        return set(segments) - set(found)

    def fetch_stored(self, app: str, model_version: str, field: str, encoder: str) -> StoredState:
        """What the store holds for a new segment. Blocking (it queries the store) and free of
        side effects on the windows, so it may run in a thread."""
        last = 0
        if self.load_last_sequence is not None:
            try:
                last = max(0, int(self.load_last_sequence(app, model_version, field)))
            except Exception:  # noqa: BLE001 - numbering restarts; the stream goes on
                log.warning("could not read the last stored window number of %s from the store; its windows are "
                            "numbered from 1 and may replace stored ones of the same number; check the store",
                            join_id(app, model_version, field), exc_info=True)
        saved = None
        if self.load_saved is not None:
            try:
                saved = self.load_saved(join_id(app, model_version, field), field, encoder)
            except Exception:  # noqa: BLE001 - the segment starts again, as without a checkpoint
                log.warning("could not read the checkpoint of drift segment %s from the store; its open window "
                            "starts again. If this repeats, check the store", join_id(app, model_version, field),
                            exc_info=True)
        if saved is not None and not saved.head.get("evicted"):
            last = max(last, int(saved.head["sequence"]))
            ref = saved.head.get("reference")
            if ref is None or "window" in ref:  # the reference (if any) is among the saved members
                return StoredState(last_sequence=last, saved=saved)
        elif saved is not None:
            last = max(last, int(saved.head["sequence"]))
            saved = None
        reference = self._stored_reference(app, model_version, field, encoder)
        return StoredState(last_sequence=last, saved=saved) if reference is None else StoredState(
            reference=reference[0], reference_id=reference[1], baseline=reference[2], last_sequence=last,
            saved=saved)

    def _stored_reference(self, app: str, model_version: str, field: str,
                          encoder: str) -> tuple[Window, str, bool] | None:
        """A pinned reference, or (after a restart) the version's stored baseline, when there is one."""
        c = self.config
        key = join_id(app, model_version, field)
        if self.load_reference is None or c.reference == "previous":
            if c.reference == "pinned":
                log.warning("drift reference for %s is pinned but no store is readable here; using a baseline "
                            "of the segment's first %d events instead", key, c.baseline_size)
            return None
        pinned = c.reference == "pinned"
        version = (c.pinned_model_version if pinned else model_version) or model_version
        try:
            rows = self.load_reference(app, version, field, encoder, c.baseline_size,
                                       c.pinned_start if pinned else None, c.pinned_end if pinned else None)
        except Exception:  # noqa: BLE001 - the stream goes on with an in-stream baseline
            log.warning("could not read the drift reference of %s from the store; using an in-stream baseline",
                        key, exc_info=True)
            return None
        enough = len(rows) >= (c.min_window if pinned else c.baseline_size)
        if not enough:
            if pinned:
                log.warning("pinned drift reference %s has %d stored events (< %d); using an in-stream "
                            "baseline for %s", join_id(app, version, field), len(rows), c.min_window, key)
            return None
        window = Window(opened_at=self.clock())
        for event_id, vector, ts in rows:
            window.ids.append(event_id)
            window.vectors.append(np.asarray(vector, dtype=np.float32))
            window.times.append(ts)
        label = f"{join_id(app, version, field)}/{'pinned' if pinned else 'baseline'}"
        reference_id = f"{label}:{rows[0][0]}..{rows[-1][0]} ({len(rows)} stored)"
        log.info("drift reference for %s read from the store: %r", key, reference_id)
        return window, reference_id, not pinned

    def add(self, record: EmbeddingRecord, stored: StoredState | None = None,
            position: tuple[int, int] | None = None) -> list[ClosedWindow]:
        """One record in; the windows it closes out (a window of a segment evicted to make room
        for this one's included). ``stored``: what :meth:`fetch_stored` read for a new segment
        (read here, blocking, when it is not given). ``position``: the record's (partition,
        offset), which tells a redelivered record from a new one after a restart."""
        key = self.key_of(record)
        if key is None:
            return []
        vector = self._vector(record, key)
        if vector is None:
            return []
        out: list[ClosedWindow] = []
        now = self.clock()
        seg = self.segments.get(key)
        if seg is None or seg.encoder != record.encoder:
            sequence = 0
            if seg is not None:
                log.warning("segment %s changed encoder %r -> %r; its drift windows start again with a new "
                            "reference", key, seg.encoder, record.encoder)
                sequence = seg.sequence
                del self.segments[key]
            elif len(self.segments) >= self.max_segments:
                out += self._evict_least_recent(key)
            if stored is None:
                stored = self.fetch_stored(record.app, record.model_version, record.field, record.encoder)
            if key in self.retired:  # evicted since the state was read: it starts again, numbering on
                stored = dataclasses.replace(stored, saved=None,
                                             last_sequence=max(stored.last_sequence, self.retired[key][1]))
            seg = Segment(record.app, record.model_version, record.field, record.encoder,
                          sequence=max(sequence, stored.last_sequence))
            if stored.reference is not None:
                seg.reference, seg.reference_id = stored.reference, stored.reference_id
                if stored.baseline:
                    seg.seen = set(stored.reference.ids)
                if self.load_saved is not None:
                    # Its members go into the checkpoint as window 0: a restart reads back these
                    # events, not whatever the store's first events are by then.
                    seg.reference_ref = {"window": 0}
                    seg.unsaved += [Member(0, i, event_id, ts, {}) for i, (event_id, ts) in
                                    enumerate(zip(stored.reference.ids, stored.reference.times, strict=True))]
                    seg.counter = len(stored.reference.ids)
            seg.epoch = time.time_ns()
            if stored.saved is not None:
                self._resume(seg, stored.saved, now)
            self.segments[key] = seg
            seg.dirty = True
        else:
            self.segments.move_to_end(key)
        seg.last_seen = now
        if seg.dimension is None:
            seg.dimension = (len(seg.reference.vectors[0]) if seg.reference is not None and seg.reference.vectors
                             else vector.size)
        if vector.size != seg.dimension:
            self._reject(record, key, f"its vector has {vector.size} dimensions, the segment's {seg.dimension}")
            return out
        if seg.current.fill(record, vector) or (seg.reference is not None and seg.reference.fill(record, vector)):
            return out  # a member read back from the checkpoint gets its vector
        if position is not None and seg.position is not None and position[0] == seg.position[0] \
                and position[1] <= seg.position[1]:
            return out  # delivered again after a restart: taken before
        if record.event_id in seg.seen:  # a redelivered record
            return out
        seg.seen.add(record.event_id)
        seg.position = position if position is not None else seg.position
        seg.dirty = True
        self._remember(seg, record)
        if seg.reference is None:
            seg.current.add(record, now, vector)
            if len(seg.current) >= self.config.baseline_size:
                self._promote(seg, f"{key}/baseline:{seg.current.ids[0]}..{seg.current.ids[-1]}")
            return out
        seg.current.add(record, now, vector)
        if len(seg.current) >= self.config.window_size:
            out.append(self._close(seg))
        return out

    # --- the checkpoint ---------------------------------------------------------------------

    def _remember(self, seg: Segment, record: EmbeddingRecord) -> None:
        if self.load_saved is None:
            return
        window = 0 if seg.reference is None else seg.sequence + 1
        seg.unsaved.append(Member(window, seg.counter, record.event_id, record.event_ts,
                                  dict(record.descriptors or {})))
        seg.counter += 1

    def _resume(self, seg: Segment, saved: Saved, now: float) -> None:
        """Rebuild a segment from its checkpoint (its reference, open window, seen ids, position)."""
        h = saved.head
        seg.epoch = int(h["epoch"])
        seg.counter = int(h["counter"])
        seg.sequence = max(seg.sequence, int(h["sequence"]))
        seg.dimension = h.get("dimension")
        seg.position = tuple(h["position"]) if h.get("position") else None
        ref = h.get("reference")
        if ref is not None and "window" in ref:
            seg.reference = Window()
            seg.reference.restore(saved.reference, saved.vectors, now)
            seg.reference_id, seg.reference_ref = h.get("reference_id", ""), dict(ref)
        seg.current.restore(saved.current, saved.vectors, now)
        seg.seen |= {m.event_id for m in (*saved.current, *saved.closed, *saved.reference)}
        log.info("drift segment %s resumed from its checkpoint: window %d open with %d events (%d awaiting their "
                 "vector), reference %r", seg.key, seg.sequence + 1, len(seg.current), len(seg.current.pending),
                 seg.reference_id)

    def forget(self, partitions: set[int]) -> int:
        """Drop from memory the segments whose records come from ``partitions`` (revoked: another
        sink goes on with them from their checkpoint, which is written). Returns how many."""
        gone = [k for k, seg in self.segments.items() if seg.position is not None and seg.position[0] in partitions]
        for key in gone:
            del self.segments[key]
        return len(gone)

    def checkpoint(self) -> tuple[dict[str, tuple[str, str]], list[list]]:
        """What changed since the last call: ``({segment key: (app, head JSON)}, member rows)``, for
        the store (``save_segment_states``, ``insert_drift_members``), written before the batch's
        offsets are committed."""
        heads: dict[str, tuple[str, str]] = {}
        rows: list[list] = []
        for key, (app, sequence) in self.retired.items():
            heads[key] = (app, json.dumps({"evicted": True, "sequence": sequence}))
        self.retired = {}
        for key, seg in self.segments.items():
            if not seg.dirty:
                continue
            heads[key] = (seg.app, json.dumps(checkpoint_head(seg, seg.reference_ref, seg.position), default=str))
            rows += [member_row(f"{key}#{seg.epoch}", seg.app, m) for m in seg.unsaved]
            seg.unsaved, seg.dirty = [], False
        return heads, rows

    def forget_app(self, app: str) -> int:
        """Drop an app's segments from memory, checkpoint and all (its stored state was erased)."""
        gone = [k for k, seg in self.segments.items() if seg.app == app]
        for key in gone:
            del self.segments[key]
        self.retired = {k: v for k, v in self.retired.items() if v[0] != app}
        return len(gone)

    def _vector(self, record: EmbeddingRecord, key: str) -> np.ndarray | None:
        try:
            vector = np.asarray(record.vector, dtype=np.float32)
        except (TypeError, ValueError, OverflowError):
            vector = np.empty(0, dtype=np.float32)
        if vector.ndim != 1 or vector.size == 0 or not np.isfinite(vector).all():
            self._reject(record, key, "its vector is empty or holds values that are not finite numbers")
            return None
        return vector

    def _reject(self, record: EmbeddingRecord, key: str, why: str) -> None:
        self.rejected_records += 1
        self._reject_warning.warning(
            log, "drift windows skipped the %s embedding of event %r in segment %s: %s. The segment's windows go "
            "on without it; if this repeats, check the encoder of the score workers", record.field,
            record.event_id, key, why)

    def _evict_least_recent(self, incoming: str) -> list[ClosedWindow]:
        victim_key, victim = self.segments.popitem(last=False)
        self.evicted_cap += 1
        closed, fate = self._retire(victim)
        self._cap_warning.warning(
            log, "drift windows are at their cap of %d live segments: segment %s, the least recently seen, was "
            "evicted to make room for %s, and its open window %s. If it comes back, its windows start again (its "
            "reference is read back from the store). Raise DRIFTWARDEN_MAX_SEGMENTS if this many segments are real, "
            "or look for an app that publishes random app or model_version names (%d evicted for the cap so far)",
            self.max_segments, victim_key, incoming, fate, self.evicted_cap)
        return closed

    def _retire(self, seg: Segment) -> tuple[list[ClosedWindow], str]:
        """An evicted segment's open window: tested when it can be, else dropped (and counted). Its
        checkpoint says it was evicted: if it comes back it starts again, numbering on."""
        if self.load_saved is not None:
            self.retired[seg.key] = (seg.app, seg.sequence + (1 if seg.reference is not None
                                                              and len(seg.current) >= self.config.min_window else 0))
        w = seg.current
        if seg.reference is not None and len(w) >= self.config.min_window:
            closed = self._close(seg)
            return [closed], f"was closed as {closed.window_id} ({len(closed.current)} events)"
        self.dropped_events += len(w)
        if seg.reference is None:
            return [], f"was dropped (an incomplete baseline of {len(w)} events)"
        return [], f"was dropped ({len(w)} events, too few to test)"

    def due(self) -> list[ClosedWindow]:
        """Windows open longer than ``window_minutes`` with at least ``min_window`` events; then
        segments idle for ``idle_minutes`` are evicted (their windows tested when they can be)."""
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
        return out + self.evict_idle(now)

    def evict_idle(self, now: float | None = None) -> list[ClosedWindow]:
        """Evict segments not seen for ``idle_minutes`` (least recently seen first)."""
        now = self.clock() if now is None else now
        out: list[ClosedWindow] = []
        evicted = 0
        while self.segments:
            key, seg = next(iter(self.segments.items()))
            if now - seg.last_seen < self.idle_seconds:
                break
            del self.segments[key]
            out += self._retire(seg)[0]
            evicted += 1
        if evicted:
            self.evicted_idle += evicted
            log.info("drift windows evicted %d segment(s) idle for %.0f minutes; %d live. A segment that comes "
                     "back starts again with its reference read back from the store", evicted,
                     self.idle_seconds / 60, len(self.segments))
        return out

    def _promote(self, seg: Segment, reference_id: str) -> None:
        self.pending_dropped += seg.current.drop_pending()
        seg.reference, seg.reference_id = seg.current, reference_id
        seg.reference_ref = {"window": 0}
        seg.dirty = True
        seg.current = Window()
        log.info("drift reference for %s: %d events (%r)", seg.key, len(seg.reference), reference_id)

    def _close(self, seg: Segment) -> ClosedWindow:
        self.pending_dropped += seg.current.drop_pending() + (seg.reference.drop_pending() if seg.reference else 0)
        seg.sequence += 1
        seg.dirty = True
        closed = ClosedWindow(seg, seg.reference, seg.reference_id, seg.current, f"{seg.key}/{seg.sequence}")
        if self.config.reference == "previous":
            seg.reference, seg.reference_id = seg.current, closed.window_id
            seg.reference_ref = {"window": seg.sequence}
        seg.current = Window()
        seg.seen = set(closed.current.ids) | (set(seg.reference.ids) if seg.reference else set())
        return closed

    def _clusters(self, closed: ClosedWindow, current: np.ndarray, novel: tuple[int, ...],
                  reference_mean: np.ndarray) -> list[DriftCluster]:
        """What is new, grouped; with the example events' stored texts when a text loader is given
        and they are stored by now (the events and their embeddings are stored side by side)."""
        try:
            found = group(current, novel, reference_mean)
        except Exception:  # noqa: BLE001 - the window's p-value still goes out, without groups
            log.warning("could not group what is new in %s; the window is reported without groups",
                        closed.window_id, exc_info=True)
            found = []
        groups = [[closed.current.ids[i] for i in g.rows[:3]] for g in found]
        texts: dict[str, str] = {}
        wanted = [e for ids in groups for e in ids]
        if self.load_texts is not None and wanted:
            try:
                texts = self.load_texts(closed.segment.field, wanted)
            except Exception:  # noqa: BLE001 - the window goes out with event ids alone
                log.warning("could not read the example texts of %s; its groups name event ids only",
                            closed.window_id, exc_info=True)
        return [DriftCluster(size=g.size, example_event_ids=ids,
                             examples=[cut_example(t) if isinstance(t := texts.get(e), str) else "" for e in ids]
                             if texts else [])
                for g, ids in zip(found, groups, strict=True)]

    def test(self, closed: ClosedWindow, seed: int | None = None) -> DriftResult:
        c = self.config
        reference, current = closed.reference.matrix(), closed.current.matrix()
        result = run_test(c.method, reference, current, permutations=c.permutations,
                          seed=closed.segment.sequence if seed is None else seed, device=c.device, alpha=c.alpha)
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
            descriptor_p_values=descriptor_p_values, novel_share=len(result.novel) / max(1, result.n_current),
            clusters=self._clusters(closed, current, result.novel, reference.mean(axis=0)),
            part_p_values=result.parts,
            encoder=seg.encoder, detector_version=VERSION, config_fingerprint=c.fingerprint(),
            computed_at=datetime.now(UTC),
        )
