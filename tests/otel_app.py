"""An app instrumented with OpenTelemetry, as production apps are: run as its own process by the
OTLP integration tests.

It answers its chat completions from a local stand-in for the OpenAI API (nothing here can reach
OpenAI; :class:`FakeOpenAI` answers ``POST /v1/chat/completions`` like the API does, echoing
the question). The official ``openai`` client makes the calls; ``opentelemetry-instrumentation-openai-v2``
(``v2``) or ``openinference-instrumentation-openai`` (``openinference``) instruments it; the OTel
SDK's real OTLP/HTTP exporters send traces and logs to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the
receiver, or a collector in front of it), configured by the standard ``OTEL_*`` variables.

Usage: ``python otel_app.py v2|openinference QUESTION...``. Prints one JSON line per call with
what the client saw: the question, the answer, the model, the token counts, the wall time and the
trace id of the app's span around the call. With ``openinference`` that span is a RAG chain whose
RETRIEVER span carries documents.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "gpt-4o-mini-2024-07-18"
DOCUMENTS = ["Refunds are accepted within 30 days of delivery.", "Shipping to Norway takes five working days."]


class FakeOpenAI(ThreadingHTTPServer):
    """A stand-in for the OpenAI chat completions API (no OpenAI service can run here)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        question = request["messages"][-1]["content"]
        answer = f"Here is what I know about {question.rstrip('?').lower()}: it depends."
        time.sleep(0.05)  # a model takes time; the span's latency must show it
        body = json.dumps({
            "id": f"chatcmpl-{abs(hash(question)) % 10**8}", "object": "chat.completion", "created": int(time.time()),
            "model": MODEL, "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": answer, "refusal": None}}],
            "usage": {"prompt_tokens": 10 + len(question.split()), "completion_tokens": len(answer.split()),
                      "total_tokens": 10 + len(question.split()) + len(answer.split())},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(instrumentor: str, questions: list[str]) -> None:
    from opentelemetry import _logs, trace
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # service.name and service.version from OTEL_RESOURCE_ATTRIBUTES
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    _logs.set_logger_provider(logger_provider)
    if instrumentor == "v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    else:
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)

    import openai

    server = FakeOpenAI()
    client = openai.OpenAI(base_url=server.url, api_key="not-a-key")
    tracer = trace.get_tracer("otel_app")
    for question in questions:
        messages = [{"role": "system", "content": "You are a helpful support agent."},
                    {"role": "user", "content": question}]
        started = time.perf_counter()
        # The app's own span around the call, as apps have: its trace id is what feedback names.
        chain = {"openinference.span.kind": "CHAIN"} if instrumentor == "openinference" else {}
        with tracer.start_as_current_span("handle-question", attributes=chain) as root:
            if instrumentor == "openinference":
                attrs = {"openinference.span.kind": "RETRIEVER", "input.value": question}
                attrs.update({f"retrieval.documents.{i}.document.content": d for i, d in enumerate(DOCUMENTS)})
                with tracer.start_as_current_span("retrieve", attributes=attrs):
                    pass
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        trace_id = format(root.get_span_context().trace_id, "032x")
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(json.dumps({"question": question, "answer": reply.choices[0].message.content, "model": reply.model,
                          "tokens_in": reply.usage.prompt_tokens, "tokens_out": reply.usage.completion_tokens,
                          "client_ms": elapsed_ms, "trace_id": trace_id}), flush=True)
    tracer_provider.force_flush()
    logger_provider.force_flush()
    tracer_provider.shutdown()
    logger_provider.shutdown()
    server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
