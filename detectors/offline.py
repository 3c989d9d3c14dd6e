"""Offline scoring of a JSONL file by one detector (``driftwarden score``).

Users check a data set before they ship; it is also how detector quality is measured
(``bench/eval_detectors.py`` calls the same function). Each input row gives one output line:
``{"id", "score", "label", "detector", "version"}`` (plus ``spans`` where the detector located
what it flagged, such as unsupported sentences or an injected passage, and ``error`` when the
detector failed on that row); ``score`` is higher for more toxic, less supported, more likely an attack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftwarden.core.detector_configs import uses_encoder
from driftwarden.core.errors import DetectorError, ReplayError
from driftwarden.core.ingest.datasets import scoring_event
from driftwarden.core.ingest.jsonl import read_jsonl
from driftwarden.core.settings import Settings
from driftwarden.detectors.base import BaseDetector



def build_offline(name: str, settings: Settings) -> BaseDetector:
    """The detector ``name`` as configured, for a file's rows (its registered ``offline_update``:
    one text per row, no sampling)."""
    from driftwarden.detectors.registry import build, config_of, offline_names, registration

    if name not in offline_names():
        raise DetectorError(name, f"cannot score files; choose one of {', '.join(offline_names())}")
    config = config_of(name, settings)
    # A file is checked whole (no sampling), with the detector's own changes for one text per row.
    config = config.model_copy(update={"sample_rate": 1.0, **registration(name).offline_update})
    encoder = None
    if uses_encoder(config):
        from driftwarden.detectors.embeddings import Encoder

        encoder = Encoder.from_settings(settings)
    return build(name, settings, encoder, config=config)


def score_rows(detector: BaseDetector, rows: list[tuple[int, dict[str, Any]]], field: str,
               context_field: str | None, chunk: int | None = None, prompt_field: str | None = None,
               on_progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """One output dict per row, in order, scored in batches of ``chunk`` (the detector's
    ``batch_size``: its batch time budget is meant for that many)."""
    from driftwarden.detectors.registry import registration

    r = registration(detector.name)
    chunk = chunk if chunk is not None else detector.config.batch_size
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        events = [scoring_event(row, number, field, as_response=r.scores_response,
                                context_field=context_field if r.reads_context else None, prompt_field=prompt_field)
                  for number, row in part]
        for (number, row), result in zip(part, detector.detect(events), strict=True):
            line = {"id": row.get("id", number), "score": result.score, "label": result.label,
                    "detector": result.detector, "version": result.detector_version}
            if result.spans:
                line["spans"] = [{"field": sp.field, "start": sp.start, "end": sp.end, "type": sp.type,
                                  "score": sp.score} for sp in result.spans]
            if result.error:
                line["error"] = result.error
            if result.evidence and result.score is None:
                line["note"] = result.evidence
            yield line
        if on_progress is not None:
            on_progress(len(part))


def score_file(name: str, settings: Settings, source: Path, field: str, output: Path,
               context_field: str | None = None, on_start: Callable[[int], None] | None = None,
               prompt_field: str | None = None,
               on_progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Score every row of ``source`` into ``output`` (JSONL); returns counts."""
    if not source.is_file():
        raise ReplayError(str(source), 0, "no such file")
    rows = list(read_jsonl(source))
    detector = build_offline(name, settings)
    if on_start is not None:
        on_start(len(rows))
    counts = {"rows": 0, "flagged": 0, "errors": 0, "not_assessable": 0}
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".partial")
    with tmp.open("w", encoding="utf-8") as out:
        for line in score_rows(detector, rows, field, context_field, on_progress=on_progress,
                               prompt_field=prompt_field):
            out.write(json.dumps(line) + "\n")
            counts["rows"] += 1
            counts["flagged"] += bool(line["label"])
            counts["errors"] += "error" in line
            counts["not_assessable"] += line["score"] is None and "error" not in line
    tmp.replace(output)
    return counts
