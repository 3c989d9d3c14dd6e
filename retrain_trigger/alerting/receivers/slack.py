"""Slack (incoming webhooks): Block Kit with every text from event data escaped; the webhook URL is a secret."""

from __future__ import annotations

import re
from typing import Any

from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.retrain_trigger.alerting.receivers import MAX_EXAMPLES, Receiver, channel, clip, http_url

#: Slack's section and context text (3,000), header (150) and button URL (3,000) limits.
SLACK_TEXT, SLACK_HEADER, SLACK_URL = 3000, 150, 3000

def slack_escape(text: object) -> str:
    """Slack's documented escaping for text it parses as mrkdwn: ``&``, ``<`` and ``>``. With it,
    ``<!channel>`` or ``<https://evil|x>`` in event data shows as typed: it neither pings nor links."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: object, limit: int = SLACK_TEXT) -> str:
    """Escaped text, cut to ``limit`` without splitting an escape."""
    out = slack_escape(clip(text, limit))
    if len(out) > limit:
        out = re.sub(r"&[a-z]{0,3}$", "", out[:limit - 1]) + "…"
    return out




def slack_payload(alert: AlertEvent) -> dict[str, Any]:
    """Incoming-webhook body: ``text`` (the fallback and notification) plus Block Kit blocks.

    Every text from event data is escaped where Slack parses mrkdwn (``text``, section, context;
    ``verbatim`` so nothing is auto-linked); the header is plain text (never parsed); the
    dashboard button is there only for an http(s) URL.
    """
    icon = ":white_check_mark:" if alert.status == "resolved" else ":rotating_light:"
    title = f"[{alert.status.upper()}] {alert.rule} · {alert.app} {alert.model_version} ({alert.severity})"
    shown: list[str] = []
    for e in alert.example_event_ids[:MAX_EXAMPLES]:
        item = f"`{_mrkdwn(e.replace('`', chr(39)), 200)}`"
        if sum(len(x) + 2 for x in shown) + len(item) > SLACK_TEXT - 100:
            break
        shown.append(item)
    examples = ", ".join(shown)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(f"{icon} {title}", SLACK_HEADER),
                                    "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(alert.summary), "verbatim": True}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Example events: {examples or 'none'}",
                                          "verbatim": True}]},
    ]
    link = http_url(alert.dashboard_url)
    if link and len(link) <= SLACK_URL:
        blocks.append({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text",
                                                                                    "text": "Dashboard"},
                                                        "url": link}]})
    return {"text": f"{icon} {_mrkdwn(title, 1000)}: {_mrkdwn(alert.summary)}", "blocks": blocks}


@channel("slack")
def receiver(config: AlertsConfig) -> Receiver | None:
    if config.slack_webhook_url is None:
        return None
    url = config.slack_webhook_url.get_secret_value()
    return Receiver("slack", url, slack_payload, secrets=(url,), setting="DRIFTWARDEN_ALERTS__SLACK_WEBHOOK_URL")
