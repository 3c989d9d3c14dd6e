"""``driftwarden drift-test``: the streaming path's two-sample test, on two JSONL files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driftwarden.core.errors import ReplayError
from driftwarden.core.settings import Settings
from driftwarden.detectors.drift.mmd import mmd_permutation_test
from driftwarden.streams.replay import PROMPT_FIELDS, RESPONSE_FIELDS, read_jsonl

ALIASES = {"prompt": PROMPT_FIELDS, "response": RESPONSE_FIELDS}


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


def drift_test_files(settings: Settings, reference: Path, current: Path, field: str, *, permutations: int = 1000,
                     limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    from driftwarden.detectors.embeddings import Encoder

    ref_texts, _ = texts_of(reference, field, limit)
    cur_texts, cur_ids = texts_of(current, field, limit)
    encoder = Encoder(settings.detectors.embeddings)
    result = mmd_permutation_test(encoder.encode(ref_texts), encoder.encode(cur_texts), permutations=permutations,
                                  seed=seed, device=settings.detectors.embeddings.device)
    return {
        "method": result.method, "statistic": result.statistic, "p_value": result.p_value,
        "n_reference": result.n_reference, "n_current": result.n_current, "permutations": result.permutations,
        "bandwidth": result.bandwidth, "encoder": encoder.version, "field": field,
        "reference": str(reference), "current": str(current),
        "most_changed_current_ids": [cur_ids[i] for i in result.witness_top],
    }
