"""The Publisher SDK that production apps import: ``Publisher(...).publish(event)``.

Built like Langfuse's SDK: ``publish()`` only puts the event on a bounded in-memory queue and
returns (a few microseconds on the caller's thread, never blocking the request path). A
background thread drains the queue in batches, flushed when ``flush_at`` events are waiting,
``flush_interval`` has passed, or the batch reaches ``flush_bytes``; it serialises and
validates each event there and sends the batch with kafka-python, waiting for the broker's
acknowledgement. A batch that fails on a retriable error (broker gone, timeout) is retried with
backoff until it goes through (kafka-python reconnects on its own); an event that retrying
cannot fix (invalid, too large) is refused. What was refused is counted in :attr:`stats` and
logged. ``flush()`` waits until everything queued so far is acknowledged; ``close()`` (also on
``with`` exit and at interpreter exit) flushes and stops the thread with a sentinel.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from driftwarden.core.errors import InvalidEventError, PublisherClosedError
from driftwarden.core.schemas import EventLimits, InferenceEvent, encode_event, parse_feedback
from driftwarden.core.settings import Settings, get_settings
from driftwarden.streams.topics import bootstrap_servers

log = logging.getLogger(__name__)

_STOP = object()  # shutdown sentinel


@dataclass(frozen=True)
class _Record:
    """A record for a topic of its own (dead letters, feedback), already encoded."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


#: One encoded record on its way: (topic, key, value, headers); topic None means the events' topic.
_Encoded = tuple[str | None, bytes, bytes, tuple[tuple[str, bytes], ...]]


class _FlushMarker:
    """Put on the queue by flush(); the thread sets it once everything before it is acknowledged."""

    def __init__(self) -> None:
        self.done = threading.Event()


@dataclass
class PublisherStats:
    """What a Publisher did so far. Counters only grow."""

    queued: int = 0
    """Events accepted by publish()."""
    sent: int = 0
    """Events acknowledged by the broker."""
    refused_queue_full: int = 0
    """Events refused because the queue was full (the broker was too slow or away for too long)."""
    refused_invalid: int = 0
    """Events refused because they failed validation (the log line says why)."""
    refused_too_large: int = 0
    """Events refused by the broker as larger than its message limit."""
    send_retries: int = 0
    """Batches resent after a retriable failure."""
    batches: int = 0
    """Batches acknowledged."""
    last_error: str | None = field(default=None)
    """The last send failure, for diagnostics."""

    @property
    def refused(self) -> int:
        return self.refused_queue_full + self.refused_invalid + self.refused_too_large


_LIVE: weakref.WeakSet[Publisher] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for publisher in list(_LIVE):
        publisher.close(timeout=10.0)


