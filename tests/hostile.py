"""Hostile messages an app with publish rights can send, each with the verdict it must get.

Used by the hostile-input suite through the running stack (``tests/integration/test_hostile.py``)
and by ``bench/hostile.py`` (per-message handling time, before and after a change). Sizes assume
the suite's limits: prompts and responses of at most :data:`HOSTILE_MAX_CHARS` characters.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from driftwarden.tests.cases import encode, valid_event

#: DRIFTWARDEN_MAX_PROMPT_CHARS / _MAX_RESPONSE_CHARS of the suite's stack.
HOSTILE_MAX_CHARS = 40_000


@dataclass(frozen=True)
class Hostile:
    kind: str
    raw: bytes | None
    """The message value as sent (None: a tombstone)."""
    stage: str | None
    """Dead-letter stage it must get; None: it is valid and must be stored."""
    reason: str = ""
    """A substring of its dead-letter reason."""
    event_id: str | None = None
    """Valid ones: the id it is stored under."""
    absent: tuple[str, ...] = ()
    """Valid ones: strings its stored form must not contain (PII, or texts that must be withheld)."""
    present: tuple[str, ...] = field(default=())
    """Valid ones: strings its stored form must contain."""
    topic: str = "inference"
    """Settings name of the topic it is sent to (``topic_<name>``)."""


def _raw(event_id: str, **changes) -> bytes:
    return encode(valid_event(event_id, **changes))


def _bad(kind: str, stage: str, reason: str, **changes) -> Hostile:
    return Hostile(kind, _raw(f"hostile-{zlib.crc32(kind.encode()):08x}", **changes), stage, reason)


def _nested(depth: int, key: str) -> bytes:
    inner = '"x"'
    for _ in range(depth):
        inner = '{"a": ' + inner + "}"
    event = valid_event("hostile-nested-" + key)
    text = json.dumps(event)
    return (text[:-1] + f', "{key}": ' + inner + "}").encode()


def _stored(kind: str, event_id: str, absent: tuple[str, ...] = (), present: tuple[str, ...] = (), **changes) -> Hostile:
    return Hostile(kind, _raw(event_id, **changes), None, event_id=event_id, absent=absent, present=present)


def _drift_record(n_current: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    return json.dumps({
        "window_id": "forged/v1/prompt/1", "app": "forged", "model_version": "v1", "field": "prompt",
        "window_start": now, "window_end": now, "n_reference": 10, "n_current": n_current,
        "method": "mmd2_gaussian_permutation", "statistic": 0.1, "p_value": 0.5, "reference_policy": "baseline",
        "reference_id": "x", "encoder": "e", "detector_version": "1", "config_fingerprint": "f", "computed_at": now,
    }).encode()


WITHHELD_MARK = "WITHHELD by driftwarden"
EMAILS = " ".join(f"u{i}@ex.io" for i in range(3_300))  # ~36k chars, 67k once each is <EMAIL_ADDRESS>
IPS = ", ".join(f"10.0.{i // 250}.{i % 250}" for i in range(1_500))

HOSTILE: list[Hostile] = [
    # --- numbers beyond their columns --------------------------------------------------------
    _bad("tokens_in beyond UInt32", "validate", "tokens_in: Input should be less than or equal to 4294967295",
         tokens_in=2**32 + 5),
    _bad("tokens_in with 401 digits", "validate", "tokens_in", tokens_in=10**400),
    _bad("tokens_out beyond UInt64", "validate", "tokens_out", tokens_out=2**64),
    _bad("cost_usd 1e308", "validate", "cost_usd: Value error, is more than the limit", cost_usd=1e308),
    _bad("latency_ms 1e308", "validate", "latency_ms: Value error, is more than the limit", latency_ms=1e308),
    _bad("tokens as an exponent", "validate", "tokens_in", tokens_in=1e3),
    # --- times ------------------------------------------------------------------------------
    _bad("timestamp in year 1", "validate", "lies before 2000-01-01", timestamp="0001-01-01T00:00:00+00:00"),
    _bad("timestamp in year 9999", "validate", "in the future", timestamp="9999-12-31T23:59:59+00:00"),
    # --- structure --------------------------------------------------------------------------
    Hostile("metadata nested 5,000 levels", _nested(5_000, "metadata"), "decode", "nested too deeply"),
    Hostile("context nested 5,000 levels", _nested(5_000, "context"), "decode", "nested too deeply"),
    Hostile("a tombstone (null value)", None, "decode", "message value is NoneType"),
    Hostile("10,000 unknown fields", encode({**valid_event("hostile-fields"), **{f"f{i}": i for i in range(10_000)}}),
            "validate", "more problem(s)"),
    _bad("1,000 context passages", "validate", "passages, more than the limit of 256", context=["x"] * 1_000),
    _bad("65 metadata keys", "validate", "metadata: Value error, has 65 keys", metadata={f"k{i}": "v" for i in range(65)}),
    Hostile("event_id with a newline", encode(valid_event("evil\nINFO forged line")), "validate", "event_id"),
    # --- names that reach keys, paths, SQL, Slack and logs ----------------------------------
    _bad("app pinging Slack with a phishing link", "validate", "app: must be 1-128 letters",
         app="<!channel> <https://evil.example|Open the runbook>"),
    _bad("app with a newline", "validate", "app: must be", app="bot\nCRITICAL forged log line"),
    _bad("app with a slash", "validate", "app: must be", app="a/b"),
    _bad("app '..'", "validate", "app: must be", app=".."),
    _bad("model_version '..'", "validate", "model_version: must be", model_version=".."),
    _bad("app with backslash-quote", "validate", "app: must be", app="x\\' OR 1=1 --"),
    _bad("model_version with a colon", "validate", "model_version: must be", model_version="v1:prod"),
    _bad("model with a right-to-left override", "validate", "model: must be", model="gpt\u202e4o"),
    Hostile("lone surrogate in the prompt", encode(valid_event("hostile-surrogate", prompt="a\ud800")), "validate",
            "Invalid JSON"),
    # --- valid, but built to hurt the detectors or the records ------------------------------
    _stored("crafted prompt that costs presidio ~1 ms a character", "hostile-pii-cpu", absent=("a.a.a.",),
            present=(WITHHELD_MARK,), prompt="a." * (HOSTILE_MAX_CHARS // 2)),
    _stored("crafted response that costs presidio ~1 ms a character", "hostile-pii-cpu-response",
            absent=("a.a.a.",), present=(WITHHELD_MARK,), response="a." * (HOSTILE_MAX_CHARS // 2)),
    _stored("thousands of e-mail addresses (redaction doubles the text)", "hostile-emails",
            absent=("u17@ex.io",), prompt=EMAILS),
    _stored("1,500 IP addresses", "hostile-ips", absent=("10.0.3.17",), prompt=IPS),
    _stored("PII in metadata, context and error", "hostile-pii-fields", absent=("jane.roe@example.org", "4111 1111"),
            metadata={"caller": "jane.roe@example.org"}, context=["Mail jane.roe@example.org"], status="error",
            error="card 4111 1111 1111 1111 declined"),
    _stored("NUL and control characters", "hostile-control", prompt="a\u0000b\u0007c\u001b[31m red"),
    _stored("20,000 emoji", "hostile-emoji", prompt="\U0001f600" * 20_000),
    _stored("one 40,000-character word", "hostile-word", prompt="x" * HOSTILE_MAX_CHARS),
    _stored("256 passages of context", "hostile-context", context=["The refund policy allows returns. " * 20] * 256),
    _stored("user_id with a newline", "hostile-user", user_id="u1\nCRITICAL forged"),
    # --- forged results on the sink's topics --------------------------------------------------
    Hostile("drift record whose size overflows its column", _drift_record(2**40), "sink", "drift_windows",
            topic="drift"),
    Hostile("detections record that is not a list", b'{"not": "a list"}', "sink", "not a list of DetectionResults",
            topic="detections"),
]
