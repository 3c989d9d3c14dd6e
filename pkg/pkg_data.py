"""The labelled public data that ships inside the package (see ``data/`` and its licences)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

NAMES = (
    "halueval_general",
    "halueval_qa",
    "surge_toxicity",
    "prompt_injection",
    "pii_spans",
)


def path(name: str) -> Path:
    """The file of the shipped data set ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise KeyError(f"no shipped data set {name!r}; known: {', '.join(NAMES)}")
    return Path(str(resources.files("driftwarden").joinpath("data", f"{name}.jsonl")))


def rows(name: str) -> Iterator[dict]:
    """Yield the rows of a shipped data set as dicts."""
    with path(name).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
