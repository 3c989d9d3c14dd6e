"""Score agent: validate, micro-batch, run the detectors, produce results and events.

Per batch: invalid messages go to the dead-letter topic with their raw bytes and a reason;
valid events are scored by every enabled detector (in a thread, so the event loop keeps the
consumer's heartbeats going); each event's results go to ``llm.detections`` as one record, its
embeddings to ``llm.embeddings`` as one record, and the (optionally redacted) event to
``llm.events.redacted``. The batch's source offsets are acknowledged only
after the broker acknowledged everything the batch produced.

Every message gets a verdict: a batch whose scoring fails is scored event by event, and an
event that fails on its own (or whose records cannot be made to fit the producer's limit) is
dead-lettered with stage ``score`` or ``produce``. Anything that still escapes ends the process
(:mod:`driftwarden.streams.guard`) before the batch is acknowledged, so it is redelivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

import faust

from driftwarden.core.errors import InvalidEventError
from driftwarden.core.schemas import EventLimits, InferenceEvent, cap_reason, parse_event
from driftwarden.core.settings import Settings
from driftwarden.core.storage.writer import DeadLetter
from driftwarden.detectors.pipeline import BatchOutput, ScoringPipeline
from driftwarden.streams.guard import guarded
from driftwarden.streams.outgoing import Outgoing, outgoing
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.validation import RawMessage, dead_letter_headers, fit_dead_letter, to_dead_letter

log = logging.getLogger(__name__)


def per_event(records: list) -> dict[str, list]:
    """Records (results or embeddings) grouped by event id, in first-seen order."""
    groups: dict[str, list] = {}
    for record in records:
        groups.setdefault(record.event_id, []).append(record)
    return groups


class ScoreStats:
    """What this worker did so far (kept on the app for its web page and for debugging)."""

    def __init__(self) -> None:
        self.events = 0
        self.dead_letters = 0
        self.results = 0
        self.batches = 0
        self.fallbacks = 0
        """Batches whose scoring failed whole and were scored event by event."""
        self.duplicates = 0
        """Events whose id came twice in one batch (stored once, as a redelivery would be)."""


@dataclass
class Verdicts:
    """What one batch produces: records to send and dead letters."""

    records: list[tuple[InferenceEvent, Outgoing]]
    dead: list[DeadLetter]
    seconds: dict[str, float]
    """Seconds per detector, summed over the batch's scoring runs."""


def score_batch(pipeline: ScoringPipeline, messages: list[RawMessage], limits: EventLimits,
                stats: ScoreStats | None = None) -> Verdicts:
    """The verdict on every message of a batch (runs in a thread). Raises nothing per message."""
    dead: list[DeadLetter] = []
    source: dict[str, RawMessage] = {}
    events: list[InferenceEvent] = []
    for msg in messages:
        try:
            event = parse_event(msg.value, limits)
        except InvalidEventError as exc:
            dead.append(to_dead_letter(msg, exc))
            continue
        if event.event_id in source:
            if stats is not None:
                stats.duplicates += 1  # the same id twice in one batch: stored once either way
            continue
        source[event.event_id] = msg
        events.append(event)
    outputs: list[BatchOutput] = []
    if events:
        try:
            outputs.append(pipeline.run(events))
        except Exception:  # noqa: BLE001 - find the event that breaks it
            log.warning("scoring a batch of %d events failed; scoring them one by one to isolate the bad one",
                        len(events), exc_info=True)
            if stats is not None:
                stats.fallbacks += 1
            outputs = []
            for event in events:
                try:
                    outputs.append(pipeline.run([event]))
                except Exception as exc:  # noqa: BLE001 - recorded on its dead letter
                    log.exception("scoring event %r failed; it is dead-lettered", event.event_id)
                    dead.append(_failed(source[event.event_id], "score", exc, limits))
    records: list[tuple[InferenceEvent, Outgoing]] = []
    for output in outputs:
        results, embeddings = per_event(output.results), per_event(output.embeddings)
        for stored in output.events:
            try:
                records.append((stored, outgoing(stored, results.get(stored.event_id, []),
                                                 embeddings.get(stored.event_id, []), limits)))
            except Exception as exc:  # noqa: BLE001 - recorded on its dead letter
                log.warning("event %r cannot be sent on (%s); it is dead-lettered", stored.event_id, exc)
                dead.append(_failed(source[stored.event_id], "produce", exc, limits))
    seconds: dict[str, float] = {}
    for output in outputs:
        for name, spent in output.seconds.items():
            seconds[name] = seconds.get(name, 0.0) + spent
    return Verdicts(records=records, dead=dead, seconds=seconds)


