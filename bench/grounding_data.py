"""The grounding rows the hallucination head learns from and is measured on, and their features.

Sources: the four of ``grounding_train.jsonl`` (``source`` field: XSum summaries, BEGIN and
FaithDial dialogue, SummEdits summaries) from ``../shared/datasets`` (or ``--data``), and the
shipped ``halueval_qa.jsonl`` (QA). Only ``context``, ``question`` and ``answer`` reach the
features; ``subset`` and ``orig_label`` carry label information and are never read.

Features are computed once and cached in an ``.npz`` beside the cache path (they take minutes:
one MiniLM embedding per response sentence and per aligned context sentence).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from driftwarden.bench.datasets import DATA, read_rows
from driftwarden.detectors import grounding
from driftwarden.detectors.grounding import WORD
from driftwarden.pkg_data import rows

CACHE_DEFAULT = Path.home() / ".cache" / "driftwarden" / "grounding-features"
TASK = {"xsum_hallucination_annotations": "summary", "summedits": "summary", "begin": "dialogue",
        "faithdial_audit": "dialogue", "halueval_qa": "qa"}


def load_rows(data: Path = DATA) -> list[dict]:
    """Every row as {source, group, context, prompt, response, label}; group = the context's hash."""
    out = [{"source": r["source"], "context": r["context"], "prompt": r["question"] or "", "response": r["answer"],
            "label": int(r["hallucinated"])} for r in read_rows(data, "grounding_train.jsonl")]
    for r in rows("halueval_qa"):
        out.append({"source": "halueval_qa", "context": r["context"], "prompt": r["question"],
                    "response": r["answer"], "label": int(r["hallucinated"])})
    for r in out:  # one group per document, whatever its case and tokenisation
        r["group"] = hashlib.sha1(" ".join(WORD.findall(r["context"].lower())).encode()).hexdigest()[:12]
    return out


class CachedEmbed:
    """An embed function that remembers every sentence it has seen (contexts repeat)."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            for t, v in zip(todo, self.encoder.encode(todo), strict=True):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def features(data: list[dict], cache: Path, encoder=None, progress_every: int = 500) -> dict[str, np.ndarray]:
    """Features of every row, cached on disk: ``X`` (whole responses), ``y``, and each response
    sentence alone (``S``, with its row in ``S_row``), since a result is flagged when the whole
    response or any one sentence is unsupported.

    The cache key covers the feature code (``grounding`` and ``segments``), the encoder (model and
    variant) and the
    rows, so changed code or data never reuses stale features.
    """
    import inspect

    from driftwarden.detectors import segments

    if encoder is None:
        from driftwarden.detectors.embeddings import Encoder

        encoder = Encoder()
    digest = hashlib.sha1()
    for part in (inspect.getsource(grounding), inspect.getsource(segments), encoder.version, encoder.variant.name):
        digest.update(part.encode())
    for r in data:
        digest.update(json.dumps([r["context"], r["prompt"], r["response"], r["label"]]).encode())
    file = cache.with_suffix(f".{digest.hexdigest()[:12]}.npz")
    if file.exists():
        return dict(np.load(file, allow_pickle=False))
    embed = CachedEmbed(encoder)
    X = np.zeros((len(data), len(grounding.FEATURES)), np.float32)
    S: list[list[float]] = []
    S_row: list[int] = []
    started = time.perf_counter()
    for i, r in enumerate(data):
        a = grounding.align(r["response"], r["context"], r["prompt"], embed)
        if a is not None:
            X[i] = a.features()
            for n in range(len(a.rows)):
                S.append(a.features(only=n))
                S_row.append(i)
        if progress_every and (i + 1) % progress_every == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            print(f"features: {i + 1}/{len(data)} rows, {rate:.1f} rows/s", flush=True)
    out = {"X": X, "y": np.array([r["label"] for r in data], np.int8),
           "S": np.array(S, np.float32).reshape(-1, len(grounding.FEATURES)), "S_row": np.array(S_row, np.int64)}
    file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(file, **out)
    return out
