"""Publisher logic against an in-memory producer (the real broker is in tests/integration)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from driftwarden.core.errors import PublisherClosedError
from driftwarden.core.settings import load_settings
from driftwarden.streams.publisher import Publisher
from driftwarden.tests.cases import valid_event


class _Future:
    def __init__(self, error: Exception | None):
        self.error = error

    def get(self, timeout=None):
        if self.error is not None:
            raise self.error
        return None


class FakeProducer:
    """Records sends; ``fail_next`` sends fail retriably; values above ``max_bytes`` are too large."""

    def __init__(self, fail_next: int = 0, max_bytes: int = 10_000_000, gate: threading.Event | None = None):
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.headers: list[list | None] = []
        self.fail_next = fail_next
        self.max_bytes = max_bytes
        self.gate = gate
        self.closed = False

    def send(self, topic, key, value, headers=None):
        if self.gate is not None:
            self.gate.wait()
        if len(value) > self.max_bytes:
            return _Future(MessageSizeTooLargeError("too large"))
        if self.fail_next > 0:
            self.fail_next -= 1
            return _Future(KafkaTimeoutError("broker away"))
        self.sent.append((topic, key, value))
        self.headers.append(headers)
        return _Future(None)

    def flush(self, timeout=None):
        return None

    def close(self, timeout=None):
        self.closed = True


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path)


def make(settings, producer, **kw):
    return Publisher("127.0.0.1:1", settings=settings, producer_factory=lambda: producer,
                     max_retry_backoff_s=0.05, **kw)


def test_publish_queues_and_flush_delivers_every_event_with_the_segment_as_key(settings):
    producer = FakeProducer()
    with make(settings, producer, flush_at=3) as pub:
        for i in range(7):
            assert pub.publish(valid_event(f"e{i}"))
        assert pub.flush(timeout=5)
        assert pub.stats.sent == 7
    assert [k for _, k, _ in producer.sent] == [b"support-bot/v7"] * 7
    assert {t for t, _, _ in producer.sent} == {"llm.inference"}
    assert producer.closed


def test_close_flushes_what_is_still_queued(settings):
    producer = FakeProducer()
    pub = make(settings, producer, flush_at=1000, flush_interval=60)
    for i in range(5):
        pub.publish(valid_event(f"c{i}"))
    pub.close()
    assert len(producer.sent) == 5


def test_a_full_queue_refuses_and_counts_instead_of_blocking(settings):
    gate = threading.Event()
    producer = FakeProducer(gate=gate)
    pub = make(settings, producer, queue_size=3, flush_at=1)
    results = [pub.publish(valid_event(f"q{i}")) for i in range(10)]
    started = time.perf_counter()
    pub.publish(valid_event("late"))
    assert time.perf_counter() - started < 0.05
    assert results.count(False) >= 6
    assert pub.stats.refused_queue_full == results.count(False) + 1
    gate.set()
    pub.close()
    assert pub.stats.sent + pub.stats.refused == 11


def test_an_invalid_event_is_refused_and_counted_and_its_neighbours_go_through(settings):
    producer = FakeProducer()
    with make(settings, producer) as pub:
        pub.publish(valid_event("good-1"))
        pub.publish(valid_event("bad", latency_ms=-1))
        pub.publish(valid_event("good-2"))
        pub.flush(5)
        assert pub.stats.refused_invalid == 1
    assert len(producer.sent) == 2


def test_retriable_failures_are_retried_until_delivered(settings):
    producer = FakeProducer(fail_next=3)
    with make(settings, producer, flush_at=2) as pub:
        for i in range(4):
            pub.publish(valid_event(f"r{i}"))
        assert pub.flush(timeout=10)
        assert pub.stats.send_retries >= 1
    assert sorted(v for _, _, v in producer.sent) == sorted({v for _, _, v in producer.sent})
    assert len(producer.sent) == 4


def test_an_event_the_broker_finds_too_large_is_refused_not_retried_forever(settings):
    producer = FakeProducer(max_bytes=600)
    with make(settings, producer) as pub:
        pub.publish(valid_event("small"))
        pub.publish(valid_event("huge", response="y" * 2000))
        assert pub.flush(timeout=5)
    assert pub.stats.refused_too_large == 1 and pub.stats.sent == 1


def test_a_producer_that_cannot_be_built_is_retried_like_a_broker_loss(settings):
    attempts = []
    producer = FakeProducer()

    def factory():
        attempts.append(1)
        if len(attempts) < 3:
            raise KafkaTimeoutError("no broker")
        return producer

    with Publisher("127.0.0.1:1", settings=settings, producer_factory=factory, max_retry_backoff_s=0.05) as pub:
        pub.publish(valid_event("x"))
        assert pub.flush(timeout=5)
    assert len(attempts) == 3 and len(producer.sent) == 1


def test_publishing_after_close_is_an_error(settings):
    pub = make(settings, FakeProducer())
    pub.close()
    with pytest.raises(PublisherClosedError):
        pub.publish(valid_event("z"))


def test_a_record_for_another_topic_goes_there_with_its_headers_beside_the_events(settings):
    producer = FakeProducer()
    with make(settings, producer) as pub:
        assert pub.publish(valid_event("e0"))
        assert pub.publish_record("llm.inference.dlq", b"k", b"raw bytes", {"dw.reason": b"why"})
        assert pub.flush(timeout=5)
    topics = {topic: (key, value) for topic, key, value in producer.sent}
    assert topics["llm.inference.dlq"] == (b"k", b"raw bytes")
    assert settings.topic_inference in topics
    assert [("dw.reason", b"why")] in producer.headers


def test_room_says_how_many_more_records_the_queue_takes(settings):
    gate = threading.Event()
    producer = FakeProducer(gate=gate)
    pub = make(settings, producer, queue_size=5, flush_at=1)
    try:
        pub.publish(valid_event("first"))  # taken by the sending thread, which then waits on the gate
        deadline = time.monotonic() + 5
        while pub.room < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(3):
            pub.publish(valid_event(f"e{i}"))
        assert pub.room == 2
    finally:
        gate.set()
        pub.close()


def test_feedback_goes_to_the_feedback_topic_keyed_by_event_and_invalid_feedback_is_refused(settings):
    producer = FakeProducer()
    with make(settings, producer) as pub:
        assert pub.feedback("evt-1", -1, comment="wrong", source="user")
        assert not pub.feedback("evt-1", 7)  # outside [-1, 1]
        assert not pub.feedback("bad id with spaces", 1)
        assert pub.flush(timeout=5)
    [(topic, key, value)] = producer.sent
    assert (topic, key) == (settings.topic_feedback, b"evt-1")
    assert json.loads(value)["score"] == -1 and json.loads(value)["comment"] == "wrong"
    assert pub.stats.refused_invalid == 2
