"""The OTLP receiver as its own process against the real broker: bodies of every kind, limits,
garbage, dead letters on the topic, and a full producer queue that answers busy, then delivers."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftwarden.core.settings import Settings, load_settings
from driftwarden.deploy.local.broker import LocalBroker, free_port
from driftwarden.streams import topics as t
from driftwarden.streams.topics import ensure_topics
from driftwarden.tests.otlp_cases import genai_latest, span, traces_request
from driftwarden.tests.realstack import consume_all
from driftwarden.tests.unit.core.otlp.test_decode import otlp_json

pytestmark = pytest.mark.integration

PB = {"Content-Type": "application/x-protobuf"}


@dataclass
class Receiver:
    url: str
    settings: Settings
    broker: LocalBroker
    process: subprocess.Popen
    log: Path

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as r:
            return json.loads(r.read())


def start_receiver(tmp: Path, broker: LocalBroker, **env: str) -> Receiver:
    port = free_port()
    settings = load_settings(data_dir=tmp, kafka_bootstrap=broker.bootstrap)
    log = tmp / "otlp.log"
    environment = {**os.environ, "DRIFTWARDEN_DATA_DIR": str(tmp), "DRIFTWARDEN_OTLP__JOIN_WAIT_S": "1", **env}
    process = subprocess.Popen([sys.executable, "-m", "driftwarden", "otlp", "--port", str(port), "--bootstrap",
                                broker.bootstrap], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(url + "/", timeout=2)
            return Receiver(url, settings, broker, process, log)
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the receiver did not start: {log.read_text()}")


def stop(receiver: Receiver) -> None:
    """SIGTERM; the receiver flushes for at most 20 s (longer when the broker is away: then it is killed)."""
    receiver.process.terminate()
    try:
        receiver.process.wait(40)
    except subprocess.TimeoutExpired:
        receiver.process.kill()
        receiver.process.wait(10)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory) -> Iterator[Receiver]:
    tmp = tmp_path_factory.mktemp("otlp")
    broker = LocalBroker(free_port(), log_file=tmp / "broker.log").start()
    try:
        ensure_topics(load_settings(data_dir=tmp, kafka_bootstrap=broker.bootstrap))
        r = start_receiver(tmp, broker, DRIFTWARDEN_OTLP__MAX_BODY_BYTES="200000")
        try:
            yield r
        finally:
            stop(r)
            print(r.log.read_text()[-3000:])
    finally:
        broker.stop()


def events_on_topic(r: Receiver, n: int) -> dict[str, dict]:
    return {e["event_id"]: e for e in (json.loads(rec.value) for rec in
                                       consume_all(r.broker.bootstrap, r.settings.topic_inference, n))}


def test_protobuf_json_and_gzip_bodies_all_become_events_and_the_answer_matches_the_request(receiver):
    spans = [span(genai_latest(prompt=f"question {i}")) for i in range(3)]
    status, headers, body = receiver.post("/v1/traces", traces_request([spans[0]]).SerializeToString(), PB)
    assert (status, headers["Content-Type"], body) == (200, "application/x-protobuf", b"")
    status, headers, body = receiver.post("/v1/traces", otlp_json(traces_request([spans[1]])),
                                          {"Content-Type": "application/json"})
    assert (status, headers["Content-Type"], json.loads(body)) == (200, "application/json", {})
    status, _, _ = receiver.post("/v1/traces", gzip.compress(traces_request([spans[2]]).SerializeToString()),
                                 {**PB, "Content-Encoding": "gzip"})
    assert status == 200
    ids = {f"{s.trace_id.hex()}:{s.span_id.hex()}" for s in spans}
    stored = events_on_topic(receiver, 3)
    assert ids <= set(stored)
    assert {stored[i]["prompt"] for i in ids} == {"question 0", "question 1", "question 2"}


def test_a_body_over_the_limit_garbage_and_an_unknown_media_type_are_refused_with_a_status(receiver):
    big = traces_request([span(genai_latest(prompt="x" * 300_000))]).SerializeToString()
    assert receiver.post("/v1/traces", big, PB)[0] == 413
    bomb = gzip.compress(b"\0" * 5_000_000)
    assert receiver.post("/v1/traces", bomb, {**PB, "Content-Encoding": "gzip"})[0] == 413
    status, headers, body = receiver.post("/v1/traces", b"\x0a\xff\xff garbage", PB)
    assert status == 400 and body.startswith(b"\x08\x03\x12")  # google.rpc.Status, INVALID_ARGUMENT
    status, _, body = receiver.post("/v1/logs", b"{nope", {"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["code"] == 3
    assert receiver.post("/v1/traces", b"hello", {"Content-Type": "text/plain"})[0] == 415
    assert receiver.post("/v1/traces", b"x", {**PB, "Content-Encoding": "br"})[0] == 400
    assert receiver.process.poll() is None  # still serving


def test_an_llm_span_that_cannot_be_an_event_goes_to_the_dead_letter_topic_and_is_reported(receiver):
    bad = span(genai_latest(prompt="   "))  # no prompt text
    other = span({"http.route": "/health"})
    status, _, body = receiver.post("/v1/traces", traces_request([bad, other]).SerializeToString(), PB)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    answer = ExportTraceServiceResponse.FromString(body)
    assert status == 200 and answer.partial_success.rejected_spans == 1
    assert "no prompt text" in answer.partial_success.error_message
    key = f"{bad.trace_id.hex()}:{bad.span_id.hex()}".encode()
    letters = [r for r in consume_all(receiver.broker.bootstrap, receiver.settings.topic_dlq, 1) if r.key == key]
    assert letters and letters[0].value == bad.SerializeToString()
    headers = dict(letters[0].headers)
    assert headers[t.H_SOURCE_TOPIC] == b"otlp.traces" and b"no prompt text" in headers[t.H_REASON]
    counts = receiver.stats()["counts"]
    assert counts["spans.genai.dead_lettered"] >= 1 and counts["spans.unknown.skipped"] >= 1


def test_a_full_producer_queue_answers_busy_with_retry_after_and_everything_accepted_arrives(tmp_path):
    broker = LocalBroker(free_port(), log_file=tmp_path / "broker.log").start()
    r = None
    try:
        ensure_topics(load_settings(data_dir=tmp_path, kafka_bootstrap=broker.bootstrap))
        r = start_receiver(tmp_path, broker, DRIFTWARDEN_PUBLISHER_QUEUE_SIZE="6",
                           DRIFTWARDEN_PUBLISHER_FLUSH_AT="1", DRIFTWARDEN_OTLP__BUSY_STATUS="429")
        broker.stop()  # the producer cannot deliver: its queue fills
        accepted, busy = [], None
        for i in range(40):
            s = span(genai_latest(prompt=f"while the broker is away {i}"))
            status, headers, _ = r.post("/v1/traces", traces_request([s]).SerializeToString(), PB)
            if status == 200:
                accepted.append(f"{s.trace_id.hex()}:{s.span_id.hex()}")
            else:
                busy = (status, headers.get("Retry-After"))
                break
        # At most the queue (6) and the one record the sending thread holds.
        assert busy == (429, "2") and 1 <= len(accepted) <= 7
        broker.start()  # same port; memory storage: topics again
        ensure_topics(r.settings)
        retried = span(genai_latest(prompt="retried after the busy answer"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, _, _ = r.post("/v1/traces", traces_request([retried]).SerializeToString(), PB)
            if status == 200:
                break
            time.sleep(1)
        assert status == 200
        accepted.append(f"{retried.trace_id.hex()}:{retried.span_id.hex()}")
        assert set(accepted) <= set(events_on_topic(r, len(accepted)))
    finally:
        if r is not None:
            stop(r)
        broker.stop()
