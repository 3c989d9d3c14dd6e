"""Alert agent: delivers each event of ``llm.alerts`` to the configured receivers.

The agent awaits :meth:`~driftwarden.retrain_trigger.alerting.dispatch.Dispatcher.deliver` for each alert:
every receiver gets it at once, with its bounded retries, and the agent moves on when each has
it or gave up; a receiver that gave up gets the alert from durable retry (the ``alert_deliveries``
table, written before the offset moves on; :mod:`driftwarden.retrain_trigger.alerting.retry`). Faust acknowledges a record when the agent's
loop asks for the next one, so an alert's offset is committed only after its delivery was
settled: alerts in flight when the sink stops are delivered again after the restart (receivers
deduplicate: Alertmanager on labels, PagerDuty on the dedup key; Slack may show one twice).
A failure on one alert is logged and the stream goes on. The counts are on the sink's
``/alerts/`` page.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from driftwarden.core.schemas import AlertEvent
from driftwarden.core.secrets import scrub
from driftwarden.core.settings import Settings
from driftwarden.core.storage.store import Store
from driftwarden.retrain_trigger.alerting.retry import DeliveryRetries, retry_due
from driftwarden.retrain_trigger.alerting.dispatch import MAX_FIRING, Dispatcher
from driftwarden.streams.metrics import delivery_counts
from driftwarden.streams.topics import partition_of
from driftwarden.streams.web import protected
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.guard import exit_process, guarded
from driftwarden.streams.validation import parsed

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: TopicNames, store: Store | None = None) -> Dispatcher:
    """``store``: for durable retry of what a receiver did not take (None: no retry)."""
    dispatcher = Dispatcher(settings.alerts)
    retries = DeliveryRetries(store, settings.alerts) if store is not None else None
    started = asyncio.Event()
    metrics = getattr(app, "metrics", None)
    if metrics is not None:
        names = [r.name for r in dispatcher.receivers]
        metrics.add_counters("driftwarden_alert_deliveries", "Alert deliveries per receiver and outcome",
                             ("receiver", "outcome"), lambda: delivery_counts(dispatcher.counts, names))
    resending = any(r.resend for r in dispatcher.receivers) and settings.alerts.resend_interval_s > 0

    @app.task
    async def start_dispatcher():
        try:
            await dispatcher.start()
        except Exception as exc:  # noqa: BLE001 - alerts would be acknowledged unsent: restart instead
            exit_process("starting the alert dispatcher", exc)
        started.set()

    @app.agent(app.topic(topics.alerts, value_serializer="raw", key_serializer="raw"), name="alert-delivery")
    @guarded("the alert agent")
    async def deliver(stream):
        async for alert in parsed(stream, AlertEvent.model_validate_json, "alert delivery"):
            await started.wait()
            try:
                outcomes = await dispatcher.deliver(alert)
            except Exception as exc:  # noqa: BLE001 - one alert's failure must not stop the stream
                dispatcher.counts["errors"] += 1
                log.error("delivering alert %r failed unexpectedly (%s: %s); it goes to durable retry for every "
                          "receiver — report this as a bug", alert.alert_id, type(exc).__name__,
                          scrub(str(exc), [s for r in dispatcher.receivers for s in (r.url, *r.secrets)])[:300])
                outcomes = {r.name: False for r in dispatcher.receivers}
            missed = [name for name, ok in outcomes.items() if not ok]
            if missed and retries is not None:
                # Durable before the offset moves on: a store failure here ends the process (guarded),
                # and the alert is redelivered after the restart.
                await asyncio.to_thread(retries.park, alert, missed)
                dispatcher.counts["parked"] += len(missed)

    async def forget_app(name: str) -> None:
        for key in [k for k, a in dispatcher.firing.items() if a.app == name]:
            del dispatcher.firing[key]  # its alerts were erased: no longer re-sent

    getattr(app, "purge_hooks", []).append(forget_app)

    @app.on_partitions_assigned.connect
    async def firing_of_my_partitions(sender, assigned, **kwargs):  # noqa: ARG001 - faust's signal signature
        """What fires on the alert partitions this sink holds now (before a restart, or on another sink
        before a rebalance) is re-sent from here: read it back, and only it (another sink re-sends its own)."""
        if not resending or store is None:
            return
        mine = {tp.partition for tp in assigned if tp.topic == topics.alerts}
        count = app.consumer.topic_partitions(topics.alerts) or settings.topic_partitions
        try:
            firing = await asyncio.to_thread(store.firing_alerts, MAX_FIRING)
        except Exception as exc:  # noqa: BLE001 - Alertmanager would end them: restart and read again
            exit_process("reading the firing alerts from the store", exc)
        held = {k: a for k, a in dispatcher.firing.items() if partition_of(k.encode(), count) in mine}
        dispatcher.firing.clear()
        for alert in [a for a in firing if partition_of(a.dedupe_key.encode(), count) in mine] + list(held.values()):
            current = dispatcher.firing.get(alert.dedupe_key)
            if current is None or alert.starts_at >= current.starts_at:  # the latest episode of each
                dispatcher.track([alert])
        if dispatcher.firing:
            log.info("%d firing alert(s) of this sink's partitions are re-sent every %.0f s", len(dispatcher.firing),
                     settings.alerts.resend_interval_s)

    if resending:

        @app.timer(interval=settings.alerts.resend_interval_s)
        async def resend_firing():
            """Firing alerts again to receivers that end alerts not re-sent (Alertmanager)."""
            await started.wait()
            try:
                await dispatcher.resend_firing()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.error("re-sending firing alerts failed (%s); the next round, in %.0f s, tries again",
                          type(exc).__name__, settings.alerts.resend_interval_s)

    @app.timer(interval=settings.alerts.retry_interval_s)
    async def retry_parked():
        """Deliveries in durable retry that are due get one more try each."""
        if retries is None or not dispatcher.receivers:
            return
        await started.wait()
        try:
            await retry_due(retries, dispatcher, asyncio.to_thread)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.error("a round of alert retries failed (%s: %s); the deliveries stay pending and the next round, in "
                      "%.0f s, tries again — check the store", type(exc).__name__, scrub(str(exc))[:300],
                      settings.alerts.retry_interval_s)

    if app.conf.web_enabled:

        @app.page("/alerts/")
        @protected(settings)
        async def alerts_page(web, request):
            return web.json({"receivers": [r.name for r in dispatcher.receivers], "counts": dict(dispatcher.counts)})

    return dispatcher
