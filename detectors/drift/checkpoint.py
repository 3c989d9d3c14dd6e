"""Durable drift windows: what a segment's open window holds, written to the store after every batch
and read back when the segment is next seen (a restart, a partition that moved to another sink).

Two kinds of rows (through the :class:`~driftwarden.core.storage.store.Store`):

- a **head** per segment (``segment_state``, kind ``drift``): its encoder, how many windows it
  closed (``sequence``), which window's members are its reference (``0``: its baseline, whether
  collected in-stream or read from the store when the segment was first seen, so a restart reads
  back the same events), and the partition and offset of the last record it took;
- its **members** (``drift_members``), appended as they arrive: window number, position, event id,
  event time and descriptors. Vectors are not copied: they are read from ``embeddings`` by id.

The agent writes a batch's rows before the batch is acknowledged, so what a restarted sink
reads back covers every record whose offset was committed. Records delivered again (offsets not
committed yet) are skipped by their offset; a member whose vector the sink had not stored yet is
redelivered, and fills its place (:meth:`Window.fill`). So a sink killed in the middle of a
window closes the same window, with the same id and members, as one that was not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

log = logging.getLogger(__name__)

KIND = "drift"


@dataclass(frozen=True)
class Member:
    """One record of a window, as stored (no vector)."""

    window: int
    position: int
    event_id: str
    event_ts: datetime
    descriptors: dict[str, float]


@dataclass
class Saved:
    """A segment as read back: its head and the members of the windows it needs."""

    head: dict
    reference: list[Member]
    """The reference's members when it is a window of the segment (else empty: read from the store)."""
    current: list[Member]
    """The open window (or the in-stream baseline being collected)."""
    closed: list[Member]
    """The last closed window (its ids count as seen, as right after the close)."""
    vectors: dict[str, list[float]]
    """Stored vectors of the members' events, by event id."""


#: (segment key, field, encoder) -> Saved | None
SavedLoader = Callable[[str, str, str], "Saved | None"]


def head(seg, reference: dict | None, position: tuple[int, int] | None) -> dict:
    return {"app": seg.app, "model_version": seg.model_version, "field": seg.field, "encoder": seg.encoder,
            "epoch": seg.epoch, "counter": seg.counter, "sequence": seg.sequence, "reference": reference,
            "reference_id": seg.reference_id, "dimension": seg.dimension,
            "position": list(position) if position else None}


def member_row(segment: str, app: str, member: Member) -> list:
    """A ``drift_members`` row; ``segment`` is ``<key>#<epoch>``."""
    return [segment, app, member.window, member.position, member.event_id, member.event_ts,
            {k: float(v) for k, v in member.descriptors.items()}]


#: ``({segment key: (app, model_version, field, encoder)}, min_embeddings) -> keys of those the
#: store holds anything for``: a checkpoint, a drift window, or ``min_embeddings`` stored embeddings
#: (None: no reference is read back, so embeddings do not count).
StateProbe = Callable[[dict[str, tuple[str, str, str, str]], "int | None"], set[str]]


def store_probe(store) -> StateProbe:
    """A :data:`StateProbe` reading ``store`` in two queries whatever the number of segments
    (blocking: the agent calls it in a thread)."""

    def probe(segments: dict[str, tuple[str, str, str, str]], min_embeddings: int | None) -> set[str]:
        if not segments:
            return set()
        with_rows = store.segments_with_stored_rows(list(segments.values()), min_embeddings)
        heads = store.segment_states(KIND, list(segments))
        return {key for key, segment in segments.items() if key in heads or segment in with_rows}

    return probe


def store_loader(store) -> SavedLoader:
    """A :data:`SavedLoader` reading ``store`` (blocking: the agent calls it in a thread)."""

    def load(key: str, field: str, encoder: str) -> Saved | None:
        raw = store.segment_states(KIND, [key]).get(key)
        if raw is None:
            return None
        saved_head = json.loads(raw)
        if saved_head.get("evicted"):
            return Saved(saved_head, [], [], [], {})  # numbering goes on; nothing else is kept
        if saved_head.get("encoder") != encoder or saved_head.get("field") != field:
            return None
        sequence = int(saved_head["sequence"])
        reference = saved_head.get("reference") or {}
        open_window = sequence + 1 if saved_head.get("reference") is not None else 0
        wanted = {open_window, sequence}
        if "window" in reference:
            wanted.add(int(reference["window"]))
        windows: dict[int, list[Member]] = {}
        for window, position, event_id, event_ts, descriptors in store.drift_members(
                f"{key}#{saved_head['epoch']}", sorted(wanted)):
            ts = event_ts if event_ts.tzinfo else event_ts.replace(tzinfo=UTC)
            windows.setdefault(int(window), []).append(Member(int(window), int(position), event_id, ts,
                                                              dict(descriptors)))
        current = windows.get(open_window, [])
        closed = windows.get(sequence, []) if sequence else []
        ref = windows.get(int(reference["window"]), []) if "window" in reference else []
        ids = sorted({m.event_id for m in (*current, *closed, *ref)})
        vectors = store.embedding_vectors(field, ids) if ids else {}
        if "window" in reference and not any(m.event_id in vectors for m in ref):
            # Its events expired (retention) or were erased: nothing to test against. The segment
            # starts again as a new one (the store's baseline), numbering on.
            log.warning("drift segment %s: none of the %d events of its reference is stored any more (retention or "
                        "erasure); it starts again with a new reference and its open window of %d events is dropped",
                        key, len(ref), len(current))
            return Saved({"evicted": True, "sequence": sequence}, [], [], [], {})
        return Saved(saved_head, ref, current, closed, vectors)

    return load


def as_vector(values: list[float] | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float32)
