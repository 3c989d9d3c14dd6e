"""From spans and log records to events: each convention, the join, dead letters, skips."""

from __future__ import annotations

import json

from driftwarden.core.ingest.otlp.config import OtlpConfig
from driftwarden.core.ingest.otlp.decode import decode_logs, decode_traces
from driftwarden.core.ingest.otlp.mapper import SpanMapper
from driftwarden.core.schemas import EventLimits
from driftwarden.tests.otlp_cases import (
    genai_latest,
    genai_old,
    ids,
    log_record_request,
    openinference_llm,
    span,
    traces_request,
)


def views(spans, resource=None):
    return decode_traces(traces_request(spans, resource).SerializeToString(), "protobuf")


def log_views(records):
    return decode_logs(log_record_request(records).SerializeToString(), "protobuf")


def mapper(**config) -> SpanMapper:
    return SpanMapper(OtlpConfig(**config), EventLimits())


def test_a_genai_span_with_content_attributes_becomes_an_event_at_once():
    m = mapper()
    s = span(genai_latest(**{"user.id": "u-1", "gen_ai.conversation.id": "c-9"}), latency_ms=812.5)
    out = m.add_spans(views([s]), now=0.0)
    [event] = out.events
    assert event.event_id == f"{s.trace_id.hex()}:{s.span_id.hex()}"
    assert (event.app, event.model_version, event.model) == ("support-bot", "v7", "gpt-4o-mini-2024-07-18")
    assert event.prompt == "How do I reset my password?" and event.response == "Open Settings, then Security."
    assert (event.tokens_in, event.tokens_out, event.latency_ms) == (21, 9, 812.5)
    assert (event.user_id, event.session_id) == ("u-1", "c-9")
    assert event.metadata["gen_ai.system_instructions"] == "You are a support agent."
    assert event.metadata["gen_ai.provider.name"] == "openai" and event.metadata["otel.convention"] == "genai"
    assert m.counts["spans.genai.mapped"] == 1 and not out.dead_letters


def test_an_older_genai_span_waits_for_its_log_records_and_joins_them():
    m = mapper()
    trace_id, span_id = ids()
    s = span(genai_old(), trace_id=trace_id, span_id=span_id)
    assert not m.add_spans(views([s]), now=0.0).events and m.pending == 1
    out = m.add_logs(log_views([
        (trace_id, span_id, "gen_ai.system.message", {"content": "Be kind."}, {"gen_ai.system": "openai"}),
        (trace_id, span_id, "gen_ai.user.message", {"content": "Where is my parcel?"}, {}),
        (trace_id, span_id, "gen_ai.choice", {"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": "On its way."}}, {}),
    ]), now=1.0)
    [event] = out.events
    assert (event.prompt, event.response) == ("Where is my parcel?", "On its way.")
    assert event.metadata["gen_ai.system_instructions"] == "Be kind."
    assert m.pending == 0 and m.counts["logs.joined"] == 3


def test_log_records_that_arrive_before_their_span_are_kept_for_it():
    m = mapper()
    trace_id, span_id = ids()
    m.add_logs(log_views([(trace_id, span_id, "gen_ai.user.message", {"content": "hello"}, {}),
                          (trace_id, span_id, "gen_ai.choice", {"message": {"content": "hi!"}}, {})]), now=0.0)
    [event] = m.add_spans(views([span(genai_old(), trace_id=trace_id, span_id=span_id)]), now=0.5).events
    assert (event.prompt, event.response) == ("hello", "hi!")


def test_a_span_whose_text_never_comes_is_dead_lettered_after_the_wait_with_a_hint():
    m = mapper(join_wait_s=2.0)
    s = span(genai_old())
    m.add_spans(views([s]), now=0.0)
    assert not m.due(1.0).dead_letters
    out = m.due(2.5)
    [letter] = out.dead_letters
    assert "CAPTURE_MESSAGE_CONTENT" in letter.reason and letter.raw == s.SerializeToString()
    assert letter.key == f"{s.trace_id.hex()}:{s.span_id.hex()}".encode()
    assert m.counts["spans.genai.dead_lettered"] == 1


def test_span_events_of_older_instrumentations_carry_the_text():
    s = span(genai_old(), events=[("gen_ai.content.prompt", {"gen_ai.prompt": "Translate 'cat'"}),
                                  ("gen_ai.content.completion", {"gen_ai.completion": "chat"})])
    [event] = mapper().add_spans(views([s]), now=0.0).events
    assert (event.prompt, event.response) == ("Translate 'cat'", "chat")


