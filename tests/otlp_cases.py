"""OTLP requests built in code (opentelemetry-proto messages), as instrumented apps send them."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=any_value(v)) for k, v in value.items())
        return out
    return AnyValue(string_value=str(value))


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def ids() -> tuple[bytes, bytes]:
    return os.urandom(16), os.urandom(8)


def span(attrs: dict[str, Any], *, trace_id: bytes | None = None, span_id: bytes | None = None,
         name: str = "chat gpt-4o-mini", latency_ms: float = 250.0, error: str | None = None,
         events: list[tuple[str, dict[str, Any]]] = ()) -> Span:
    t, s = ids()
    start = time.time_ns() - 60_000_000_000
    out = Span(trace_id=trace_id or t, span_id=span_id or s, name=name, kind=Span.SPAN_KIND_CLIENT,
               start_time_unix_nano=start, end_time_unix_nano=start + int(latency_ms * 1e6))
    out.attributes.extend(kvs(attrs))
    for event_name, event_attrs in events:
        event = out.events.add(name=event_name, time_unix_nano=start)
        event.attributes.extend(kvs(event_attrs))
    if error is not None:
        out.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return out


def traces_request(spans: list[Span], resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(kvs(resource if resource is not None else
                                      {"service.name": "support-bot", "service.version": "v7"}))
    rs.scope_spans.add().spans.extend(spans)
    return request


def log_record_request(records: list[tuple[bytes, bytes, str, Any, dict[str, Any]]],
                       resource: dict[str, Any] | None = None) -> ExportLogsServiceRequest:
    """(trace id, span id, event name, body, attributes) per record."""
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend(kvs(resource or {"service.name": "support-bot"}))
    scope = rl.scope_logs.add()
    for trace_id, span_id, event_name, body, attrs in records:
        record = scope.log_records.add(trace_id=trace_id, span_id=span_id, event_name=event_name,
                                       time_unix_nano=time.time_ns())
        if body is not None:
            record.body.CopyFrom(any_value(body))
        record.attributes.extend(kvs(attrs))
    return request


def genai_latest(prompt: str = "How do I reset my password?", response: str = "Open Settings, then Security.",
                 **extra: Any) -> dict[str, Any]:
    """Attributes of a chat span in the current GenAI conventions, with content on the span."""
    return {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 21, "gen_ai.usage.output_tokens": 9,
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You are a support agent."}]),
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": prompt}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": response}],
                                               "finish_reason": "stop"}]),
        **extra,
    }


def genai_old(**extra: Any) -> dict[str, Any]:
    """Attributes of a chat span in the older GenAI shape (text comes in log records)."""
    return {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 5, **extra}


def openinference_llm(prompt: str = "What is our refund window?", response: str = "30 days.",
                      **extra: Any) -> dict[str, Any]:
    return {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
        "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "Be brief.",
        "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": prompt,
        "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": response,
        "llm.token_count.prompt": 30, "llm.token_count.completion": 4, "session.id": "s-1", "user.id": "u-42",
        **extra,
    }
