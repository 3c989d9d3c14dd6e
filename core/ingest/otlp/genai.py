"""OpenTelemetry GenAI semantic conventions (``gen_ai.*``), in all the shapes senders use.

- **Current (experimental) attributes** (openai-v2 with
  ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``): ``gen_ai.provider.name``,
  ``gen_ai.input.messages`` / ``gen_ai.output.messages`` / ``gen_ai.system_instructions`` as JSON
  (``[{"role": ..., "parts": [{"type": "text", "content": ...}]}]``) on the span, or on a
  ``gen_ai.client.inference.operation.details`` log record when content goes to events only.
- **The older shape** (openai-v2's default): ``gen_ai.system`` on the span, and the text in log
  records (or span events) named ``gen_ai.{system,user,assistant,tool}.message`` (body
  ``{"content": ...}``) and ``gen_ai.choice`` (body ``{"message": {"content": ...}}``), joined to
  their span by trace and span id; ``gen_ai.content.prompt`` / ``gen_ai.content.completion``
  span events of the oldest instrumentations.
- **OpenLLMetry's indexed attributes**: ``gen_ai.prompt.{i}.role`` / ``.content`` and
  ``gen_ai.completion.{i}.role`` / ``.content``.

Token counts: ``gen_ai.usage.input_tokens`` / ``output_tokens`` (or ``prompt_tokens`` /
``completion_tokens``). An LLM call is a span with ``gen_ai.operation.name`` ``chat``,
``text_completion`` or ``generate_content``, or, without an operation name, one with a provider
(``gen_ai.provider.name`` or ``gen_ai.system``) and a model. Embeddings, tool and agent spans are
not LLM calls.
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

NAME = "genai"
LLM_OPERATIONS = ("chat", "text_completion", "generate_content", "completion")
MESSAGE_EVENTS = {
    "gen_ai.system.message": "system", "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool",
}
CHOICE_EVENT = "gen_ai.choice"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
CONTENT_EVENTS = (*MESSAGE_EVENTS, CHOICE_EVENT, DETAILS_EVENT, "gen_ai.content.prompt", "gen_ai.content.completion")
_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d{1,4})\.(role|content)$")
#: Attributes copied into metadata when present.
METADATA_KEYS = (
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
    "gen_ai.response.model", "gen_ai.response.id", "gen_ai.response.finish_reasons", "gen_ai.request.temperature",
    "gen_ai.request.top_p", "gen_ai.request.max_tokens", "gen_ai.request.seed", "gen_ai.output.type",
    "gen_ai.agent.name", "server.address", "server.port", "error.type",
)


def claims(span: SpanView) -> bool:
    return any(key.startswith("gen_ai.") for key in span.attributes)


def is_llm_call(span: SpanView) -> bool:
    operation = span.attributes.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation:
        return operation in LLM_OPERATIONS
    provider = span.attributes.get("gen_ai.provider.name") or span.attributes.get("gen_ai.system")
    model = span.attributes.get("gen_ai.request.model") or span.attributes.get("gen_ai.response.model")
    return bool(provider and model)


def documents(span: SpanView) -> list[str]:
    """GenAI has no retriever span convention that this receiver reads."""
    return []


def is_retriever(span: SpanView) -> bool:
    return False


def _span_has_text(span: SpanView) -> bool:
    a = span.attributes
    return ("gen_ai.input.messages" in a or "gen_ai.output.messages" in a or "gen_ai.prompt.0.content" in a
            or "gen_ai.completion.0.content" in a
            or any(name in CONTENT_EVENTS for name, _, _ in span.events))


def awaits_logs(span: SpanView) -> bool:
    """Whether the span's text may come in separate log records (it carries none itself)."""
    return not _span_has_text(span)


def is_content_log(log: LogView) -> bool:
    return log.event_name in CONTENT_EVENTS


def completes(logs: list[LogView]) -> bool:
    """Whether the joined records hold the output, the last record an instrumentation sends."""
    return any(log.event_name == CHOICE_EVENT or log.event_name == DETAILS_EVENT for log in logs)


