"""Alert delivery over real HTTP to local recording servers.

PagerDuty and Slack cannot run here, so each is a local HTTP server that records what it
receives; every payload is checked against that service's documented format (PagerDuty Events
API v2, Slack incoming webhooks, and Alertmanager API v2 ``postableAlerts`` for the same alert).
Delivery to a real Alertmanager, re-sending included, is in ``test_operations.py``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime

import pytest

from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.deploy.local.broker import free_port
from driftwarden.retrain_trigger.alerting.dispatch import Dispatcher
from driftwarden.tests.recording_http import RecordingServer

pytestmark = pytest.mark.integration
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
T0 = datetime(2026, 5, 1, 8, tzinfo=UTC)


def alert(status: str = "firing") -> AlertEvent:
    return AlertEvent(
        alert_id="prompt-drift:chat:v1:prompt@x", dedupe_key="prompt-drift:chat:v1:prompt", status=status,
        rule="prompt-drift", severity="critical", app="chat", model_version="v1", field="prompt",
        metric="drift_p_value", value=0.0009, threshold=0.01, baseline=0.4, summary="Prompts moved. " * 3,
        example_event_ids=["e1", "e2"], window_id="chat/v1/prompt/7", window_start=T0, window_end=T0,
        labels={"alertname": "prompt-drift", "severity": "critical", "app": "chat", "model_version": "v1"},
        dashboard_url="http://grafana:3000/d/driftwarden-drift?var-app=chat", retrain_requested=True,
        starts_at=T0, ends_at=T0 if status == "resolved" else None, policy_fingerprint="abc",
    )


def deliver(config: AlertsConfig, *alerts: AlertEvent, timeout_s: float = 20.0) -> Dispatcher:
    """Deliver each alert in turn as the alert agent does: the next only once every receiver
    has the previous one or gave up."""
    async def go():
        d = Dispatcher(config)
        await d.start()
        for a in alerts:
            await asyncio.wait_for(d.deliver(a), timeout_s)
        await d.stop()
        return d

    return asyncio.run(go())


def test_each_receiver_gets_its_documented_format_for_firing_and_resolved():
    with RecordingServer() as server:
        config = AlertsConfig(alertmanager_url=server.url, pagerduty_url=f"{server.url}/v2/enqueue",
                              pagerduty_routing_key="R0UT1NGKEY", slack_webhook_url=f"{server.url}/services/T/B/X")
        d = deliver(config, alert("firing"), alert("resolved"))
        am = server.received("/api/v2/alerts")
        pd = server.received("/v2/enqueue")
        slack = server.received("/services/T/B/X")
    assert d.counts["alertmanager_delivered"] == d.counts["pagerduty_delivered"] == d.counts["slack_delivered"] == 2
    # Alertmanager v2: a JSON array of postable alerts; labels and annotations are string maps.
    firing, resolved = am[0]["json"], am[1]["json"]
    assert isinstance(firing, list) and len(firing) == 1
    for body in (firing[0], resolved[0]):
        assert set(body) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        assert all(isinstance(v, str) for v in {**body["labels"], **body["annotations"]}.values())
        assert body["labels"]["alertname"] == "prompt-drift" and RFC3339.match(body["startsAt"])
        assert body["generatorURL"].startswith("http://grafana:3000/")
    assert "endsAt" not in firing[0] and RFC3339.match(resolved[0]["endsAt"])
    assert am[0]["headers"]["Content-Type"].startswith("application/json")
    # PagerDuty Events v2: trigger with payload (summary, source, severity), resolve by dedup_key.
    trigger, resolve = pd[0]["json"], pd[1]["json"]
    assert trigger["routing_key"] == "R0UT1NGKEY" and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "prompt-drift:chat:v1:prompt"
    assert {"summary", "source", "severity"} <= set(trigger["payload"])
    assert len(trigger["payload"]["summary"]) <= 1024 and trigger["payload"]["severity"] in {
        "critical", "error", "warning", "info"}
    assert RFC3339.match(trigger["payload"]["timestamp"]) and trigger["links"][0]["href"].startswith("http")
    assert resolve == {"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    # Slack incoming webhook: text (the notification) and blocks.
    assert "FIRING" in slack[0]["json"]["text"] and "RESOLVED" in slack[1]["json"]["text"]
    assert slack[0]["json"]["blocks"][0]["type"] == "header"


def test_server_errors_are_retried_and_client_errors_are_not():
    with RecordingServer() as server:
        server.script["/api/v2/alerts"] = [503, 503]
        server.script["/services/T/B/X"] = [400]
        config = AlertsConfig(alertmanager_url=server.url, slack_webhook_url=f"{server.url}/services/T/B/X",
                              backoff_s=0.05, max_attempts=4)
        d = deliver(config, alert())
        attempts = [r["path"] for r in server.requests]
    assert attempts.count("/api/v2/alerts") == 3 and d.counts["alertmanager_delivered"] == 1
    assert attempts.count("/services/T/B/X") == 1, "a 400 cannot be fixed by retrying"
    assert d.counts["slack_undelivered"] == 1 and d.counts["slack_failed_attempts"] == 1


def test_a_dead_receiver_does_not_hold_up_the_others():
    with RecordingServer() as server:
        config = AlertsConfig(alertmanager_url=f"http://127.0.0.1:{free_port()}",
                              slack_webhook_url=f"{server.url}/hook", backoff_s=0.05, max_attempts=3)
        d = deliver(config, alert(), alert("resolved"))
        assert len(server.received("/hook")) == 2
    assert d.counts["alertmanager_undelivered"] == 2 and d.counts["alertmanager_failed_attempts"] == 6


def test_delivery_is_settled_when_deliver_returns_so_the_offset_may_be_committed():
    with RecordingServer() as server:
        server.script["/api/v2/alerts"] = [503]

        async def go():
            d = Dispatcher(AlertsConfig(alertmanager_url=server.url, backoff_s=0.05))
            await d.start()
            outcome = await d.deliver(alert())
            received = len(server.received("/api/v2/alerts"))
            await d.stop()
            return outcome, received

        outcome, received = asyncio.run(go())
    assert outcome == {"alertmanager": True} and received == 1, "delivered (after a retry) before deliver returned"


def test_a_failing_or_malformed_slack_webhook_is_never_logged_and_does_not_stop_the_next_alert(caplog):
    dead = f"http://127.0.0.1:{free_port()}/services/T0/B0/dead-s3cret"
    malformed = "hooks.slack.com/services/T0/B0/malformed-s3cret"
    with RecordingServer() as server, caplog.at_level(logging.DEBUG):
        for url in (dead, malformed):
            config = AlertsConfig(slack_webhook_url=url, alertmanager_url=server.url, backoff_s=0.01, max_attempts=2,
                                  pagerduty_routing_key="pd-s3cret-key", pagerduty_url=f"http://127.0.0.1:{free_port()}")
            d = deliver(config, alert(), alert("resolved"))
            assert d.counts["slack_undelivered"] == 2 and d.counts["pagerduty_undelivered"] == 2
            assert d.counts["alertmanager_delivered"] == 2
        assert len(server.received("/api/v2/alerts")) == 4
    assert d.counts["slack_failed_attempts"] == 2, "a malformed URL is not retried"
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "s3cret" not in text
    assert "not delivered to slack" in text and "DRIFTWARDEN_ALERTS__SLACK_WEBHOOK_URL" in text


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_an_alert_a_receiver_did_not_take_is_delivered_from_durable_retry_after_a_restart(tmp_path):
    """The hand-over is a row in the real embedded store: a new process (a new client on the same
    directory, after the first one closed) finds it and delivers it once the receiver is back."""
    from datetime import timedelta

    from driftwarden.core.settings import load_settings
    from driftwarden.core.storage.client import open_store
    from driftwarden.retrain_trigger.alerting.retry import DeliveryRetries

    settings = load_settings(data_dir=tmp_path)
    with RecordingServer() as server:
        config = AlertsConfig(alertmanager_url=server.url, max_attempts=2, backoff_s=0.01, retry_interval_s=60,
                              retry_max_age_hours=1)
        server.script["/api/v2/alerts"] = [503, 503, 503]  # the agent's 2 tries and the first retry round
        clock = Clock(T0)
        store = open_store(settings)
        outcomes = deliver_outcomes(config, alert())
        assert outcomes == {"alertmanager": False}
        DeliveryRetries(store, config, clock).park(alert(), ["alertmanager"])
        store.close()

        store = open_store(settings)  # the sink restarted
        retries = DeliveryRetries(store, config, clock)
        assert retries.due() == [] and retries.pending() == 1  # not before its next try
        clock.now = T0 + timedelta(seconds=61)
        assert run_round(retries, config) == {"pending": 1}  # the receiver still answers 503
        clock.now = T0 + timedelta(seconds=61 + 121)
        assert run_round(retries, config) == {"delivered": 1}
        assert retries.pending() == 0 and len(server.received("/api/v2/alerts")) == 1

        # A receiver that never comes back is given up after retry_max_age_hours, and said so.
        server.script["/api/v2/alerts"] = [503] * 10
        retries.park(alert("resolved"), ["alertmanager"])
        clock.now = T0 + timedelta(hours=2)
        assert run_round(retries, config) == {"abandoned": 1}
        assert retries.pending() == 0
        store.close()


def deliver_outcomes(config: AlertsConfig, a: AlertEvent) -> dict[str, bool]:
    async def go():
        d = Dispatcher(config)
        await d.start()
        try:
            return await d.deliver(a)
        finally:
            await d.stop()

    return asyncio.run(go())


def run_round(retries, config: AlertsConfig) -> dict[str, int]:
    from driftwarden.retrain_trigger.alerting.retry import retry_due

    async def go():
        d = Dispatcher(config)
        await d.start()
        try:
            return await retry_due(retries, d, asyncio.to_thread)
        finally:
            await d.stop()

    return asyncio.run(go())
