"""The levels that dashboards and the report draw, read from what owns them: the drift test's
level from the settings (``DRIFTWARDEN_DRIFT__ALPHA``), the alert thresholds on the drift p-value
from the policy file. Nothing here is a number of its own."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from driftwarden.core.detector_configs import DriftConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Levels:
    alpha: float = DriftConfig.model_fields["alpha"].default
    """The drift test's level: a window with p below it counts as drifted."""
    drift_rules: tuple[tuple[str, float], ...] = ()
    """(rule, threshold) of the policy's rules on the drift p-value."""

    @property
    def drift_threshold(self) -> float | None:
        """The strictest of the policy's drift p-value thresholds (None: no such rule)."""
        return min((t for _, t in self.drift_rules), default=None)


def levels(settings) -> Levels:
    """The settings' drift level and the policy's drift rules (none when the policy is unreadable:
    logged, and the levels are drawn without them)."""
    from driftwarden.retrain_trigger.alerting.rules import load_policy

    try:
        rules = load_policy(settings.policy_file).rules
    except Exception:  # noqa: BLE001 - dashboards and the report go out without the policy's lines
        log.warning("the policy file could not be read; dashboards and the report show no rule thresholds. Check "
                    "it with `driftwarden policy check`", exc_info=True)
        rules = []
    return Levels(alpha=settings.drift.alpha,
                  drift_rules=tuple((r.name, r.threshold) for r in rules if r.metric == "drift_p_value"))
