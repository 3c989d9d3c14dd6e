"""Decoding OTLP bodies: protobuf, OTLP/JSON (hex ids), gzip, limits, garbage."""

from __future__ import annotations

import gzip
import json

import pytest
from google.protobuf import json_format

from driftwarden.core.errors import OtlpDecodeError
from driftwarden.core.ingest.otlp.decode import (
    content_kind,
    decode_logs,
    decode_traces,
    export_response,
    gunzip,
    status_body,
)
from driftwarden.tests.otlp_cases import genai_latest, log_record_request, span, traces_request


def otlp_json(message) -> bytes:
    """OTLP/JSON as exporters write it: lowerCamelCase, hex ids, int64 as strings."""
    data = json_format.MessageToDict(message)

    def hexify(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    import base64
                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(data)
    return json.dumps(data).encode()


def test_a_protobuf_body_gives_spans_with_hex_ids_plain_attributes_and_the_resource():
    s = span(genai_latest(), trace_id=bytes(range(16)), span_id=bytes(range(8)))
    [view] = decode_traces(traces_request([s]).SerializeToString(), "protobuf")
    assert view.trace_id == bytes(range(16)).hex() and view.span_id == bytes(range(8)).hex()
    assert view.attributes["gen_ai.usage.input_tokens"] == 21
    assert view.resource["service.name"] == "support-bot"
    assert view.end_ns - view.start_ns == 250_000_000
    assert view.raw() == s.SerializeToString()


def test_an_otlp_json_body_with_hex_ids_decodes_to_the_same_spans_as_protobuf():
    request = traces_request([span(genai_latest())])
    from_json = decode_traces(otlp_json(request), "json")
    from_pb = decode_traces(request.SerializeToString(), "protobuf")
    assert [(v.trace_id, v.span_id, v.attributes, v.start_ns) for v in from_json] == \
           [(v.trace_id, v.span_id, v.attributes, v.start_ns) for v in from_pb]


def test_log_records_carry_event_name_body_and_ids():
    t, s = bytes(16 * [1]), bytes(8 * [2])
    body = log_record_request([(t, s, "gen_ai.user.message", {"content": "hi"}, {})]).SerializeToString()
    [record] = decode_logs(body, "protobuf")
    assert (record.trace_id, record.span_id) == (t.hex(), s.hex())
    assert record.event_name == "gen_ai.user.message" and record.body == {"content": "hi"}


def test_an_event_name_attribute_of_older_senders_names_the_record():
    body = log_record_request([(bytes(16), bytes(8), "", {"content": "x"},
                                {"event.name": "gen_ai.user.message"})]).SerializeToString()
    assert decode_logs(body, "protobuf")[0].event_name == "gen_ai.user.message"


@pytest.mark.parametrize("body,kind", [
    (b"\xff\xfe garbage \x00", "protobuf"),
    (b"{not json", "json"),
    (b"[1, 2]", "json"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "json"),
    (b'{"resourceSpans": "no"}', "json"),
])
def test_a_body_that_does_not_decode_raises_a_decode_error_that_does_not_quote_it(body, kind):
    with pytest.raises(OtlpDecodeError) as info:
        decode_traces(body, kind)
    assert "garbage" not in str(info.value) and not info.value.too_large


def test_gzip_is_unpacked_and_a_bomb_is_refused_as_too_large():
    raw = traces_request([span(genai_latest())]).SerializeToString()
    assert gunzip(gzip.compress(raw), 1 << 20) == raw
    with pytest.raises(OtlpDecodeError) as info:
        gunzip(gzip.compress(b"\0" * (5 << 20)), 1 << 20)
    assert info.value.too_large
    with pytest.raises(OtlpDecodeError):
        gunzip(b"not gzip", 1 << 20)
    two = gzip.compress(raw[:100]) + gzip.compress(raw[100:])  # two members: both are read
    assert gunzip(two, 1 << 20) == raw
    with pytest.raises(OtlpDecodeError, match="cut short"):
        gunzip(gzip.compress(raw)[:-12], 1 << 20)


def test_content_types_with_parameters_are_understood_and_others_refused():
    assert content_kind("application/x-protobuf") == "protobuf"
    assert content_kind("application/json; charset=utf-8") == "json"
    assert content_kind("text/plain") is None and content_kind(None) is None


def test_the_export_response_reports_rejected_spans_in_the_request_encoding():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse.FromString(export_response("traces", "protobuf", 2, "why"))
    assert response.partial_success.rejected_spans == 2 and response.partial_success.error_message == "why"
    assert json.loads(export_response("logs", "json")) == {}
    assert json.loads(export_response("traces", "json", 1, "x"))["partialSuccess"]["rejectedSpans"] == "1"


def test_the_status_body_is_a_google_rpc_status():
    raw = status_body(3, "bad body", "protobuf")
    assert raw == b"\x08\x03\x12\x08bad body"
    assert json.loads(status_body(8, "full", "json")) == {"code": 8, "message": "full"}
