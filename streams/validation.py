"""Validation of raw messages and the dead-letter records made of those that fail."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from driftwarden.core.errors import InvalidEventError
from driftwarden.core.schemas import cap_reason
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


def fit_dead_letter(letter: DeadLetter, max_bytes: int) -> DeadLetter:
    """The letter with its value cut to ``max_bytes`` (said in its reason): a message the broker
    took can still be larger than this producer may send, and sending must not fail."""
    if letter.raw is None or len(letter.raw) <= max_bytes:
        return letter
    return replace(letter, raw=letter.raw[:max_bytes],
                   reason=f"{letter.reason} (value cut from {len(letter.raw)} to {max_bytes} bytes)")


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

    def h(name: str, default: str, limit: int = 256) -> str:
        raw = headers.get(name)
        if not isinstance(raw, (bytes, bytearray)):
            return default
        return cap_reason(bytes(raw[: limit * 4]).decode("utf-8", "replace"), limit)

    def number(name: str, default: int) -> int:
        text = h(name, "", 20)
        return int(text) if text.isascii() and text.isdigit() and int(text) < 2**63 else default

    return DeadLetter(
        source_topic=h(t.H_SOURCE_TOPIC, topic),
        source_partition=number(t.H_SOURCE_PARTITION, partition),
        source_offset=number(t.H_SOURCE_OFFSET, offset),
        stage=h(t.H_STAGE, "unknown", 32),
        reason=h(t.H_REASON, "no reason given", 8192),
        key=key or b"",
        raw=value or b"",
    )


async def parsed(stream, parse, agent: str):
    """The records of ``stream`` that ``parse`` accepts. The others are skipped with a warning:
    the sink, which reads the same topic, dead-letters them with the reason."""
    async for value in stream:
        try:
            item = parse(value)
        except Exception as exc:  # noqa: BLE001 - one bad record never stops a stream
            log.warning("%s skipped a record it cannot parse (%s: %s); the sink dead-letters it", agent,
                        type(exc).__name__, cap_reason(str(exc), 200))
            continue
        yield item


#: Stages whose reasons driftwarden writes itself, never quoting the input (see ``schemas._describe``).
SAFE_REASON_STAGES = ("decode", "validate")


def dead_letter_redactor(settings) -> Callable[[DeadLetter], DeadLetter]:
    """Redacts the copy of a dead letter that is stored in ClickHouse (``DRIFTWARDEN_REDACT_PII``):
    its bytes as UTF-8 text (invalid bytes replaced) and its reason, with PII replaced by
    ``<TYPE>``; withheld when the scan fails or runs out of time. The dead-letter topic keeps the
    original bytes, for replay."""
    from driftwarden.detectors.pii import WITHHELD, TextRedactor

    redactor = TextRedactor(settings.detectors.pii)

    def redact(letter: DeadLetter) -> DeadLetter:
        try:
            raw = redactor.redact(letter.raw.decode("utf-8", "replace")).encode()
        except Exception as exc:  # noqa: BLE001 - never stored unscanned
            raw = WITHHELD.format(reason=f"{type(exc).__name__}; the original bytes are on the dead-letter topic").encode()
        reason = letter.reason
        if letter.stage not in SAFE_REASON_STAGES:  # an exception's text may quote data
            try:
                reason = redactor.redact(letter.reason)
            except Exception:  # noqa: BLE001
                reason = "withheld: the reason could not be scanned for PII"
        return replace(letter, raw=raw, reason=reason)

    return redact
