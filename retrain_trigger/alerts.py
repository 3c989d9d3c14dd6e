"""Alert delivery: Alertmanager (API v2), PagerDuty (Events API v2) and Slack (incoming webhooks).

Each receiver has a pure payload builder (tested against the service's documented format) and
its own queue and delivery task in :class:`Dispatcher`: a slow or failing receiver never blocks
the stream or the other receivers. Connection errors, 429 and 5xx are retried with exponential
backoff; other 4xx cannot be fixed by retrying and are not. Every outcome is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from driftwarden.core.errors import DeliveryError
from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent

log = logging.getLogger(__name__)

SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2, "critical": 3}


def _iso(dt) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_payload(alert: AlertEvent) -> list[dict[str, Any]]:
    """``POST /api/v2/alerts`` body: a list of postable alerts (labels, annotations, times, URL).

    Alertmanager groups and deduplicates on the label set, so the labels identify the rule and
    segment; ``endsAt`` is set when the alert resolved.
    """
    body: dict[str, Any] = {
        "labels": dict(alert.labels),
        "annotations": {
            "summary": alert.summary[:1024],
            "description": alert.summary,
            "value": f"{alert.value:.6g}",
            "threshold": f"{alert.threshold:.6g}",
            "window_id": alert.window_id,
            "example_event_ids": ",".join(alert.example_event_ids),
            "alert_id": alert.alert_id,
            "retrain_requested": str(alert.retrain_requested).lower(),
        },
        "startsAt": _iso(alert.starts_at),
        "generatorURL": alert.dashboard_url,
    }
    if alert.ends_at is not None:
        body["endsAt"] = _iso(alert.ends_at)
    return [body]


def pagerduty_payload(alert: AlertEvent, routing_key: str) -> dict[str, Any]:
    """Events API v2 body: ``trigger`` with a payload when firing, ``resolve`` when resolved."""
    if alert.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert.dedupe_key}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.dedupe_key,
        "payload": {
            "summary": alert.summary[:1024],
            "source": f"driftwarden/{alert.app}/{alert.model_version}",
            "severity": alert.severity,
            "timestamp": _iso(alert.starts_at),
            "component": alert.app,
            "group": alert.model_version,
            "class": alert.metric,
            "custom_details": {
                "rule": alert.rule, "field": alert.field, "detector": alert.detector, "value": alert.value,
                "threshold": alert.threshold, "baseline": alert.baseline, "window_id": alert.window_id,
                "example_event_ids": alert.example_event_ids, "alert_id": alert.alert_id,
                "retrain_requested": alert.retrain_requested,
            },
        },
        "links": [{"href": alert.dashboard_url, "text": "driftwarden dashboard"}],
        "client": "driftwarden",
        "client_url": alert.dashboard_url,
    }


def slack_payload(alert: AlertEvent) -> dict[str, Any]:
    """Incoming-webhook body: ``text`` (the fallback and notification) plus Block Kit blocks."""
    icon = ":white_check_mark:" if alert.status == "resolved" else ":rotating_light:"
    title = f"{icon} [{alert.status.upper()}] {alert.rule} · {alert.app} {alert.model_version} ({alert.severity})"
    examples = ", ".join(f"`{e}`" for e in alert.example_event_ids) or "none"
    return {
        "text": f"{title}: {alert.summary}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.summary[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Example events: {examples}"[:3000]}]},
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Dashboard"},
                                              "url": alert.dashboard_url}]},
        ],
    }


@dataclass(frozen=True)
class Receiver:
    name: str
    url: str
    """Where to POST (secret for Slack: never logged)."""
    build: Any
    """AlertEvent -> JSON body."""
    ok_statuses: tuple[int, ...] = (200, 201, 202, 204)


def receivers_from(config: AlertsConfig) -> list[Receiver]:
    out = []
    if config.alertmanager_url:
        out.append(Receiver("alertmanager", config.alertmanager_url.rstrip("/") + "/api/v2/alerts",
                            alertmanager_payload))
    if config.pagerduty_routing_key is not None:
        key = config.pagerduty_routing_key.get_secret_value()
        out.append(Receiver("pagerduty", config.pagerduty_url, lambda a, key=key: pagerduty_payload(a, key)))
    if config.slack_webhook_url is not None:
        out.append(Receiver("slack", config.slack_webhook_url.get_secret_value(), slack_payload))
    return out


class Dispatcher:
    """One bounded queue and delivery task per receiver. ``submit`` never waits."""

    def __init__(self, config: AlertsConfig, receivers: list[Receiver] | None = None):
        self.config = config
        self.receivers = receivers_from(config) if receivers is None else receivers
        self.counts: Counter[str] = Counter()
        self._queues: dict[str, asyncio.Queue] = {}
        self._tasks: list[asyncio.Task] = []
        self._session = None

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        for receiver in self.receivers:
            queue: asyncio.Queue = asyncio.Queue(maxsize=self.config.queue_size)
            self._queues[receiver.name] = queue
            self._tasks.append(asyncio.create_task(self._run(receiver, queue), name=f"alerts-{receiver.name}"))
        if self.receivers:
            log.info("alerts go to %s", ", ".join(r.name for r in self.receivers))
        else:
            log.info("no alert receiver is configured: alerts are recorded in llm.alerts and ClickHouse only "
                     "(set DRIFTWARDEN_ALERTS__ALERTMANAGER_URL, __PAGERDUTY_ROUTING_KEY or __SLACK_WEBHOOK_URL)")

    def submit(self, alert: AlertEvent) -> None:
        if SEVERITY_ORDER[alert.severity] < SEVERITY_ORDER[self.config.min_severity]:
            self.counts["below_min_severity"] += 1
            return
        for receiver in self.receivers:
            try:
                self._queues[receiver.name].put_nowait(alert)
            except asyncio.QueueFull:
                self.counts[f"{receiver.name}_refused"] += 1
                log.error("alert queue of %s is full (%d waiting): alert %s (%s) is not sent there; the receiver "
                          "has been failing — check it; the alert stays in llm.alerts and the alerts table",
                          receiver.name, self.config.queue_size, alert.alert_id, alert.status)

    async def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queue is empty (tests, shutdown); False on time-out."""
        try:
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues.values())), timeout_s)
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self, receiver: Receiver, queue: asyncio.Queue) -> None:
        while True:
            alert = await queue.get()
            try:
                await self._deliver(receiver, alert)
            finally:
                queue.task_done()

    async def _deliver(self, receiver: Receiver, alert: AlertEvent) -> None:
        body = receiver.build(alert)
        delay = self.config.backoff_s
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                await self._post(receiver, body)
                self.counts[f"{receiver.name}_delivered"] += 1
                log.info("alert %s (%s) delivered to %s", alert.alert_id, alert.status, receiver.name)
                return
            except DeliveryError as exc:
                self.counts[f"{receiver.name}_failed_attempts"] += 1
                if not exc.retryable or attempt == self.config.max_attempts:
                    self.counts[f"{receiver.name}_undelivered"] += 1
                    log.error("alert %s (%s) not delivered to %s after %d attempt(s): %s; it stays in llm.alerts "
                              "and the alerts table — fix the receiver's settings or service", alert.alert_id,
                              alert.status, receiver.name, attempt, exc)
                    return
                log.warning("alert %s to %s failed (attempt %d of %d): %s; retrying in %.1f s", alert.alert_id,
                            receiver.name, attempt, self.config.max_attempts, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.max_backoff_s)

    async def _post(self, receiver: Receiver, body) -> None:
        import aiohttp

        try:
            async with self._session.post(receiver.url, json=body) as resp:
                text = (await resp.text())[:300]
                if resp.status in receiver.ok_statuses:
                    return
                retryable = resp.status == 429 or resp.status >= 500
                raise DeliveryError(receiver.name, f"HTTP {resp.status}: {text}", retryable=retryable)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(receiver.name, f"{type(exc).__name__}: {exc}", retryable=True) from exc