def test_openllmetry_indexed_attributes_carry_the_text():
    attrs = genai_old(**{"gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Sys",
                         "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "Question?",
                         "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Answer."})
    [event] = mapper().add_spans(views([span(attrs)]), now=0.0).events
    assert (event.prompt, event.response, event.metadata["gen_ai.system_instructions"]) == \
           ("Question?", "Answer.", "Sys")


def test_tool_results_in_the_input_become_context():
    messages = [{"role": "user", "parts": [{"type": "text", "content": "Weather in Oslo?"}]},
                {"role": "assistant", "parts": [{"type": "tool_call", "name": "weather", "arguments": {}}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "response": "Oslo: 3 °C, rain"}]}]
    attrs = genai_latest(**{"gen_ai.input.messages": json.dumps(messages)})
    [event] = mapper().add_spans(views([span(attrs)]), now=0.0).events
    assert event.prompt == "Weather in Oslo?" and event.context == ["Oslo: 3 °C, rain"]


def test_an_openinference_llm_span_takes_its_retriever_siblings_documents_as_context():
    trace_id, _ = ids()
    retriever = span({"openinference.span.kind": "RETRIEVER",
                      "retrieval.documents.0.document.content": "Refunds within 30 days.",
                      "retrieval.documents.1.document.content": "Shipping is free."}, trace_id=trace_id)
    llm = span(openinference_llm(metadata=json.dumps({"tenant": "acme"})), trace_id=trace_id)
    m = mapper()
    m.add_spans(views([retriever]), now=0.0)  # an earlier export
    [event] = m.add_spans(views([llm]), now=0.1).events
    assert event.context == ["Refunds within 30 days.", "Shipping is free."]
    assert (event.prompt, event.response, event.model) == ("What is our refund window?", "30 days.", "gpt-4o-mini")
    assert (event.tokens_in, event.tokens_out, event.user_id, event.session_id) == (30, 4, "u-42", "s-1")
    assert event.metadata["metadata.tenant"] == "acme" and event.metadata["llm.system_prompt"] == "Be brief."
    assert m.counts["spans.openinference.mapped"] == 1 and m.counts["spans.openinference.skipped"] == 1


def test_openinference_input_and_output_values_stand_in_for_messages():
    attrs = {"openinference.span.kind": "LLM", "llm.model_name": "m", "input.value": "plain question",
             "output.value": json.dumps({"choices": [{"message": {"content": "plain answer"}}]}),
             "output.mime_type": "application/json"}
    [event] = mapper().add_spans(views([span(attrs)]), now=0.0).events
    assert (event.prompt, event.response) == ("plain question", "plain answer")


def test_spans_that_are_not_llm_calls_are_counted_and_skipped():
    m = mapper()
    out = m.add_spans(views([span({"http.method": "GET"}), span({"gen_ai.operation.name": "embeddings",
                                                                  "gen_ai.request.model": "e"}),
                             span({"openinference.span.kind": "CHAIN"})]), now=0.0)
    assert not out.events and not out.dead_letters
    assert (m.counts["spans.unknown.skipped"], m.counts["spans.genai.skipped"],
            m.counts["spans.openinference.skipped"]) == (1, 1, 1)


def test_a_failed_call_becomes_an_error_event():
    [event] = mapper().add_spans(views([span(genai_latest(response="", **{"error.type": "RateLimitError"}),
                                              error="429 Too Many Requests")]), now=0.0).events
    assert event.status == "error" and event.error == "429 Too Many Requests"


def test_hostile_names_and_values_are_made_valid_or_dead_lettered_never_raised():
    resource = {"service.name": "unknown_service:python", "service.version": "../../etc"}
    attrs = genai_latest(**{"gen_ai.response.model": "meta-llama/Llama-3.1 8B", "gen_ai.usage.input_tokens": -5,
                            "gen_ai.usage.output_tokens": "many", "gen_ai.input.messages": "{not json"})
    out = mapper().add_spans(views([span(attrs)], resource), now=0.0)
    assert not out.events and len(out.dead_letters) == 1  # no prompt text left
    attrs = genai_latest(**{"gen_ai.response.model": "meta-llama/Llama-3.1 8B", "gen_ai.usage.input_tokens": -5})
    [event] = mapper().add_spans(views([span(attrs)], resource), now=0.0).events
    assert (event.app, event.model_version, event.model) == ("unknown_service-python", "etc", "meta-llama-Llama-3.1-8B")
    assert event.tokens_in == 0


