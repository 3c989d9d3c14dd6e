"""Retrain agent: ``llm.retrain`` requests into the retraining workflow, its job statuses out to
``llm.retrain.status`` (which the sink writes to ``retrain_jobs``).

Thin by design: what happens to a request (curation, snapshot, launch, watch, resume after a
restart, registration in MLflow and the promotion decision, which also goes to ``llm.alerts``) is :class:`~driftwarden.retrain_trigger.retraining.workflow.RetrainWorkflow`. Runs in
the sink process, which owns the store the curation reads.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from driftwarden.core.schemas import RetrainRequest, RetrainStatus
from driftwarden.core.settings import Settings
from driftwarden.core.storage.store import Store
from driftwarden.retrain_trigger.retraining.launchers import build_launcher
from driftwarden.retrain_trigger.retraining.notice import decision_alert
from driftwarden.retrain_trigger.retraining.workflow import RetrainWorkflow
from driftwarden.streams.guard import guarded
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.validation import parsed

log = logging.getLogger(__name__)

#: Seconds after start before unfinished jobs are resumed from the store (the sink's writers and
#: a redelivered request get there first).
RESUME_DELAY_S = 3.0


def attach(app: faust.App, settings: Settings, topics: TopicNames, store: Store) -> RetrainWorkflow:
    status_topic = app.topic(topics.retrain_status, value_serializer="raw", key_serializer="raw")

    metrics = getattr(app, "metrics", None)

    async def publish(status: RetrainStatus) -> None:
        await (await status_topic.send(key=status.job_id.encode(), value=status.to_json_bytes()))
        if metrics is not None:
            metrics.retrain_job(status.status)

    alerts_topic = app.topic(topics.alerts, value_serializer="raw", key_serializer="raw")

    async def notify(status: RetrainStatus, table: str) -> None:
        """The decision on a finished job, to the alert receivers (through ``llm.alerts``)."""
        alert = decision_alert(status, table, settings.grafana_url)
        await (await alerts_topic.send(key=alert.dedupe_key.encode(), value=alert.to_json_bytes()))

    workflow = RetrainWorkflow(settings, store, build_launcher(settings), publish,
                               spawn=lambda coro, name: app.loop.create_task(coro, name=name), notify=notify)

    @app.agent(app.topic(topics.retrain, value_serializer="raw", key_serializer="raw"), name="retrain-requests")
    @guarded("the retrain agent")
    async def retrain_requests(stream):
        async for request in parsed(stream, RetrainRequest.model_validate_json, "retrain agent"):
            await workflow.on_request(request)

    @app.task
    async def resume_unfinished():
        """At start: jobs whose last status is not final are resumed (or failed, saying why)."""
        await asyncio.sleep(RESUME_DELAY_S)
        await workflow.resume_unfinished()

    return workflow
