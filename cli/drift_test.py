"""``driftwarden drift-test``: the streaming path's two-sample test, on two JSONL files (a CLI command:
it reads files, embeds, tests, groups and redacts, so it sits above every folder it uses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driftwarden.core.ingest.datasets import texts_of
from driftwarden.core.settings import Settings
from driftwarden.detectors.drift.clusters import group
from driftwarden.detectors.drift.methods import run


def drift_test_files(settings: Settings, reference: Path, current: Path, field: str, *, permutations: int = 1000,
                     limit: int | None = None, seed: int = 0, method: str | None = None,
                     redact: bool | None = None) -> dict[str, Any]:
    """The drift test of the streaming path (``settings.drift.method`` unless ``method``) on two
    files, with what is new: the novel current rows grouped, three example texts each, shown as
    the report shows texts (cut, then redacted when ``redact``, by default when PII redaction is on)."""
    from driftwarden.dashboards.report import shown_text
    from driftwarden.detectors.embeddings import Encoder

    ref_texts, _ = texts_of(reference, field, limit)
    cur_texts, cur_ids = texts_of(current, field, limit)
    encoder = Encoder.from_settings(settings)
    current_vectors = encoder.encode(cur_texts)
    method = method or settings.drift.method
    reference_vectors = encoder.encode(ref_texts)
    result = run(method, reference_vectors, current_vectors, permutations=permutations, seed=seed,
                 device=settings.detectors.embeddings.device, alpha=settings.drift.alpha)
    redactor = None
    if settings.redact_pii if redact is None else redact:
        from driftwarden.retrain_trigger.retraining.curation import pii_redactor

        redactor = pii_redactor(settings)
    clusters = [{"size": g.size, "share": g.size / max(1, result.n_current), "example_ids": [cur_ids[i] for i in g.rows[:3]],
                 "examples": [shown_text(cur_texts[i], redactor, 160) for i in g.rows[:3]]}
                for g in group(current_vectors, result.novel, reference_vectors.mean(axis=0))]
    return {
        "method": result.method, "statistic": result.statistic, "p_value": result.p_value,
        "n_reference": result.n_reference, "n_current": result.n_current, "permutations": result.permutations,
        "part_p_values": result.parts, "novel_share": len(result.novel) / max(1, result.n_current),
        "clusters": clusters, "encoder": encoder.version, "field": field,
        "reference": str(reference), "current": str(current),
        "most_changed_current_ids": [cur_ids[i] for i in result.witness_top],
    }