class Publisher:
    """Publishes InferenceEvents to Kafka without blocking the caller.

    Arguments default to the settings (``DRIFTWARDEN_*``); pass them to override.
    ``producer_factory`` builds the kafka-python producer (tests and benchmarks pass their own).
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        topic: str | None = None,
        settings: Settings | None = None,
        queue_size: int | None = None,
        flush_at: int | None = None,
        flush_interval: float | None = None,
        flush_bytes: int | None = None,
        max_retry_backoff_s: float = 5.0,
        validate: bool = True,
        producer_factory: Any = None,
    ) -> None:
        s = settings if settings is not None else get_settings()
        self.topic = topic if topic is not None else s.topic_inference
        self.feedback_topic = s.topic_feedback
        self.servers = bootstrap_servers(s, bootstrap)
        self.flush_at = flush_at if flush_at is not None else s.publisher_flush_at
        self.flush_interval = (
            flush_interval if flush_interval is not None else s.publisher_flush_interval_ms / 1000.0
        )
        self.flush_bytes = flush_bytes if flush_bytes is not None else s.publisher_flush_bytes
        self.max_retry_backoff_s = max_retry_backoff_s
        self.validate = validate
        self.limits = EventLimits.from_settings(s)
        self.stats = PublisherStats()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size if queue_size is not None else s.publisher_queue_size)
        self._closed = False
        self._refusal_logged_at = 0.0
        self._producer_factory = producer_factory or self._default_producer(s)
        self._producer = None
        self._thread = threading.Thread(target=self._run, name="driftwarden-publisher", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    # --- the caller's side --------------------------------------------------------------------

    def publish(self, event: InferenceEvent | Mapping[str, Any]) -> bool:
        """Queue one event; returns False (and counts it) if it had to be refused. Never blocks."""
        return self._enqueue(event)

    def publish_record(self, topic: str, key: bytes, value: bytes,
                       headers: Mapping[str, bytes] | None = None) -> bool:
        """Queue one record already encoded for ``topic`` (a dead letter, feedback); returns False
        (and counts it) if it had to be refused. Never blocks."""
        return self._enqueue(_Record(topic, key, value, tuple((headers or {}).items())))

    def _enqueue(self, item: InferenceEvent | Mapping[str, Any] | _Record) -> bool:
        if self._closed:
            raise PublisherClosedError()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.refused_queue_full += 1
            self._log_refusal("the queue is full (broker slow or unreachable)")
            return False
        self.stats.queued += 1
        return True

    def feedback(self, event_id: str, score: float, comment: str | None = None, source: str = "user",
                 timestamp: datetime | None = None) -> bool:
        """Queue feedback on an earlier call (``score`` -1 thumbs down to 1 thumbs up) for
        ``llm.feedback``; returns False (and counts it) if it is invalid or the queue is full. Never
        blocks. It may come before its event is stored: the two join when both are there."""
        fields: dict[str, Any] = {"event_id": event_id, "score": score, "comment": comment, "source": source}
        if timestamp is not None:
            fields["timestamp"] = timestamp
        try:
            item = parse_feedback(fields)
        except InvalidEventError as exc:
            self.stats.refused_invalid += 1
            self._log_refusal(f"feedback is invalid ({exc.reason})")
            return False
        return self.publish_record(self.feedback_topic, item.event_id.encode(), item.to_json_bytes())

    @property
    def capacity(self) -> int:
        """The most records the queue holds."""
        return self._queue.maxsize

    @property
    def room(self) -> int:
        """How many more records the queue takes now (a receiver answers 429 below what it needs)."""
        return max(0, self._queue.maxsize - self._queue.qsize())

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued before this call is acknowledged or refused."""
        marker = _FlushMarker()
        started = time.monotonic()
        try:
            self._queue.put(marker, timeout=timeout)  # a full queue and a broker away: never forever
        except queue.Full:
            return False
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return marker.done.wait(left)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush what is queued and stop the background thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error(
                "Publisher could not deliver %d queued event(s) within %.0f s; they are lost. "
                "Check that the broker at %s is reachable.",
                self._queue.qsize(), timeout or 0, ",".join(self.servers),
            )
        _LIVE.discard(self)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the background thread ----------------------------------------------------------------

    def _default_producer(self, s: Settings):
        def build():
            from kafka import KafkaProducer

            return KafkaProducer(
                bootstrap_servers=self.servers,
                client_id="driftwarden-publisher",
                acks="all",
                # Large batches: kafka-python is CPU-bound per request; 1 MB batches nearly
                # double events/s against 16 kB ones (bench/publisher.py).
                linger_ms=20,
                batch_size=1 << 20,
                max_block_ms=10_000,
                request_timeout_ms=10_000,
                retries=5,
                reconnect_backoff_max_ms=2_000,
                **s.kafka_client_config(),
            )

        return build

    def _run(self) -> None:
        while True:
            batch, markers, stop = self._take_batch()
            if batch:
                self._send_with_retries(batch)
            for marker in markers:
                marker.done.set()
            if stop:
                break
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception:  # noqa: BLE001 - closing at shutdown
                log.debug("closing the Kafka producer failed", exc_info=True)
            self._producer = None

    def _take_batch(self) -> tuple[list[_Encoded], list[_FlushMarker], bool]:
        """Up to flush_at encoded events, or flush_bytes, or what came within flush_interval."""
        batch: list[_Encoded] = []
        markers: list[_FlushMarker] = []
        size = 0
        deadline = None
        while len(batch) < self.flush_at and size < self.flush_bytes:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if item is _STOP:
                return batch, markers, True
            if isinstance(item, _FlushMarker):
                markers.append(item)
                break
            if deadline is None:
                deadline = time.monotonic() + self.flush_interval
            encoded = self._encode(item)
            if encoded is not None:
                batch.append(encoded)
                size += len(encoded[2])
        return batch, markers, False

    def _encode(self, item: InferenceEvent | Mapping[str, Any] | _Record) -> _Encoded | None:
        try:
            if isinstance(item, _Record):
                return item.topic, item.key, item.value, item.headers
            if isinstance(item, InferenceEvent):
                return None, item.segment_key.encode(), item.to_json_bytes(), ()
            if not self.validate:
                key = f"{item.get('app', '')}/{item.get('model_version', '')}".encode()
                return None, key, json.dumps(dict(item), default=str).encode(), ()
            event, raw = encode_event(dict(item), self.limits)
            return None, event.segment_key.encode(), raw, ()
        except (InvalidEventError, TypeError, ValueError) as exc:
            self.stats.refused_invalid += 1
            self._log_refusal(f"an event is invalid ({exc})")
            return None

    def _send_with_retries(self, batch: list[_Encoded]) -> None:
        """Send until every event of the batch is acknowledged or refused for good."""
        backoff = 0.1
        pending = batch
        while pending:
            try:
                pending = self._send_once(pending)
            except Exception as exc:  # noqa: BLE001 - building the producer failed: broker away
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if not pending:
                self.stats.batches += 1
                return
            self.stats.send_retries += 1
            # Start the next attempt on a fresh producer: kafka-python's may have closed itself
            # ("KafkaProducer already closed") or hold connections to a broker that is gone.
            self._drop_producer()
            log.warning(
                "Publisher could not deliver %d event(s) to %s (%s); retrying in %.1f s. "
                "New events keep queueing (up to %d) meanwhile.",
                len(pending), ",".join(self.servers), self.stats.last_error, backoff, self._queue.maxsize,
            )
            time.sleep(backoff)
            backoff = min(backoff * 2, self.max_retry_backoff_s)

    def _send_once(self, pending: list[_Encoded]) -> list[_Encoded]:
        """One attempt; returns the events that failed retriably."""
        from kafka.errors import MessageSizeTooLargeError

        if self._producer is None:
            self._producer = self._producer_factory()
        futures = []
        failed: list[_Encoded] = []
        for kv in pending:
            topic, key, value, headers = kv
            try:
                futures.append((kv, self._producer.send(topic or self.topic, key=key, value=value,
                                                        headers=list(headers) or None)))
            except MessageSizeTooLargeError as exc:
                self._refuse_too_large(kv, exc)
            except Exception as exc:  # noqa: BLE001 - e.g. no metadata within max_block_ms
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                failed.append(kv)
        try:
            self._producer.flush(timeout=30)
        except Exception as exc:  # noqa: BLE001 - the futures below say which events failed
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
        for kv, fut in futures:
            try:
                fut.get(timeout=0)
                self.stats.sent += 1
            except MessageSizeTooLargeError as exc:
                self._refuse_too_large(kv, exc)
            except Exception as exc:  # noqa: BLE001 - retriable: resent by the caller
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                failed.append(kv)
        return failed

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # noqa: BLE001 - it is being thrown away
                log.debug("closing a failed Kafka producer raised", exc_info=True)

    def _refuse_too_large(self, kv: _Encoded, exc: BaseException) -> None:
        self.stats.refused_too_large += 1
        self._log_refusal(f"an event of {len(kv[2])} bytes is larger than the broker accepts ({exc})")

    def _log_refusal(self, why: str) -> None:
        now = time.monotonic()
        if now - self._refusal_logged_at >= 5.0:
            self._refusal_logged_at = now
            log.warning(
                "Publisher refused an event: %s. %d refused so far (queue full %d, invalid %d, too large %d); "
                "see Publisher.stats.",
                why, self.stats.refused, self.stats.refused_queue_full, self.stats.refused_invalid,
                self.stats.refused_too_large,
            )
