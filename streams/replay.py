"""Replay of recorded traffic: rows of a JSONL file, made events by the ingestion layer
(``core/ingest/datasets.py``), published."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driftwarden.core.errors import ReplayError
from driftwarden.core.ingest.datasets import ReplayOptions, synthesise
from driftwarden.core.ingest.jsonl import count_rows, read_jsonl

__all__ = ["ReplayOptions", "count_rows", "replay_file"]


def replay_file(path: Path, publish: Callable[[dict[str, Any]], bool], options: ReplayOptions,
                limit: int | None = None, on_progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Publish every row of ``path`` (at most ``limit``); returns counts of published and refused."""
    if not path.is_file():
        raise ReplayError(str(path), 0, "no such file")
    total = count_rows(path)
    if limit is not None:
        total = min(total, limit)
    rows = read_jsonl(path)
    if options.shuffle:
        listed = list(rows)
        random.Random(options.seed).shuffle(listed)
        rows = iter(listed)
    published = refused = 0
    for index, event in enumerate(synthesise(rows, total, options, str(path))):
        if limit is not None and index >= limit:
            break
        if publish(event):
            published += 1
        else:
            refused += 1
        if on_progress is not None:
            on_progress(1)
    return {"rows": published + refused, "published": published, "refused": refused}
