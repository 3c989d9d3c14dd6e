"""What every convention's mapping shares: the fields that come from the span itself, names made
valid, messages made into prompt, response and context, and bounded metadata."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from driftwarden.core.ingest.otlp.config import OtlpConfig
from driftwarden.core.ingest.otlp.decode import SpanView
from driftwarden.core.schemas import MAX_METADATA_KEY, MAX_METADATA_KEYS, MAX_METADATA_VALUE, UINT32_MAX

_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")
STATUS_ERROR = 2
#: A JSON attribute longer than this is not parsed (the body limit bounds it anyway).
MAX_JSON_CHARS = 4_000_000


def valid_name(value: Any, default: str) -> str:
    """``value`` as an app, model or version name (see ``NAME_PATTERN``): other characters become
    ``-``, at most 128 characters; ``default`` when nothing is left."""
    if not isinstance(value, str):
        return default
    name = _NOT_NAME.sub("-", value).strip("-._")
    while ".." in name:
        name = name.replace("..", ".")
    return name[:128].rstrip("-._") or default


def count(value: Any) -> int:
    """A token count attribute as an int in [0, 2³²−1] (0 when absent or not a count)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and 0 <= value <= UINT32_MAX else 0


def text_of(value: Any) -> str:
    """The text of a message's content: a string; a list of parts (``{"type": "text", "content"|"text": ...}``
    or strings) joined by newlines; anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [text_of(p) for p in value]
        return "\n".join(p for p in parts if p)
    if isinstance(value, dict):
        for key in ("content", "text", "response", "result"):
            if key in value and value[key] is not None:
                return text_of(value[key])
        if value.get("type") in ("tool_call", "function_call"):
            return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def json_value(value: Any) -> Any:
    """An attribute that holds JSON (a string) as Python; a value that is already structured as is;
    None when the string is not JSON."""
    if isinstance(value, str):
        if len(value) > MAX_JSON_CHARS:
            return None
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return None
    return value


@dataclass
class Conversation:
    """The messages of one call, in order, as (role, text)."""

    inputs: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    system: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    """Retrieved passages (retriever spans of the trace)."""

    @property
    def empty(self) -> bool:
        return not (self.inputs or self.outputs)

    def prompt(self) -> str:
        """The last user message (what this call added to the conversation); without one, the
        last input message of any role but system."""
        for role, text in reversed(self.inputs):
            if role == "user" and text.strip():
                return text
        for role, text in reversed(self.inputs):
            if role not in ("system", "developer") and text.strip():
                return text
        return ""

    def response(self) -> str:
        return "\n".join(t for t in self.outputs if t)

    def context(self) -> list[str] | None:
        """Tool results and retrieved documents: what the response should be grounded in."""
        passages = [text for role, text in self.inputs if role == "tool" and text.strip()]
        passages += [d for d in self.documents if d.strip()]
        return passages or None


class Metadata:
    """Metadata pairs within the event's limits: string values, cut to the value limit, keys cut
    to the key limit, at most the key limit in number (later pairs are dropped)."""

    def __init__(self) -> None:
        self.pairs: dict[str, str] = {}

    def add(self, key: str, value: Any) -> None:
        if value is None or value == "" or len(self.pairs) >= MAX_METADATA_KEYS:
            return
        if not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (list, dict)) \
                else str(value).lower() if isinstance(value, bool) else str(value)
        key = key[:MAX_METADATA_KEY]
        if key and key not in self.pairs:
            self.pairs[key] = value[:MAX_METADATA_VALUE]


def span_fields(span: SpanView, config: OtlpConfig, convention: str) -> tuple[dict[str, Any], Metadata]:
    """The event fields that come from the span, not from a convention's attributes: id, time,
    app, version, latency, status; and the metadata started with the span's trace ids."""
    start = datetime.fromtimestamp(span.start_ns / 1e9, UTC) if span.start_ns else datetime.now(UTC)
    latency_ms = max(0.0, (span.end_ns - span.start_ns) / 1e6) if span.end_ns and span.start_ns else 0.0
    fields: dict[str, Any] = {
        "event_id": f"{span.trace_id}:{span.span_id}",
        "timestamp": start,
        "app": valid_name(span.resource.get("service.name"), "unknown_service"),
        "model_version": valid_name(span.attribute(config.model_version_attribute), "unversioned"),
        "latency_ms": latency_ms,
    }
    if span.status_code == STATUS_ERROR:
        fields["status"] = "error"
        error = span.status_message or span.attributes.get("error.type") or "the span's status is ERROR"
        fields["error"] = str(error)[:4096]
    meta = Metadata()
    meta.add("otel.convention", convention)  # the trace and span ids are the event id
    meta.add("otel.span_name", span.name[:256])
    return fields, meta


def user_and_session(span: SpanView, user_keys: tuple[str, ...], session_keys: tuple[str, ...]) -> dict[str, str]:
    """``user_id`` and ``session_id`` from the first attribute present of each list (cut to 128)."""
    out = {}
    for field_name, keys in (("user_id", user_keys), ("session_id", session_keys)):
        for key in keys:
            value = span.attribute(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
                out[field_name] = str(value)[:128]
                break
    return out
