"""A Publisher's counters for Prometheus: register :class:`PublisherCollector` on the app's registry.

```python
from prometheus_client import REGISTRY
from driftwarden.streams.publisher_metrics import PublisherCollector

REGISTRY.register(PublisherCollector(publisher))
```

Needs ``prometheus-client`` (``pip install 'driftwarden[metrics]'``); the Publisher itself does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from driftwarden.core.extras import require

prometheus_client = require("prometheus_client", "metrics")
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402


class PublisherCollector(Collector):
    """``driftwarden_publisher_*``: events queued, sent, refused (by reason), batches, retries, and
    the room left in the queue, read from the Publisher when scraped."""

    def __init__(self, publisher: Any, app: str = "") -> None:
        self.publisher = publisher
        self.app = app

    def collect(self) -> Iterable[Any]:
        s = self.publisher.stats
        labels, values = (["app"], [self.app]) if self.app else ([], [])

        def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"driftwarden_publisher_{name}", documentation, labels=labels)
            family.add_metric(values, value)
            return family

        yield counter("events_queued", "Events the Publisher accepted", s.queued)
        yield counter("events_sent", "Events the broker acknowledged", s.sent)
        yield counter("batches", "Batches the broker acknowledged", s.batches)
        yield counter("send_retries", "Batches sent again after a retriable failure", s.send_retries)
        refused = CounterMetricFamily("driftwarden_publisher_events_refused", "Events the Publisher refused",
                                      labels=[*labels, "reason"])
        for reason, value in (("queue_full", s.refused_queue_full), ("invalid", s.refused_invalid),
                              ("too_large", s.refused_too_large)):
            refused.add_metric([*values, reason], value)
        yield refused
        room = GaugeMetricFamily("driftwarden_publisher_queue_room", "Events the queue can still take",
                                 labels=labels)
        room.add_metric(values, self.publisher.room)
        yield room
