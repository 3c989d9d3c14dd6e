"""Model loading: optional imports, device choice, precision, and batching by a token budget.

Nothing here downloads: models come from installed packages or local paths. A model is loaded
once per process (callers cache what these functions return).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from driftwarden.core.errors import DetectorError
from driftwarden.core.extras import require  # noqa: F401 - re-exported: detectors import it from here

log = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    torch = require("torch")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DetectorError("device", "cuda was asked for but torch sees no GPU; set device to auto or cpu")
    return device


def use_half(device: str, half_precision: bool) -> bool:
    """Half precision on a GPU when asked; always full precision on CPU."""
    return device.startswith("cuda") and half_precision


def local_dir(path: Path | None, what: str, detector: str) -> Path:
    """A configured model path that must exist locally (never a hub id)."""
    if path is None:
        raise DetectorError(detector, f"{what} needs a local model_path; none is configured")
    path = Path(path).expanduser()
    if not path.exists():
        raise DetectorError(detector, f"{what}: model_path {path} does not exist (models load from local paths only)")
    return path


def token_budget_batches(texts: Sequence[str], count_tokens: Callable[[str], int], max_batch: int,
                         max_tokens: int) -> Iterator[list[int]]:
    """Indices of ``texts`` grouped by length: at most ``max_batch`` texts and ``max_tokens``
    padded tokens (longest in the batch times its size) per group."""
    order = sorted(range(len(texts)), key=lambda i: count_tokens(texts[i]))
    batch: list[int] = []
    longest = 0
    for i in order:
        n = max(1, count_tokens(texts[i]))
        if batch and (len(batch) + 1 > max_batch or max(longest, n) * (len(batch) + 1) > max_tokens):
            yield batch
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, n)
    if batch:
        yield batch
