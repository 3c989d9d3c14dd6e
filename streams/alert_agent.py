"""Alert agent: delivers each event of ``llm.alerts`` to the configured receivers.

Delivery is queued per receiver (:class:`~driftwarden.retrain_trigger.alerts.Dispatcher`), so
the agent never waits on a receiver; failures are retried, counted and logged there. The
counts are on the sink's ``/alerts/`` page.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from driftwarden.core.schemas import AlertEvent
from driftwarden.core.settings import Settings
from driftwarden.retrain_trigger.alerts import Dispatcher
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.validation import parsed

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: TopicNames) -> Dispatcher:
    dispatcher = Dispatcher(settings.alerts)
    started = asyncio.Event()

    @app.task
    async def start_dispatcher():
        await dispatcher.start()
        started.set()

    @app.agent(app.topic(topics.alerts, value_serializer="raw", key_serializer="raw"), name="alert-delivery")
    async def deliver(stream):
        async for alert in parsed(stream, AlertEvent.model_validate_json, "alert delivery"):
            await started.wait()
            dispatcher.submit(alert)

    if app.conf.web_enabled:

        @app.page("/alerts/")
        async def alerts_page(web, request):
            return web.json({"receivers": [r.name for r in dispatcher.receivers], "counts": dict(dispatcher.counts)})

    return dispatcher
