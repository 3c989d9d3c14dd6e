"""Durable retry of alert deliveries: what a receiver did not take goes to the store, not to memory.

The alert agent awaits :meth:`Dispatcher.deliver` (every receiver, with its ``max_attempts``);
for each receiver that did not take the alert, :meth:`DeliveryRetries.park` writes a ``pending``
row to ``alert_deliveries`` and waits for ClickHouse to acknowledge it *before* the alert's
offset is acknowledged: the hand-over is durable, so neither a restart nor a long outage of a
receiver loses a page. A timer (:meth:`retry_due`) tries each due row again, one attempt a
round, every ``retry_interval_s`` doubling up to an hour, until the receiver takes it
(``delivered``) or ``retry_max_age_hours`` pass (``abandoned``, logged with what to do).
Rows are versioned by ``updated_at`` (ReplacingMergeTree): the newest state of each
(alert, status, receiver) wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.schemas import AlertEvent
from driftwarden.core.storage.store import Store

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)
BATCH = 100
"""Most due rows one round takes (the rest wait for the next round)."""


class DeliveryRetries:
    """Pending deliveries, read and written through the store (``alert_deliveries``)."""

    def __init__(self, store: Store, config: AlertsConfig, clock: Callable[[], datetime] | None = None):
        self.store = store
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))

    def park(self, alert: AlertEvent, receivers: list[str]) -> None:
        """Hand the alert over to durable retry for ``receivers`` (blocking; raises if not stored)."""
        if not receivers:
            return
        now = self.clock()
        first = now + timedelta(seconds=self.config.retry_interval_s)
        self.store.insert_deliveries([[alert.alert_id, alert.status, name, "pending", self.config.max_attempts, now, first, "",
                      alert.model_dump_json(), now] for name in receivers])
        log.warning("alert %r (%s) handed to durable retry for %s; next try at %s", alert.alert_id, alert.status,
                    ", ".join(receivers), first.isoformat(timespec="seconds"))

    def due(self) -> list[dict]:
        """Pending rows whose next try is due, oldest first (blocking)."""
        return self.store.due_deliveries(self.clock(), BATCH)

    def pending(self) -> int:
        return self.store.pending_deliveries()

    def outcome(self, row: dict, delivered: bool, error: str = "") -> str:
        """Record one more round of ``row``: ``delivered``, ``pending`` (next try later) or ``abandoned``."""
        now = self.clock()
        attempts = int(row["attempts"]) + 1
        parked = row["parked_at"] if row["parked_at"].tzinfo else row["parked_at"].replace(tzinfo=UTC)
        if delivered:
            state = "delivered"
        elif now - parked >= timedelta(hours=self.config.retry_max_age_hours):
            state = "abandoned"
        else:
            state = "pending"
        rounds = max(attempts - self.config.max_attempts, 0)
        wait = min(timedelta(seconds=self.config.retry_interval_s) * 2 ** min(rounds, 20), MAX_BACKOFF)
        self.store.insert_deliveries([[row["alert_id"], row["status"], row["receiver"], state, attempts, parked, now + wait,
                      error[:1000], row["alert"], now]])
        return state


async def retry_due(retries: DeliveryRetries, dispatcher, to_thread) -> dict[str, int]:
    """One round: every due delivery tried once more; returns how many ended in each state."""
    rows = await to_thread(retries.due)
    ended: dict[str, int] = {}
    for row in rows:
        try:
            alert = AlertEvent.model_validate_json(row["alert"])
            delivered = await dispatcher.deliver_to(row["receiver"], alert, attempts=1)
            error = "" if delivered else "not taken (see the sink's log)"
        except Exception as exc:  # noqa: BLE001 - this row's round failed; it stays pending
            delivered, error = False, f"{type(exc).__name__}"
        state = await to_thread(retries.outcome, row, delivered, error)
        ended[state] = ended.get(state, 0) + 1
        dispatcher.counts[f"{row['receiver']}_retry_{state}"] += 1
        if state == "delivered":
            log.info("alert %r (%s) delivered to %s from durable retry after %d attempts", row["alert_id"],
                     row["status"], row["receiver"], int(row["attempts"]) + 1)
        elif state == "abandoned":
            log.error("alert %r (%s) given up for %s after %.0f hours of retries; it stays in llm.alerts and the "
                      "alerts table — fix the receiver (see DRIFTWARDEN_ALERTS__*) and resend it from there",
                      row["alert_id"], row["status"], row["receiver"], retries.config.retry_max_age_hours)
    return ended
