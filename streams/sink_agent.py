"""Sink agents: write events, detections, feedback and dead letters to ClickHouse in batches.

Each agent takes a batch, inserts it (retrying until ClickHouse acknowledges it) and only then
moves on, so the batch's offsets are committed after the rows are durable. While ClickHouse
refuses, the agent stays in its retry loop: consumption pauses and nothing is dropped. A row
ClickHouse refuses as data (a value its column cannot hold) is split out of its batch and its
record dead-lettered with stage ``sink``, so one bad row never stalls a table.
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
from driftwarden.core.schemas import (
    AlertEvent,
    DriftResult,
    EventLimits,
    Feedback,
    InferenceEvent,
    cap_reason,
    RetrainRequest,
    RetrainStatus,
    parse_detections,
    parse_embeddings,
    parse_feedback,
)
from driftwarden.core.settings import Settings
from driftwarden.core.storage.client import clear_owner, open_client, write_owner
from driftwarden.core.storage.store import ClickHouseStore
from driftwarden.core.errors import RowRejectedError
from driftwarden.core.secrets import scrub
from driftwarden.core.storage.writer import ChaosClient, DeadLetter, insert_splitting
from driftwarden.detectors.registry import names as detector_names
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.guard import guarded
from driftwarden.streams.web import protected, store_check
from driftwarden.streams.validation import (
    dead_letter_from_headers,
    dead_letter_headers,
    dead_letter_redactor,
    fit_dead_letter,
)

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: TopicNames, client=None):
    """Attach the sink agents; returns the :class:`~driftwarden.core.storage.store.Store` they write
    through. ``client`` overrides the ClickHouse client (tests inject faults this way)."""
    if client is None:
        client = open_client(settings)
    # Other processes find this sink's /stats/ page (and learn who owns an embedded store) here.
    write_owner(settings, app.conf.web_port if app.conf.web_enabled else 0)
    atexit.register(clear_owner, settings)
    if settings.chaos_store_down_file is not None:
        log.warning("chaos: ClickHouse writes fail while %s exists", settings.chaos_store_down_file)
        client = ChaosClient(client, settings.chaos_store_down_file)
    writer = store = ClickHouseStore(client, settings.clickhouse_database)
    metrics = app.metrics  # type: ignore[attr-defined]
    app.readiness.add("store_reachable", store_check(store))  # type: ignore[attr-defined]
    app.purge_hooks = []  # type: ignore[attr-defined]
    """``async (app name) -> None`` of agents holding an app's state in memory, run after the app's
    stored state was erased (a whole-app purge), so nothing of it is written back."""
    app.progress_sources = []  # type: ignore[attr-defined]
    """Callables returning counters (live segments, evictions) that ``/progress/`` shows."""
    size, within = settings.sink_batch_size, settings.sink_linger_ms / 1000
    failures = {"writes_failed": 0}
    app.sink_failures = failures  # type: ignore[attr-defined]
    written: Counter[str] = Counter()
    """Rows ClickHouse acknowledged since start, per table (and ``detections/<detector>``)."""

    def count_failure(table: str):
        def count(_attempt: int, _exc: BaseException) -> None:
            failures["writes_failed"] += 1
            metrics.write_retries.labels(table).inc()

        return count

    dlq = app.topic(topics.dlq, value_serializer="raw", key_serializer="raw")
    rejected: Counter[str] = Counter()
    """Rows ClickHouse refused as data, per table (dead-lettered with stage ``sink``)."""

    async def to_dlq(event, reason: str) -> None:
        letter = DeadLetter(
            source_topic=event.message.topic, source_partition=event.message.partition,
            source_offset=event.message.offset, stage="sink", reason=cap_reason(reason, settings.max_reason_chars),
            key=event.message.key or b"", raw=event.message.value or b"",
        )
        letter = fit_dead_letter(letter, settings.max_event_bytes)
        metrics.dead_letter("sink", letter.reason)
        await (await dlq.send(key=letter.key[:1024] or None, value=letter.raw, headers=dead_letter_headers(letter)))

    async def decode(batch, parse, what: str) -> list[tuple[object, object]]:
        """The batch's records parsed, each item with the record it came from (a record holding a
        list adds its items); a record that does not parse goes to the dead-letter topic."""
        out = []
        for e in batch:
            try:
                parsed = parse(e.message.value)
            except Exception as exc:  # noqa: BLE001 - any failure to parse is this record's
                await to_dlq(e, f"not {what}: {type(exc).__name__}: {exc}")
                continue
            out.extend((item, e) for item in (parsed if isinstance(parsed, list) else [parsed]))
        return out

    limits = EventLimits.from_settings(settings)
    known = set(detector_names())
    """Detector names counted on /progress/ (a forged record's name is counted as ``other``)."""

    def parse_stored_event(raw: bytes) -> InferenceEvent:
        return InferenceEvent.model_validate_json(raw, context={"limits": limits})

    def table_sink(topic: str, name: str, parse, what: str, write, rows: str, table: str) -> None:
        """An agent that parses a topic's records in batches and writes them until acknowledged;
        rows ClickHouse refuses as data are split out and dead-lettered, so none stalls the table."""

        async def reject(pair, exc: RowRejectedError) -> None:
            item, event = pair
            rejected[table] += 1
            metrics.write_failures.labels(table).inc()
            source = (event.message.partition, event.message.offset)
            if source in lettered:
                return  # another row of the same record was refused already: one dead letter per record
            lettered.add(source)
            log.error("ClickHouse refused a row of %s from %s/%d/%d as data (%s); its record is dead-lettered "
                      "with stage 'sink' and the table goes on", table, event.message.topic, event.message.partition,
                      event.message.offset, cap_reason(scrub(str(exc.cause)), 300))
            await to_dlq(event, f"ClickHouse refused the row for {table}: {type(exc.cause).__name__}: "
                                f"{scrub(str(exc.cause))}")

        lettered: set[tuple[int, int]] = set()

        def write_items(pairs: list) -> None:
            write([item for item, _ in pairs])

        @guarded(f"the sink's {table} agent")
        async def sink(stream):
            async for batch in stream.take_events(size, within=within):
                lettered.clear()
                metrics.batch_size.labels(name).observe(len(batch))
                pairs = await decode(batch, parse, what)
                kept: list = []
                await insert_splitting(write_items, pairs, what=rows, max_backoff_s=settings.sink_retry_max_s,
                                       on_failure=count_failure(table), on_rejected=reject,
                                       on_written=lambda chunk: kept.extend(item for item, _ in chunk))
                written[table] += len(kept)
                metrics.rows_written.labels(table).inc(len(kept))
                if table == "detections":
                    written.update(f"detections/{r.detector if r.detector in known else 'other'}" for r in kept)

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
    comment_redactor = None
    if settings.redact_pii:
        from driftwarden.detectors.pii import WITHHELD, TextRedactor

        comment_redactor = TextRedactor(settings.detectors.pii)

    def parse_stored_feedback(raw: bytes) -> Feedback:
        """A Feedback, its comment redacted (withheld when the scan fails) when redaction is on."""
        item = parse_feedback(raw)
        if comment_redactor is None or not item.comment:
            return item
        try:
            comment = comment_redactor.redact(item.comment)
        except Exception as exc:  # noqa: BLE001 - never stored unscanned
            comment = WITHHELD.format(reason=type(exc).__name__)
        return item.model_copy(update={"comment": comment})

    table_sink(topics.feedback, "sink-feedback", parse_stored_feedback, "a Feedback", writer.insert_feedback,
               "feedback", "feedback")
    table_sink(topics.retrain_status, "sink-retrain-status", RetrainStatus.model_validate_json, "a RetrainStatus",
               writer.insert_retrain_status, "retraining job updates", "retrain_jobs")

    redact_letter = dead_letter_redactor(settings) if settings.redact_pii else None

    def letter_of(e) -> DeadLetter:
        try:
            letter = dead_letter_from_headers(
                dict(e.message.headers or {}), e.message.key or b"", e.message.value or b"",
                e.message.partition, e.message.offset, e.message.topic,
            )
        except Exception as exc:  # noqa: BLE001 - headers anyone may have written: keep the bytes anyway
            letter = DeadLetter(source_topic=e.message.topic, source_partition=e.message.partition,
                                source_offset=e.message.offset, stage="unknown",
                                reason=f"unreadable dead-letter headers ({type(exc).__name__})",
                                key=bytes(e.message.key or b"")[:1024], raw=bytes(e.message.value or b""))
        return redact_letter(letter) if redact_letter is not None else letter

    async def unstorable(letter: DeadLetter, exc: RowRejectedError) -> None:
        rejected["dead_letters"] += 1
        metrics.write_failures.labels("dead_letters").inc()
        log.error("ClickHouse refused dead letter %s as data (%s); it stays on the dead-letter topic only",
                  letter.dlq_id[:300], cap_reason(scrub(str(exc.cause)), 300))

    @app.agent(app.topic(topics.dlq, value_serializer="raw", key_serializer="raw"), name="sink-dead-letters")
    @guarded("the sink's dead-letter agent")
    async def sink_dead_letters(stream):
        async for batch in stream.take_events(size, within=within):
            metrics.batch_size.labels("sink-dead-letters").observe(len(batch))
            letters = await asyncio.to_thread(lambda b=batch: [letter_of(e) for e in b])
            stored = await insert_splitting(
                writer.insert_dead_letters, letters, what="dead letters", max_backoff_s=settings.sink_retry_max_s,
                on_failure=count_failure("dead_letters"), on_rejected=unstorable)
            written["dead_letters"] += stored
            metrics.rows_written.labels("dead_letters").inc(stored)

    if app.conf.web_enabled:

        @app.page("/stats/")
        @protected(settings)
        async def stats_page(web, request):
            counts = await asyncio.to_thread(store.stats, settings.drift.alpha)
            counts["sink_write_failures"] = failures["writes_failed"]
            counts["sink_rows_rejected"] = dict(rejected)
            return web.json(counts)

        @app.page("/report/")
        @protected(settings)
        async def report_page(web, request):
            """The HTML report, rendered here because this process owns the store."""
            from driftwarden.dashboards.report import build_report

            text = await asyncio.to_thread(build_report, store, settings)
            return web.html(text)

        class PurgePage(faust.web.View):
            """``POST /purge/`` ``{"app", "user_id"?, "before"?, "dry_run"?}``: erase events and what
            derives from them (``driftwarden purge`` calls it while this sink owns the store)."""

            @protected(settings)
            async def post(self, request):
                from driftwarden.retrain_trigger.retraining.erasure import erase, target_from

                # A web page could POST here from a browser on this machine: browsers send Origin
                # on such requests, and cannot send application/json across origins unasked.
                if request.headers.get("Origin") is not None:
                    return self.json({"error": "requests from web pages are refused"}, status=403)
                if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                    return self.json({"error": "the body must be application/json"}, status=415)
                try:
                    body = await request.json()
                    target = target_from(body)
                except ValueError as exc:
                    return self.json({"error": str(exc)}, status=400)
                dry_run = body.get("dry_run", True) is not False
                log.warning("purge of app %r%s%s requested%s", target.app[:200],
                            " for one user" if target.user_id else "", f" before {target.before}" if target.before
                            else "", " (dry run)" if dry_run else "")
                erasure = await asyncio.to_thread(erase, store, settings.datasets_dir, target, dry_run=dry_run)
                if not dry_run and target.whole_app and target.before is None:
                    for hook in app.purge_hooks:  # type: ignore[attr-defined]
                        await hook(target.app)
                return self.json(erasure.as_dict())

        app.page("/purge/")(PurgePage)

        @app.page("/progress/")
        @protected(settings)
        async def progress_page(web, request):
            """Counters only, no query: cheap enough to poll often (benchmarks, progress bars)."""
            state = {k: v for source in app.progress_sources for k, v in source().items()}
            return web.json({"rows_written": dict(written), "rows_rejected": dict(rejected),
                             "sink_write_failures": failures["writes_failed"], "segments": state})

    return store
