"""The policy's rules: a YAML file validated against a typed schema.

A rule watches one metric of a segment (app, model_version, field) window by window and fires
when the metric crosses its ``threshold`` in ``consecutive`` windows; it resolves when the
metric comes back past ``clear_threshold`` (hysteresis), and does not fire again for the same
segment within ``cooldown_minutes`` of firing. A rule with ``retrain: true`` also requests
retraining, once per episode. Errors name the rule and the field::

    policy file rules.yaml: rule 'drift-prompt' field 'threshold': Input should be a valid number
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from driftwarden.core.errors import PolicyError
from driftwarden.retrain_trigger.retraining.promotion import PromotionPolicy

Metric = Literal[
    "detector_rate", "detector_mean", "drift_p_value", "drift_statistic", "latency_p95_ms", "error_rate",
    "cost_per_hour", "feedback_negative_rate",
]
DETECTOR_METRICS = ("detector_rate", "detector_mean")
#: Metrics not judged on windows with fewer than ``min_events`` results (or feedback records).
COUNTED_METRICS = (*DETECTOR_METRICS, "feedback_negative_rate")
DRIFT_METRICS = ("drift_p_value", "drift_statistic")
#: Which way each metric goes when things get worse.
WORSE_WHEN: dict[str, Literal["above", "below"]] = {
    "detector_rate": "above", "detector_mean": "above", "drift_p_value": "below", "drift_statistic": "above",
    "latency_p95_ms": "above", "error_rate": "above", "cost_per_hour": "above", "feedback_negative_rate": "above",
}


class SegmentSelector(BaseModel):
    """Which segments a rule watches; shell-style patterns (``*``, ``chat-*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    app: str = "*"
    """App name pattern."""
    model_version: str = "*"
    """Model version pattern."""
    field: Literal["prompt", "response", "*"] = "*"
    """For drift metrics: the embedded field; detection metrics are per event (field ``*``)."""

    def matches(self, app: str, model_version: str, field: str) -> bool:
        return (fnmatch.fnmatchcase(app, self.app) and fnmatch.fnmatchcase(model_version, self.model_version)
                and (self.field == "*" or field == self.field))


class Rule(BaseModel):
    """One alerting rule."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    """Unique, lower-case name; part of the alert's dedupe key."""
    metric: Metric
    """``detector_rate`` (share of events a detector flagged), ``detector_mean`` (mean score),
    ``drift_p_value`` / ``drift_statistic`` (embedding drift window), ``latency_p95_ms``,
    ``error_rate`` (share of failed calls), ``cost_per_hour`` (US dollars), ``feedback_negative_rate``
    (share of the late feedback in the window below 0)."""
    detector: str | None = None
    """The detector, for ``detector_rate`` and ``detector_mean``."""
    segment: SegmentSelector = Field(default_factory=SegmentSelector)
    """Which segments the rule watches."""
    threshold: float = Field(allow_inf_nan=False)
    """Fires when the metric is past this (above it; below it for ``drift_p_value``)."""
    clear_threshold: float | None = Field(None, allow_inf_nan=False)
    """Resolves when the metric is back past this (hysteresis); default: the threshold."""
    consecutive: int = Field(1, ge=1, le=100)
    """Windows in a row past the threshold before the rule fires."""
    cooldown_minutes: float = Field(60.0, ge=0, le=525_600, allow_inf_nan=False)
    """After firing, the same rule and segment do not fire again for this long."""
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    """Alert severity (PagerDuty's and Alertmanager's ``severity``)."""
    retrain: bool = False
    """Request retraining when the rule fires (once per episode)."""
    per: Literal["segment", "subject"] = "segment"
    """``subject``: judge ``cost_per_hour`` per user of the segment (whom ``DRIFTWARDEN_COST_SUBJECT``
    names: the ``user_id`` by default), tracking the policy's ``max_subjects`` top spenders of each
    window: "alert me when one user spends more than $X per hour"."""
    min_events: int = Field(20, ge=1)
    """Detection windows with fewer events (for ``feedback_negative_rate``: fewer feedback records)
    are not judged (too noisy)."""
    description: str = ""
    """What the rule means, for the alert's summary."""

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.metric in DETECTOR_METRICS and not self.detector:
            raise ValueError(f"metric {self.metric} needs 'detector' (the name of a detector: toxicity, "
                             f"prompt_injection, hallucination, pii, or one a plug-in registers)")
        if self.metric not in DETECTOR_METRICS and self.detector:
            raise ValueError(f"'detector' only goes with {' or '.join(DETECTOR_METRICS)}")
        if self.per == "subject" and self.metric != "cost_per_hour":
            raise ValueError("'per: subject' only goes with cost_per_hour")
        if self.metric not in DRIFT_METRICS and self.segment.field != "*":
            raise ValueError("segment.field only applies to drift metrics")
        clear = self.clear
        if self.worse_when == "above" and clear > self.threshold:
            raise ValueError(f"clear_threshold {clear} must not be above threshold {self.threshold} "
                             f"for a metric that is worse when higher")
        if self.worse_when == "below" and clear < self.threshold:
            raise ValueError(f"clear_threshold {clear} must not be below threshold {self.threshold} "
                             f"for a metric that is worse when lower")
        return self

    @property
    def worse_when(self) -> Literal["above", "below"]:
        return WORSE_WHEN[self.metric]

    @property
    def clear(self) -> float:
        return self.threshold if self.clear_threshold is None else self.clear_threshold

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.worse_when == "above" else value < self.threshold

    def cleared(self, value: float) -> bool:
        return value <= self.clear if self.worse_when == "above" else value >= self.clear


class Policy(BaseModel):
    """A policy file."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    version: Literal[1] = 1
    """Format version of the file."""
    window_size: int = Field(200, ge=1, le=1_000_000)
    """Detection windows (per app and model version) close after this many events ..."""
    window_minutes: float = Field(5.0, gt=0, le=10_080, allow_inf_nan=False)
    """... or after this many minutes, whichever comes first."""
    max_subjects: int = Field(100, ge=1, le=100_000)
    """Users tracked per detection window for ``per: subject`` rules: the top spenders (when more
    come, the smallest spender so far is dropped and counted)."""
    rules: list[Rule]
    """The rules; names are unique."""
    promotion: PromotionPolicy = Field(default_factory=PromotionPolicy)
    """What happens to a finished retraining job's adapter (promote, hold for a person, reject):
    see :mod:`~driftwarden.retrain_trigger.retraining.promotion`."""

    @model_validator(mode="after")
    def _unique(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return self

    @property
    def per_subject(self) -> bool:
        """Whether any rule judges per subject (the windows then track spenders)."""
        return any(rule.per == "subject" for rule in self.rules)

    def fingerprint(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def default_policy_path() -> Path:
    """The policy that ships with driftwarden."""
    from importlib import resources

    return Path(str(resources.files("driftwarden").joinpath("data", "policy", "default.yaml")))


def load_policy(path: Path | None = None) -> Policy:
    """The policy in ``path`` (default: the one that ships), or a PolicyError naming rule and field."""
    import yaml

    path = Path(path) if path is not None else default_policy_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(str(path), "the file cannot be read", cause=exc) from exc
    except yaml.YAMLError as exc:
        raise PolicyError(str(path), f"not valid YAML: {exc}", cause=exc) from exc
    if not isinstance(raw, dict):
        raise PolicyError(str(path), "the file must hold a mapping with a 'rules' list")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(str(path), _describe(exc, raw)) from exc


def _describe(exc: ValidationError, raw: dict) -> str:
    parts = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            rules = raw.get("rules") or []
            name = rules[loc[1]].get("name") if loc[1] < len(rules) and isinstance(rules[loc[1]], dict) else None
            where = f"rule {name!r}" if name else f"rule #{loc[1] + 1}"
            loc = loc[2:]
        field = ".".join(str(x) for x in loc)
        parts.append(" ".join(p for p in (where, f"field {field!r}" if field else "") if p) + f": {err['msg']}")
    return "; ".join(parts)
