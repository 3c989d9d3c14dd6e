"""OpenInference semantic conventions (Arize Phoenix's instrumentors).

An LLM call is a span with ``openinference.span.kind`` ``LLM``. Its messages are flattened
attributes, ``llm.input_messages.{i}.message.role`` / ``.message.content`` (or
``.message.contents.{j}.message_content.text``) and the same under ``llm.output_messages``; without
them, ``input.value`` / ``output.value``. Tokens: ``llm.token_count.prompt`` / ``.completion``.
The model: ``llm.model_name``. User and session: ``user.id``, ``session.id``. ``metadata`` (JSON)
and ``tag.tags`` go to the event's metadata.

Documents of a ``RETRIEVER`` span of the same trace (``retrieval.documents.{i}.document.content``)
become the event's ``context``, so grounded hallucination works on RAG traces: the receiver keeps
each trace's documents for a while (a retriever span ends, and is exported, before the LLM span
that uses it).
"""

from __future__ import annotations

import re
from typing import Any

from driftwarden.core.ingest.otlp.common import (
    Conversation,
    count,
    json_value,
    span_fields,
    text_of,
    user_and_session,
    valid_name,
)
from driftwarden.core.ingest.otlp.config import OtlpConfig
from driftwarden.core.ingest.otlp.decode import LogView, SpanView

NAME = "openinference"
KIND = "openinference.span.kind"
_MESSAGE = re.compile(r"^llm\.(input|output)_messages\.(\d{1,4})\.message\.(role|content|contents\.(\d{1,4})"
                      r"\.message_content\.text)$")
_DOCUMENT = re.compile(r"^retrieval\.documents\.(\d{1,5})\.document\.content$")
METADATA_KEYS = ("llm.provider", "llm.system", "llm.invocation_parameters", "llm.model_name", "tag.tags",
                 "llm.token_count.total", "output.mime_type")


def claims(span: SpanView) -> bool:
    return KIND in span.attributes


def _kind(span: SpanView) -> str:
    kind = span.attributes.get(KIND)
    return kind.upper() if isinstance(kind, str) else ""


def is_llm_call(span: SpanView) -> bool:
    return _kind(span) == "LLM"


def is_retriever(span: SpanView) -> bool:
    return _kind(span) == "RETRIEVER"


def documents(span: SpanView) -> list[str]:
    """The retrieved documents' texts, in their order."""
    found = []
    for key, value in span.attributes.items():
        m = _DOCUMENT.match(key)
        if m and isinstance(value, str):
            found.append((int(m.group(1)), value))
    return [text for _, text in sorted(found)]


def awaits_logs(span: SpanView) -> bool:
    return False


def is_content_log(log: LogView) -> bool:
    return False


def completes(logs: list[LogView]) -> bool:
    return True


def _conversation(a: dict[str, Any], docs: list[str]) -> Conversation:
    messages: dict[tuple[str, int], dict[str, Any]] = {}
    for key, value in a.items():
        m = _MESSAGE.match(key)
        if not m or not isinstance(value, str):
            continue
        item = messages.setdefault((m.group(1), int(m.group(2))), {"parts": []})
        if m.group(3) == "role":
            item["role"] = value
        elif m.group(3) == "content":
            item["content"] = value
        else:
            item["parts"].append((int(m.group(4)), value))
    conv = Conversation(documents=list(docs))
    for (side, _), item in sorted(messages.items()):
        text = item.get("content") or "\n".join(t for _, t in sorted(item["parts"]))
        role = item.get("role", "user" if side == "input" else "assistant")
        if side == "output":
            conv.outputs.append(text)
        elif role == "system":
            conv.system.append(text)
        else:
            conv.inputs.append((role, text))
    if not conv.inputs and isinstance(a.get("input.value"), str):
        conv.inputs.append(("user", _value_text(a["input.value"], a.get("input.mime_type"))))
    if not conv.outputs and isinstance(a.get("output.value"), str):
        conv.outputs.append(_value_text(a["output.value"], a.get("output.mime_type")))
    return conv


def _value_text(value: str, mime: Any) -> str:
    """``input.value`` / ``output.value``: text as is; a JSON request or response reduced to its
    messages' text where it has them."""
    if mime != "application/json":
        return value
    data = json_value(value)
    if isinstance(data, dict):
        for key in ("messages", "choices", "prompt", "input", "content"):
            if key in data:
                items = data[key]
                if isinstance(items, list) and items and isinstance(items[-1], dict) and key == "messages":
                    return text_of(items[-1].get("content"))
                if key == "choices" and isinstance(items, list) and items and isinstance(items[0], dict):
                    return text_of(items[0].get("message", items[0]))
                return text_of(items)
    return value


def to_mapping(span: SpanView, logs: list[LogView], docs: list[str], config: OtlpConfig) -> dict[str, Any]:
    """The event mapping of an OpenInference LLM span and the documents of its trace."""
    a = span.attributes
    fields, meta = span_fields(span, config, NAME)
    conv = _conversation(a, docs)
    fields.update(
        model=valid_name(a.get("llm.model_name"), "unknown"),
        prompt=conv.prompt(),
        response=conv.response(),
        tokens_in=count(a.get("llm.token_count.prompt")),
        tokens_out=count(a.get("llm.token_count.completion")),
        **user_and_session(span, ("user.id",), ("session.id",)),
    )
    context = conv.context()
    if context:
        fields["context"] = context
    if conv.system:
        meta.add("llm.system_prompt", "\n".join(t for t in conv.system if t))
    for key in METADATA_KEYS:
        meta.add(key, a.get(key))
    extra = json_value(a.get("metadata"))
    if isinstance(extra, dict):
        for key, value in extra.items():
            meta.add(f"metadata.{key}", value)
    fields["metadata"] = meta.pairs
    return fields
