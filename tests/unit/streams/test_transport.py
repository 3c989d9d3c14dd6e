"""The faust app's consumers wait on the broker as long as the settings say, not faust's 1500 ms."""

from __future__ import annotations

import asyncio

from driftwarden.core.settings import load_settings
from driftwarden.streams.app import create_app


def test_the_consumers_fetch_wait_comes_from_the_settings(tmp_path):
    off = {"enabled": False}
    settings = load_settings(data_dir=tmp_path, consumer_fetch_max_wait_ms=42, kafka_bootstrap="127.0.0.1:1",
                             redact_pii=False, detectors={name: off for name in (
                                 "embeddings", "toxicity", "pii", "prompt_injection", "hallucination")})
    app = create_app("score", settings, web_port=0)  # the sink's app would open the embedded store in this process

    async def built() -> int:
        async def nothing(*args) -> None:
            return None

        consumer = app.transport.create_consumer(callback=nothing, on_partitions_revoked=nothing,
                                                 on_partitions_assigned=nothing)
        kafka_consumer = consumer._thread._create_worker_consumer(app.transport)  # not started: no connection
        return kafka_consumer._fetch_max_wait_ms

    assert asyncio.run(built()) == 42
