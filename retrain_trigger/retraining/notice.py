"""A retraining decision as an alert, for the receivers the on-call engineer already watches.

A candidate ``hold`` for a person is a **firing** alert (``retrain-decision``, severity warning):
someone has to look. A decision that needs nobody (``promote`` or ``reject`` by the policy) and
a person's decision on a held candidate are **resolved** alerts of the same key, annotated with
the decision, who took it, the reasons and the evaluation table; so Alertmanager and PagerDuty
close what the hold opened, and Slack shows the outcome. Labels and severity are the same in both
(Alertmanager matches a resolution to what fired by its labels): the decision is in the summary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from driftwarden.core.schemas import AlertEvent, RetrainStatus
from driftwarden.detectors.drift.windows import join_id

RULE = "retrain-decision"
WORDS = {"promote": "promoted to champion", "hold": "held for a person's approval", "reject": "rejected"}
VALUE = {"promote": 1.0, "hold": 0.0, "reject": -1.0}


def decision_alert(status: RetrainStatus, table: str, grafana_url: str, policy_fingerprint: str = "",
                   who: str = "policy") -> AlertEvent:
    """The alert that carries ``status``'s decision (``status.decision`` must be set)."""
    now = datetime.now(UTC)
    decision = status.decision or "hold"
    firing = decision == "hold" and who == "policy"
    key = join_id(RULE, status.app, status.model_version, status.job_id, sep=":")
    version = (f"{status.registered_model} version {status.registered_version}" if status.registered_version
               else "its adapter (not registered)")
    reasons = "\n".join(f"- {r}" for r in status.decision_reasons[:12])
    follow = (" Decide with: driftwarden models promote|reject "
              f"{status.registered_model}/{status.registered_version} --by NAME --reason TEXT."
              if firing and status.registered_version else "")
    summary = (f"Retraining job {status.job_id} of {status.app} {status.model_version} (snapshot "
               f"{status.dataset_version}): {version} {WORDS[decision]} by {who}.{follow}\n{reasons}\n\n"
               f"Candidate against the current model:\n{table}")[:20_000]
    labels = {"alertname": RULE, "severity": "warning", "app": status.app,
              "model_version": status.model_version, "field": "*", "metric": "retrain_decision",
              "service": "driftwarden", "job_id": status.job_id}  # no decision label: the resolution must match
    query = urlencode({"var-app": status.app, "var-model_version": status.model_version})
    return AlertEvent(
        alert_id=f"{key}@{status.job_id}", dedupe_key=key, status="firing" if firing else "resolved", rule=RULE,
        severity="warning", app=status.app, model_version=status.model_version, field="*",
        metric="retrain_decision", value=VALUE[decision], threshold=0.0, summary=summary,
        window_id=status.job_id, window_start=now, window_end=now, labels=labels,
        dashboard_url=f"{grafana_url}/d/driftwarden-retraining?{query}", starts_at=now,
        ends_at=None if firing else now, policy_fingerprint=policy_fingerprint,
    )
