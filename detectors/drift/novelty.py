"""Novelty two-sample test: are some current rows far from every reference row?

Real drift is often a new group arriving as a fraction of traffic (a new feature, a new user
group). A test of the whole distribution (MMD at one bandwidth) spends its power on the 90 % of
the window that did not change; this one looks at the tail.

Each row's **novelty** is its cosine distance to its ``k``-th nearest *reference* row (itself
excluded). Under "no change" reference and current rows are exchangeable, so the current rows'
novelty is no larger than the reference rows' own. The statistic is the mean novelty of the most
novel current rows, for several tail sizes (``TAILS``: the top 5 %, 10 %, 25 % and all of the
current window), each standardised by its permutation distribution, and the largest of them
(the aggregation of MMDAgg, here over tail sizes). The p-value is the permutation p-value of that
maximum, computed on the same random relabelings of the pooled sample for every tail size, so
the aggregate is exact: under "no change" p < α happens at most an α share of the time.

Cost: the pooled rows' ``depth`` nearest neighbours are found once (a blocked matrix product);
a relabeling then only looks up the ``k``-th neighbour labelled reference in those lists (when
fewer than ``k`` of them are, the novelty is the distance to the last one: still a fixed function
of the data and the labels, so the test stays exact). No distance is recomputed per permutation.

The result names the rows: ``novel`` are the current rows more novel than all but ``alpha`` of
the reference rows (what is new), ``witness_top`` the most novel of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from driftwarden.detectors.loading import pick_device, require

METHOD = "knn_novelty_permutation"
TAILS = (0.05, 0.10, 0.25, 1.0)
"""Shares of the current window whose mean novelty is a statistic (the largest standardised one is the test's)."""


@dataclass(frozen=True)
class TwoSampleResult:
    """What every drift test returns (``detectors/drift/methods.py``)."""

    method: str
    statistic: float
    """The test's statistic on the observed split (larger: more change)."""
    p_value: float
    """Permutation p-value, (1 + #{permuted ≥ observed}) / (1 + permutations)."""
    n_reference: int
    n_current: int
    permutations: int
    witness_top: tuple[int, ...]
    """Indices of the current rows most unlike the reference, most unlike first."""
    novel: tuple[int, ...] = ()
    """Indices of the current rows further from the reference than all but ``alpha`` of the reference rows."""
    parts: dict[str, float] = field(default_factory=dict)
    """p-value of each part of an aggregated test, by name."""


def relabelings(n: int, m: int, permutations: int, seed: int, device: str):
    """(permutations + 1) × (n + m) booleans, True where a row counts as *current*: row 0 is the
    observed split (the last ``m`` rows), the others random relabelings (seeded)."""
    torch = require("torch")
    g = torch.Generator(device="cpu").manual_seed(seed)
    keys = torch.rand(permutations, n + m, generator=g)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    labels = torch.empty(permutations + 1, n + m, dtype=torch.bool)
    labels[0, :n], labels[0, n:] = False, True
    labels[1:] = ranks >= n
    return labels.to(device)


def neighbours(z, depth: int, block: int = 2048):
    """(distances, indices) of each row's ``depth`` nearest other rows by cosine distance, nearest first."""
    torch = require("torch")
    unit = torch.nn.functional.normalize(z, dim=1)
    total = z.shape[0]
    depth = min(depth, total - 1)
    dist = torch.empty(total, depth, device=z.device)
    idx = torch.empty(total, depth, dtype=torch.long, device=z.device)
    for i0 in range(0, total, block):
        i1 = min(total, i0 + block)
        d = 1.0 - unit[i0:i1] @ unit.T
        d[torch.arange(i1 - i0, device=z.device), torch.arange(i0, i1, device=z.device)] = math.inf
        values, where = torch.topk(d, depth, dim=1, largest=False)
        dist[i0:i1], idx[i0:i1] = values, where
    return dist, idx


def novelty(dist, idx, is_current, k: int):
    """P × N: each row's distance to its ``k``-th nearest row labelled reference (in its lists)."""
    torch = require("torch")
    is_ref = ~is_current[:, idx]  # P × N × depth
    count = is_ref.cumsum(dim=2)
    reached = count >= k
    first = reached.to(torch.int8).argmax(dim=2)  # first position where the k-th reference row is
    out = dist.expand(is_current.shape[0], -1, -1).gather(2, first.unsqueeze(2)).squeeze(2)
    return torch.where(reached[:, :, -1], out, dist[:, -1].expand_as(out))


def tail_means(scores, is_current, m: int, tails=TAILS):
    """len(tails) × P: mean of the top ``t·m`` current scores under each labelling."""
    torch = require("torch")
    masked = torch.where(is_current, scores, torch.full_like(scores, -math.inf))
    top = torch.topk(masked, m, dim=1).values  # P × m, descending
    csum = top.cumsum(dim=1)
    return torch.stack([csum[:, max(1, round(t * m)) - 1] / max(1, round(t * m)) for t in tails])


def novelty_statistics(dist, idx, labels, m: int, k: int, block_elements: int = 1 << 24):
    """len(TAILS) × P tail statistics, a block of relabelings at a time (memory: about
    ``block_elements`` neighbour entries per block)."""
    torch = require("torch")
    block = max(1, block_elements // max(1, dist.numel()))
    return torch.cat([tail_means(novelty(dist, idx, labels[b:b + block], k), labels[b:b + block], m)
                      for b in range(0, labels.shape[0], block)], dim=1)


def standardised_max(stats):
    """Each statistic row standardised by its permutation columns (1:), then the largest per column."""
    mean = stats[:, 1:].mean(dim=1, keepdim=True)
    std = stats[:, 1:].std(dim=1, keepdim=True).clamp_min(1e-12)
    return ((stats - mean) / std).max(dim=0).values


def p_value_of(values) -> float:
    observed = values[0].item()
    exceed = int((values[1:] >= observed - 1e-9 * abs(observed)).sum().item())
    return (1 + exceed) / values.shape[0]


def prepare(reference: Any, current: Any, device: str):
    torch = require("torch")
    x = torch.as_tensor(reference, dtype=torch.float32).to(device)
    y = torch.as_tensor(current, dtype=torch.float32).to(device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"both samples must be 2-D with the same width; got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"each sample needs at least 2 rows; got {x.shape[0]} and {y.shape[0]}")
    return torch.cat([x, y]), x.shape[0], y.shape[0]


def novel_rows(scores_observed, n: int, alpha: float, top_k: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(novel current rows, most novel first; the first ``top_k`` of all current rows by novelty)."""
    torch = require("torch")
    ref, cur = scores_observed[:n], scores_observed[n:]
    cutoff = torch.quantile(ref, 1.0 - alpha).item() if n else math.inf
    order = torch.argsort(cur, descending=True)
    novel = tuple(int(i) for i in order.tolist() if cur[i].item() > cutoff)
    return novel, tuple(int(i) for i in order[:top_k].tolist())


def novelty_test(reference: Any, current: Any, *, permutations: int = 1000, seed: int = 0, device: str = "auto",
                 k: int = 5, depth: int = 48, alpha: float = 0.05, top_k: int = 5,
                 block_elements: int = 1 << 24) -> TwoSampleResult:
    """Two-sample novelty test of ``reference`` (n × d) against ``current`` (m × d)."""
    torch = require("torch")
    if permutations < 1:
        raise ValueError("permutations must be at least 1")
    device = pick_device(device)
    z, n, m = prepare(reference, current, device)
    with torch.no_grad():
        dist, idx = neighbours(z, depth)
        labels = relabelings(n, m, permutations, seed, device)
        k = max(1, min(k, n - 1))
        stats = novelty_statistics(dist, idx, labels, m, k, block_elements)
        combined = standardised_max(stats)
        observed = novelty(dist, idx, labels[:1], k)[0]
    novel, top = novel_rows(observed, n, alpha, top_k)
    parts = {f"tail_{t:g}": p_value_of(row) for t, row in zip(TAILS, stats, strict=True)}
    return TwoSampleResult(method=METHOD, statistic=float(combined[0].item()), p_value=p_value_of(combined),
                           n_reference=n, n_current=m, permutations=permutations, witness_top=top, novel=novel,
                           parts=parts)