def test_an_llm_span_too_large_for_the_event_limits_is_dead_lettered_with_the_reason():
    out = mapper().add_spans(views([span(genai_latest(prompt="x" * 200_000))]), now=0.0)
    [letter] = out.dead_letters
    assert "prompt" in letter.reason and "limit" in letter.reason and letter.stage in ("validate", "decode")
    assert out.rejected_reasons == [letter.reason]


def test_the_same_span_exported_twice_gives_the_same_event_id_and_a_recent_repeat_is_skipped():
    s = span(genai_latest())
    first = mapper().add_spans(views([s]), now=0.0).events
    other = mapper().add_spans(views([s]), now=0.0).events  # another receiver (or after a restart)
    assert first[0].event_id == other[0].event_id
    m = mapper()
    assert len(m.add_spans(views([s]), now=0.0).events) == 1
    assert m.add_spans(views([s]), now=1.0).events == [] and m.counts["spans.genai.duplicate"] == 1


def test_a_waiting_span_lets_go_of_its_request_and_keeps_its_own_bytes():
    s = span(genai_old())
    m = mapper()
    m.add_spans(views([s, span(genai_old())]), now=0.0)
    pending = next(iter(m._spans.values())).span
    assert pending.message is None and pending.raw() == s.SerializeToString()


def test_retrieved_documents_are_bounded_in_size_and_time():
    from driftwarden.core.ingest.otlp.mapper import DOCUMENTS_TTL_S, MAX_DOCUMENT_CHARS

    trace_id, _ = ids()
    m = mapper()
    attrs = {"openinference.span.kind": "RETRIEVER"}
    attrs.update({f"retrieval.documents.{i}.document.content": "d" * 60_000 for i in range(5)})
    m.add_spans(views([span(attrs, trace_id=trace_id)]), now=0.0)
    assert sum(map(len, m._documents[trace_id.hex()][1])) == MAX_DOCUMENT_CHARS
    m.due(DOCUMENTS_TTL_S + 1)
    assert not m._documents


def test_waiting_spans_and_records_are_bounded():
    m = mapper(max_pending=2, join_wait_s=60)
    m.add_spans(views([span(genai_old()) for _ in range(3)]), now=0.0)
    assert m.pending == 2 and m.counts["spans.forced"] == 1
    m.add_logs(log_views([(*ids(), "gen_ai.user.message", {"content": "x"}, {}) for _ in range(5)]), now=0.0)
    assert m.counts["logs.dropped"] == 3
    assert len(m.drain().dead_letters) == 2 and m.pending == 0


HOSTILE_VALUES = [None, 0, -1, 2**62, 1e308, float("nan"), True, "", "x" * 5000, "\x00\ud7ff", [], {}, [1, [2, [3]]],
                  {"role": 5, "parts": "no"}, [{"role": None, "parts": [{"type": "text", "content": {"a": [1]}}]}],
                  "[{\"role\": \"user\", \"parts\": 7}]", "[[[[[]]]]]", "{\"choices\": 3}", "null"]
KEYS = ["gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens", "gen_ai.request.model", "gen_ai.response.model", "gen_ai.prompt.0.content",
        "gen_ai.completion.0.role", "user.id", "gen_ai.conversation.id", "llm.input_messages.0.message.content",
        "llm.output_messages.0.message.role", "input.value", "output.value", "output.mime_type", "metadata",
        "llm.token_count.prompt", "retrieval.documents.0.document.content", "llm.model_name"]


def test_hostile_attribute_values_never_raise_and_every_llm_span_is_an_event_or_a_dead_letter():
    import random

    rng = random.Random(7)
    m = mapper(join_wait_s=0)
    spans = []
    for i in range(300):
        base = genai_latest() if i % 3 == 0 else genai_old() if i % 3 == 1 else openinference_llm()
        for key in rng.sample(KEYS, 6):
            value = rng.choice(HOSTILE_VALUES)
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        events = [(rng.choice(["gen_ai.user.message", "gen_ai.choice", "gen_ai.content.prompt", "x"]),
                   {"gen_ai.prompt": rng.choice(HOSTILE_VALUES[1:]), "content": rng.choice(HOSTILE_VALUES[1:])})]
        spans.append(span(base, events=events))
    out = m.add_spans(views(spans), now=0.0)
    llm = sum(m.counts[f"spans.{c}.{w}"] for c in ("genai", "openinference") for w in ("mapped", "dead_lettered"))
    assert len(out.events) + len(out.dead_letters) == llm
    assert llm + sum(m.counts[k] for k in m.counts if k.endswith(".skipped")) == 300
    assert all(len(e.event_id) == 49 for e in out.events)
