"""Validation of raw messages and the dead-letter records made of those that fail."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from driftwarden.core.errors import InvalidEventError
from driftwarden.core.schemas import EventLimits, InferenceEvent, parse_event
from driftwarden.core.storage.writer import DeadLetter
from driftwarden.streams import topics as t

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


def to_dead_letter(msg: RawMessage, error: InvalidEventError) -> DeadLetter:
    return DeadLetter(
        source_topic=msg.topic, source_partition=msg.partition, source_offset=msg.offset,
        stage=error.stage, reason=error.reason, key=msg.key, raw=msg.value,
    )


def dead_letter_headers(letter: DeadLetter) -> dict[str, bytes]:
    return {
        t.H_REASON: letter.reason.encode()[:8192],
        t.H_STAGE: letter.stage.encode(),
        t.H_SOURCE_TOPIC: letter.source_topic.encode(),
        t.H_SOURCE_PARTITION: str(letter.source_partition).encode(),
        t.H_SOURCE_OFFSET: str(letter.source_offset).encode(),
    }


def dead_letter_from_headers(headers: dict[str, bytes], key: bytes, value: bytes, partition: int, offset: int,
                             topic: str) -> DeadLetter:
    """Read a dead letter back from the DLQ topic. Tolerates messages others put there."""

    def h(name: str, default: str) -> str:
        raw = headers.get(name)
        return raw.decode("utf-8", "replace") if raw is not None else default

    return DeadLetter(
        source_topic=h(t.H_SOURCE_TOPIC, topic),
        source_partition=int(h(t.H_SOURCE_PARTITION, str(partition))),
        source_offset=int(h(t.H_SOURCE_OFFSET, str(offset))),
        stage=h(t.H_STAGE, "unknown"),
        reason=h(t.H_REASON, "no reason given"),
        key=key or b"",
        raw=value or b"",
    )


def split_valid(messages: list[RawMessage], limits: EventLimits) -> tuple[list[InferenceEvent], list[DeadLetter]]:
    """Parse every message; the valid ones as events, the others as dead letters with a reason."""
    valid: list[InferenceEvent] = []
    dead: list[DeadLetter] = []
    for msg in messages:
        try:
            valid.append(parse_event(msg.value, limits))
        except InvalidEventError as exc:
            dead.append(to_dead_letter(msg, exc))
    return valid, dead


async def parsed(stream, parse, agent: str):
    """The records of ``stream`` that ``parse`` accepts. The others are skipped with a warning:
    the sink, which reads the same topic, dead-letters them with the reason."""
    from pydantic import ValidationError

    async for value in stream:
        try:
            yield parse(value)
        except (ValidationError, TypeError) as exc:
            log.warning("%s skipped a record it cannot parse (%s); the sink dead-letters it", agent, str(exc)[:200])
