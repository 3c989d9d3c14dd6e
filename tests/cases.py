"""Shared test data: valid events and a catalogue of bad ones, each with the reason it must get."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

#: Tests run with DRIFTWARDEN_MAX_PROMPT_CHARS set to this, so an oversize prompt stays small.
TEST_MAX_PROMPT_CHARS = 5_000


def valid_event(event_id: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "app": "support-bot",
        "model": "gpt-4o-mini",
        "model_version": "v7",
        "prompt": "How do I reset my password?",
        "response": "Open Settings, choose Security, then Reset password.",
        "latency_ms": 812.5,
        "tokens_in": 9,
        "tokens_out": 14,
    }
    event.update(changes)
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def _without(field: str) -> bytes:
    event = valid_event("bad-missing")
    del event[field]
    return encode(event)


#: (kind, raw message bytes, a substring its dead-letter reason must contain, stage)
BAD_EVENTS: list[tuple[str, bytes, str, str]] = [
    ("not JSON", b'{"event_id": "x", ', "not JSON", "decode"),
    ("not UTF-8", b'{"prompt": "\xff\xfe"}', "not UTF-8", "decode"),
    ("empty message", b"", "not JSON", "decode"),
    ("JSON array", b'[{"event_id": "x"}]', "JSON list where an object was expected", "decode"),
    ("NaN literal", encode(valid_event("bad-nan"))[:-1] + b', "feedback": NaN}', "NaN is not valid JSON", "decode"),
    ("missing prompt", _without("prompt"), "prompt: Field required", "validate"),
    ("missing event_id", _without("event_id"), "event_id: Field required", "validate"),
    ("latency as a string", encode(valid_event("bad-latency-type", latency_ms="812")), "latency_ms", "validate"),
    ("negative latency", encode(valid_event("bad-latency-neg", latency_ms=-3)), "latency_ms: Input should be greater than or equal to 0", "validate"),
    ("fractional tokens", encode(valid_event("bad-tokens", tokens_in=1.5)), "tokens_in", "validate"),
    ("oversize prompt", encode(valid_event("bad-oversize", prompt="x" * (TEST_MAX_PROMPT_CHARS + 1))),
     f"more than the limit of {TEST_MAX_PROMPT_CHARS}", "validate"),
    ("empty prompt", encode(valid_event("bad-empty", prompt="   ")), "prompt: Value error, is empty", "validate"),
    ("unknown field", encode(valid_event("bad-extra", latncy_ms=3)), "latncy_ms: unknown field", "validate"),
    ("timestamp not a date", encode(valid_event("bad-ts", timestamp="yesterday")), "timestamp", "validate"),
    ("timestamp in the future", encode(valid_event("bad-future", timestamp=(datetime.now(UTC) + timedelta(days=30)).isoformat())),
     "in the future", "validate"),
    ("error on an ok call", encode(valid_event("bad-status", error="boom")), "status is 'ok'", "validate"),
    ("bad event_id", encode(valid_event("has spaces in it")), "event_id: String should match pattern", "validate"),
    ("metadata value not a string", encode(valid_event("bad-meta", metadata={"n": 3})), "metadata.n", "validate"),
    ("feedback out of range", encode(valid_event("bad-feedback", feedback=5)), "feedback", "validate"),
    ("unknown status", encode(valid_event("bad-status2", status="timeout")), "status", "validate"),
]