def _parts_messages(value: Any) -> list[tuple[str, str]]:
    """``[{"role": r, "parts": [...]}]`` (or ``"content"`` instead of parts) as (role, text)."""
    out = []
    for message in json_value(value) or []:
        if isinstance(message, dict):
            role = message.get("role") if isinstance(message.get("role"), str) else "user"
            body = message.get("parts", message.get("content"))
            out.append((role, text_of(body)))
        elif isinstance(message, str):
            out.append(("user", message))
    return out


def _from_attributes(attrs: dict[str, Any], conv: Conversation) -> None:
    system = json_value(attrs.get("gen_ai.system_instructions"))
    if system:
        conv.system.append(text_of(system))
    if "gen_ai.input.messages" in attrs:
        for role, text in _parts_messages(attrs["gen_ai.input.messages"]):
            (conv.system.append(text) if role == "system" else conv.inputs.append((role, text)))
    if "gen_ai.output.messages" in attrs:
        conv.outputs.extend(text for _, text in _parts_messages(attrs["gen_ai.output.messages"]))
    indexed: dict[tuple[str, int], dict[str, str]] = {}
    for key, value in attrs.items():
        m = _INDEXED.match(key)
        if m and isinstance(value, str):
            indexed.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = value
    for (side, _), item in sorted(indexed.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        role = item.get("role", "user" if side == "prompt" else "assistant")
        if side == "prompt":
            (conv.system.append(item.get("content", "")) if role == "system"
             else conv.inputs.append((role, item.get("content", ""))))
        else:
            conv.outputs.append(item.get("content", ""))


def _from_event(name: str, body: Any, attrs: dict[str, Any], conv: Conversation) -> None:
    if name in MESSAGE_EVENTS:
        role = MESSAGE_EVENTS[name]
        text = text_of(body.get("content")) if isinstance(body, dict) else text_of(body)
        if not text and "content" in attrs:  # span events carry it as an attribute
            text = text_of(attrs.get("content"))
        (conv.system.append(text) if role == "system" else conv.inputs.append((role, text)))
    elif name == CHOICE_EVENT:
        message = body.get("message") if isinstance(body, dict) else None
        if message is None and isinstance(body, dict):
            message = body
        text = text_of(message.get("content")) if isinstance(message, dict) else text_of(body)
        index = body.get("index", 0) if isinstance(body, dict) else 0
        if index in (0, "0", None):  # the first choice is the response
            conv.outputs.append(text)
    elif name == DETAILS_EVENT:
        _from_attributes(attrs, conv)
    elif name == "gen_ai.content.prompt":  # a JSON list of messages, or the text itself
        raw = attrs.get("gen_ai.prompt")
        prompt = json_value(raw)
        conv.inputs.extend(_parts_messages(prompt) if isinstance(prompt, list) else [("user", text_of(raw))])
    elif name == "gen_ai.content.completion":
        raw = attrs.get("gen_ai.completion")
        completion = json_value(raw)
        if isinstance(completion, list):
            conv.outputs.extend(t for _, t in _parts_messages(completion))
        else:
            conv.outputs.append(text_of(raw))


def to_mapping(span: SpanView, logs: list[LogView], docs: list[str], config: OtlpConfig) -> dict[str, Any]:
    """The event mapping of a GenAI LLM span, its joined log records and the trace's documents."""
    a = span.attributes
    fields, meta = span_fields(span, config, NAME)
    conv = Conversation(documents=list(docs))
    _from_attributes(a, conv)
    for name, _, attrs in span.events:
        _from_event(name, None, attrs, conv)
    for log in sorted(logs, key=lambda r: r.time_ns):
        _from_event(log.event_name, log.body, log.attributes, conv)
    model = a.get("gen_ai.response.model") or a.get("gen_ai.request.model")
    fields.update(
        model=valid_name(model, "unknown"),
        prompt=conv.prompt(),
        response=conv.response(),
        tokens_in=count(a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens"))),
        tokens_out=count(a.get("gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens"))),
        **user_and_session(span, ("user.id", "enduser.id", "gen_ai.user.id"),
                           ("gen_ai.conversation.id", "session.id")),
    )
    context = conv.context()
    if context:
        fields["context"] = context
    if conv.system:
        meta.add("gen_ai.system_instructions", "\n".join(t for t in conv.system if t))
    for key in METADATA_KEYS:
        meta.add(key, a.get(key))
    fields["metadata"] = meta.pairs
    return fields
