"""Novelty two-sample test: are some current rows far from every reference row?

Real drift is often a new group arriving as a fraction of traffic (a new feature, a new user
group). A test of the whole distribution (MMD at one bandwidth) spends its power on the 90 % of
the window that did not change; this one looks at the tail.

Each row's **novelty** is its cosine distance to its ``k``-th nearest *reference* row (itself
excluded). Under "no change" reference and current rows are exchangeable, so the current rows'
novelty is no larger than the reference rows' own. The statistic is the mean novelty of the most
novel current rows, for several tail sizes (``TAILS``: the top 5 %, 10 %, 25 % and all of the
current window), combined by the smallest of their permutation p-values (min-p: the
aggregation of MMDAgg, here over tail sizes, without depending on their scales). The p-value is the permutation p-value of that
maximum, computed on the same random relabelings of the pooled sample for every tail size, so
the aggregate is exact: under "no change" p < α happens at most an α share of the time.

Cost: the pooled rows' ``depth`` nearest neighbours are found once (a blocked matrix product);
a relabeling then only looks up the ``k``-th neighbour labelled reference in those lists (when
fewer than ``k`` of them are, the novelty is the distance to the last one: still a fixed function
of the data and the labels, so the test stays exact). No distance is recomputed per permutation.

Sides larger than :data:`MAX_ROWS` are tested on a random :data:`MAX_ROWS` of their rows, a
current side over :data:`MAX_RATIO` times the reference on that many times the reference.

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
"""Shares of the current window whose mean novelty is a statistic (combined by min-p)."""


@dataclass(frozen=True)
class TwoSampleResult:
    """What every drift test returns (``detectors/drift/methods.py``)."""

    method: str
    statistic: float
    """The statistic of the observed split, larger for more change: squared MMD for ``mmd`` and
    ``aggregate`` (whose p-value combines several statistics), the current rows' mean novelty
    (cosine distance to the ``k``-th nearest reference row) for ``novelty``."""
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


def relabelings(n: int, m: int, permutations: int, seed: int, device: str, chunk: int = 4096):
    """(permutations + 1) × (n + m) booleans, True where a row counts as *current*: row 0 is the
    observed split (the last ``m`` rows), the others random relabelings (seeded). Drawn ``chunk``
    relabelings at a time, so that the sort keys stay small at 100,000 permutations."""
    torch = require("torch")
    g = torch.Generator(device="cpu").manual_seed(seed)
    labels = torch.empty(permutations + 1, n + m, dtype=torch.bool)
    labels[0, :n], labels[0, n:] = False, True
    for c0 in range(0, permutations, chunk):
        rows = min(chunk, permutations - c0)
        ranks = torch.rand(rows, n + m, generator=g).argsort(dim=1).argsort(dim=1)
        labels[1 + c0:1 + c0 + rows] = ranks >= n
    return labels.to(device)


def neighbour_depth(n: int, m: int, k: int, depth: int) -> int:
    """How many neighbours to list so that a row's ``k``-th nearest *reference* row is almost
    always among them: at least ``depth``, and three times where the ``k``-th reference row falls
    on average when the reference is the smaller side (``k · (n + m) / n``). Rows whose lists fall
    short take the exact (slow) path in :func:`novelty`; a reference much smaller than the window
    would otherwise send most rows there."""
    return min(n + m - 1, max(depth, math.ceil(3 * k * (n + m) / max(1, n))))


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


def novelty(dist, idx, is_current, k: int, z=None, chunk: int = 4096):
    """P × N: each row's cosine distance to its ``k``-th nearest row labelled reference.

    Read from the neighbour lists; a row with fewer than ``k`` reference rows in its list (a tight
    new group larger than the lists, or rarely chance) gets the exact distance from ``z``, its
    rows, computed for those rows alone (without ``z``: the distance to its last listed neighbour,
    a lower bound)."""
    torch = require("torch")
    is_ref = ~is_current[:, idx]  # P × N × depth
    count = is_ref.cumsum(dim=2, dtype=torch.int16)
    reached = count[:, :, -1] >= k
    first = (count >= k).to(torch.int8).argmax(dim=2)  # where the k-th reference row is
    out = dist.expand(is_current.shape[0], -1, -1).gather(2, first.unsqueeze(2)).squeeze(2)
    out = torch.where(reached, out, dist[:, -1].expand_as(out))
    if z is not None and not bool(reached.all()):
        unit = torch.nn.functional.normalize(z, dim=1)
        rows = unit.shape[0]
        p_idx, r_idx = (~reached).nonzero(as_tuple=True)
        for c0 in range(0, p_idx.shape[0], chunk):
            p, r = p_idx[c0:c0 + chunk], r_idx[c0:c0 + chunk]
            d = 1.0 - unit[r] @ unit.T
            d[is_current[p]] = math.inf  # only reference rows count
            d[torch.arange(d.shape[0], device=d.device), r] = math.inf  # never itself
            out[p, r] = torch.kthvalue(d, min(k, rows - 1), dim=1).values
    return out


def tail_means(scores, is_current, m: int, tails=TAILS):
    """len(tails) × P: mean of the top ``t·m`` current scores under each labelling."""
    torch = require("torch")
    masked = torch.where(is_current, scores, torch.full_like(scores, -math.inf))
    top = torch.topk(masked, m, dim=1).values  # P × m, descending
    csum = top.cumsum(dim=1)
    return torch.stack([csum[:, max(1, round(t * m)) - 1] / max(1, round(t * m)) for t in tails])


def novelty_statistics(dist, idx, labels, m: int, k: int, z=None, block_elements: int = 1 << 24):
    """len(TAILS) × P tail statistics, a block of relabelings at a time (memory: about
    ``block_elements`` neighbour entries per block)."""
    torch = require("torch")
    block = max(1, block_elements // max(1, dist.numel()))
    return torch.cat([tail_means(novelty(dist, idx, labels[b:b + block], k, z), labels[b:b + block], m)
                      for b in range(0, labels.shape[0], block)], dim=1)


def min_p(stats):
    """Combined statistic of several statistics on the same relabelings: for each relabeling, the
    smallest of its permutation p-values over the statistics (each row's share of relabelings at
    least as extreme), negated so that larger means more change. Its own permutation p-value
    (:func:`p_value_of`) is exact (the min-p combination of Westfall and Young); unlike a maximum
    of standardised statistics it does not depend on their scales or tails."""
    torch = require("torch")
    columns = stats.shape[1]
    ordered = stats.sort(dim=1).values.contiguous()
    at_least = columns - torch.searchsorted(ordered, stats.contiguous(), right=False)
    return -(at_least.to(stats.dtype) / columns).min(dim=0).values


def p_value_of(values) -> float:
    observed = values[0].item()
    exceed = int((values[1:] >= observed - 1e-9 * abs(observed)).sum().item())
    return (1 + exceed) / values.shape[0]


MAX_ROWS = 2000
"""Rows per side at most: a larger side is tested on a random ``MAX_ROWS`` of its rows (drawn by
the seed, whatever the data): a test of smaller samples of the same two populations, so just as
exact, and at n = 10,000 per side as fast as at 2,000."""


MAX_RATIO = 10
"""A current side more than ``MAX_RATIO`` times the reference's rows is tested on a random
``MAX_RATIO`` × that many of them: the test's power is bounded by the small reference anyway,
and the nearest-reference lists of a much larger window would be long (slow)."""


def prepare(reference: Any, current: Any, device: str, max_rows: int = MAX_ROWS, seed: int = 0):
    """(pooled rows, n, m, current_rows): the pooled tensor (reference first) and, when the current
    side was cut to ``max_rows``, which of its rows were kept (None: all of them, in order)."""
    torch = require("torch")
    x = torch.as_tensor(reference, dtype=torch.float32)
    y = torch.as_tensor(current, dtype=torch.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"both samples must be 2-D with the same width; got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"each sample needs at least 2 rows; got {x.shape[0]} and {y.shape[0]}")
    g = torch.Generator(device="cpu").manual_seed(seed + 7919)
    kept = None
    if x.shape[0] > max_rows:
        x = x[torch.randperm(x.shape[0], generator=g)[:max_rows].sort().values]
    most = min(max_rows, MAX_RATIO * x.shape[0])
    if y.shape[0] > most:
        kept = torch.randperm(y.shape[0], generator=g)[:most].sort().values
        y = y[kept]
    return torch.cat([x, y]).to(device), x.shape[0], y.shape[0], kept


def original_rows(rows: tuple[int, ...], kept) -> tuple[int, ...]:
    """Indices into the cut current side, as indices into the current rows passed in."""
    return rows if kept is None else tuple(int(kept[i]) for i in rows)


def novel_rows(scores_observed, n: int, alpha: float, top_k: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(novel current rows, most novel first; the first ``top_k`` of all current rows by novelty)."""
    torch = require("torch")
    ref, cur = scores_observed[:n], scores_observed[n:]
    cutoff = torch.quantile(ref, 1.0 - alpha).item() if n else math.inf
    order = torch.argsort(cur, descending=True)
    novel = tuple(int(i) for i in order.tolist() if cur[i].item() > cutoff)
    return novel, tuple(int(i) for i in order[:top_k].tolist())


