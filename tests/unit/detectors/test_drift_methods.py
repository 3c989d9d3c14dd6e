"""The drift tests of detectors/drift/methods.py: exact under no change, the novelty tail finds a
small new group that MMD misses, every result names its method, and what is new is grouped."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from driftwarden.detectors.drift.clusters import group
from driftwarden.detectors.drift.methods import METHODS, run
from driftwarden.detectors.drift.novelty import neighbours, novelty, relabelings


def population(rng, n, d=16):
    """Unit vectors around a few topics, like embeddings of one population of prompts."""
    centres = np.random.default_rng(d).standard_normal((6, d))  # the same topics in every sample
    x = centres[rng.integers(0, 6, n)] + 0.6 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def contaminated(rng, n, share, d=16):
    """``population`` with ``share`` of the rows from a new topic."""
    k = round(share * n)
    new = np.ones(d) + 0.3 * rng.standard_normal((k, d))
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    return np.concatenate([population(rng, n - k, d), new.astype(np.float32)]), k


@pytest.mark.parametrize("method", sorted(METHODS))
def test_false_alarms_under_no_change_stay_within_the_binomial_range_of_the_level(method):
    trials = 150
    rejections = 0
    for i in range(trials):
        rng = np.random.default_rng(i)
        both = population(rng, 80)
        rejections += run(method, both[:40], both[40:], permutations=200, seed=i).p_value < 0.05
    low, high = binom.ppf(0.005, trials, 0.05), binom.ppf(0.995, trials, 0.05)
    assert low <= rejections <= high, rejections


def test_a_new_group_at_a_tenth_of_the_window_is_found_by_novelty_and_aggregate_and_named():
    rng = np.random.default_rng(5)
    reference = population(rng, 200)
    current, k = contaminated(rng, 200, 0.1)
    for method in ("novelty", "aggregate"):
        result = run(method, reference, current, permutations=500)
        assert result.p_value < 0.01, (method, result)
        assert result.method.startswith(("knn_novelty", "aggregate"))
        new_rows = set(range(200 - k, 200))
        assert len(new_rows & set(result.novel)) >= 0.9 * k
        assert set(result.witness_top) <= new_rows
    assert set(run("aggregate", reference, current, permutations=100).parts) == {
        "mmd", "tail_0.05", "tail_0.1", "tail_0.25", "tail_1"}


def test_the_same_seed_gives_the_same_p_value_and_an_unknown_method_is_refused():
    rng = np.random.default_rng(6)
    x, y = population(rng, 60), population(rng, 60)
    assert run("aggregate", x, y, seed=3, permutations=100) == run("aggregate", x, y, seed=3, permutations=100)
    with pytest.raises(ValueError, match="unknown drift method 'ks'; one of aggregate, novelty, mmd"):
        run("ks", x, y)


def test_samples_of_other_widths_or_of_one_row_are_refused():
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match="same width"):
        run("novelty", population(rng, 10, d=8), population(rng, 10, d=9))
    with pytest.raises(ValueError, match="at least 2 rows"):
        run("aggregate", population(rng, 10), population(rng, 1))


def test_novelty_is_the_distance_to_the_kth_nearest_row_labelled_reference():
    import torch

    z = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    dist, idx = neighbours(z, depth=3)
    labels = relabelings(2, 2, permutations=0, seed=0, device="cpu")  # rows 2, 3 current
    scores = novelty(dist, idx, labels, k=1)[0]
    d = 1 - z @ z.T
    assert scores[2].item() == pytest.approx(min(d[2, 0], d[2, 1]).item())
    assert scores[0].item() == pytest.approx(d[0, 1].item())  # itself never counts
    # Fewer than k reference rows in its list: the exact distance, from the rows themselves.
    short, _ = neighbours(z, depth=1)
    exact = novelty(short, idx[:, :1], labels, k=1, z=z)[0]
    assert exact[2].item() == pytest.approx(min(d[2, 0], d[2, 1]).item())
    assert exact[1].item() == pytest.approx(d[1, 0].item())


def test_what_is_new_is_one_group_of_the_new_rows_and_scattered_rows_make_none():
    rng = np.random.default_rng(8)
    reference = population(rng, 200)
    current, k = contaminated(rng, 200, 0.1)
    result = run("novelty", reference, current, permutations=200)
    groups = group(current, result.novel, reference.mean(axis=0))
    assert groups[0].size >= 0.8 * k and all(i >= 200 - k for i in groups[0].rows)
    assert all(a.size >= b.size for a, b in zip(groups, groups[1:]))
    assert group(current, [3]) == [] and group(current, []) == []


def test_a_side_over_the_row_cap_is_tested_on_a_sample_and_rows_are_named_in_the_original_numbering():
    rng = np.random.default_rng(11)
    reference = population(rng, 300)
    current, k = contaminated(rng, 300, 0.1)
    order = rng.permutation(300)
    shuffled = current[order]
    from driftwarden.detectors.drift.methods import aggregate

    result = aggregate(reference, shuffled, permutations=200, max_rows=150)
    assert result.n_reference == result.n_current == 150 and result.p_value < 0.01
    new_positions = {int(i) for i in np.flatnonzero(order >= 300 - k)}
    assert set(result.witness_top) <= new_positions
    assert len(set(result.novel) & new_positions) >= 0.8 * len(set(result.novel))


def test_a_window_much_larger_than_its_reference_is_tested_on_ten_times_the_reference():
    rng = np.random.default_rng(12)
    reference = population(rng, 20)
    current, k = contaminated(rng, 1000, 0.1)
    for method in ("aggregate", "novelty"):
        result = run(method, reference, current, permutations=100)
        assert result.n_reference == 20 and result.n_current == 200
        assert all(0 <= i < 1000 for i in result.novel + result.witness_top)


def test_the_aggregate_reports_the_mmd_statistic_and_combines_the_p_values_of_its_parts():
    rng = np.random.default_rng(13)
    reference, (current, _) = population(rng, 120), contaminated(rng, 120, 0.1)
    aggregate = run("aggregate", reference, current, permutations=200)
    mmd = run("mmd", reference, current, permutations=200)
    assert aggregate.statistic == pytest.approx(mmd.statistic, rel=1e-4)
    assert aggregate.parts["mmd"] == pytest.approx(mmd.p_value, abs=0.05)  # other relabelings, same test
    assert aggregate.p_value >= min(aggregate.parts.values())  # min-p is calibrated, never the raw minimum


def test_relabelings_drawn_in_chunks_each_name_the_window_size_of_current_rows():
    labels = relabelings(7, 5, 23, seed=0, device="cpu", chunk=4)
    assert labels.shape == (24, 12) and bool((labels.sum(dim=1) == 5).all())
    assert not labels[0, :7].any() and labels[0, 7:].all()
    assert len({tuple(row.tolist()) for row in labels[1:]}) > 15
    assert (labels == relabelings(7, 5, 23, seed=0, device="cpu", chunk=4)).all()
