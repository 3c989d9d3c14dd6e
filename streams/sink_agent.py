"""Sink agents: write events, detections and dead letters to ClickHouse in batches.

Each agent takes a batch, inserts it (retrying until ClickHouse acknowledges it) and only then
moves on, so the batch's offsets are committed after the rows are durable. While ClickHouse
refuses, the agent stays in its retry loop: consumption pauses and nothing is dropped.
This process owns an embedded ``chdb://`` store; ``/stats/`` serves counts to other processes
(exact, with FINAL queries), ``/progress/`` the rows this sink wrote since it started (counters),
``/report/`` the HTML report.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
from collections import Counter
from functools import partial

import faust
from pydantic import ValidationError

from driftwarden.core.schemas import (
    AlertEvent,
    DriftResult,
    EventLimits,
    InferenceEvent,
    RetrainRequest,
    RetrainStatus,
    parse_detections,
    parse_embeddings,
)
from driftwarden.core.settings import Settings
from driftwarden.core.storage.client import clear_owner, open_client, write_owner
from driftwarden.core.storage.queries import stats as store_stats
from driftwarden.core.storage.writer import ChaosClient, DeadLetter, Writer, until_acknowledged
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.validation import dead_letter_from_headers, dead_letter_headers

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: TopicNames, client=None):
    """Attach the sink agents. ``client`` overrides the store (tests inject faults this way)."""
    if client is None:
        client = open_client(settings)
    # Other processes find this sink's /stats/ page (and learn who owns an embedded store) here.
    write_owner(settings, app.conf.web_port if app.conf.web_enabled else 0)
    atexit.register(clear_owner, settings)
    if settings.chaos_store_down_file is not None:
        log.warning("chaos: ClickHouse writes fail while %s exists", settings.chaos_store_down_file)
        client = ChaosClient(client, settings.chaos_store_down_file)
    writer = Writer(client, settings.clickhouse_database)
    size, within = settings.sink_batch_size, settings.sink_linger_ms / 1000
    failures = {"writes_failed": 0}
    app.sink_failures = failures  # type: ignore[attr-defined]
    written: Counter[str] = Counter()
    """Rows ClickHouse acknowledged since start, per table (and ``detections/<detector>``)."""

    def count_failure(_attempt: int, _exc: BaseException) -> None:
        failures["writes_failed"] += 1

    async def durable(write, what: str) -> None:
        await until_acknowledged(write, what=what, max_backoff_s=settings.sink_retry_max_s, on_failure=count_failure)

    dlq = app.topic(topics.dlq, value_serializer="raw", key_serializer="raw")

    async def to_dlq(event, reason: str) -> None:
        letter = DeadLetter(
            source_topic=event.message.topic, source_partition=event.message.partition,
            source_offset=event.message.offset, stage="sink", reason=reason,
            key=event.message.key or b"", raw=event.message.value or b"",
        )
        await (await dlq.send(key=letter.key or None, value=letter.raw, headers=dead_letter_headers(letter)))

    async def decode(batch, parse, what: str) -> list:
        """The batch's records parsed (a record holding a list adds its items); one that does not
        parse goes to the dead-letter topic."""
        out = []
        for e in batch:
            try:
                parsed = parse(e.message.value)
                if isinstance(parsed, list):
                    out.extend(parsed)
                else:
                    out.append(parsed)
            except (ValidationError, TypeError) as exc:
                await to_dlq(e, f"not {what}: {exc}")
        return out

    limits = EventLimits.from_settings(settings)

    def parse_stored_event(raw: bytes) -> InferenceEvent:
        return InferenceEvent.model_validate_json(raw, context={"limits": limits})

    def table_sink(topic: str, name: str, parse, what: str, write, rows: str, table: str) -> None:
        """An agent that parses a topic's records in batches and writes them until acknowledged."""

        async def sink(stream):
            async for batch in stream.take_events(size, within=within):
                items = await decode(batch, parse, what)
                await durable(partial(write, items), f"{len(items)} {rows}")
                written[table] += len(items)
                if table == "detections":
                    written.update(f"detections/{r.detector}" for r in items)

        app.agent(app.topic(topic, value_serializer="raw", key_serializer="raw"), name=name)(sink)

    table_sink(topics.events, "sink-events", parse_stored_event, "a stored-form event",
               partial(writer.insert_events, redacted=settings.redact_pii), "events", "inference_events")
    table_sink(topics.detections, "sink-detections", parse_detections, "a list of DetectionResults",
               writer.insert_detections, "detections", "detections")
    table_sink(topics.embeddings, "sink-embeddings", parse_embeddings, "a list of EmbeddingRecords",
               writer.insert_embeddings, "embeddings", "embeddings")
    table_sink(topics.drift, "sink-drift", DriftResult.model_validate_json, "a DriftResult", writer.insert_drift,
               "drift windows", "drift_windows")
    table_sink(topics.alerts, "sink-alerts", AlertEvent.model_validate_json, "an AlertEvent", writer.insert_alerts,
               "alerts", "alerts")
    table_sink(topics.retrain, "sink-retrain-requests", RetrainRequest.model_validate_json, "a RetrainRequest",
               writer.insert_retrain_requests, "retraining requests", "retrain_requests")
    table_sink(topics.retrain_status, "sink-retrain-status", RetrainStatus.model_validate_json, "a RetrainStatus",
               writer.insert_retrain_status, "retraining job updates", "retrain_jobs")

    @app.agent(app.topic(topics.dlq, value_serializer="raw", key_serializer="raw"), name="sink-dead-letters")
    async def sink_dead_letters(stream):
        async for batch in stream.take_events(size, within=within):
            letters = [
                dead_letter_from_headers(
                    dict(e.message.headers or {}), e.message.key or b"", e.message.value or b"",
                    e.message.partition, e.message.offset, e.message.topic,
                )
                for e in batch
            ]
            await durable(partial(writer.insert_dead_letters, letters), f"{len(letters)} dead letters")
            written["dead_letters"] += len(letters)

    if app.conf.web_enabled:

        @app.page("/stats/")
        async def stats_page(web, request):
            counts = await asyncio.to_thread(store_stats, client, settings.clickhouse_database)
            counts["sink_write_failures"] = failures["writes_failed"]
            return web.json(counts)

        @app.page("/report/")
        async def report_page(web, request):
            """The HTML report, rendered here because this process owns the store."""
            from driftwarden.dashboards.report import build_report

            text = await asyncio.to_thread(build_report, client, settings.clickhouse_database, settings)
            return web.html(text)

        @app.page("/progress/")
        async def progress_page(web, request):
            """Counters only, no query: cheap enough to poll often (benchmarks, progress bars)."""
            return web.json({"rows_written": dict(written), "sink_write_failures": failures["writes_failed"]})

    return client
