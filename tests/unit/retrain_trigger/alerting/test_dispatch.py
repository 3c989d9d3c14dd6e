"""Alert payloads carry event data safely: escaped for Slack, http(s) links only, bounded fields."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.retrain_trigger.alerting.receivers import receivers_from
from driftwarden.retrain_trigger.alerting.receivers.alertmanager import alertmanager_payload
from driftwarden.retrain_trigger.alerting.receivers.pagerduty import pagerduty_payload
from driftwarden.retrain_trigger.alerting.receivers.slack import slack_escape, slack_payload

T0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
HOSTILE = "<!channel> <https://evil.example|Open the runbook> & <@U123>"


def alert(status: str = "firing", **changes) -> AlertEvent:
    fields = dict(
        alert_id="prompt-drift:chat:v1:prompt@x", dedupe_key="prompt-drift:chat:v1:prompt", status=status,
        rule="prompt-drift", severity="critical", app="chat", model_version="v1", field="prompt",
        metric="drift_p_value", value=0.0009, threshold=0.01, baseline=0.4, summary="Prompts moved.",
        example_event_ids=["e1", "e2"], window_id="chat/v1/prompt/7", window_start=T0, window_end=T0,
        labels={"alertname": "prompt-drift", "severity": "critical", "app": "chat", "model_version": "v1"},
        dashboard_url="http://grafana:3000/d/driftwarden-drift?var-app=chat", retrain_requested=True,
        starts_at=T0, ends_at=T0 if status == "resolved" else None, policy_fingerprint="abc",
    )
    fields.update(changes)
    return AlertEvent.model_construct(**fields)  # as a hostile producer could send it, unvalidated


def mrkdwn_texts(body: dict) -> list[str]:
    texts = [body["text"]]
    for block in body["blocks"]:
        if block.get("text", {}).get("type") == "mrkdwn":
            texts.append(block["text"]["text"])
        texts += [e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return texts


def test_slack_escaping_is_slacks_own_three_characters():
    assert slack_escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"


def test_a_hostile_name_or_summary_never_pings_or_links_in_slack():
    body = slack_payload(alert(app=HOSTILE, model_version=HOSTILE, rule=HOSTILE, summary=HOSTILE,
                               example_event_ids=[HOSTILE, "e`2"]))
    texts = mrkdwn_texts(body)
    assert len(texts) == 3
    for text in texts:
        assert "<" not in text and ">" not in text, text
        assert "&lt;!channel&gt;" in text or "Example events" in text
    assert all(b["text"].get("verbatim") for b in body["blocks"] if b.get("text", {}).get("type") == "mrkdwn")
    assert "&lt;https://evil.example|Open the runbook&gt;" in body["blocks"][1]["text"]["text"]


def test_the_dashboard_button_links_to_http_or_https_only():
    assert slack_payload(alert())["blocks"][-1]["elements"][0]["url"].startswith("http://grafana:3000/")
    for url in ("javascript:alert(1)", "file:///etc/passwd", "<https://evil|x>", "", "https://"):
        body = slack_payload(alert(dashboard_url=url))
        assert all(b["type"] != "actions" for b in body["blocks"]), url
        assert "generatorURL" not in alertmanager_payload(alert(dashboard_url=url))[0]
        pd = pagerduty_payload(alert(dashboard_url=url), "k")
        assert "links" not in pd and "client_url" not in pd


def test_slack_fields_stay_within_slacks_limits_without_cutting_an_escape_in_half():
    body = slack_payload(alert(summary="<" * 5000, app="a" * 400, example_event_ids=["&" * 300] * 50))
    section = body["blocks"][1]["text"]["text"]
    assert len(section) <= 3000 and re.search(r"&(?!lt;)", section) is None
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    assert len(body["blocks"][2]["elements"][0]["text"]) <= 3000


def test_pagerduty_fields_are_bounded_and_trigger_and_resolve_share_a_bounded_dedup_key():
    long_key = "rule:" + "x" * 400
    trigger = pagerduty_payload(alert(summary="s" * 5000, app="a" * 1000, dedupe_key=long_key), "key")
    resolve = pagerduty_payload(alert("resolved", dedupe_key=long_key), "key")
    assert len(trigger["payload"]["summary"]) <= 1024
    assert len(trigger["dedup_key"]) <= 255 and trigger["dedup_key"] == resolve["dedup_key"]
    other = pagerduty_payload(alert(dedupe_key=long_key + "y"), "key")
    assert other["dedup_key"] != trigger["dedup_key"], "a cut key stays unique"
    for name in ("source", "component", "group", "class"):
        assert len(trigger["payload"][name]) <= 255, name


def test_values_json_cannot_hold_travel_as_text():
    body = pagerduty_payload(alert(value=float("inf"), baseline=float("nan")), "key")
    json.dumps(body, allow_nan=False)
    assert body["payload"]["custom_details"]["value"] == "inf"
    assert alertmanager_payload(alert(value=float("inf")))[0]["annotations"]["value"] == "inf"


def test_alertmanager_labels_and_annotations_are_bounded_and_free_of_control_characters():
    body = alertmanager_payload(alert(labels={"app": "a\x00b" + "c" * 5000}, summary="x\x1b[31m" * 2000))[0]
    assert len(body["labels"]["app"]) <= 1024 and "\x00" not in body["labels"]["app"]
    assert len(body["annotations"]["description"]) <= 4096 and "\x1b" not in body["annotations"]["description"]


@pytest.mark.parametrize("config", [
    AlertsConfig(slack_webhook_url="https://hooks.slack.test/services/T/B/s3cret"),
    AlertsConfig(pagerduty_routing_key="s3cret-routing-key"),
])
def test_a_receiver_never_shows_its_secret(config):
    (receiver,) = receivers_from(config)
    assert "s3cret" not in repr(receiver) and "s3cret" not in receiver.shown
    assert "s3cret" not in receiver.scrub(f"error for {receiver.url}, echoing {receiver.secrets[0]}")


def test_a_channel_is_one_module_registered_by_name_and_turned_on_by_its_factory(monkeypatch):
    from driftwarden.retrain_trigger.alerting import receivers
    from driftwarden.retrain_trigger.alerting.dispatch import Dispatcher

    monkeypatch.setattr(receivers, "_CHANNELS", dict(receivers.channels()))
    assert sorted(receivers.channels()) == ["alertmanager", "pagerduty", "slack"]

    @receivers.channel("teams")
    def teams(config):
        return receivers.Receiver("teams", "http://teams.example/hook", lambda a: {"text": a.summary})

    config = AlertsConfig(alertmanager_url="http://am:9093")
    assert [r.name for r in Dispatcher(config).receivers] == ["alertmanager", "teams"]
    assert Dispatcher(config).receivers[1].build(alert())["text"] == "Prompts moved."
    with pytest.raises(ValueError, match="registered twice"):
        receivers.channel("teams")(teams)
