"""JSONL sources: one JSON object per line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from driftwarden.core.errors import ReplayError


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


def count_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())
