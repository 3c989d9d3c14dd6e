"""Two score workers in one consumer group split the partitions; each event is scored once in effect."""

from __future__ import annotations

import re

import pytest

from driftwarden.streams.publisher import Publisher
from driftwarden.tests.cases import valid_event
from driftwarden.tests.realstack import all_scored, dump_logs_on_failure, start, wait_for, workers_ready

pytestmark = pytest.mark.integration

N = 240
"""Events published: 120 keys (40 apps, 3 versions), two events each, over all four partitions."""
PARTITION_LINE = re.compile(r"scoring partition (\S+)/(\d+)")


def scored_partitions(log_text: str, topic: str) -> set[int]:
    return {int(p) for t, p in PARTITION_LINE.findall(log_text) if t == topic}


def test_two_workers_split_the_partitions_and_every_event_is_scored_once(stack_settings):
    stack = start(stack_settings, workers=2)
    try:
        # Both in the group with partitions of their own before anything is published.
        workers_ready(stack_settings, 2, stack)
        with Publisher(stack.bootstrap, settings=stack_settings) as pub:
            # 120 app/model_version keys spread over all four partitions.
            for i in range(N):
                pub.publish(valid_event(f"split-{i}", app=f"app-{i % 40}", model_version=f"v{i % 3}"))
            assert pub.flush(timeout=60) and pub.stats.sent == N
        counts = wait_for(stack_settings, all_scored(stack_settings, N), timeout_s=300, stack=stack)
        assert counts["events"] == counts["events_distinct_ids"] == N
        assert counts["detections"] == N * len(counts["detections_by_detector"])
        topic = stack_settings.topic_inference
        logs = [(stack.log_dir / f"worker-{i}.log").read_text(errors="replace") for i in range(2)]
        parts = [scored_partitions(text, topic) for text in logs]
        assert parts[0] and parts[1], f"one worker scored nothing: {parts}"
        assert parts[0] | parts[1] == set(range(stack_settings.topic_partitions))
        # SIGTERM stops each process by itself, none is killed at the end of its grace period (the
        # sink waited on drift batches faust had dropped unacknowledged).
        processes = {"sink": stack.sink, **{f"worker-{i}": w for i, w in enumerate(stack.workers)}}
        stack.stop()
        assert {name: p.returncode for name, p in processes.items()} == {name: 0 for name in processes}
    finally:
        stack.stop()
        dump_logs_on_failure(stack.log_dir)
