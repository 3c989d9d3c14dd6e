"""Alertmanager (API v2): alerts POSTed to ``/api/v2/alerts``; it groups and routes them itself."""

from __future__ import annotations

from typing import Any

from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.retrain_trigger.alerting.receivers import MAX_EXAMPLES, Receiver, channel, clip, http_url, iso_time

AM_LABEL, AM_ANNOTATION = 1024, 4096

def alertmanager_payload(alert: AlertEvent) -> list[dict[str, Any]]:
    """``POST /api/v2/alerts`` body: a list of postable alerts (labels, annotations, times, URL).

    Alertmanager groups and deduplicates on the label set, so the labels identify the rule and
    segment; ``endsAt`` is set when the alert resolved.
    """
    body: dict[str, Any] = {
        "labels": {clip(k, 128): clip(v, AM_LABEL) for k, v in alert.labels.items()},
        "annotations": {
            "summary": clip(alert.summary, 1024),
            "description": clip(alert.summary, AM_ANNOTATION),
            "value": f"{alert.value:.6g}",
            "threshold": f"{alert.threshold:.6g}",
            "window_id": clip(alert.window_id, AM_LABEL),
            "example_event_ids": clip(",".join(alert.example_event_ids[:MAX_EXAMPLES]), AM_ANNOTATION),
            "alert_id": clip(alert.alert_id, AM_LABEL),
            "retrain_requested": str(alert.retrain_requested).lower(),
        },
        "startsAt": iso_time(alert.starts_at),
    }
    link = http_url(alert.dashboard_url)
    if link:
        body["generatorURL"] = link
    if alert.ends_at is not None:
        body["endsAt"] = iso_time(alert.ends_at)
    return [body]


@channel("alertmanager")
def receiver(config: AlertsConfig) -> Receiver | None:
    if not config.alertmanager_url:
        return None
    return Receiver("alertmanager", config.alertmanager_url.rstrip("/") + "/api/v2/alerts", alertmanager_payload,
                    setting="DRIFTWARDEN_ALERTS__ALERTMANAGER_URL", resend=True)
