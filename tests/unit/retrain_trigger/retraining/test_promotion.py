"""Promotion rules: each branch of promote, hold and reject, and their validation in the policy file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from driftwarden.core.errors import PolicyError
from driftwarden.retrain_trigger.alerting.rules import load_policy
from driftwarden.retrain_trigger.retraining.evaluation import Table
from driftwarden.retrain_trigger.retraining.promotion import Condition, PromotionPolicy, decide

POLICY = PromotionPolicy(
    min_events=20,
    promote=[Condition(set="drifted", metric="hallucination_rate", improves_by_at_least=0.02),
             Condition(set="regression", metric="*", worsens_by_at_most=0.01)],
    reject=[Condition(set="drifted", metric="held_out_loss", worsens_by_more_than=0.0)],
)


def table(drifted_cand=None, drifted_cur=None, regression_cand=None, regression_cur=None, events=50):
    base = {"held_out_loss": 2.0, "hallucination_rate": 0.40, "toxicity_rate": 0.0, "refusal_rate": 0.0,
            "empty_rate": 0.0}
    t = Table(counts={"drifted": events, "regression": 40})
    t.figures["drifted"] = {"candidate": {**base, "held_out_loss": 1.5, "hallucination_rate": 0.30,
                                          **(drifted_cand or {})},
                            "current": {**base, **(drifted_cur or {})}}
    t.figures["regression"] = {"candidate": {**base, **(regression_cand or {})},
                               "current": {**base, **(regression_cur or {})}}
    return t


def test_a_candidate_better_on_the_drift_and_no_worse_before_it_is_promoted():
    verdict = decide(table(), POLICY)
    assert verdict.decision == "promote"
    assert any("hallucination_rate" in r and "holds" in r for r in verdict.reasons)


def test_a_candidate_that_fits_the_new_traffic_worse_is_rejected_whatever_else():
    verdict = decide(table(drifted_cand={"held_out_loss": 2.1}), POLICY)
    assert verdict.decision == "reject" and "held_out_loss" in verdict.reasons[0]


def test_too_small_a_gain_on_the_drift_is_held_for_a_person():
    verdict = decide(table(drifted_cand={"hallucination_rate": 0.39}), POLICY)
    assert verdict.decision == "hold"
    assert any("does not hold" in r for r in verdict.reasons) and "driftwarden models" in verdict.reasons[-1]


def test_any_regression_metric_worse_by_more_than_its_bound_holds_the_candidate():
    verdict = decide(table(regression_cand={"refusal_rate": 0.05}), POLICY)
    assert verdict.decision == "hold" and any("regression refusal_rate" in r and "does not hold" in r
                                              for r in verdict.reasons)
    assert decide(table(regression_cand={"refusal_rate": 0.01}), POLICY).decision == "promote", "at the bound holds"


def test_a_missing_figure_never_promotes_and_never_rejects():
    t = table()
    del t.figures["drifted"]["candidate"]["hallucination_rate"]
    verdict = decide(t, POLICY)
    assert verdict.decision == "hold" and any("no figure for the candidate" in r for r in verdict.reasons)
    t = table(drifted_cand={"held_out_loss": 9.0})
    del t.figures["drifted"]["current"]["held_out_loss"]
    assert decide(t, POLICY).decision != "reject"


def test_no_regression_set_holds_rather_than_promotes():
    t = table()
    del t.figures["regression"]
    verdict = decide(t, POLICY)
    assert verdict.decision == "hold" and any("no regression figures" in r for r in verdict.reasons)


def test_too_few_evaluated_events_hold_and_no_promote_rules_always_hold():
    assert decide(table(events=5), POLICY).decision == "hold"
    verdict = decide(table(), PromotionPolicy())
    assert verdict.decision == "hold" and "no promote rules" in verdict.reasons[0]


def test_a_condition_takes_exactly_one_bound():
    with pytest.raises(ValidationError, match="exactly one"):
        Condition(set="drifted", metric="held_out_loss")
    with pytest.raises(ValidationError, match="exactly one"):
        Condition(set="drifted", metric="held_out_loss", improves_by_at_least=0.1, worsens_by_at_most=0.1)


def test_the_shipped_policy_holds_promotion_rules_and_a_bad_one_is_a_clear_error(tmp_path):
    shipped = load_policy().promotion
    assert shipped.promote and shipped.reject
    bad = tmp_path / "p.yaml"
    bad.write_text("rules: []\npromotion:\n  promote:\n    - {set: drifted, metric: bleu, improves_by_at_least: 1}\n")
    with pytest.raises(PolicyError, match="promotion"):
        load_policy(bad)


def test_under_star_only_a_figure_that_needs_context_may_be_absent():
    t = table()
    for model in ("candidate", "current"):
        del t.figures["regression"][model]["hallucination_rate"]
    assert decide(t, POLICY).decision == "promote", "no context before the drift: nothing to ground answers in"
    for model in ("candidate", "current"):
        del t.figures["regression"][model]["toxicity_rate"]
    verdict = decide(t, POLICY)
    assert verdict.decision == "hold" and any("regression toxicity_rate: no figure" in r for r in verdict.reasons)
