"""Faults with real parts: a worker killed with SIGKILL half way, and ClickHouse refusing writes.

Both must end with every published event stored exactly once: the count read with ``FINAL``,
the number of distinct ids and the number published are equal.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from driftwarden.pkg_data import path as data_path
from driftwarden.streams.publisher import Publisher
from driftwarden.core.ingest.datasets import ReplayOptions
from driftwarden.streams.replay import replay_file
from driftwarden.tests.realstack import all_scored, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack_env(stack_env):
    """This module's sink runs with the chaos switch armed (the file itself is made by the test)."""
    return {**stack_env, "DRIFTWARDEN_CHAOS_STORE_DOWN_FILE": str(Path(stack_env["DRIFTWARDEN_DATA_DIR"]) / "store-down")}


def _publish_real_events(stack, settings, prefix: str, limit: int, rate_per_s: float | None = None) -> int:
    interval = 1.0 / rate_per_s if rate_per_s else 0.0
    with Publisher(stack.bootstrap, settings=settings, flush_at=50) as pub:
        def publish(event):
            if interval:
                time.sleep(interval)
            return pub.publish(event)

        replay_file(data_path("halueval_general"), publish, ReplayOptions(id_prefix=prefix), limit=limit)
        assert pub.flush(timeout=60)
        assert pub.stats.refused == 0
        return pub.stats.sent


def test_a_worker_killed_half_way_loses_nothing_and_duplicates_nothing(stack, stack_settings):
    """1,000 real events; SIGKILL the only worker once about a third are stored; start a new one."""
    import threading

    # Warm up: the worker has joined its group and scores before the load starts.
    _publish_real_events(stack, stack_settings, "warmup", 5)
    wait_for(stack_settings, lambda c: c["events"] >= 5, stack=stack)
    sent: list[int] = []
    publisher = threading.Thread(
        target=lambda: sent.append(_publish_real_events(stack, stack_settings, "kill", 1000, rate_per_s=125)),
    )
    publisher.start()
    wait_for(stack_settings, lambda c: c["events"] >= 5 + 350, stack=stack)
    victim = stack.workers[0]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    stack.workers.remove(victim)
    stored_at_kill = wait_for(stack_settings, lambda c: True)["events"] - 5
    assert stored_at_kill < 1000, "the worker finished before it could be killed; lower the rate"
    stack.start_worker()
    publisher.join(120)
    assert sent == [1000]
    wait_for(stack_settings, all_scored(stack_settings, 1005), timeout_s=300, stack=stack)
    # Embeddings travel on their own topic and sink agent: they may trail the detections a little.
    counts = wait_for(stack_settings, lambda c: c["embeddings"] >= 2 * 1005, timeout_s=120, stack=stack)
    assert counts["events"] == counts["events_distinct_ids"] == 1005
    assert counts["detections"] == 1005 * len(counts["detections_by_detector"])
    assert counts["embeddings"] == 2 * 1005
    assert counts["dead_letters"] == 0


def test_while_clickhouse_refuses_writes_consumption_pauses_and_nothing_is_lost(stack, stack_settings):
    """The sink runs with the chaos switch: while its file exists, every ClickHouse write fails."""
    down = stack_settings.chaos_store_down_file
    assert down is not None
    before = wait_for(stack_settings, lambda c: True)
    down.touch()
    try:
        sent = _publish_real_events(stack, stack_settings, "outage", 500)
        wait_for(stack_settings, lambda c: c["sink_write_failures"] > 0, stack=stack)
        time.sleep(3)  # the sink retries and stays paused meanwhile
        during = wait_for(stack_settings, lambda c: True)
        assert during["events"] == before["events"], "rows were written while ClickHouse was down"
        assert during["sink_write_failures"] >= 2
    finally:
        down.unlink()
    total = before["events"] + sent
    after = wait_for(stack_settings, all_scored(stack_settings, total), timeout_s=300, stack=stack)
    assert after["events"] == after["events_distinct_ids"] == total
    assert after["detections"] == total * len(after["detections_by_detector"])
