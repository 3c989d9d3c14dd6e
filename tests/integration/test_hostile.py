"""The hostile-input suite: every message an attacker with publish rights can send, through the
running stack (real broker, real engine), interleaved with valid events.

Each message is sent as raw bytes after a valid neighbour and must get its verdict (dead-lettered
with its stage and reason, or stored in a safe form) within :data:`BOUND_S`; at the end every
message is accounted for exactly once, every neighbour is stored, and the worker and the sink are
the processes that started, alive, below :data:`RSS_BOUND_MB` of memory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from driftwarden.streams.topics import H_REASON, H_SOURCE_OFFSET, H_SOURCE_PARTITION, H_SOURCE_TOPIC, H_STAGE
from driftwarden.tests.cases import encode, valid_event
from driftwarden.tests.hostile import HOSTILE, HOSTILE_MAX_CHARS, Hostile
from driftwarden.tests.realstack import producer, wait_for

pytestmark = pytest.mark.integration

BOUND_S = 30.0
"""Most seconds from sending one hostile message to its verdict on a topic. Detectors have a
budget of 2 s per event (PII and redaction each), the worker batches within 100 ms; a sink-stage
dead letter waits for the sink's batch and a split insert. Measured worst: see the printout."""
RSS_BOUND_MB = 3_000
"""Most resident memory of the worker (models loaded) and of the sink after the suite."""


@pytest.fixture(scope="module")
def stack_env(stack_env):
    return {**stack_env, "DRIFTWARDEN_MAX_PROMPT_CHARS": str(HOSTILE_MAX_CHARS),
            "DRIFTWARDEN_MAX_RESPONSE_CHARS": str(HOSTILE_MAX_CHARS), "DRIFTWARDEN_REDACT_PII": "true"}


class Verdicts:
    """Reads the dead-letter and stored-event topics as they grow."""

    def __init__(self, bootstrap: str, settings):
        from kafka import KafkaConsumer

        self.settings = settings
        self.consumer = KafkaConsumer(settings.topic_dlq, settings.topic_events, bootstrap_servers=[bootstrap],
                                      group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        self.dead: dict[tuple[str, int, int], list[dict]] = {}
        self.stored: dict[str, list[bytes]] = {}

    def poll(self) -> None:
        for batch in self.consumer.poll(timeout_ms=200).values():
            for record in batch:
                if record.topic == self.settings.topic_dlq:
                    h = {k: v.decode() for k, v in record.headers}
                    key = (h[H_SOURCE_TOPIC], int(h[H_SOURCE_PARTITION]), int(h[H_SOURCE_OFFSET]))
                    self.dead.setdefault(key, []).append(h)
                else:
                    self.stored.setdefault(json.loads(record.value)["event_id"], []).append(record.value)

    def wait(self, case: Hostile, where: tuple[str, int, int], timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            self.poll()
            if where in self.dead or (case.event_id is not None and case.event_id in self.stored):
                return time.monotonic() - started
        raise AssertionError(f"{case.kind!r}: no verdict within {timeout_s} s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_every_hostile_message_gets_its_verdict_in_time_and_the_pipeline_lives_on(stack, stack_settings):
    worker, sink = stack.workers[0].pid, stack.sink.pid
    p = producer(stack.bootstrap)
    verdicts = Verdicts(stack.bootstrap, stack_settings)
    # Warm up: the first event pays for loading and the consumer group's join.
    p.send(stack_settings.topic_inference, value=encode(valid_event("hostile-warm-up"))).get(60)
    verdicts.wait(Hostile("warm-up", None, None, event_id="hostile-warm-up"), ("", 0, -1), 120)

    timings: list[tuple[float, str]] = []
    neighbours = []
    for i, case in enumerate(HOSTILE):
        neighbour = valid_event(f"hostile-neighbour-{i}")
        neighbours.append(neighbour["event_id"])
        p.send(stack_settings.topic_inference, key=b"support-bot/v7", value=encode(neighbour))
        topic = getattr(stack_settings, f"topic_{case.topic}")
        sent = p.send(topic, key=b"support-bot/v7", value=case.raw).get(30)
        timings.append((verdicts.wait(case, (topic, sent.partition, sent.offset), BOUND_S), case.kind))
        stack.check()
        if case.stage is not None:
            (headers,) = verdicts.dead[(topic, sent.partition, sent.offset)]
            assert headers[H_STAGE] == case.stage, (case.kind, headers)
            assert case.reason in headers[H_REASON], (case.kind, headers[H_REASON])
            assert len(headers[H_REASON]) <= stack_settings.max_reason_chars
        else:
            (stored,) = verdicts.stored[case.event_id]
            for text in case.absent:
                assert text.encode() not in stored, (case.kind, text)
            for text in case.present:
                assert text.encode() in stored, (case.kind, text)
            assert len(stored) <= stack_settings.max_event_bytes
    p.flush()
    print("\nhandling time per hostile message (s):")
    for seconds, kind in sorted(timings, reverse=True):
        print(f"  {seconds:6.2f}  {kind}")

    dead = sum(c.stage is not None for c in HOSTILE)
    kept = 1 + len(neighbours) + sum(c.stage is None for c in HOSTILE)
    counts = wait_for(stack_settings, lambda c: c["events"] >= kept and c["dead_letters"] >= dead, stack=stack)
    time.sleep(2)  # anything counted twice would show now
    counts = wait_for(stack_settings, lambda c: True, stack=stack)
    assert counts["events"] == counts["events_distinct_ids"] == kept
    assert counts["dead_letters"] == dead
    verdicts.poll()
    assert all(len(v) == 1 for v in verdicts.dead.values()), "a message was dead-lettered twice"
    assert set(neighbours) <= set(verdicts.stored)
    assert stack.workers[0].pid == worker and stack.sink.pid == sink
    stack.check()
    assert rss_mb(worker) < RSS_BOUND_MB and rss_mb(sink) < RSS_BOUND_MB, (rss_mb(worker), rss_mb(sink))
    print(f"worst {max(timings)[0]:.2f} s; worker {rss_mb(worker):.0f} MB, sink {rss_mb(sink):.0f} MB")
