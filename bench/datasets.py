"""The training sets of ``../shared/datasets`` that do not ship in the package, read row by row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def read_rows(data: Path, name: str) -> Iterator[dict]:
    """The rows of ``data/name``; a clear exit when the file is not there."""
    path = data / name
    if not path.exists():
        raise SystemExit(f"{path} not found: pass --data with the folder of {name}")
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
