"""Score agent: validate, micro-batch, run the detectors, produce results and events.

Per batch: invalid messages go to the dead-letter topic with their raw bytes and a reason;
valid events are scored by every enabled detector (in a thread, so the event loop keeps the
consumer's heartbeats going); each event's results go to ``llm.detections`` as one record, its
embeddings to ``llm.embeddings`` as one record, and the (optionally redacted) event to
``llm.events.redacted``. The batch's source offsets are acknowledged only
after the broker acknowledged everything the batch produced.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust

from driftwarden.core.schemas import EventLimits, encode_records
from driftwarden.core.settings import Settings
from driftwarden.detectors.pipeline import BatchOutput, ScoringPipeline
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.validation import RawMessage, dead_letter_headers, split_valid

log = logging.getLogger(__name__)


def per_event(records: list) -> list[list]:
    """Records (results or embeddings) grouped by event, in first-seen order."""
    groups: dict[str, list] = {}
    for record in records:
        groups.setdefault(record.event_id, []).append(record)
    return list(groups.values())


class ScoreStats:
    """What this worker did so far (kept on the app for its web page and for debugging)."""

    def __init__(self) -> None:
        self.events = 0
        self.dead_letters = 0
        self.results = 0
        self.batches = 0


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
    log.info("score agent: detectors %s", ", ".join(d.name for d in pipeline.detectors))

    seen_partitions: set[tuple[str, int]] = set()

    @app.agent(source, name="score")
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
            valid, dead = split_valid(messages, limits)
            output = await asyncio.to_thread(pipeline.run, valid) if valid else BatchOutput()
            pending = []
            for letter in dead:
                log.warning(
                    "dead letter %s/%d/%d at stage %s: %s", letter.source_topic, letter.source_partition,
                    letter.source_offset, letter.stage, letter.reason[:300],
                )
                pending.append(await dlq.send(key=letter.key or None, value=letter.raw,
                                              headers=dead_letter_headers(letter)))
            for event in output.events:
                pending.append(await events_out.send(key=event.segment_key.encode(), value=event.to_json_bytes()))
            # One record per event on each result topic (all its detectors; its prompt and response).
            for records, topic in ((output.results, detections), (output.embeddings, embeddings)):
                for group in per_event(records):
                    pending.append(await topic.send(key=f"{group[0].app}/{group[0].model_version}".encode(),
                                                    value=encode_records(group)))
            # Wait for the broker to acknowledge every produced message before the source
            # offsets of this batch can be committed (take_events acks them after this body).
            await asyncio.gather(*pending)
            stats.batches += 1
            stats.events += len(valid)
            stats.dead_letters += len(dead)
            stats.results += len(output.results)
            log.debug("scored %d events (%d dead) in %.3f s", len(valid), len(dead), time.perf_counter() - started)
