"""Alert delivery: Alertmanager (API v2), PagerDuty (Events API v2) and Slack (incoming webhooks).

Each receiver has a pure payload builder (tested against the service's documented format) that
bounds every field to what the service accepts and escapes what comes from event data (Slack
mrkdwn: ``&``, ``<``, ``>``; links: http(s) only). :meth:`Dispatcher.deliver` sends one alert to
every receiver at once and returns when each has it or has given up: connection errors, 429 and
5xx are retried with exponential backoff up to ``max_attempts``; other 4xx cannot be fixed by
retrying and are not. The alert agent awaits it, so an alert's offset is committed only once
every receiver had its chance (a restart redelivers what was in flight). Every outcome is
counted and logged; no secret (a webhook URL, a routing key) is ever logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from driftwarden.core.errors import DeliveryError
from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.core.secrets import mask_url, scrub

log = logging.getLogger(__name__)

SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2, "critical": 3}

#: Field bounds: PagerDuty's summary (1,024) and dedup_key (255) limits; Slack's section and
#: context text (3,000), header (150) and button URL (3,000) limits; our own for the rest.
PD_SUMMARY, PD_KEY, PD_FIELD = 1024, 255, 255
SLACK_TEXT, SLACK_HEADER, SLACK_URL = 3000, 150, 3000
AM_LABEL, AM_ANNOTATION = 1024, 4096
MAX_EXAMPLES = 20
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _iso(dt) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clip(text: object, limit: int) -> str:
    """``text`` as a string without control characters (newlines and tabs stay), at most ``limit`` long."""
    text = _CONTROL.sub(" ", str(text))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _key(text: str, limit: int) -> str:
    """A key within ``limit`` characters that stays unique and stable (trigger and resolve agree)."""
    if len(text) <= limit:
        return text
    return text[:limit - 17] + "~" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _number(value: float | None) -> float | str | None:
    """JSON has no inf or NaN: those travel as text."""
    return value if value is None or math.isfinite(value) else str(value)


def http_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL with a host (a link a receiver may show), else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or _CONTROL.search(url) or " " in url:
        return None
    return url


def slack_escape(text: object) -> str:
    """Slack's documented escaping for text it parses as mrkdwn: ``&``, ``<`` and ``>``. With it,
    ``<!channel>`` or ``<https://evil|x>`` in event data shows as typed: it neither pings nor links."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: object, limit: int = SLACK_TEXT) -> str:
    """Escaped text, cut to ``limit`` without splitting an escape."""
    out = slack_escape(_clip(text, limit))
    if len(out) > limit:
        out = re.sub(r"&[a-z]{0,3}$", "", out[:limit - 1]) + "…"
    return out


def alertmanager_payload(alert: AlertEvent) -> list[dict[str, Any]]:
    """``POST /api/v2/alerts`` body: a list of postable alerts (labels, annotations, times, URL).

    Alertmanager groups and deduplicates on the label set, so the labels identify the rule and
    segment; ``endsAt`` is set when the alert resolved.
    """
    body: dict[str, Any] = {
        "labels": {_clip(k, 128): _clip(v, AM_LABEL) for k, v in alert.labels.items()},
        "annotations": {
            "summary": _clip(alert.summary, 1024),
            "description": _clip(alert.summary, AM_ANNOTATION),
            "value": f"{alert.value:.6g}",
            "threshold": f"{alert.threshold:.6g}",
            "window_id": _clip(alert.window_id, AM_LABEL),
            "example_event_ids": _clip(",".join(alert.example_event_ids[:MAX_EXAMPLES]), AM_ANNOTATION),
            "alert_id": _clip(alert.alert_id, AM_LABEL),
            "retrain_requested": str(alert.retrain_requested).lower(),
        },
        "startsAt": _iso(alert.starts_at),
    }
    link = http_url(alert.dashboard_url)
    if link:
        body["generatorURL"] = link
    if alert.ends_at is not None:
        body["endsAt"] = _iso(alert.ends_at)
    return [body]


