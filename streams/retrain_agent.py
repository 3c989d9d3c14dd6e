"""Retrain agent: a retraining request in, a curated snapshot and a fine-tuning job out.

For each request of ``llm.retrain`` (once per request id, also across restarts: the
``retrain_jobs`` table is asked): the job is announced ``queued``; the segment's events are
curated from ClickHouse and written as a versioned snapshot; the launcher starts the job
(``running``); a task polls it to ``succeeded`` or ``failed`` and reads its metrics. Every step
goes to ``llm.retrain.status``, which the sink writes to the ``retrain_jobs`` table. Runs in the
sink process, which owns the store the curation reads.

Restarts: a request counts as done only when its job has a final status (``succeeded`` or
``failed``). One whose job was ``queued`` or ``running`` when the sink stopped is resumed, by a
redelivered request or, at start, from the ``retrain_jobs`` table: the job is watched again when
its process still runs, its outcome taken when it ended, launched again when it is gone (at most
``MAX_LAUNCHES`` times), and failed with a message when it cannot be resumed. A failure on one
request is reported as that job's failure and the stream goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import faust

from driftwarden.core.errors import DriftwardenError
from driftwarden.core.schemas import RetrainRequest, RetrainStatus
from driftwarden.core.secrets import scrub, url_secrets
from driftwarden.core.settings import Settings
from driftwarden.core.storage.store import Store
from driftwarden.retrain_trigger.retraining.curation import curate, pii_redactor
from driftwarden.retrain_trigger.retraining.launchers import JobSpec, build_launcher, record
from driftwarden.retrain_trigger.retraining.snapshots import find_snapshot, write_snapshot
from driftwarden.streams.topics import TopicNames
from driftwarden.streams.guard import guarded
from driftwarden.streams.validation import parsed

log = logging.getLogger(__name__)

FINAL = frozenset({"succeeded", "failed"})
#: Seconds after start before unfinished jobs are resumed from the table (the sink's writers and
#: a redelivered request get there first).
RESUME_DELAY_S = 3.0


def job_id_for(request_id: str) -> str:
    return "job-" + hashlib.sha256(request_id.encode()).hexdigest()[:12]


def next_step(last_status: str | None) -> str:
    """What a request needs, given its job's last stored status: ``start`` (no job yet),
    ``skip`` (the job has a final status) or ``resume`` (queued or running when the sink stopped)."""
    if last_status is None:
        return "start"
    return "skip" if last_status in FINAL else "resume"


@dataclass(frozen=True)
class _Segment:
    """Enough of a request to report on its job when the request itself is not stored."""

    request_id: str
    app: str
    model_version: str


def attach(app: faust.App, settings: Settings, topics: TopicNames, store: Store) -> None:
    launcher = build_launcher(settings)
    status_topic = app.topic(topics.retrain_status, value_serializer="raw", key_serializer="raw")
    handled: set[str] = set()
    redact = None

    store_secrets = url_secrets(settings.clickhouse_url)

    async def report(request, job_id: str, status: str, **fields) -> None:
        if fields.get("message"):  # error texts (the store's, a job's log) must not carry a secret or URL
            fields["message"] = scrub(fields["message"], store_secrets)
        record_ = RetrainStatus(job_id=job_id, request_id=request.request_id, app=request.app,
                                model_version=request.model_version, status=status, launcher=launcher.name,
                                updated_at=datetime.now(UTC), **fields)
        log.log(logging.ERROR if status == "failed" else logging.INFO, "retraining job %s: %s %s", job_id, status,
                fields.get("message", "")[:500])
        await (await status_topic.send(key=job_id.encode(), value=record_.to_json_bytes()))

    last_job, unfinished_jobs = store.last_job, store.unfinished_jobs
    stored_request = store.retrain_request

    def stored_events(request: RetrainRequest) -> int:
        return store.count_events(request.app, request.model_version, request.start, request.end)

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

    async def finish(request, job: JobSpec, version: str, rows: int, lag_s: float | None, state: str,
                     message: str) -> None:
        """Report a final state (metrics read when it succeeded), recorded beside the job's outputs first."""
        metrics: dict[str, float] = {}
        if state == "succeeded":
            try:
                raw = json.loads((job.out_dir / "metrics.json").read_text(encoding="utf-8"))
                metrics = {k: float(v) for k, v in raw.items() if isinstance(v, int | float)}
                if lag_s is not None:
                    metrics["request_to_start_s"] = lag_s
                message = (f"held-out loss {raw['loss_before']:.4f} -> {raw['loss_after']:.4f} on "
                           f"{raw['held_out_rows']} rows; adapter in {job.out_dir / 'adapter'}")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                state, message = "failed", f"the job exited 0 but wrote no readable metrics.json: {exc}"
        await asyncio.to_thread(record, job, state, message)
        await report(request, job.job_id, state, dataset_version=version, dataset_rows=rows, metrics=metrics,
                     message=message, output_dir=str(job.out_dir))

    async def watch(request, job: JobSpec, version: str, rows: int, lag_s: float | None, state: str) -> None:
        try:
            while state in ("queued", "running"):
                await asyncio.sleep(launcher.poll_interval_s)
                try:
                    new, message = await asyncio.to_thread(launcher.poll, job)
                except Exception as exc:  # noqa: BLE001 - a poll that fails ends the watch as the job's failure
                    new, message = "failed", f"cannot follow the job: {type(exc).__name__}: {exc}"
                if new == state:
                    continue
                state = new
                if state in FINAL:
                    await finish(request, job, version, rows, lag_s, state, message)
                else:
                    await report(request, job.job_id, state, dataset_version=version, dataset_rows=rows,
                                 message=message, output_dir=str(job.out_dir))
        except Exception as exc:  # noqa: BLE001 - a task must not die silently
            log.error("watching retraining job %s stopped: %s: %s; the job's outputs are in %s; restart the sink "
                      "to resume watching it", job.job_id, type(exc).__name__, str(exc)[:300], job.out_dir)

    def start_watch(request, job: JobSpec, version: str, rows: int, lag_s: float | None, state: str) -> None:
        if launcher.name == "kubernetes" and not settings.retrain.kubectl:
            return  # the manifest is the output: nothing runs until someone applies it
        app.loop.create_task(watch(request, job, version, rows, lag_s, state), name=f"watch-{job.job_id}")

    async def launch(request, job: JobSpec, version: str, rows: int, lag_s: float | None, note: str) -> None:
        try:
            state = await asyncio.to_thread(launcher.launch, job)
        except DriftwardenError as exc:
            await report(request, job.job_id, "failed", dataset_version=version, dataset_rows=rows, message=str(exc))
            return
        await report(request, job.job_id, state, dataset_version=version, dataset_rows=rows,
                     metrics={"request_to_start_s": lag_s} if lag_s is not None else {},
                     message=f"{launcher.name} job on snapshot {version}{note}", output_dir=str(job.out_dir))
        start_watch(request, job, version, rows, lag_s, state)

    async def handle(request: RetrainRequest) -> None:
        nonlocal redact
        job_id = job_id_for(request.request_id)
        await report(request, job_id, "queued", message=request.reason[:1000])
        await settled(request)
        try:
            if redact is None:
                redact = await asyncio.to_thread(pii_redactor, settings)
            curated = await asyncio.to_thread(curate, store, request, redact)
            snapshot = await asyncio.to_thread(write_snapshot, settings.datasets_dir, request, curated)
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure, the stream goes on
            log.exception("curation for %r failed", request.request_id)
            await report(request, job_id, "failed", message=f"curation failed: {type(exc).__name__}: {exc}"[:2000])
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
        lag_s = (datetime.now(UTC) - request.requested_at).total_seconds()
        await launch(request, job, snapshot.version, rows, lag_s, "")

    async def resume(request, last: dict) -> None:
        """Pick up a job that was queued or running when the sink stopped."""
        job_id = job_id_for(request.request_id)
        version, rows = last["dataset_version"], last["dataset_rows"]
        if not version:  # stopped before its snapshot was written: start over (same content, same snapshot)
            if isinstance(request, RetrainRequest):
                log.info("retraining request %r was interrupted before its snapshot; starting it again",
                         request.request_id)
                await handle(request)
            else:
                await report(request, job_id, "failed", message="interrupted by a restart before its snapshot was "
                             "written, and the request is not in the store to start it again; send it again")
            return
        try:
            snapshot = await asyncio.to_thread(find_snapshot, settings.datasets_dir, version)
        except DriftwardenError:
            await report(request, job_id, "failed", dataset_version=version, dataset_rows=rows,
                         message=f"interrupted by a restart, and its snapshot {version} is no longer under "
                                 f"{settings.datasets_dir}: it cannot be resumed; send the request again")
            return
        job = JobSpec(job_id=job_id, snapshot_dir=snapshot.path, out_dir=settings.jobs_dir / job_id)
        found = await asyncio.to_thread(launcher.adopt, job)
        if found is None:
            log.warning("retraining job %s was %s when the sink stopped and its process is gone: launching it again",
                        job_id, last["status"])
            await launch(request, job, version, rows, None, " (launched again after a restart)")
            return
        state, message = found
        if state in FINAL:
            await finish(request, job, version, rows, None, state, message)
            return
        if state != last["status"]:
            await report(request, job_id, state, dataset_version=version, dataset_rows=rows, message=message,
                         output_dir=str(job.out_dir))
        log.info("retraining job %s: %s after a restart; watching it (%s)", job_id, state, message)
        start_watch(request, job, version, rows, None, state)

    async def fail_unexpectedly(request, exc: BaseException) -> None:
        log.error("retraining request %r failed unexpectedly (%s: %s); it is reported failed and the stream goes "
                  "on — look at the error, then send the request again or run `driftwarden finetune` by hand",
                  request.request_id, type(exc).__name__, str(exc)[:300])
        try:
            await report(request, job_id_for(request.request_id), "failed",
                         message=f"unexpected error: {type(exc).__name__}: {exc}"[:2000])
        except Exception as again:  # noqa: BLE001 - nothing more to do than say so
            log.error("the failure of retraining request %r could not be reported either (%s: %s)",
                      request.request_id, type(again).__name__, str(again)[:300])

    @app.agent(app.topic(topics.retrain, value_serializer="raw", key_serializer="raw"), name="retrain-requests")
    @guarded("the retrain agent")
    async def retrain_requests(stream):
        async for request in parsed(stream, RetrainRequest.model_validate_json, "retrain agent"):
            if request.request_id in handled:
                log.info("retraining request %r is handled by this process already", request.request_id)
                continue
            handled.add(request.request_id)
            try:
                last = await asyncio.to_thread(last_job, request.request_id)
                step = next_step(last and last["status"])
                if step == "skip":
                    log.info("retraining request %r was handled before (its job %s); not starting it again",
                             request.request_id, last["status"])
                elif step == "resume":
                    await resume(request, last)
                else:
                    await handle(request)
            except Exception as exc:  # noqa: BLE001 - no exception escapes per-message handling
                await fail_unexpectedly(request, exc)

    @app.task
    async def resume_unfinished():
        """At start: jobs whose last status is not final are resumed (or failed, saying why)."""
        await asyncio.sleep(RESUME_DELAY_S)
        try:
            jobs = await asyncio.to_thread(unfinished_jobs)
        except Exception as exc:  # noqa: BLE001 - logged; a redelivered request still resumes its job
            log.error("cannot list unfinished retraining jobs (%s: %s); they are not resumed now — they will be "
                      "when their request is redelivered or the sink restarts", type(exc).__name__, str(exc)[:300])
            return
        for last in jobs:
            if last["request_id"] in handled:
                continue
            handled.add(last["request_id"])
            request = None
            try:
                request = await asyncio.to_thread(stored_request, last["request_id"])
                if request is None:
                    request = _Segment(last["request_id"], last["app"], last["model_version"])
                log.info("resuming retraining job %s (%s when the sink stopped)", job_id_for(last["request_id"]),
                         last["status"])
                await resume(request, last)
            except Exception as exc:  # noqa: BLE001 - one job's trouble does not stop the others
                await fail_unexpectedly(request or _Segment(last["request_id"], last["app"], last["model_version"]),
                                        exc)
