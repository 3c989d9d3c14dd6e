"""The drift tests, by name: every one takes (reference, current) embeddings and returns a
:class:`~driftwarden.detectors.drift.novelty.TwoSampleResult` naming its method.

- ``aggregate`` (default; sides over 2,000 rows are tested on a random 2,000 of them): the MMD statistic and the novelty tail statistics
  (``novelty.py``) computed on the same relabelings of the pooled sample, combined by the smallest of their
  permutation p-values (min-p); the p-value is that of the combination, the statistic the MMD² (a
  magnitude that reads the same across windows and methods). Exact like each part, with the
  novelty test's power on a new group at a small share of traffic and MMD's on a change of the
  whole population.
- ``novelty``: the nearest-reference-distance tails alone.
- ``mmd``: squared MMD at the median-heuristic bandwidth (``mmd.py``), the test of earlier
  versions.

Adding a test is one module with a function of this signature and one line in :data:`METHODS`.
Measured side by side (false alarms and power against the share of a new group) in
``bench/drift.py --power``.
"""

from __future__ import annotations

from typing import Any, Protocol

from driftwarden.detectors.drift import novelty as nv
from driftwarden.detectors.drift.mmd import median_bandwidth, mmd_permutation_test, mmd_statistics
from driftwarden.detectors.drift.novelty import TwoSampleResult
from driftwarden.detectors.loading import pick_device, require

AGGREGATE = "aggregate_mmd_knn_novelty_permutation"


class DriftTest(Protocol):
    def __call__(self, reference: Any, current: Any, *, permutations: int, seed: int, device: str,
                 alpha: float) -> TwoSampleResult: ...


def mmd(reference: Any, current: Any, *, permutations: int = 1000, seed: int = 0, device: str = "auto",
        alpha: float = 0.05) -> TwoSampleResult:
    r = mmd_permutation_test(reference, current, permutations=permutations, seed=seed, device=device)
    return TwoSampleResult(method=r.method, statistic=r.statistic, p_value=r.p_value, n_reference=r.n_reference,
                           n_current=r.n_current, permutations=r.permutations, witness_top=r.witness_top)


def novelty(reference: Any, current: Any, *, permutations: int = 1000, seed: int = 0, device: str = "auto",
            alpha: float = 0.05) -> TwoSampleResult:
    return nv.novelty_test(reference, current, permutations=permutations, seed=seed, device=device, alpha=alpha)


def aggregate(reference: Any, current: Any, *, permutations: int = 1000, seed: int = 0, device: str = "auto",
              alpha: float = 0.05, k: int = 5, depth: int = 24, top_k: int = 5,
              max_rows: int = nv.MAX_ROWS, block: int = 8192) -> TwoSampleResult:
    torch = require("torch")
    if permutations < 1:
        raise ValueError("permutations must be at least 1")
    device = pick_device(device)
    z, n, m, kept = nv.prepare(reference, current, device, max_rows, seed)
    with torch.no_grad():
        labels = nv.relabelings(n, m, permutations, seed, device)
        sigma = median_bandwidth(z, seed=seed)
        k = max(1, min(k, n - 1))
        dist, idx = nv.neighbours(z, nv.neighbour_depth(n, m, k, depth))
        tails = nv.novelty_statistics(dist, idx, labels, m, k, z)
        mmd_stats = torch.cat([_mmd_block(z, labels[b:b + block], n, m, sigma)
                               for b in range(0, labels.shape[0], block)])
        stats = torch.cat([mmd_stats.unsqueeze(0), tails])
        combined = nv.min_p(stats)
        observed = nv.novelty(dist, idx, labels[:1], k, z)[0]
    novel, top = nv.novel_rows(observed, n, alpha, top_k)
    names = ("mmd", *(f"tail_{t:g}" for t in nv.TAILS))
    return TwoSampleResult(method=AGGREGATE, statistic=float(mmd_stats[0].item()), p_value=nv.p_value_of(combined),
                           n_reference=n, n_current=m, permutations=permutations,
                           witness_top=nv.original_rows(top, kept), novel=nv.original_rows(novel, kept),
                           parts={name: nv.p_value_of(row) for name, row in zip(names, stats, strict=True)})


def _mmd_block(z, labels, n: int, m: int, sigma: float):
    """MMD² of each relabeling in ``labels`` (a block of them: the N × block weights stay small)."""
    torch = require("torch")
    weights = torch.where(labels.T, torch.tensor(-1.0 / m, device=z.device), torch.tensor(1.0 / n, device=z.device))
    return mmd_statistics(z, weights, 1.0 / (2.0 * sigma * sigma))[0]


METHODS: dict[str, DriftTest] = {"aggregate": aggregate, "novelty": novelty, "mmd": mmd}
"""Setting value (``DRIFTWARDEN_DRIFT__METHOD``) -> test."""


def run(method: str, reference: Any, current: Any, *, permutations: int = 1000, seed: int = 0,
        device: str = "auto", alpha: float = 0.05) -> TwoSampleResult:
    if method not in METHODS:
        raise ValueError(f"unknown drift method {method!r}; one of {', '.join(METHODS)}")
    return METHODS[method](reference, current, permutations=permutations, seed=seed, device=device, alpha=alpha)
