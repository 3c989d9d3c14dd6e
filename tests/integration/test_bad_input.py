"""Bad events go to the dead-letter topic with their reason; the stream goes on (real broker, real engine)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from driftwarden.streams.publisher import Publisher
from driftwarden.streams.topics import H_REASON, H_STAGE
from driftwarden.tests.cases import BAD_EVENTS, encode, valid_event
from driftwarden.tests.realstack import consume_all, producer, wait_for

pytestmark = pytest.mark.integration


def test_every_bad_event_is_dead_lettered_with_its_reason_and_valid_neighbours_are_stored(stack, stack_settings):
    p = producer(stack.bootstrap)
    valid_ids = []
    for i, (_kind, raw, _reason, _stage) in enumerate(BAD_EVENTS):
        event = valid_event(f"neighbour-{i}")
        valid_ids.append(event["event_id"])
        p.send(stack_settings.topic_inference, key=b"support-bot/v7", value=encode(event))
        p.send(stack_settings.topic_inference, key=b"support-bot/v7", value=raw)
    # A repeated event_id is not an error: it is stored once.
    p.send(stack_settings.topic_inference, key=b"support-bot/v7", value=encode(valid_event("neighbour-0")))
    p.flush()
    p.close()

    counts = wait_for(stack_settings, lambda c: c["dead_letters"] >= len(BAD_EVENTS) and c["events"] >= len(valid_ids),
                      stack=stack)
    assert counts["events"] == len(valid_ids) == counts["events_distinct_ids"]
    assert counts["dead_letters"] == len(BAD_EVENTS)
    assert counts["detections_by_detector"]["operational"]["results"] >= len(valid_ids)

    letters = consume_all(stack.bootstrap, stack_settings.topic_dlq, len(BAD_EVENTS))
    assert len(letters) == len(BAD_EVENTS)
    by_value = {}
    for record in letters:
        headers = {k: v.decode() for k, v in record.headers}
        by_value[record.value or b""] = headers
    for kind, raw, reason, stage in BAD_EVENTS:
        headers = by_value[raw]  # the raw bytes travel untouched
        assert reason in headers[H_REASON], (kind, headers[H_REASON])
        assert headers[H_STAGE] == stage, kind


def test_stats_json_works_from_another_process_while_the_sink_owns_the_store(stack, stack_settings):
    out = subprocess.run([sys.executable, "-m", "driftwarden", "stats", "--json"],
                         capture_output=True, text=True, timeout=60, check=True)
    counts = json.loads(out.stdout)
    assert counts["events"] >= len(BAD_EVENTS)
    assert counts["dead_letters"] == len(BAD_EVENTS)


def test_the_publisher_delivers_to_the_real_broker_and_the_events_are_stored(stack, stack_settings):
    before = wait_for(stack_settings, lambda c: True)["events"]
    with Publisher(stack.bootstrap, settings=stack_settings) as pub:
        for i in range(300):
            assert pub.publish(valid_event(f"pub-{i}", app="checkout", model_version="v2"))
        assert pub.flush(timeout=30)
        assert pub.stats.sent == 300 and pub.stats.refused == 0
    # Wait on this segment, not on the total: events of earlier tests may still be landing.
    counts = wait_for(stack_settings, lambda c: _segment(c, "checkout", "v2") >= 300, stack=stack)
    assert _segment(counts, "checkout", "v2") == 300
    assert counts["events"] >= before + 300


def _segment(counts, app, model_version):
    return {(s["app"], s["model_version"]): s["events"] for s in counts["events_by_segment"]}.get((app, model_version), 0)
