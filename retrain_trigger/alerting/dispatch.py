"""Alert delivery to every configured receiver (``receivers/``: Alertmanager, PagerDuty, Slack).

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
import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable

from driftwarden.core.errors import DeliveryError
from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.retrain_trigger.alerting.receivers import Receiver, http_url, receivers_from

log = logging.getLogger(__name__)

SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2, "critical": 3}
#: Firing alerts kept for re-sending at most (the oldest is dropped past it, with a warning).
MAX_FIRING = 10_000


class Dispatcher:
    """Delivers each alert to every receiver at once; :meth:`deliver` returns when each has it or
    gave up after ``max_attempts`` (counted as undelivered and logged with what to do)."""

    def __init__(self, config: AlertsConfig, receivers: list[Receiver] | None = None):
        self.config = config
        self.receivers = receivers_from(config) if receivers is None else receivers
        self.counts: Counter[str] = Counter()
        self.firing: OrderedDict[str, AlertEvent] = OrderedDict()
        """The latest firing alert of each rule and segment (``dedupe_key``) not yet resolved."""
        self._session = None

    def track(self, alerts: Iterable[AlertEvent]) -> None:
        """Remember firing alerts (to re-send) and forget those a resolve ended."""
        for alert in alerts:
            if alert.status == "firing":
                self.firing[alert.dedupe_key] = alert
                self.firing.move_to_end(alert.dedupe_key)
                if len(self.firing) > MAX_FIRING:
                    dropped, _ = self.firing.popitem(last=False)
                    self.counts["resend_dropped"] += 1
                    log.warning("more than %d alerts are firing; the oldest (%s) is no longer re-sent and "
                                "Alertmanager will end it after its resolve_timeout", MAX_FIRING, dropped[:200])
            elif (current := self.firing.get(alert.dedupe_key)) is not None and current.alert_id == alert.alert_id:
                del self.firing[alert.dedupe_key]

    async def resend_firing(self) -> int:
        """Send every firing alert once more to the receivers that expect it (one try each: the
        next round comes soon); returns how many deliveries succeeded."""
        targets = [r for r in self.receivers if r.resend]
        sent = 0
        for alert in list(self.firing.values()):
            for receiver in targets:
                if self.firing.get(alert.dedupe_key) is not alert:
                    break  # resolved (or replaced) during this round: its resolve went out already
                if await self._deliver(receiver, alert, attempts=1, counted="resent"):
                    sent += 1
        return sent

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
        self.track([alert])
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

    async def _deliver(self, receiver: Receiver, alert: AlertEvent, attempts: int | None = None,
                       counted: str = "delivered") -> bool:
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
                self.counts[f"{receiver.name}_{counted}"] += 1
                log.log(logging.DEBUG if counted == "resent" else logging.INFO, "alert %r (%s) %s to %s",
                        alert.alert_id, alert.status, counted, receiver.name)
                return True
            except DeliveryError as exc:
                self.counts[f"{receiver.name}_failed_attempts"] += 1
                if counted == "resent":
                    self.counts[f"{receiver.name}_resend_failed"] += 1
                    log.warning("re-sending firing alert %r to %s failed: %s; the next round tries again in %.0f s",
                                alert.alert_id, receiver.name, exc, self.config.resend_interval_s)
                    return False
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
