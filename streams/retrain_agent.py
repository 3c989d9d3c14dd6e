"""Retrain agent: a retraining request in, a curated snapshot and a fine-tuning job out.

For each request of ``llm.retrain`` (once per request id, also across restarts: the
``retrain_jobs`` table is asked): the job is announced ``queued``; the segment's events are
curated from ClickHouse and written as a versioned snapshot; the launcher starts the job
(``running``); a task polls it to ``succeeded`` or ``failed`` and reads its metrics. Every step
goes to ``llm.retrain.status``, which the sink writes to the ``retrain_jobs`` table. Runs in the
sink process, which owns the store the curation reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime

import faust

from driftwarden.core.errors import DriftwardenError
from driftwarden.core.schemas import RetrainRequest, RetrainStatus
from driftwarden.core.settings import Settings
from driftwarden.retrain_trigger.curation import curate, pii_redactor
from driftwarden.retrain_trigger.launchers import JobSpec, build_launcher
from driftwarden.retrain_trigger.snapshots import write_snapshot
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.validation import parsed

log = logging.getLogger(__name__)


def job_id_for(request_id: str) -> str:
    return "job-" + hashlib.sha256(request_id.encode()).hexdigest()[:12]


def attach(app: faust.App, settings: Settings, topics: TopicNames, client) -> None:
    launcher = build_launcher(settings)
    status_topic = app.topic(topics.retrain_status, value_serializer="raw", key_serializer="raw")
    db = settings.clickhouse_database
    handled: set[str] = set()
    redact = None

    async def report(request: RetrainRequest, job_id: str, status: str, **fields) -> None:
        record = RetrainStatus(job_id=job_id, request_id=request.request_id, app=request.app,
                               model_version=request.model_version, status=status, launcher=launcher.name,
                               updated_at=datetime.now(UTC), **fields)
        log.log(logging.ERROR if status == "failed" else logging.INFO, "retraining job %s: %s %s", job_id, status,
                fields.get("message", "")[:500])
        await (await status_topic.send(key=job_id.encode(), value=record.to_json_bytes()))

    def already_done(request_id: str) -> bool:
        rows = client.query(f"SELECT count() FROM {db}.retrain_jobs FINAL WHERE request_id = {{r:String}}",
                            parameters={"r": request_id}).result_rows
        return bool(rows and rows[0][0])

    def stored_events(request: RetrainRequest) -> int:
        return int(client.query(
            f"SELECT count() FROM {db}.inference_events FINAL WHERE app = {{a:String}} AND model_version = {{m:String}} "
            f"AND ts >= {{s:DateTime64(3, 'UTC')}} AND ts <= {{e:DateTime64(3, 'UTC')}}",
            parameters={"a": request.app, "m": request.model_version, "s": request.start, "e": request.end},
        ).result_rows[0][0])

    async def settled(request: RetrainRequest, timeout_s: float = 15.0) -> None:
        """The events of the range may still be on their way to the store: wait until the count holds."""
        last, waited = -1, 0.0
        while waited < timeout_s:
            now = await asyncio.to_thread(stored_events, request)
            if now == last and now > 0:
                return
            last = now
            await asyncio.sleep(1.0)
            waited += 1.0

    async def watch(request: RetrainRequest, job: JobSpec, version: str, rows: int, lag_s: float,
                    state: str) -> None:
        while state in ("queued", "running"):
            await asyncio.sleep(launcher.poll_interval_s)
            try:
                new, message = await asyncio.to_thread(launcher.poll, job)
            except DriftwardenError as exc:
                new, message = "failed", str(exc)
            if new == state:
                continue
            state = new
            metrics: dict[str, float] = {}
            if state == "succeeded":
                try:
                    raw = json.loads((job.out_dir / "metrics.json").read_text(encoding="utf-8"))
                    metrics = {k: float(v) for k, v in raw.items() if isinstance(v, int | float)}
                    metrics["request_to_start_s"] = lag_s
                    message = (f"held-out loss {raw['loss_before']:.4f} -> {raw['loss_after']:.4f} on "
                               f"{raw['held_out_rows']} rows; adapter in {job.out_dir / 'adapter'}")
                except (OSError, ValueError, KeyError) as exc:
                    state, message = "failed", f"the job exited 0 but wrote no readable metrics.json: {exc}"
            await report(request, job.job_id, state, dataset_version=version, dataset_rows=rows, metrics=metrics,
                         message=message, output_dir=str(job.out_dir))

    async def handle(request: RetrainRequest) -> None:
        nonlocal redact
        job_id = job_id_for(request.request_id)
        await report(request, job_id, "queued", message=request.reason[:1000])
        await settled(request)
        try:
            if redact is None:
                redact = await asyncio.to_thread(pii_redactor, settings)
            curated = await asyncio.to_thread(curate, client, db, request, redact)
            snapshot = await asyncio.to_thread(write_snapshot, settings.datasets_dir, request, curated)
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure, the stream goes on
            log.exception("curation for %s failed", request.request_id)
            await report(request, job_id, "failed", message=f"curation failed: {type(exc).__name__}: {exc}")
            return
        rows = len(curated.train)
        log.info("snapshot %s: %d training rows, %d for review (%s)", snapshot.version, rows, len(curated.review),
                 snapshot.path)
        if rows < settings.retrain.min_rows:
            await report(request, job_id, "failed", dataset_version=snapshot.version, dataset_rows=rows,
                         message=f"only {rows} training rows after curation (at least {settings.retrain.min_rows} "
                                 f"needed: DRIFTWARDEN_RETRAIN__MIN_ROWS); snapshot {snapshot.path}")
            return
        job = JobSpec(job_id=job_id, snapshot_dir=snapshot.path, out_dir=settings.jobs_dir / job_id)
        try:
            state = await asyncio.to_thread(launcher.launch, job)
        except DriftwardenError as exc:
            await report(request, job_id, "failed", dataset_version=snapshot.version, dataset_rows=rows,
                         message=str(exc))
            return
        lag_s = (datetime.now(UTC) - request.requested_at).total_seconds()
        await report(request, job_id, state, dataset_version=snapshot.version, dataset_rows=rows,
                     metrics={"request_to_start_s": lag_s},
                     message=f"{launcher.name} job on snapshot {snapshot.version}", output_dir=str(job.out_dir))
        if launcher.name == "kubernetes" and not settings.retrain.kubectl:
            return  # the manifest is the output: nothing runs until someone applies it
        app.loop.create_task(watch(request, job, snapshot.version, rows, lag_s, state), name=f"watch-{job_id}")

    @app.agent(app.topic(topics.retrain, value_serializer="raw", key_serializer="raw"), name="retrain-requests")
    async def retrain_requests(stream):
        async for request in parsed(stream, RetrainRequest.model_validate_json, "retrain agent"):
            if request.request_id in handled or await asyncio.to_thread(already_done, request.request_id):
                log.info("retraining request %s was handled before; not starting it again", request.request_id)
                continue
            handled.add(request.request_id)
            await handle(request)