def _failed(msg: RawMessage, stage: str, exc: BaseException, limits: EventLimits) -> DeadLetter:
    reason = cap_reason(f"{type(exc).__name__}: {exc}", limits.max_reason_chars)
    return to_dead_letter(msg, InvalidEventError(reason, stage))


def attach(app: faust.App, settings: Settings, topics: TopicNames) -> None:
    pipeline = ScoringPipeline.from_settings(settings)
    limits = EventLimits.from_settings(settings)
    source = app.topic(topics.inference, value_serializer="raw", key_serializer="raw")
    dlq = app.topic(topics.dlq, value_serializer="raw", key_serializer="raw")
    detections = app.topic(topics.detections, value_serializer="raw", key_serializer="raw")
    events_out = app.topic(topics.events, value_serializer="raw", key_serializer="raw")
    embeddings = app.topic(topics.embeddings, value_serializer="raw", key_serializer="raw")
    stats = ScoreStats()
    app.score_stats = stats  # type: ignore[attr-defined]
    metrics = app.metrics  # type: ignore[attr-defined]

    async def models_loaded() -> tuple[bool, str]:
        return True, ", ".join(d.name for d in pipeline.detectors)  # built above, before the app started

    app.readiness.add("models_loaded", models_loaded)  # type: ignore[attr-defined]
    log.info("score agent: detectors %s", ", ".join(d.name for d in pipeline.detectors))

    seen_partitions: set[tuple[str, int]] = set()

    @app.agent(source, name="score")
    @guarded("the score agent")
    async def score(stream):
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_linger_ms / 1000):
            started = time.perf_counter()
            messages = [
                RawMessage(
                    topic=e.message.topic, partition=e.message.partition, offset=e.message.offset,
                    key=e.message.key or b"", value=e.message.value,
                )
                for e in batch
            ]
            for m in messages:
                if (m.topic, m.partition) not in seen_partitions:
                    seen_partitions.add((m.topic, m.partition))
                    log.info("scoring partition %s/%d (first offset %d)", m.topic, m.partition, m.offset)
            metrics.events_consumed.inc(len(messages))
            metrics.batch_size.labels("score").observe(len(messages))
            verdicts = await asyncio.to_thread(score_batch, pipeline, messages, limits, stats)
            for name, spent in verdicts.seconds.items():
                metrics.detector_seconds.labels(name).observe(spent)
            pending = []
            for letter in (fit_dead_letter(d, settings.max_event_bytes) for d in verdicts.dead):
                metrics.dead_letter(letter.stage, letter.reason)
                log.warning(
                    "dead letter %s/%d/%d at stage %s: %s", letter.source_topic, letter.source_partition,
                    letter.source_offset, letter.stage, letter.reason[:300],
                )
                pending.append(await dlq.send(key=letter.key[:1024] or None, value=letter.raw,
                                              headers=dead_letter_headers(letter)))
            for stored, out in verdicts.records:
                key = stored.segment_key.encode()
                pending.append(await events_out.send(key=key, value=out.event_bytes))
                # One record per event on each result topic (all its detectors; its prompt and response).
                if out.detections is not None:
                    pending.append(await detections.send(key=key, value=out.detections))
                if out.embeddings is not None:
                    pending.append(await embeddings.send(key=key, value=out.embeddings))
            # Wait for the broker to acknowledge every produced message before the source
            # offsets of this batch can be committed (take_events acks them after this body).
            await asyncio.gather(*pending)
            stats.batches += 1
            stats.events += len(verdicts.records)
            stats.dead_letters += len(verdicts.dead)
            stats.results += sum(1 for _, out in verdicts.records if out.detections is not None)
            metrics.events_scored.inc(len(verdicts.records))
            for app_name, n in Counter(stored.app for stored, _ in verdicts.records).items():
                metrics.app_events.labels(metrics.app_label(app_name)).inc(n)
            log.debug("scored %d events (%d dead) in %.3f s", len(verdicts.records), len(verdicts.dead),
                      time.perf_counter() - started)
