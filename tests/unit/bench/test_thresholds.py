"""The default thresholds' rule: the best recall at a stated precision, judged as shipped."""

from __future__ import annotations

import numpy as np

from driftwarden.bench.thresholds import threshold_for_precision


def test_the_threshold_is_the_lowest_whose_flags_reach_the_precision():
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    assert threshold_for_precision(y, p, 0.75) == 0.6  # flags 4: 3 right
    assert threshold_for_precision(y, p, 1.0) == 0.8


def test_rounding_to_three_decimals_never_leaves_the_flags_below_the_precision():
    # The best cut is below 0.7841; rounded up (0.785) it would flag 0.9 and 0.8 alone: 1 of 2.
    y = np.array([0, 1, 1, 0])
    p = np.array([0.9, 0.8, 0.7841, 0.2])
    t = threshold_for_precision(y, p, 0.6)
    assert t == 0.784 and (y[p >= t] == 1).mean() >= 0.6


def test_no_threshold_reaches_the_precision_gives_one():
    assert threshold_for_precision(np.array([0, 1]), np.array([0.9, 0.1]), 0.9) == 1.0


def test_a_score_just_below_a_step_can_still_be_flagged_by_the_step_below():
    assert threshold_for_precision(np.array([1, 0]), np.array([0.11699999999999999, 0.05]), 1.0) == 0.116


def test_tied_scores_are_flagged_together_and_balanced_precision_does_not_follow_the_class_mix():
    y = np.array([1] * 10 + [0] * 90)
    p = np.concatenate([np.full(10, 0.9), np.full(10, 0.8), np.full(80, 0.1)])
    # counts: 10 right of 20 flagged at 0.8 (0.5); rates: 1.0 against 10/90
    assert threshold_for_precision(y, p, 0.8) == 0.9
    assert threshold_for_precision(y, p, 0.8, balanced=True) == 0.8
