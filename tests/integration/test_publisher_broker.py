"""The Publisher against the real broker: delivery, and reconnection after the broker was lost."""

from __future__ import annotations

import json
import time

import pytest

from driftwarden.core.settings import load_settings
from driftwarden.deploy.local.broker import LocalBroker, free_port
from driftwarden.streams.publisher import Publisher
from driftwarden.streams.topics import ensure_topics
from driftwarden.tests.cases import valid_event
from driftwarden.tests.realstack import consume_all

pytestmark = pytest.mark.integration


def test_events_published_while_the_broker_is_down_arrive_once_it_is_back(tmp_path):
    port = free_port()
    settings = load_settings(data_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{port}")
    broker = LocalBroker(port, log_file=tmp_path / "broker.log").start()
    try:
        ensure_topics(settings)
        pub = Publisher(settings=settings, max_retry_backoff_s=0.5)
        pub.publish(valid_event("before-0"))
        assert pub.flush(timeout=30) and pub.stats.sent == 1
        broker.stop()
        for i in range(50):
            assert pub.publish(valid_event(f"during-{i}"))  # the caller is never blocked or refused
        deadline = time.monotonic() + 90
        while pub.stats.send_retries < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pub.stats.send_retries >= 1 and pub.stats.sent == 1, pub.stats
        broker.start()  # same port; memory storage: the topics are created again
        ensure_topics(settings)
        assert pub.flush(timeout=90)
        pub.close()
        assert pub.stats.sent == 51 and pub.stats.refused == 0
        records = consume_all(broker.bootstrap, settings.topic_inference, 50)
        ids = {json.loads(r.value)["event_id"] for r in records}
        assert {f"during-{i}" for i in range(50)} <= ids
    finally:
        broker.stop()
