"""Drift agent: embeddings in, one DriftResult per closed window out (to ``llm.drift``).

Runs in the sink process, beside the agent that stores the same embeddings. Windows per
segment (app, model_version, field) close at N events or T minutes (settings ``DRIFT__*``); a
closed window is tested against its reference in a thread, so the event loop keeps consuming.
The ``drift_windows`` table is written by the sink from ``llm.drift`` like every other result.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from driftwarden.core.schemas import parse_embeddings
from driftwarden.core.settings import Settings
from driftwarden.detectors.drift.univariate import warm_up as descriptor_drift_warm_up
from driftwarden.detectors.drift.windows import ClosedWindow, DriftWindows
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.validation import parsed

log = logging.getLogger(__name__)


def store_loader(client, database: str):
    """Reads stored embeddings of a segment, oldest first (the drift reference after a restart,
    or a pinned one)."""

    def load(app: str, model_version: str, field: str, encoder: str, limit: int, start, end):
        where = ["app = {app:String}", "model_version = {mv:String}", "field = {field:String}",
                 "encoder = {enc:String}"]
        params = {"app": app, "mv": model_version, "field": field, "enc": encoder, "limit": limit}
        if start is not None:
            where.append("event_ts >= {start:DateTime64(3, 'UTC')}")
            params["start"] = start
        if end is not None:
            where.append("event_ts <= {end:DateTime64(3, 'UTC')}")
            params["end"] = end
        sql = (f"SELECT event_id, vector, event_ts FROM {database}.embeddings FINAL WHERE {' AND '.join(where)} "
               f"ORDER BY event_ts, event_id LIMIT {{limit:UInt32}}")
        return [(r[0], list(r[1]), r[2]) for r in client.query(sql, parameters=params).result_rows]

    return load


def attach(app: faust.App, settings: Settings, topics: TopicNames, client=None) -> DriftWindows:
    loader = store_loader(client, settings.clickhouse_database) if client is not None else None
    windows = DriftWindows(settings.drift, load_reference=loader)
    drift_topic = app.topic(topics.drift, value_serializer="raw", key_serializer="raw")

    async def emit(closed: list[ClosedWindow]) -> None:
        for window in closed:
            result = await asyncio.to_thread(windows.test, window)
            level = logging.WARNING if result.p_value < settings.drift.alpha else logging.INFO
            log.log(level, "drift window %s: %d vs %d (%s), MMD² %.5f, p = %.4f", result.window_id,
                    result.n_current, result.n_reference, result.reference_id, result.statistic, result.p_value)
            await (await drift_topic.send(key=f"{result.app}/{result.model_version}".encode(),
                                          value=result.to_json_bytes()))

    @app.agent(app.topic(topics.embeddings, value_serializer="raw", key_serializer="raw"), name="drift-windows")
    async def drift_windows(stream):
        async for records in parsed(stream, parse_embeddings, "drift agent"):
            for record in records:
                await emit(windows.add(record))

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
        await emit(windows.due())

    return windows
