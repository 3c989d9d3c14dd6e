"""faust's Kafka transport with the consumers' fetch wait taken from the settings.

faust 0.15 creates its aiokafka consumers with ``fetch_max_wait_ms=1500`` written in its code.
A broker that answers a fetch only when that wait is over, as the local Tansu broker does, then
adds up to 1.5 s to every hop (publisher → score worker → sink): ``bench/pipeline.py`` measured
publish → row at p50 1.65 s, p99 2.1 s at half load. Kafka itself answers as soon as data
arrives, so a shorter wait costs it only more polls while a topic is idle.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver


def transport_class(fetch_max_wait_ms: int) -> type[driver.Transport]:
    """faust's aiokafka ``Transport`` whose consumers wait at most ``fetch_max_wait_ms`` per fetch."""

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # aiokafka reads it when the consumer starts
            return consumer

    class WaitingConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = WaitingConsumer

    return Transport
