"""Firing alerts are re-sent to receivers that end alerts not re-sent (Alertmanager), until resolved."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.retrain_trigger.alerting.dispatch import Dispatcher
from driftwarden.retrain_trigger.alerting.receivers import Receiver

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def alert(key: str, episode: int, status: str = "firing") -> AlertEvent:
    start = T0 + timedelta(minutes=episode)
    return AlertEvent(alert_id=f"{key}@{episode}", dedupe_key=key, status=status, rule="r", severity="warning",
                      app="a", model_version="v", field="prompt", metric="m", value=1.0, threshold=0.5, summary="s",
                      window_id="w", window_start=start, window_end=start, dashboard_url="", starts_at=start,
                      policy_fingerprint="p")


def dispatcher(sent: list) -> Dispatcher:
    receivers = [Receiver("alertmanager", "http://am.test/api/v2/alerts", lambda a: a.alert_id, resend=True),
                 Receiver("slack", "http://slack.test/x", lambda a: a.alert_id)]
    d = Dispatcher(AlertsConfig(), receivers)

    async def post(receiver, body):
        sent.append((receiver.name, body))

    d._post = post  # the HTTP itself is tested against a real Alertmanager (tests/integration/test_operations.py)
    return d


def test_only_the_latest_unresolved_episode_of_each_rule_and_segment_is_re_sent_and_only_where_wanted():
    sent: list = []
    d = dispatcher(sent)
    d.track([alert("x", 1), alert("y", 1), alert("x", 2)])  # x's second episode replaces its first
    d.track([alert("x", 1, "resolved")])  # the old episode's resolve does not end the new one
    assert asyncio.run(d.resend_firing()) == 2
    assert sorted(sent) == [("alertmanager", "x@2"), ("alertmanager", "y@1")]  # never to Slack
    assert d.counts["alertmanager_resent"] == 2
    d.track([alert("x", 2, "resolved")])
    sent.clear()
    asyncio.run(d.resend_firing())
    assert sent == [("alertmanager", "y@1")]


def test_a_delivered_alert_is_tracked_and_its_resolve_stops_the_re_sending():
    sent: list = []
    d = dispatcher(sent)
    asyncio.run(d.deliver(alert("z", 1)))
    assert list(d.firing) == ["z"]
    asyncio.run(d.deliver(alert("z", 1, "resolved")))
    assert d.firing == {}
    sent.clear()
    assert asyncio.run(d.resend_firing()) == 0 and sent == []


def test_a_failed_re_send_is_counted_and_waits_for_the_next_round():
    from driftwarden.core.errors import DeliveryError

    d = dispatcher([])

    async def down(receiver, body):
        raise DeliveryError(receiver.name, "HTTP 503", retryable=True)

    d._post = down
    d.track([alert("x", 1)])
    assert asyncio.run(d.resend_firing()) == 0
    assert d.counts["alertmanager_resend_failed"] == 1 and d.counts["alertmanager_undelivered"] == 0
