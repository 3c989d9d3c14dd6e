"""Drift agent: embeddings in, one DriftResult per closed window out (to ``llm.drift``).

Runs in the sink process, beside the agent that stores the same embeddings. Windows per
segment (app, model_version, field) close at N events or T minutes (settings ``DRIFT__*``); a
closed window is tested against its reference in a thread, so the event loop keeps consuming.
The ``drift_windows`` table is written by the sink from ``llm.drift`` like every other result.

The agent takes records in batches. The first record of a segment it does not hold reads the
segment's stored state in a thread (its checkpoint, reference and last window number; several
segments at once); then the batch goes through the windows in order, closed windows are tested
and sent, and **the batch's checkpoint is written to the store before its offsets are
acknowledged** (:mod:`driftwarden.detectors.drift.checkpoint`): a sink killed at any point
closes, after its restart, the same windows with the same members. While the store refuses the
checkpoint, the agent retries and consumes nothing more. A record that cannot be parsed or
handled, and a timer run that fails, are logged and skipped: the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from driftwarden.core.schemas import EmbeddingRecord, parse_embeddings
from driftwarden.core.settings import Settings
from driftwarden.core.storage.store import Store
from driftwarden.core.errors import RowRejectedError
from driftwarden.core.secrets import scrub
from driftwarden.core.storage.writer import is_data_error, until_acknowledged
from driftwarden.detectors.drift.checkpoint import KIND, store_loader, store_probe
from driftwarden.detectors.drift.univariate import warm_up as descriptor_drift_warm_up
from driftwarden.detectors.drift.windows import NOTHING_STORED, ClosedWindow, DriftWindows, StoredState, join_id
from driftwarden.streams.guard import guarded
from driftwarden.streams.topics import TopicNames

log = logging.getLogger(__name__)

#: New segments whose stored state is read at once (in threads).
MAX_PENDING_SEGMENTS = 32
#: Records per batch at most, and how long a batch waits to fill.
BATCH, LINGER_S = 500, 0.5


def attach(app: faust.App, settings: Settings, topics: TopicNames, store: Store | None = None) -> DriftWindows:
    """``store``: where a segment's checkpoint, reference, last window number and example texts
    are read back and its checkpoints written (None: windows live in memory only)."""
    windows = DriftWindows(settings.drift, load_reference=store.reference_embeddings if store is not None else None,
                           load_last_sequence=store.last_window_sequence if store is not None else None,
                           load_texts=store.texts if store is not None else None,
                           load_saved=store_loader(store) if store is not None else None,
                           probe_stored=store_probe(store) if store is not None else None,
                           idle_minutes=settings.segment_idle_minutes, max_segments=settings.max_segments)
    drift_topic = app.topic(topics.drift, value_serializer="raw", key_serializer="raw")
    metrics = getattr(app, "metrics", None)
    lock = asyncio.Lock()
    """Held while the windows change and their checkpoint is written (the batch and the timer)."""

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

    async def checkpoint() -> None:
        """Write what changed; retried until the store takes it (the batch is not acknowledged before)."""
        heads, rows = windows.checkpoint()
        if store is None or not (heads or rows):
            return

        def write() -> None:
            store.insert_drift_members(rows)
            store.save_segment_states({KIND: heads})  # after the members: a head never names members not stored

        try:
            await until_acknowledged(write, what=f"the drift checkpoint of {len(heads)} segment(s)",
                                     max_backoff_s=settings.sink_retry_max_s, give_up=is_data_error)
        except RowRejectedError as exc:  # a value the table cannot hold: the windows go on, less durable
            log.error("ClickHouse refused the drift checkpoint as data (%s); the windows go on in memory and the "
                      "next batch writes theirs. A restart now would reopen these segments' windows from their "
                      "last stored checkpoint", scrub(str(exc.cause))[:300])

    async def read_stored(first: dict[str, EmbeddingRecord]) -> dict[str, StoredState]:
        """The stored state of each new segment, read in threads, several at once."""
        gate = asyncio.Semaphore(MAX_PENDING_SEGMENTS)

        async def one(record: EmbeddingRecord) -> StoredState | None:
            async with gate:
                try:
                    return await asyncio.to_thread(windows.fetch_stored, record.app, record.model_version,
                                                   record.field, record.encoder)
                except Exception:  # noqa: BLE001 - add() reads it again, and logs what fails
                    return None

        empty = await asyncio.to_thread(windows.nothing_stored, list(first.values())) if len(first) > 1 else set()
        keys = [k for k in first if k not in empty]
        states = await asyncio.gather(*(one(first[k]) for k in keys))
        return {**dict.fromkeys(empty, NOTHING_STORED),
                **{k: st for k, st in zip(keys, states, strict=True) if st is not None}}

    @app.agent(app.topic(topics.embeddings, value_serializer="raw", key_serializer="raw"), name="drift-windows")
    @guarded("the drift agent")
    async def drift_windows(stream):
        async for batch in stream.take_events(BATCH, within=LINGER_S):
            items: list[tuple[EmbeddingRecord, tuple[int, int]]] = []
            for event in batch:
                try:
                    records = parse_embeddings(event.message.value)
                except Exception:  # noqa: BLE001 - the sink dead-letters it with the reason
                    continue
                items += [(r, (event.message.partition, event.message.offset)) for r in records]
            first: dict[str, EmbeddingRecord] = {}
            for record, _ in items:
                key = windows.key_of(record)
                if key is not None and key not in first and windows.needs_store(record):
                    first[key] = record
            stored = await read_stored(first)
            async with lock:
                closed: list[ClosedWindow] = []
                for record, position in items:
                    key = windows.key_of(record) or ""
                    try:
                        closed += windows.add(record, stored.get(key), position=position)
                        if key in windows.segments:
                            stored.pop(key, None)  # used: a later record of the segment needs none
                    except Exception:  # noqa: BLE001 - one record's failure must not stop the stream
                        log.error("drift agent could not handle the %s embedding of event %r; it is skipped and "
                                  "the stream goes on. If this repeats, look at the error below", record.field,
                                  record.event_id, exc_info=True)
                await emit(closed)
                await checkpoint()

    @app.task
    async def warm_up():
        """Evidently's first report costs seconds: pay them at start-up, beside the consumers."""
        try:
            await asyncio.to_thread(descriptor_drift_warm_up)
        except Exception:  # noqa: BLE001 - windows still run; a real failure shows in their logs
            log.warning("descriptor drift warm-up failed; the first window will pay the set-up instead",
                        exc_info=True)

    async def forget_app(name: str) -> None:
        async with lock:
            windows.forget_app(name)

    getattr(app, "purge_hooks", []).append(forget_app)

    @app.on_partitions_revoked.connect
    async def hand_over(sender, revoked, **kwargs):  # noqa: ARG001 - faust's signal signature
        """Partitions that moved to another sink: their segments' checkpoints are written (faust waits
        for the batches in flight), so the other sink reads them back; forget them here, or a
        partition that comes back would find a stale window."""
        partitions = {tp.partition for tp in revoked if tp.topic == topics.embeddings}
        if partitions:
            async with lock:
                n = windows.forget(partitions)
            if n:
                log.info("drift: %d segment(s) of revoked partitions %s handed over", n, sorted(partitions))

    @app.timer(interval=5.0)
    async def close_by_time():
        async with lock:
            try:
                closed = windows.due()
            except Exception:  # noqa: BLE001 - the timer runs again in 5 s
                log.error("drift windows could not close windows by time or evict idle segments; the timer tries "
                          "again in 5 s. If this repeats, look at the error below", exc_info=True)
                return
            await emit(closed)
            await checkpoint()

    return windows
