"""Rows of labelled data sets and recorded traffic, as events.

A row that already is an InferenceEvent (it has ``event_id`` and ``timestamp``) passes as it is. A
row of a labelled data set (``halueval_general.jsonl``: ``id, prompt, response``;
``halueval_qa.jsonl``: ``id, context, question, answer``) becomes realistic traffic
(:func:`synthesise`): the timestamps are spread over a period that ends now, token counts follow
the text (about four characters a token), latency grows with the tokens generated plus log-normal
noise, and the cost is left to the price table. The event id is ``<prefix>-<row id>``, so the same
file with the same prefix gives the same ids (idempotent downstream). :func:`scoring_event` makes
the one text a detector scores into an event (``driftwarden score``), :func:`texts_of` reads the
texts of one field (``driftwarden drift-test``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from driftwarden.core.errors import ReplayError
from driftwarden.core.ingest.jsonl import read_jsonl
from driftwarden.core.schemas import EventLimits, InferenceEvent

PROMPT_FIELDS = ("prompt", "question", "text", "input")
RESPONSE_FIELDS = ("response", "answer", "output", "completion")
ALIASES = {"prompt": PROMPT_FIELDS, "response": RESPONSE_FIELDS}
_NO_LIMITS = EventLimits(max_prompt_chars=10**9, max_response_chars=10**9, max_context_chars=10**9,
                         max_event_bytes=10**12, max_clock_skew_s=10**9)
_PLACEHOLDER_PROMPT = "(offline scoring)"


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


def scoring_event(row: dict[str, Any], number: int, field: str, *, as_response: bool = False,
                  context_field: str | None = None, prompt_field: str | None = None) -> InferenceEvent:
    """Row ``number`` as the event a detector scores: ``field`` holds the text, made the event's
    prompt (or, ``as_response``, its response, with ``prompt_field`` as the question); the row's
    ``context_field``, when given, becomes the event's context (the grounding, or retrieved
    documents). Offline rows are checked whole: no length limits."""
    text = row.get(field)
    if not isinstance(text, str):
        raise ReplayError("input", number, f"field {field!r} is missing or not a string")
    data: dict[str, Any] = {
        "event_id": f"row-{number}", "timestamp": datetime.now(UTC), "app": "offline", "model": "offline",
        "model_version": "offline", "latency_ms": 0.0, "tokens_in": 0, "tokens_out": 0,
    }
    if as_response:
        question = row.get(prompt_field) if prompt_field is not None else None
        data["prompt"] = question if isinstance(question, str) and question.strip() else _PLACEHOLDER_PROMPT
        data["response"] = text
    else:
        data["prompt"] = text if text.strip() else _PLACEHOLDER_PROMPT
    if context_field is not None:
        context = row.get(context_field)
        data["context"] = [context] if isinstance(context, str) else context
    return InferenceEvent.model_validate(data, strict=False, context={"limits": _NO_LIMITS})


def texts_of(path: Path, field: str, limit: int | None = None) -> tuple[list[str], list[Any]]:
    """The texts (and row ids) of ``field`` in ``path``; ``prompt`` also reads question/text/input,
    ``response`` also answer/output/completion."""
    if not path.is_file():
        raise ReplayError(str(path), 0, "no such file")
    names = ALIASES.get(field, (field,))
    texts, ids = [], []
    for number, row in read_jsonl(path):
        value = next((row[n] for n in names if isinstance(row.get(n), str)), None)
        if value is None:
            raise ReplayError(str(path), number, f"no text in {' / '.join(names)}")
        texts.append(value)
        ids.append(row.get("id", number))
        if limit is not None and len(texts) >= limit:
            break
    return texts, ids
