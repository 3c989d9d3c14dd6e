"""What the score agent sends for one event, each record within the producer's size limit.

A valid event can still produce an oversize record: redaction lengthens texts (``1.2.3.4`` →
``<IP_ADDRESS>``), and detectors' findings add up. Kafka refuses a record over its limit, and
that refusal would fail the whole batch; so every record is measured here before it is sent:
stored texts are cut with a marker, results lose their spans (counted in ``spans_dropped``) and
then their evidence. What still does not fit is reported, and the event is dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass

from driftwarden.core.schemas import (
    MAX_ERROR_CHARS,
    MAX_METADATA_VALUE,
    DetectionResult,
    EmbeddingRecord,
    EventLimits,
    InferenceEvent,
    encode_records,
)

TRUNCATED = " …<TRUNCATED by driftwarden: {n} characters>"
#: Room for the record's key, headers and the producer's framing.
OVERHEAD_BYTES = 16 << 10


class RecordTooLargeError(ValueError):
    """A record for this event cannot be made to fit the producer's limit."""

    def __init__(self, what: str, size: int, limit: int):
        super().__init__(f"its {what} record has {size} bytes after truncation, more than the limit of {limit}")


@dataclass(frozen=True)
class Outgoing:
    """The records of one event: its stored form, its detections and its embeddings (encoded)."""

    event: InferenceEvent
    event_bytes: bytes
    detections: bytes | None
    embeddings: bytes | None


def record_limit(limits: EventLimits) -> int:
    return max(limits.max_event_bytes - OVERHEAD_BYTES, 4096)


def _cut(text: str, keep: int) -> str:
    if len(text) <= keep:
        return text
    return text[:keep] + TRUNCATED.format(n=len(text) - keep)


def fit_event(event: InferenceEvent, limits: EventLimits) -> tuple[InferenceEvent, bytes]:
    """The stored form of ``event`` within the limits of every field (redaction lengthens texts:
    the sink checks the stored form against the same contract) and the record limit."""
    limit = record_limit(limits)
    changes: dict = {}
    for name, most in (("prompt", limits.max_prompt_chars), ("response", limits.max_response_chars)):
        text = getattr(event, name)
        if len(text) > most:
            changes[name] = _cut(text, max(most - 64, 1))
    if event.context and sum(map(len, event.context)) > limits.max_context_chars:
        share = max(limits.max_context_chars // len(event.context) - 64, 1)
        changes["context"] = [_cut(p, share) for p in event.context]
    if any(len(v) > MAX_METADATA_VALUE for v in event.metadata.values()):
        changes["metadata"] = {k: _cut(v, MAX_METADATA_VALUE - 64) for k, v in event.metadata.items()}
    if event.error is not None and len(event.error) > MAX_ERROR_CHARS:
        changes["error"] = _cut(event.error, MAX_ERROR_CHARS - 64)
    if changes:
        event = event.model_copy(update=changes)
    raw = event.to_json_bytes()
    # Over the record limit (texts grew in redaction): halve the longest texts until it fits.
    for _ in range(24):
        if len(raw) <= limit:
            return event, raw
        fields = {"prompt": event.prompt, "response": event.response, "context": "".join(event.context or [])}
        longest = max(fields, key=lambda k: len(fields[k]))
        if longest == "context":
            event = event.model_copy(update={"context": [_cut(p, len(p) // 2) for p in event.context or []]})
        else:
            text = getattr(event, longest)
            event = event.model_copy(update={longest: _cut(text, len(text) // 2)})
        raw = event.to_json_bytes()
    if len(raw) > limit:
        raise RecordTooLargeError("event", len(raw), limit)
    return event, raw


def fit_results(results: list[DetectionResult], limit: int) -> bytes:
    """One event's results as one record; spans, then evidence dropped when it is too large."""
    raw = encode_records(results)
    if len(raw) <= limit:
        return raw
    slim = [r.model_copy(update={"spans": [], "scores": {**r.scores, "spans_dropped": r.scores.get("spans_dropped", 0)
                                                          + len(r.spans)}}) if r.spans else r for r in results]
    raw = encode_records(slim)
    if len(raw) <= limit:
        return raw
    slim = [r.model_copy(update={"evidence": None, "error": (r.error or "")[:200] or None}) for r in slim]
    raw = encode_records(slim)
    if len(raw) > limit:
        raise RecordTooLargeError("detections", len(raw), limit)
    return raw


def fit_embeddings(records: list[EmbeddingRecord], limit: int) -> bytes:
    raw = encode_records(records)
    if len(raw) > limit:
        raise RecordTooLargeError("embeddings", len(raw), limit)
    return raw


def outgoing(stored: InferenceEvent, results: list[DetectionResult], embeddings: list[EmbeddingRecord],
             limits: EventLimits) -> Outgoing:
    """Every record of one event, or :class:`RecordTooLargeError`."""
    limit = record_limit(limits)
    stored, raw = fit_event(stored, limits)
    return Outgoing(
        event=stored, event_bytes=raw,
        detections=fit_results(results, limit) if results else None,
        embeddings=fit_embeddings(embeddings, limit) if embeddings else None,
    )
