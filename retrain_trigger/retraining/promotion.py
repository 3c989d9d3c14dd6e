"""Promotion by policy: the evaluation table of a finished job in, ``promote``, ``hold`` or ``reject`` out.

The rules live in the policy file's ``promotion`` section::

    promotion:
      min_events: 20          # fewer drifted events evaluated: hold, whatever the rules say
      promote:                # every condition must hold to promote
        - {set: drifted, metric: hallucination_rate, improves_by_at_least: 0.02}
        - {set: regression, metric: "*", worsens_by_at_most: 0.01}
      reject:                 # any condition that holds rejects
        - {set: drifted, metric: held_out_loss, worsens_by_more_than: 0.0}

A condition compares the candidate with the current model on one set (``drifted``: the snapshot's
held-out events; ``regression``: the events from before the drift) for one metric, or for every
judged metric (``"*"``: a promote condition must then hold for each, a reject condition rejects
when it holds for any). Every judged metric is better when lower. A figure the evaluation does
not have (a detector not installed, no answers generated) never promotes and never rejects: the
candidate is held, and the reason says which figure was missing. The one exception: under
``"*"``, ``hallucination_rate`` is passed over on a set where no event had context (there is
nothing to ground an answer in); named on its own, it holds the candidate like any other. Anything that is neither
promoted nor rejected is held for a person (``driftwarden models promote | reject``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from driftwarden.retrain_trigger.retraining.evaluation import LOWER_IS_BETTER, Table

Decision = Literal["promote", "hold", "reject"]
#: Figures that only events with context have: ``"*"`` passes over them when no event of a set had any.
CONTEXT_ONLY = ("hallucination_rate",)


class Condition(BaseModel):
    """One comparison of the candidate with the current model."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    set: Literal["drifted", "regression"]
    """``drifted``: the snapshot's held-out events (the new population); ``regression``: the fixed set
    of the segment's events from before the drift."""
    metric: Literal["held_out_loss", "hallucination_rate", "toxicity_rate", "refusal_rate", "empty_rate", "*"]
    """The figure compared (every one is better when lower); ``*``: each of them."""
    improves_by_at_least: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Holds when current − candidate ≥ this."""
    worsens_by_at_most: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Holds when candidate − current ≤ this."""
    worsens_by_more_than: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Holds when candidate − current > this (for ``reject``)."""

    @model_validator(mode="after")
    def _one_bound(self) -> Condition:
        given = [b for b in (self.improves_by_at_least, self.worsens_by_at_most, self.worsens_by_more_than)
                 if b is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of improves_by_at_least, worsens_by_at_most, worsens_by_more_than")
        return self

    def metrics(self) -> tuple[str, ...]:
        return LOWER_IS_BETTER if self.metric == "*" else (self.metric,)

    def judge(self, metric: str, candidate: float | None, current: float | None) -> tuple[bool | None, str]:
        """(holds, reason); holds is None when a figure is missing."""
        if self.improves_by_at_least is not None:
            words, bound = "improves by at least", self.improves_by_at_least
        elif self.worsens_by_at_most is not None:
            words, bound = "worsens by at most", self.worsens_by_at_most
        else:
            words, bound = "worsens by more than", self.worsens_by_more_than
        if candidate is None or current is None:
            missing = "candidate" if candidate is None else "current"
            return None, f"{self.set} {metric}: no figure for the {missing} model, so '{words} {bound:g}' is not known"
        change = candidate - current
        if self.improves_by_at_least is not None:
            holds = -change >= bound - 1e-12
        elif self.worsens_by_at_most is not None:
            holds = change <= bound + 1e-12
        else:
            holds = change > bound + 1e-12
        return holds, (f"{self.set} {metric}: candidate {candidate:.4f} vs current {current:.4f} ({change:+.4f}); "
                       f"{words} {bound:g}: {'holds' if holds else 'does not hold'}")


class PromotionPolicy(BaseModel):
    """What happens to a finished job's adapter: promoted to champion, held for a person, or rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    min_events: int = Field(20, ge=0, le=100_000)
    """A candidate evaluated on fewer drifted events than this is held, whatever the rules say."""
    promote: list[Condition] = Field(default_factory=list)
    """Every condition must hold to promote; empty: never promoted by policy (always held for a person)."""
    reject: list[Condition] = Field(default_factory=list)
    """A condition that holds rejects the candidate (checked first)."""


@dataclass
class Verdict:
    decision: Decision
    reasons: list[str] = field(default_factory=list)


def _figure(table: Table, set_name: str, model: str, metric: str) -> float | None:
    return table.figures.get(set_name, {}).get(model, {}).get(metric)


def decide(table: Table, policy: PromotionPolicy) -> Verdict:
    """Reject when a reject condition holds; promote when every promote condition holds (and enough
    drifted events were evaluated); otherwise hold. Every condition's outcome is in the reasons."""
    rejected: list[str] = []
    for cond in policy.reject:
        for metric in cond.metrics():
            holds, why = cond.judge(metric, _figure(table, cond.set, "candidate", metric),
                                    _figure(table, cond.set, "current", metric))
            if holds:
                rejected.append("reject rule: " + why)
    if rejected:
        return Verdict("reject", rejected)
    reasons: list[str] = []
    all_hold = bool(policy.promote)
    if not policy.promote:
        reasons.append("the policy has no promote rules: every candidate is held for a person")
    events = table.counts.get("drifted", 0)
    if events < policy.min_events:
        all_hold = False
        reasons.append(f"only {events} drifted events were evaluated (the policy's min_events is "
                       f"{policy.min_events})")
    for cond in policy.promote:
        if not table.figures.get(cond.set):
            all_hold = False
            reasons.append(f"promote rule: the evaluation has no {cond.set} figures, so '{cond.set} "
                           f"{cond.metric}' is not known")
            continue
        for metric in cond.metrics():
            absent = all(_figure(table, cond.set, m, metric) is None for m in ("candidate", "current"))
            if cond.metric == "*" and metric in CONTEXT_ONLY and absent:
                continue  # no event of the set had context: nothing to judge it on, by design
            holds, why = cond.judge(metric, _figure(table, cond.set, "candidate", metric),
                                    _figure(table, cond.set, "current", metric))
            all_hold = all_hold and bool(holds)
            reasons.append("promote rule: " + why)
    if all_hold:
        return Verdict("promote", reasons)
    return Verdict("hold", reasons + ["held for a person: driftwarden models promote | reject VERSION"])