def novelty_test(reference: Any, current: Any, *, permutations: int = 1000, seed: int = 0, device: str = "auto",
                 k: int = 5, depth: int = 24, alpha: float = 0.05, top_k: int = 5,
                 block_elements: int = 1 << 24, max_rows: int = MAX_ROWS) -> TwoSampleResult:
    """Two-sample novelty test of ``reference`` (n × d) against ``current`` (m × d)."""
    torch = require("torch")
    if permutations < 1:
        raise ValueError("permutations must be at least 1")
    device = pick_device(device)
    z, n, m, kept = prepare(reference, current, device, max_rows, seed)
    with torch.no_grad():
        k = max(1, min(k, n - 1))
        dist, idx = neighbours(z, neighbour_depth(n, m, k, depth))
        labels = relabelings(n, m, permutations, seed, device)
        stats = novelty_statistics(dist, idx, labels, m, k, z, block_elements)
        combined = min_p(stats)
        observed = novelty(dist, idx, labels[:1], k, z)[0]
    novel, top = novel_rows(observed, n, alpha, top_k)
    parts = {f"tail_{t:g}": p_value_of(row) for t, row in zip(TAILS, stats, strict=True)}
    # The statistic: the mean novelty of the whole current window (the last tail), a distance that
    # reads the same across windows; the p-value is the min-p combination of all tails.
    return TwoSampleResult(method=METHOD, statistic=float(stats[-1, 0].item()), p_value=p_value_of(combined),
                           n_reference=n, n_current=m, permutations=permutations,
                           witness_top=original_rows(top, kept), novel=original_rows(novel, kept), parts=parts)
