"""OTLP request bodies (protobuf or OTLP/JSON, gzip or not) into plain spans and log records.

Decoding uses the ``opentelemetry-proto`` messages. OTLP/JSON is protobuf's JSON mapping with
three differences that this module handles: trace and span ids are hex (not base64), field names
may be lowerCamelCase or snake_case (both accepted by the parser), and 64-bit integers may be
strings. Unknown fields are ignored (newer senders). Every failure is an
:class:`~driftwarden.core.errors.OtlpDecodeError` whose reason never quotes the body.

A :class:`SpanView` / :class:`LogView` holds the attributes as plain Python values (strings,
numbers, booleans, lists, dicts; bytes as hex), the resource's attributes beside them, and the
message itself so that a span that cannot become an event is dead-lettered as its own bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from driftwarden.core.errors import OtlpDecodeError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
#: Nesting kept when an attribute value is turned into Python (a kvlist inside a list ...).
MAX_VALUE_DEPTH = 8


def content_kind(content_type: str | None) -> str | None:
    """``"protobuf"``, ``"json"`` or None (unsupported) for a ``Content-Type`` header."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in (PROTOBUF, "application/protobuf"):
        return "protobuf"
    if media == JSON:
        return "json"
    return None


def gunzip(body: bytes, limit: int) -> bytes:
    """The gzip ``body`` decompressed, refusing more than ``limit`` bytes (a small body can
    unpack to gigabytes)."""
    out = bytearray()
    rest = body
    while True:  # a gzip stream may hold several members, one after the other
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise OtlpDecodeError(f"the gzip body does not decompress ({exc})") from exc
        if len(out) > limit or inflater.unconsumed_tail:
            raise OtlpDecodeError(f"the body unpacks to more than {limit} bytes", too_large=True)
        if not inflater.eof:
            raise OtlpDecodeError("the gzip body is cut short")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)


@dataclass(frozen=True)
class SpanView:
    """One span as plain values."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    """0 unset, 1 ok, 2 error."""
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: tuple[tuple[str, int, dict[str, Any]], ...]
    """(name, time in ns, attributes) of each span event."""
    message: Any = field(repr=False, compare=False, default=None)
    """The protobuf ``Span`` (it keeps its whole request alive: :meth:`detached` lets go of it)."""
    raw_bytes: bytes | None = field(repr=False, compare=False, default=None)

    @property
    def key(self) -> tuple[str, str]:
        return self.trace_id, self.span_id

    def raw(self) -> bytes:
        """The span's protobuf bytes (what a dead letter of it holds)."""
        if self.raw_bytes is not None:
            return self.raw_bytes
        return self.message.SerializeToString() if self.message is not None else b""

    def detached(self) -> SpanView:
        """The same span holding its own bytes instead of the message: a span kept waiting must
        not keep the request it came in (every span of it) in memory."""
        return dataclasses.replace(self, message=None, raw_bytes=self.raw())

    def attribute(self, name: str) -> Any:
        """The span's attribute ``name``, else its resource's, else None."""
        value = self.attributes.get(name)
        return self.resource.get(name) if value is None else value


@dataclass(frozen=True)
class LogView:
    """One log record as plain values."""

    trace_id: str
    span_id: str
    time_ns: int
    event_name: str
    """The record's ``event_name``, else its ``event.name`` attribute (older senders), else ""."""
    attributes: dict[str, Any]
    body: Any
    resource: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.trace_id, self.span_id


def any_value(value: Any, depth: int = 0) -> Any:
    """An OTLP ``AnyValue`` as a Python value (bytes as hex; nesting cut at :data:`MAX_VALUE_DEPTH`)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if depth >= MAX_VALUE_DEPTH:
        return None
    if kind == "array_value":
        return [any_value(v, depth + 1) for v in value.array_value.values]
    return {kv.key: any_value(kv.value, depth + 1) for kv in value.kvlist_value.values}


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def _hex_ids_to_base64(node: Any, depth: int = 0) -> None:
    """Rewrite OTLP/JSON's hex ids in place into the base64 that protobuf's JSON parser wants."""
    if depth > 64:
        raise OtlpDecodeError("the JSON body nests deeper than 64 levels")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id") \
                    and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError as exc:
                    raise OtlpDecodeError(f"{key} is not hex") from exc
            else:
                _hex_ids_to_base64(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item, depth + 1)


def _parse(body: bytes, kind: str, message: Any) -> Any:
    from google.protobuf import json_format

    try:
        if kind == "protobuf":
            message.ParseFromString(body)
        else:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise OtlpDecodeError("the JSON body is not an object")
            _hex_ids_to_base64(data)
            json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except OtlpDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - DecodeError, ParseError, ValueError, ...: any is the body's
        what = "protobuf" if kind == "protobuf" else "OTLP/JSON"
        raise OtlpDecodeError(f"the body is not {what} of {type(message).__name__} "
                              f"({type(exc).__name__})") from exc
    return message


def decode_traces(body: bytes, kind: str) -> list[SpanView]:
    """The spans of an ``ExportTraceServiceRequest`` body."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = _parse(body, kind, ExportTraceServiceRequest())
    out = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(SpanView(
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(), name=span.name,
                    start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                    status_code=int(span.status.code), status_message=span.status.message,
                    attributes=attributes(span.attributes), resource=resource,
                    events=tuple((e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events),
                    message=span,
                ))
    return out


def decode_logs(body: bytes, kind: str) -> list[LogView]:
    """The log records of an ``ExportLogsServiceRequest`` body."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = _parse(body, kind, ExportLogsServiceRequest())
    out = []
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attrs = attributes(record.attributes)
                name = record.event_name or attrs.get("event.name") or ""
                out.append(LogView(
                    trace_id=record.trace_id.hex(), span_id=record.span_id.hex(),
                    time_ns=record.time_unix_nano or record.observed_time_unix_nano,
                    event_name=name if isinstance(name, str) else "", attributes=attrs,
                    body=any_value(record.body) if record.HasField("body") else None, resource=resource,
                ))
    return out


def export_response(signal: str, kind: str, rejected: int = 0, error_message: str = "") -> bytes:
    """The ``Export{Trace,Logs}ServiceResponse`` body, with ``partial_success`` when something was
    rejected, in the request's encoding."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    if signal == "traces":
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = error_message
    else:
        response = ExportLogsServiceResponse()
        if rejected:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = error_message
    if kind == "json":
        return json.dumps(json_format.MessageToDict(response)).encode()
    return response.SerializeToString()


def status_body(code: int, message: str, kind: str | None) -> bytes:
    """A ``google.rpc.Status`` (what OTLP/HTTP answers a 4xx or 5xx with), in protobuf or JSON.

    Encoded by hand (field 1 ``code``, field 2 ``message``) rather than through
    googleapis-common-protos, a package of its own for these two fields."""
    if kind == "json":
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
