"""The drift tests on real prompts (the shipped MiniLM model): calibrated and powerful.

- No false alarms beyond the level, for every method offered: 200 random splits of
  ``halueval_general.jsonl`` prompts into reference and current windows of 200; the share with
  p < 0.05 must lie in the binomial 99 % range of 5 %.
- Power: ``halueval_general`` prompts against ``halueval_qa`` questions, windows of 200:
  p < 0.05 in at least 95 % of draws; and with only 10 % of the current window from
  ``halueval_qa`` (a new intent at a tenth of traffic), the default test in at least 90 %.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from driftwarden.core.detector_configs import DriftConfig
from driftwarden.detectors.drift.methods import METHODS, run
from driftwarden.detectors.drift.mmd import mmd_permutation_test
from driftwarden.detectors.embeddings import Encoder
from driftwarden.pkg_data import rows

pytestmark = pytest.mark.integration

WINDOW = 200


@pytest.fixture(scope="module")
def embedded():
    encoder = Encoder()
    general = encoder.encode([r["prompt"] for r in rows("halueval_general")])
    questions = sorted({r["question"] for r in rows("halueval_qa")})  # each question appears twice
    return general, encoder.encode(questions)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_random_splits_of_one_population_alarm_at_the_level_and_no_more(embedded, method):
    general, _ = embedded
    rng = np.random.default_rng(0)
    trials = 200
    p_values = []
    for i in range(trials):
        idx = rng.choice(len(general), size=2 * WINDOW, replace=False)
        p_values.append(run(method, general[idx[:WINDOW]], general[idx[WINDOW:]], permutations=500,
                            seed=i).p_value)
    rejections = sum(p < 0.05 for p in p_values)
    low, high = binom.ppf(0.005, trials, 0.05), binom.ppf(0.995, trials, 0.05)
    assert low <= rejections <= high, f"{rejections} of {trials} splits alarmed"


def test_a_switch_to_another_population_is_detected_in_almost_every_draw(embedded):
    general, questions = embedded
    rng = np.random.default_rng(1)
    draws = 40
    hits = 0
    for i in range(draws):
        ref = general[rng.choice(len(general), WINDOW, replace=False)]
        cur = questions[rng.choice(len(questions), WINDOW, replace=False)]
        hits += mmd_permutation_test(ref, cur, permutations=500, seed=i).p_value < 0.05
    assert hits / draws >= 0.95


def test_a_new_intent_at_a_tenth_of_the_window_is_detected_by_the_default_test(embedded):
    general, questions = embedded
    rng = np.random.default_rng(2)
    draws, new = 30, WINDOW // 10
    hits = 0
    for i in range(draws):
        idx = rng.choice(len(general), 2 * WINDOW - new, replace=False)
        cur = np.concatenate([general[idx[WINDOW:]], questions[rng.choice(len(questions), new, replace=False)]])
        hits += run(DriftConfig().method, general[idx[:WINDOW]], cur, permutations=500, seed=i).p_value < 0.05
    assert hits / draws >= 0.9, f"{hits} of {draws}"