def pagerduty_payload(alert: AlertEvent, routing_key: str) -> dict[str, Any]:
    """Events API v2 body: ``trigger`` with a payload when firing, ``resolve`` when resolved.
    Fields within PagerDuty's limits (summary 1,024 characters, dedup_key 255)."""
    dedup_key = _key(alert.dedupe_key, PD_KEY)
    if alert.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": _clip(alert.summary, PD_SUMMARY),
            "source": _clip(f"driftwarden/{alert.app}/{alert.model_version}", PD_FIELD),
            "severity": alert.severity,
            "timestamp": _iso(alert.starts_at),
            "component": _clip(alert.app, PD_FIELD),
            "group": _clip(alert.model_version, PD_FIELD),
            "class": _clip(alert.metric, PD_FIELD),
            "custom_details": {
                "rule": _clip(alert.rule, PD_FIELD), "field": _clip(alert.field, PD_FIELD),
                "detector": alert.detector and _clip(alert.detector, PD_FIELD), "value": _number(alert.value),
                "threshold": _number(alert.threshold), "baseline": _number(alert.baseline),
                "window_id": _clip(alert.window_id, 1024),
                "example_event_ids": [_clip(e, 256) for e in alert.example_event_ids[:MAX_EXAMPLES]],
                "alert_id": _clip(alert.alert_id, 1024), "retrain_requested": alert.retrain_requested,
            },
        },
        "client": "driftwarden",
    }
    link = http_url(alert.dashboard_url)
    if link:
        body["links"] = [{"href": link, "text": "driftwarden dashboard"}]
        body["client_url"] = link
    return body


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
        {"type": "header", "text": {"type": "plain_text", "text": _clip(f"{icon} {title}", SLACK_HEADER),
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


@dataclass(frozen=True)
class Receiver:
    name: str
    url: str
    """Where to POST (secret for Slack: never logged)."""
    build: Any
    """AlertEvent -> JSON body."""
    ok_statuses: tuple[int, ...] = (200, 201, 202, 204)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Values that must never reach a log line or an error message (the webhook URL, the routing key)."""
    setting: str = ""
    """The variable that configures it, for messages that say what to fix."""

    def __repr__(self) -> str:
        return f"Receiver({self.name!r}, {self.shown!r})"

    @property
    def shown(self) -> str:
        """The URL for output: hidden whole when it is a secret, else masked."""
        return "(URL hidden: a secret)" if self.url in self.secrets else mask_url(self.url)

    def scrub(self, text: object) -> str:
        return scrub(str(text), [*self.secrets, self.url])


def receivers_from(config: AlertsConfig) -> list[Receiver]:
    out = []
    if config.alertmanager_url:
        out.append(Receiver("alertmanager", config.alertmanager_url.rstrip("/") + "/api/v2/alerts",
                            alertmanager_payload, setting="DRIFTWARDEN_ALERTS__ALERTMANAGER_URL"))
    if config.pagerduty_routing_key is not None:
        key = config.pagerduty_routing_key.get_secret_value()
        out.append(Receiver("pagerduty", config.pagerduty_url, lambda a, key=key: pagerduty_payload(a, key),
                            secrets=(key,), setting="DRIFTWARDEN_ALERTS__PAGERDUTY_ROUTING_KEY"))
    if config.slack_webhook_url is not None:
        url = config.slack_webhook_url.get_secret_value()
        out.append(Receiver("slack", url, slack_payload, secrets=(url,),
                            setting="DRIFTWARDEN_ALERTS__SLACK_WEBHOOK_URL"))
    return out


class Dispatcher:
    """Delivers each alert to every receiver at once; :meth:`deliver` returns when each has it or
    gave up after ``max_attempts`` (counted as undelivered and logged with what to do)."""

    def __init__(self, config: AlertsConfig, receivers: list[Receiver] | None = None):
        self.config = config
        self.receivers = receivers_from(config) if receivers is None else receivers
        self.counts: Counter[str] = Counter()
        self._session = None

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        for receiver in self.receivers:
            if http_url(receiver.url) is None:
                log.error("the %s receiver's URL is not a valid http(s) URL (not shown: it may hold a secret); "
                          "alerts to it fail until %s is fixed", receiver.name, receiver.setting or "its setting")
        if self.receivers:
            log.info("alerts go to %s", ", ".join(r.name for r in self.receivers))
        else:
            log.info("no alert receiver is configured: alerts are recorded in llm.alerts and ClickHouse only "
                     "(set DRIFTWARDEN_ALERTS__ALERTMANAGER_URL, __PAGERDUTY_ROUTING_KEY or __SLACK_WEBHOOK_URL)")

    async def deliver(self, alert: AlertEvent) -> dict[str, bool]:
        """Send ``alert`` to every receiver (concurrently) and wait for the outcome of each:
        ``{receiver: delivered}``. Never raises for a receiver's failure: that is counted and logged."""
        if SEVERITY_ORDER[alert.severity] < SEVERITY_ORDER[self.config.min_severity]:
            self.counts["below_min_severity"] += 1
            return {}
        outcomes = await asyncio.gather(*(self._deliver(r, alert) for r in self.receivers))
        return {r.name: ok for r, ok in zip(self.receivers, outcomes, strict=True)}

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver_to(self, name: str, alert: AlertEvent, attempts: int = 1) -> bool:
        """One more round for one receiver (durable retry); False when it is not configured now."""
        receiver = next((r for r in self.receivers if r.name == name), None)
        if receiver is None:
            return False
        return await self._deliver(receiver, alert, attempts)

    async def _deliver(self, receiver: Receiver, alert: AlertEvent, attempts: int | None = None) -> bool:
        attempts = self.config.max_attempts if attempts is None else attempts
        try:
            body = receiver.build(alert)
        except Exception as exc:  # noqa: BLE001 - one odd alert must not stop delivery of the next
            self.counts[f"{receiver.name}_undelivered"] += 1
            log.error("alert %r cannot be rendered for %s (%s); it is not sent there and stays in llm.alerts and "
                      "the alerts table — report this as a bug", alert.alert_id, receiver.name,
                      receiver.scrub(f"{type(exc).__name__}: {exc}")[:300])
            return False
        delay = self.config.backoff_s
        for attempt in range(1, attempts + 1):
            try:
                try:
                    await self._post(receiver, body)
                except (DeliveryError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # noqa: BLE001 - anything else (a body JSON cannot hold, ...) is not retried
                    raise DeliveryError(receiver.name, receiver.scrub(f"{type(exc).__name__}: {exc}")[:300],
                                        retryable=False) from None
                self.counts[f"{receiver.name}_delivered"] += 1
                log.info("alert %r (%s) delivered to %s", alert.alert_id, alert.status, receiver.name)
                return True
            except DeliveryError as exc:
                self.counts[f"{receiver.name}_failed_attempts"] += 1
                if not exc.retryable or attempt == attempts:
                    self.counts[f"{receiver.name}_undelivered"] += 1
                    log.error("alert %r (%s) not delivered to %s after %d attempt(s): %s; it goes to durable retry "
                              "(the alert_deliveries table) and the stream goes on — fix the receiver's service or "
                              "its setting (%s)", alert.alert_id, alert.status, receiver.name, attempt, exc,
                              receiver.setting or "see the alerts table of the README")
                    return False
                log.warning("alert %r to %s failed (attempt %d of %d): %s; retrying in %.1f s", alert.alert_id,
                            receiver.name, attempt, attempts, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.max_backoff_s)
        return False

    async def _post(self, receiver: Receiver, body) -> None:
        """One try. Every message it raises is scrubbed of the receiver's secrets and of URLs."""
        import aiohttp

        if self._session is None:
            raise DeliveryError(receiver.name, "the dispatcher is not started", retryable=False)
        if http_url(receiver.url) is None:
            raise DeliveryError(receiver.name, f"the URL is not a valid http(s) URL (not shown: it may hold a "
                                               f"secret); set {receiver.setting or 'it'} right", retryable=False)
        try:
            async with self._session.post(receiver.url, json=body) as resp:
                text = (await resp.text(errors="replace"))[:300]
                if resp.status in receiver.ok_statuses:
                    return
                retryable = resp.status == 429 or resp.status >= 500
                raise DeliveryError(receiver.name, receiver.scrub(f"HTTP {resp.status}: {text}"), retryable=retryable)
        except ValueError as exc:  # aiohttp.InvalidURL and other malformed requests: retrying cannot fix them
            raise DeliveryError(receiver.name, receiver.scrub(f"{type(exc).__name__}: {exc}"),
                                retryable=False) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Not chained: aiohttp's exceptions print the request URL (for Slack, the secret itself).
            raise DeliveryError(receiver.name, receiver.scrub(f"{type(exc).__name__}: {exc}"),
                                retryable=True) from None
