"""What drifted: the current rows a drift test found novel, grouped into a few clusters.

An on-call engineer reads "a new group of 19 events like these three" rather than a p-value.
The novel rows (``TwoSampleResult.novel``) are centred on the reference's mean (what all traffic
shares, "a question", is taken out, so that what the new rows share stands out) and clustered by
average-linkage agglomeration on cosine distance, cut at ``max_distance``; the largest ``max_clusters`` groups are kept, each with
its size and the rows nearest its centre as examples. Rows of no group of two or more are
counted, not shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_DISTANCE = 0.9
"""Cosine distance (of centred vectors) at which groups stop merging. On the shipped prompts with
10 % multi-hop questions mixed into a window of 200, the largest group holds 11–21 rows, about
90 % of them the new questions; with nothing new, groups of 2–6 (``bench/drift.py --power``)."""


@dataclass(frozen=True)
class Cluster:
    rows: tuple[int, ...]
    """Indices into the current window, nearest the group's centre first."""

    @property
    def size(self) -> int:
        return len(self.rows)


def group(current: np.ndarray, novel: tuple[int, ...] | list[int], reference_mean: np.ndarray | None = None, *,
          max_clusters: int = 3, max_distance: float = MAX_DISTANCE) -> list[Cluster]:
    """The largest groups of ``novel`` rows of ``current`` (n × d), largest first."""
    rows = [int(i) for i in novel]
    if len(rows) < 2:
        return []
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors = np.asarray(current, dtype=np.float64)[rows]
    if reference_mean is not None:
        vectors = vectors - np.asarray(reference_mean, dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    labels = fcluster(linkage(vectors, method="average", metric="cosine"), t=max_distance, criterion="distance")
    out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        centre = vectors[members].mean(axis=0)
        order = members[np.argsort(-(vectors[members] @ centre), kind="stable")]
        out.append(Cluster(rows=tuple(rows[i] for i in order)))
    out.sort(key=lambda c: (-c.size, c.rows[0]))
    return out[:max_clusters]
