"""The MMD permutation test: exact under no change, powerful under change, blockwise = whole."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from driftwarden.detectors.drift.mmd import mmd_permutation_test


def gaussian(rng, n, shift=0.0, d=16):
    return (rng.standard_normal((n, d)) + shift).astype(np.float32)


def test_p_values_under_no_change_stay_within_the_binomial_range_of_the_level():
    rng = np.random.default_rng(1)
    trials = 200
    rejections = sum(
        mmd_permutation_test(gaussian(rng, 40), gaussian(rng, 40), permutations=200, seed=i).p_value < 0.05
        for i in range(trials)
    )
    low, high = binom.ppf(0.005, trials, 0.05), binom.ppf(0.995, trials, 0.05)
    assert low <= rejections <= high, rejections


def test_a_mean_shift_is_detected():
    rng = np.random.default_rng(2)
    result = mmd_permutation_test(gaussian(rng, 100), gaussian(rng, 100, shift=0.5), permutations=500)
    assert result.p_value < 0.01 and result.statistic > 0


def test_the_p_value_is_never_zero_and_at_most_one():
    rng = np.random.default_rng(3)
    far = mmd_permutation_test(gaussian(rng, 30), gaussian(rng, 30, shift=5), permutations=99)
    assert far.p_value == pytest.approx(1 / 100)
    same = gaussian(rng, 30)
    assert mmd_permutation_test(same, same.copy(), permutations=99).p_value <= 1.0


def test_blockwise_computation_gives_the_same_statistic_and_p_value_as_the_whole_matrix():
    rng = np.random.default_rng(4)
    x, y = gaussian(rng, 120), gaussian(rng, 90, shift=0.2)
    whole = mmd_permutation_test(x, y, permutations=300, seed=7)
    blocks = mmd_permutation_test(x, y, permutations=300, seed=7, memory_budget_bytes=40_000)
    assert blocks.statistic == pytest.approx(whole.statistic, rel=1e-5)
    assert blocks.p_value == whole.p_value


def test_the_most_changed_current_rows_come_from_the_new_subpopulation():
    rng = np.random.default_rng(5)
    x, y = gaussian(rng, 100), gaussian(rng, 100)
    cluster = list(range(0, 100, 10))
    y[cluster] = gaussian(rng, len(cluster), shift=3.0)  # a tenth of the current window is new
    result = mmd_permutation_test(x, y, permutations=100, top_k=5)
    assert set(result.witness_top) <= set(cluster)


def test_bad_shapes_are_refused_with_the_shapes_named():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=r"\(10, 16\) and \(10, 8\)"):
        mmd_permutation_test(gaussian(rng, 10), gaussian(rng, 10, d=8))
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd_permutation_test(gaussian(rng, 1), gaussian(rng, 10))
