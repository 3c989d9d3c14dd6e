"""Real instrumented clients into the running stack: the official ``openai`` client instrumented by
``opentelemetry-instrumentation-openai-v2`` (its default shape, text in log records, and the latest
experimental one, text on the span) and by ``openinference-instrumentation-openai`` (in a RAG chain
with a RETRIEVER span), each exporting with the OTel SDK's OTLP/HTTP exporter; once more through a
real collector (rotel). Rows in ClickHouse carry what the client saw."""

from __future__ import annotations

import importlib.util
import json
import re
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftwarden.core.storage.client import open_client
from driftwarden.deploy.local.broker import free_port
from driftwarden.tests.otlp_cases import genai_latest, span, traces_request
from driftwarden.tests.realstack import wait_for

pytestmark = pytest.mark.integration

APP = Path(__file__).resolve().parents[1] / "otel_app.py"
#: (name, instrumentor, environment): the ways an app sends its calls.
RUNS = (
    ("v2-default", "v2", {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}),
    ("v2-latest", "v2", {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                         "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}),
    ("v2-latest-events", "v2", {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "EVENT_ONLY"}),
    ("openinference", "openinference", {}),
)


def run_app(instrumentor: str, endpoint: str, questions: list[str], env: dict[str, str]) -> list[dict]:
    out = subprocess.run(
        [sys.executable, str(APP), instrumentor, *questions], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
             "OTEL_RESOURCE_ATTRIBUTES": "service.name=shop-assistant,service.version=2024-11", **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def rotel_agent() -> str:
    spec = importlib.util.find_spec("rotel")
    assert spec is not None and spec.submodule_search_locations, "pip install the otel-test extra (rotel)"
    return str(Path(spec.submodule_search_locations[0]) / "rotel-agent")


def start_rotel(receiver: str, log: Path) -> tuple[subprocess.Popen, str]:
    """rotel's collector: OTLP/HTTP in on a port of its own, OTLP/HTTP out to ``receiver``."""
    port = free_port()
    process = subprocess.Popen(
        [rotel_agent(), "start", "--otlp-http-endpoint", f"127.0.0.1:{port}",
         "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}", "--exporter", "otlp",
         "--otlp-exporter-endpoint", receiver, "--otlp-exporter-protocol", "http"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=b"",
                                                          headers={"Content-Type": "application/x-protobuf"}),
                                   timeout=2)
            break
        except urllib.error.HTTPError:
            break  # it answers
        except OSError:
            time.sleep(0.2)
    return process, f"http://127.0.0.1:{port}"


FEEDBACK_POLICY = """
version: 1
window_size: 200
window_minutes: 0.1
rules:
  - name: negative-feedback
    metric: feedback_negative_rate
    threshold: 0.35
    min_events: 5
    severity: warning
"""


@pytest.fixture(scope="module")
def stack_env(stack_env, tmp_path_factory):
    """A policy whose detection windows close after 6 s and that judges windows of 5 feedback records."""
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(FEEDBACK_POLICY)
    return {**stack_env, "DRIFTWARDEN_POLICY_FILE": str(policy)}


def post_json(url: str, payload) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def traffic(stack, stack_settings, tmp_path_factory) -> dict[str, list[dict]]:
    """Every way in, sent once; what each client saw, by run."""
    endpoint = f"http://{stack_settings.otlp.host}:{stack_settings.otlp.port}"
    seen = {name: run_app(instrumentor, endpoint, [f"Can I return shoes bought by {name}?",
                                                   f"How long does shipping by {name} take?"], env)
            for name, instrumentor, env in RUNS}
    rotel, rotel_url = start_rotel(endpoint, tmp_path_factory.mktemp("rotel") / "rotel.log")
    try:
        seen["rotel"] = run_app("v2", rotel_url, ["Is gift wrapping offered through the collector?"],
                                {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                                 "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"})
        time.sleep(3)  # rotel batches before it exports
    finally:
        rotel.terminate()
        rotel.wait(20)
    twice = span(genai_latest(prompt="the same export, sent twice"))
    for _ in range(2):
        body = traces_request([twice]).SerializeToString()
        urllib.request.urlopen(urllib.request.Request(endpoint + "/v1/traces", data=body,
                                                      headers={"Content-Type": "application/x-protobuf"}), timeout=10)
    seen["twice"] = [{"question": "the same export, sent twice", "event_id": f"{twice.trace_id.hex()}:"
                                                                             f"{twice.span_id.hex()}"}]
    return seen


@pytest.fixture(scope="module")
def feedback(traffic, stack, stack_settings) -> dict:
    """Thumbs down on every call of the app, half through ``POST /v1/feedback`` and half through
    ``Publisher.feedback``; and feedback on an event that is published only afterwards."""
    from driftwarden.streams.publisher import Publisher
    from driftwarden.tests.cases import valid_event

    n = sum(len(v) for v in traffic.values())
    counts = wait_for(stack_settings, lambda c: c["events"] >= n, timeout_s=120, stack=stack)
    endpoint = f"http://{stack_settings.otlp.host}:{stack_settings.otlp.port}/v1/feedback"
    ids = sorted(call["trace_id"] for run in traffic.values() for call in run if "trace_id" in call)
    half = len(ids) // 2
    status, answer = post_json(endpoint, [{"event_id": i, "score": -1, "comment": "wrong, mail me at maria.lopez@example.com"}
                                          for i in ids[:half]] + [{"event_id": "x y", "score": 3}])
    assert status == 200 and answer["accepted"] == half and [r["index"] for r in answer["rejected"]] == [half]
    assert post_json(endpoint, {"event_id": "no", "score": "bad"})[0] == 400
    with Publisher(stack.bootstrap, settings=stack_settings) as pub:
        for i in ids[half:]:
            assert pub.feedback(i, -0.5, source="reviewer")
        assert pub.feedback("arrives-later", -1.0)
        pub.flush(timeout=30)
        time.sleep(2)
        pub.publish(valid_event("arrives-later", app="shop-assistant", model_version="2024-11",
                                prompt="A question whose feedback came first", response="An answer."))
    return {"trace_ids": ids, "events_before": counts["events"]}


@pytest.fixture(scope="module")
def stored(traffic, feedback, stack, stack_settings) -> Iterator[dict[str, tuple]]:
    """The stored events by prompt, read once everything arrived (the stack is stopped for it)."""
    n = len(feedback["trace_ids"])
    wait_for(stack_settings, lambda c: c["events"] >= feedback["events_before"] + 1 and c["feedback"] >= n + 1
             and c["alerts_firing"] >= 1, timeout_s=120, stack=stack)
    stack.stop()  # the store is read directly: the sink must let go of it first
    client = open_client(stack_settings)
    db = stack_settings.clickhouse_database
    rows = client.query(f"SELECT prompt, event_id, app, model, model_version, response, tokens_in, tokens_out, "
                        f"latency_ms, context, metadata FROM {db}.inference_events FINAL").result_rows
    client.close()
    yield {r[0]: r[1:] for r in rows}


@pytest.mark.parametrize("run", [name for name, _, _ in RUNS] + ["rotel"])
def test_each_call_is_stored_with_what_the_client_saw(traffic, stored, run):
    for call in traffic[run]:
        event_id, app, model, version, response, tokens_in, tokens_out, latency_ms, context, meta = \
            stored[call["question"]]
        assert (app, version) == ("shop-assistant", "2024-11")
        assert (model, response) == (call["model"], call["answer"])
        assert (tokens_in, tokens_out) == (call["tokens_in"], call["tokens_out"])
        # The span times the call inside the client: at least the stand-in's 50 ms, at most what the app saw.
        assert 50 <= latency_ms <= call["client_ms"] + 1
        assert re.fullmatch(r"[0-9a-f]{32}:[0-9a-f]{16}", event_id) and meta["otel.convention"] in ("genai", "openinference")


def test_the_older_genai_shape_is_joined_with_its_log_records(stored, traffic):
    meta = stored[traffic["v2-default"][0]["question"]][-1]
    assert meta["gen_ai.system"] == "openai" and meta["gen_ai.system_instructions"] == "You are a helpful support agent."


def test_an_openinference_call_in_a_rag_chain_gets_its_retrieved_documents_as_context(stored, traffic):
    context = stored[traffic["openinference"][0]["question"]][-2]
    assert context == ["Refunds are accepted within 30 days of delivery.", "Shipping to Norway takes five working days."]
    assert stored[traffic["v2-latest"][0]["question"]][-2] == []


def test_the_same_export_sent_twice_is_stored_once(stored, traffic, stack_settings):
    assert stored["the same export, sent twice"][0] == traffic["twice"][0]["event_id"]
    client = open_client(stack_settings)
    count = client.query(f"SELECT count() FROM {stack_settings.clickhouse_database}.inference_events FINAL "
                         f"WHERE prompt = 'the same export, sent twice'").result_rows[0][0]
    client.close()
    assert count == 1


def test_feedback_by_trace_reaches_each_call_and_feedback_that_came_first_joins_its_event(stored, feedback,
                                                                                          stack_settings):
    from datetime import UTC, datetime

    from driftwarden.core.storage.client import open_store

    store = open_store(stack_settings)
    try:
        stats = store.stats(0.05)
        assert stats["feedback"] == len(feedback["trace_ids"]) + 1 and stats["feedback_negative"] == stats["feedback"]
        data = store.curation_data("shop-assistant", "2024-11", datetime(2000, 1, 1, tzinfo=UTC),
                                   datetime(2100, 1, 1, tzinfo=UTC), 1000)
        scores = {event_id: fb for event_id, _, _, _, fb, _ in data.events}
        assert scores["arrives-later"] == -1.0
        traced = [fb for event_id, fb in scores.items() if event_id.split(":")[0] in feedback["trace_ids"]]
        assert len(traced) == len(feedback["trace_ids"]) and set(traced) <= {-1.0, -0.5}
        comments = open_client(stack_settings).query(
            f"SELECT comment FROM {stack_settings.clickhouse_database}.feedback FINAL WHERE comment != ''").result_rows
        assert comments and all("maria.lopez@example.com" not in c[0] and "<EMAIL_ADDRESS>" in c[0] for c in comments)
        alerts = [a for a in stats["alerts"] if a["rule"] == "negative-feedback"]
        assert alerts and alerts[0]["app"] == "shop-assistant" and alerts[0]["value"] == 1.0
    finally:
        store.close()
