"""Drift agent: embeddings in, one DriftResult per closed window out (to ``llm.drift``).

Runs in the sink process, beside the agent that stores the same embeddings. Windows per
segment (app, model_version, field) close at N events or T minutes (settings ``DRIFT__*``); a
closed window is tested against its reference in a thread, so the event loop keeps consuming.
The ``drift_windows`` table is written by the sink from ``llm.drift`` like every other result.

Store reads stay off the event loop: the first record of a new segment waits in a small queue of
its own while a thread reads the segment's stored reference and last window number; later
records of that segment queue behind it (their order is kept) and other segments go on. A
record that cannot be parsed or handled, and a timer run that fails, are logged and skipped:
the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from driftwarden.core.schemas import EmbeddingRecord, parse_embeddings
from driftwarden.core.settings import Settings
from driftwarden.core.storage.store import Store
from driftwarden.detectors.drift.univariate import warm_up as descriptor_drift_warm_up
from driftwarden.detectors.drift.windows import ClosedWindow, DriftWindows, join_id
from driftwarden.streams.guard import guarded
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.validation import parsed

log = logging.getLogger(__name__)

#: New segments whose stored state is read at once (in threads); the next waits for one to finish.
MAX_PENDING_SEGMENTS = 32


def attach(app: faust.App, settings: Settings, topics: TopicNames, store: Store | None = None) -> DriftWindows:
    """``store``: where a segment's reference, last window number and example texts are read
    back (None: nothing is, as in a test without a store)."""
    windows = DriftWindows(settings.drift, load_reference=store.reference_embeddings if store is not None else None,
                           load_last_sequence=store.last_window_sequence if store is not None else None,
                           load_texts=store.texts if store is not None else None,
                           idle_minutes=settings.segment_idle_minutes, max_segments=settings.max_segments)
    drift_topic = app.topic(topics.drift, value_serializer="raw", key_serializer="raw")
    metrics = getattr(app, "metrics", None)
    #: Records of segments whose stored state is being read, in arrival order, per segment id.
    pending: dict[str, list[EmbeddingRecord]] = {}
    readers: set[asyncio.Task] = set()

    async def emit(closed: list[ClosedWindow]) -> None:
        for window in closed:
            try:
                result = await asyncio.to_thread(windows.test, window)
                level = logging.WARNING if result.p_value < settings.drift.alpha else logging.INFO
                log.log(level, "drift window %s: %d vs %d (%r), %s statistic %.5f, p = %.4f, novel share %.2f",
                        result.window_id, result.n_current, result.n_reference, result.reference_id,
                        result.method, result.statistic, result.p_value, result.novel_share)
                await (await drift_topic.send(key=join_id(result.app, result.model_version).encode(),
                                              value=result.to_json_bytes()))
                if metrics is not None:
                    metrics.drift_window(result.app, result.model_version, result.field, result.p_value,
                                         settings.drift.alpha)
            except Exception:  # noqa: BLE001 - one window's failure must not stop the stream
                log.error("drift window %s could not be tested or sent; it is skipped and the segment's next window "
                          "follows. If this repeats, look at the error below and at the broker", window.window_id,
                          exc_info=True)

    async def settle(key: str) -> None:
        """Feed a segment's queued records in order, reading its stored state in a thread when needed."""
        try:
            while pending.get(key):
                record = pending[key].pop(0)
                try:
                    stored = None
                    if windows.needs_store(record):
                        stored = await asyncio.to_thread(windows.fetch_stored, record.app, record.model_version,
                                                         record.field, record.encoder)
                    closed = windows.add(record, stored)
                except Exception:  # noqa: BLE001
                    log.error("drift windows could not take the %s embedding of event %r (segment %s); it is "
                              "skipped and the segment goes on. If this repeats, look at the error below",
                              record.field, record.event_id, key, exc_info=True)
                    continue
                await emit(closed)
        finally:
            left = pending.pop(key, [])
            if left:  # only when this task was cancelled (shutdown)
                log.warning("drift windows dropped %d queued embedding(s) of segment %s at shutdown; the windows "
                            "refill from new events", len(left), key)

    async def take(record: EmbeddingRecord) -> None:
        key = windows.key_of(record)
        if key is None:
            return
        if key in pending:  # behind a store read: keep the segment's order
            pending[key].append(record)
            return
        if windows.needs_store(record):
            while len(pending) >= MAX_PENDING_SEGMENTS and readers:
                await asyncio.wait(set(readers), return_when=asyncio.FIRST_COMPLETED)
            pending[key] = [record]
            task = asyncio.ensure_future(settle(key))
            readers.add(task)
            task.add_done_callback(readers.discard)
            return
        await emit(windows.add(record))

    @app.agent(app.topic(topics.embeddings, value_serializer="raw", key_serializer="raw"), name="drift-windows")
    @guarded("the drift agent")
    async def drift_windows(stream):
        async for records in parsed(stream, parse_embeddings, "drift agent"):
            for record in records:
                try:
                    await take(record)
                except Exception:  # noqa: BLE001 - one record's failure must not stop the stream
                    log.error("drift agent could not handle the %s embedding of event %r; it is skipped and the "
                              "stream goes on. If this repeats, look at the error below", record.field,
                              record.event_id, exc_info=True)

    @app.task
    async def warm_up():
        """Evidently's first report costs seconds: pay them at start-up, beside the consumers."""
        try:
            await asyncio.to_thread(descriptor_drift_warm_up)
        except Exception:  # noqa: BLE001 - windows still run; a real failure shows in their logs
            log.warning("descriptor drift warm-up failed; the first window will pay the set-up instead",
                        exc_info=True)

    @app.timer(interval=5.0)
    async def close_by_time():
        try:
            closed = windows.due()
        except Exception:  # noqa: BLE001 - the timer runs again in 5 s
            log.error("drift windows could not close windows by time or evict idle segments; the timer tries again "
                      "in 5 s. If this repeats, look at the error below", exc_info=True)
            return
        await emit(closed)

    return windows
