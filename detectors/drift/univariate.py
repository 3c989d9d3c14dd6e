"""Univariate drift of the scalar descriptors of events, with Evidently.

Descriptors: prompt and response length, latency, tokens in and out, and the score of each
detector (toxicity, prompt injection, hallucination, PII). Each is compared between reference
and current with Evidently's ``ValueDrift`` (two-sample Kolmogorov–Smirnov by default), which
returns a p-value per descriptor. These tests are per column: with many descriptors some will
fall under 0.05 by chance; the policy should treat them as context for the embedding test or
correct for multiplicity.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from driftwarden.detectors.loading import require

log = logging.getLogger(__name__)

METHOD = "ks"
MIN_ROWS = 10


def descriptor_drift(reference: Sequence[Mapping[str, float]], current: Sequence[Mapping[str, float]],
                     method: str = METHOD) -> dict[str, float]:
    """p-value per descriptor present (and not constant) in both samples, by Evidently's ValueDrift."""
    pd = require("pandas")
    evidently = require("evidently")
    metrics = require("evidently.metrics")
    ref = pd.DataFrame(list(reference))
    cur = pd.DataFrame(list(current))
    columns = [
        c for c in ref.columns
        if c in cur.columns and ref[c].notna().sum() >= MIN_ROWS and cur[c].notna().sum() >= MIN_ROWS
        and (ref[c].nunique() > 1 or cur[c].nunique() > 1)
    ]
    if not columns:
        return {}
    definition = evidently.DataDefinition(numerical_columns=columns)
    report = evidently.Report([metrics.ValueDrift(column=c, method=method) for c in columns])
    snapshot = report.run(
        current_data=evidently.Dataset.from_pandas(cur[columns].astype(float), data_definition=definition),
        reference_data=evidently.Dataset.from_pandas(ref[columns].astype(float), data_definition=definition),
    )
    out: dict[str, float] = {}
    for column, metric in zip(columns, snapshot.dict()["metrics"], strict=True):
        out[column] = float(metric["value"])
    return out


def warm_up() -> None:
    """Import Evidently and run one tiny report: its first run costs seconds of CPU (imports,
    lazy set-up), which a service pays at start rather than in the middle of its first window."""
    sample = [{"x": float(i)} for i in range(MIN_ROWS)]
    descriptor_drift(sample, sample[::-1])
