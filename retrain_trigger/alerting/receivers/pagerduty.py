"""PagerDuty (Events API v2): ``trigger`` when firing, ``resolve`` when resolved, one dedup key per rule and segment."""

from __future__ import annotations

from typing import Any

from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.retrain_trigger.alerting.receivers import (
    MAX_EXAMPLES, Receiver, bounded_key, channel, clip, http_url, iso_time, json_number,
)

#: PagerDuty's summary (1,024) and dedup_key (255) limits; our own for the other fields.
PD_SUMMARY, PD_KEY, PD_FIELD = 1024, 255, 255

def pagerduty_payload(alert: AlertEvent, routing_key: str) -> dict[str, Any]:
    """Events API v2 body: ``trigger`` with a payload when firing, ``resolve`` when resolved.
    Fields within PagerDuty's limits (summary 1,024 characters, dedup_key 255)."""
    dedup_key = bounded_key(alert.dedupe_key, PD_KEY)
    if alert.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": clip(alert.summary, PD_SUMMARY),
            "source": clip(f"driftwarden/{alert.app}/{alert.model_version}", PD_FIELD),
            "severity": alert.severity,
            "timestamp": iso_time(alert.starts_at),
            "component": clip(alert.app, PD_FIELD),
            "group": clip(alert.model_version, PD_FIELD),
            "class": clip(alert.metric, PD_FIELD),
            "custom_details": {
                "rule": clip(alert.rule, PD_FIELD), "field": clip(alert.field, PD_FIELD),
                "detector": alert.detector and clip(alert.detector, PD_FIELD), "value": json_number(alert.value),
                "threshold": json_number(alert.threshold), "baseline": json_number(alert.baseline),
                "window_id": clip(alert.window_id, 1024),
                "example_event_ids": [clip(e, 256) for e in alert.example_event_ids[:MAX_EXAMPLES]],
                "alert_id": clip(alert.alert_id, 1024), "retrain_requested": alert.retrain_requested,
            },
        },
        "client": "driftwarden",
    }
    link = http_url(alert.dashboard_url)
    if link:
        body["links"] = [{"href": link, "text": "driftwarden dashboard"}]
        body["client_url"] = link
    return body


@channel("pagerduty")
def receiver(config: AlertsConfig) -> Receiver | None:
    if config.pagerduty_routing_key is None:
        return None
    key = config.pagerduty_routing_key.get_secret_value()
    return Receiver("pagerduty", config.pagerduty_url, lambda a, key=key: pagerduty_payload(a, key), secrets=(key,),
                    setting="DRIFTWARDEN_ALERTS__PAGERDUTY_ROUTING_KEY")
