"""Replay of recorded traffic: turn JSONL rows into InferenceEvents and publish them.

A row that already is an InferenceEvent (it has ``event_id`` and ``timestamp``) is published as
it is. A row of a labelled data set (``halueval_general.jsonl``: ``id, prompt, response``;
``halueval_qa.jsonl``: ``id, context, question, answer``) becomes realistic traffic: the
timestamps are spread over a period that ends now, token counts follow the text (about four
characters a token), latency grows with the tokens generated plus log-normal noise, and the
cost is left to the price table. The event id is ``<prefix>-<row id>``, so replaying the same
file with the same prefix is idempotent downstream.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from driftwarden.core.errors import ReplayError

PROMPT_FIELDS = ("prompt", "question", "text", "input")
RESPONSE_FIELDS = ("response", "answer", "output", "completion")


@dataclass(frozen=True)
class ReplayOptions:
    """How rows become traffic."""

    app: str = "demo-chat"
    """The ``app`` of every synthesised event."""
    model: str = "gpt-4o-mini"
    """The ``model`` (priced by the price table)."""
    model_version: str = "v1"
    """The ``model_version`` (drift is watched per version)."""
    id_prefix: str = "replay"
    """Event ids are ``<id_prefix>-<row id>``."""
    span: timedelta = timedelta(hours=1)
    """Timestamps are spread evenly (with jitter) over this period, ending at ``end``."""
    end: datetime | None = None
    """End of the period; None: now."""
    seed: int = 0
    """Seed of the latency and timestamp noise, and of the shuffle (same seed, same traffic)."""
    shuffle: bool = False
    """Publish the rows in a random (seeded) order. Files are often sorted by source or topic,
    which a drift monitor rightly reports as drift; shuffling gives the mix of live traffic."""


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, row)``; a line that is not a JSON object raises ReplayError."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ReplayError(str(path), number, f"not JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise ReplayError(str(path), number, f"a JSON {type(row).__name__}, not an object")
            yield number, row


def approx_tokens(text: str) -> int:
    """Token count of ``text`` by the usual four-characters-a-token rule (at least 1)."""
    return max(1, math.ceil(len(text) / 4))


def _first(row: dict[str, Any], fields: tuple[str, ...]) -> Any:
    for name in fields:
        if name in row and row[name] is not None:
            return row[name]
    return None


def synthesise(rows: Iterable[tuple[int, dict[str, Any]]], total: int, options: ReplayOptions,
               source: str = "input") -> Iterator[dict[str, Any]]:
    """Events (as dicts) from rows; ``total`` is the number of rows, to spread timestamps."""
    rng = random.Random(options.seed)
    end = options.end or datetime.now(UTC)
    start = end - options.span
    step = options.span / max(total, 1)
    for index, (number, row) in enumerate(rows):
        if "event_id" in row and "timestamp" in row:
            yield row
            continue
        prompt = _first(row, PROMPT_FIELDS)
        if not isinstance(prompt, str):
            raise ReplayError(source, number, f"no text prompt in any of {', '.join(PROMPT_FIELDS)}")
        response = _first(row, RESPONSE_FIELDS)
        response = response if isinstance(response, str) else ""
        row_id = row.get("id", number)
        tokens_in = approx_tokens(prompt) + (approx_tokens(" ".join(_as_list(row.get("context")))) if row.get("context") else 0)
        tokens_out = approx_tokens(response) if response else 0
        latency = (180.0 + 22.0 * tokens_out) * rng.lognormvariate(0.0, 0.35)
        ts = start + step * index + step * rng.random()
        event: dict[str, Any] = {
            "event_id": f"{options.id_prefix}-{row_id}",
            "timestamp": ts.isoformat(),
            "app": options.app,
            "model": options.model,
            "model_version": options.model_version,
            "prompt": prompt,
            "response": response,
            "latency_ms": round(latency, 1),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "metadata": {"source": Path(source).name, "source_id": str(row_id)},
        }
        if row.get("context"):
            event["context"] = _as_list(row["context"])
        yield event


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def count_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


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
