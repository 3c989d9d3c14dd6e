"""Curation: the training rows of a segment, read through the store, cleaned for fine-tuning.

From the segment's events in the requested time range (successful calls with a response):

1. PII is redacted (presidio, the PII detector's recognizers) unless the stored event already was;
2. exact duplicates (same normalised prompt and response) are dropped;
3. near duplicates (prompt embedding cosine at or above ``near_duplicate_cosine`` to a kept row)
   are dropped;
4. events flagged by the ``exclude_flagged`` detectors, or with user feedback below
   ``min_feedback``, go to the review set with the reason, not to training.

:func:`select` is the pure part (tested without a store); :func:`curate` reads the store.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from driftwarden.core.schemas import DatasetSpec, RetrainRequest
from driftwarden.core.storage.store import Store

log = logging.getLogger(__name__)


@dataclass
class Row:
    event_id: str
    ts: datetime
    prompt: str
    response: str
    feedback: float | None = None
    redacted: bool = False
    flags: tuple[str, ...] = ()
    """Detectors that flagged the event."""
    vector: np.ndarray | None = None
    """Unit-norm prompt embedding, when stored."""
    reason: str = ""
    """Why a row went to the review set."""
    context: tuple[str, ...] = ()
    """The passages the answer was to be grounded in (the evaluation checks generated answers against them)."""


@dataclass
class Curated:
    train: list[Row] = field(default_factory=list)
    review: list[Row] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    """Rows read, and rows dropped or set aside per reason."""
    detector_versions: dict[str, str] = field(default_factory=dict)
    regression: list[Row] = field(default_factory=list)
    """The fixed regression set: the segment's events from before the requested range (its
    reference population), curated the same way; the evaluation compares models on it."""


_SPACE = re.compile(r"\s+")


def _normalised(row: Row) -> str:
    text = _SPACE.sub(" ", f"{row.prompt}\x00{row.response}").strip().lower()
    return hashlib.sha256(text.encode()).hexdigest()


def select(rows: Sequence[Row], spec: DatasetSpec, redact: Callable[[str], str] | None = None) -> Curated:
    """Redact, de-duplicate, set aside the flagged ones (rows oldest first; the first copy wins)."""
    out = Curated()
    out.counts["read"] = len(rows)
    seen: set[str] = set()
    kept_vectors: list[np.ndarray] = []
    excluded = set(spec.exclude_flagged)
    for row in rows:
        if redact is not None and not row.redacted:
            try:
                row.prompt, row.response = redact(row.prompt), redact(row.response)
                row.context = tuple(redact(passage) for passage in row.context)
            except Exception:  # noqa: BLE001 - over its time budget, or failed: never trained on unredacted
                out.counts["redaction_failed"] += 1
                continue
            row.redacted = True
            out.counts["redacted_here"] += 1
        digest = _normalised(row)
        if digest in seen:
            out.counts["exact_duplicate"] += 1
            continue
        seen.add(digest)
        if row.vector is not None and kept_vectors:
            if float(np.max(np.stack(kept_vectors) @ row.vector)) >= spec.near_duplicate_cosine:
                out.counts["near_duplicate"] += 1
                continue
        flagged = sorted(excluded.intersection(row.flags))
        if flagged:
            row.reason = "flagged by " + ", ".join(flagged)
            out.review.append(row)
            out.counts["review_flagged"] += 1
            continue
        if row.feedback is not None and row.feedback < spec.min_feedback:
            row.reason = f"user feedback {row.feedback:g}"
            out.review.append(row)
            out.counts["review_feedback"] += 1
            continue
        if row.vector is not None:
            kept_vectors.append(row.vector)
        out.train.append(row)
    out.counts["train"] = len(out.train)
    out.counts["review"] = len(out.review)
    return out


#: The regression set is read from events since this long before the drifted range began.
REGRESSION_LOOKBACK = timedelta(days=30)


def read_rows(store: Store, request: RetrainRequest, *, start: datetime | None = None, end: datetime | None = None,
              limit: int | None = None) -> tuple[list[Row], dict[str, str]]:
    """The segment's successful events in the request's range (or ``start``..``end``), with flags,
    prompt vectors and context."""
    data = store.curation_data(request.app, request.model_version, start or request.start, end or request.end,
                               request.dataset.max_rows if limit is None else limit)
    rows = [Row(event_id=e, ts=ts, prompt=p, response=r, feedback=fb if fb is not None and fb <= 1 else None,
                redacted=bool(red),
                flags=tuple(data.flags.get(e, ())),
                vector=np.asarray(data.vectors[e], dtype=np.float32) if e in data.vectors else None,
                context=tuple(data.contexts.get(e, ())))
            for e, ts, p, r, fb, red in data.events]
    return rows, data.versions


def pii_redactor(settings) -> Callable[[str], str]:
    """Redacts what the PII detector finds (same recognizers, score threshold and time budget;
    a text over the budget raises, and :func:`select` keeps such a row out of training)."""
    from driftwarden.detectors.pii import TextRedactor

    return TextRedactor(settings.detectors.pii).redact


def curate(store: Store, request: RetrainRequest, redact: Callable[[str], str] | None,
           regression_rows: int = 0) -> Curated:
    """The request's training and review rows, and up to ``regression_rows`` regression rows: the
    oldest events of the segment before the range (within :data:`REGRESSION_LOOKBACK`), curated alike."""
    rows, versions = read_rows(store, request)
    curated = select(rows, request.dataset, redact)
    curated.detector_versions = versions
    if regression_rows:
        before, _ = read_rows(store, request, start=request.start - REGRESSION_LOOKBACK,
                              end=request.start - timedelta(milliseconds=1), limit=regression_rows)
        curated.regression = select(before, request.dataset, redact).train
        curated.counts["regression"] = len(curated.regression)
    log.info("curated %r/%r %s..%s: %s", request.app, request.model_version, request.start, request.end,
             ", ".join(f"{k} {v}" for k, v in sorted(curated.counts.items())))
    return curated
