"""The retraining workflow: a retraining request in, a curated snapshot and a fine-tuning job out.

For each request (once per episode, the request id, also across restarts: the store's
``retrain_jobs`` is asked; an episode whose job failed runs once more for a request made after the
failure, as a further attempt with a job id of its own): the job is announced ``queued``; the
segment's events are curated from the store and written as a versioned snapshot; the launcher
starts the job (``running``); a task polls it to ``succeeded`` or ``failed`` and takes its result;
a succeeded job is registered in MLflow and decided by the promotion rules (:meth:`decide`), and
the decision goes to the alert receivers. Every step is published as a
:class:`~driftwarden.core.schemas.RetrainStatus` (the agent sends it to ``llm.retrain.status``,
which the sink writes to ``retrain_jobs``).

Restarts: a request counts as done only when its job has a final status. One whose job was
``queued`` or ``running`` when the process stopped is resumed, by a redelivered request or, at
start, from the store: the job is watched again when it still runs, its outcome taken when it
ended, launched again when it is gone (the launcher bounds how often), and failed with a message
when it cannot be resumed. A failure on one request is reported as that job's failure and the
next request goes on.

The agent (``streams/retrain_agent.py``) is a thin loop over :meth:`RetrainWorkflow.on_request`
and :meth:`RetrainWorkflow.resume_unfinished`; the launcher is reached through its protocol only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftwarden.core.errors import DriftwardenError
from driftwarden.core.schemas import RetrainRequest, RetrainStatus
from driftwarden.core.secrets import scrub, url_secrets
from driftwarden.core.settings import Settings
from driftwarden.core.storage.store import Store
from driftwarden.retrain_trigger.retraining.curation import curate, pii_redactor
from driftwarden.retrain_trigger.retraining.launchers import JobSpec, Launcher, record
from driftwarden.retrain_trigger.alerting.rules import load_policy
from driftwarden.retrain_trigger.retraining.evaluation import Table
from driftwarden.retrain_trigger.retraining.promotion import PromotionPolicy, Verdict, decide
from driftwarden.retrain_trigger.retraining.registry import ModelRegistry, job_params, version_tags
from driftwarden.retrain_trigger.retraining.snapshots import find_snapshot, load_snapshot, private_dir, write_snapshot

log = logging.getLogger(__name__)

FINAL = frozenset({"succeeded", "failed"})
#: Reasons of a decision kept on its status (each at most 1,000 characters); the registry keeps them all.
MAX_REASONS = 50
#: Where a job's copy of the champion adapter it starts from lies, inside its output directory.
CURRENT_ADAPTER = "current-adapter"
#: Which champion version a job started from (``{"champion": "3"}``; ``""`` none, null unknown).
STARTED_FROM = "started-from.json"


def load_manifest(snapshot_dir: Path) -> dict:
    return load_snapshot(snapshot_dir).manifest


def job_id_for(request_id: str, attempt: int = 1) -> str:
    """The job of a request's ``attempt`` (1: the first; a new request for an episode whose job failed
    is a further attempt)."""
    key = request_id if attempt == 1 else f"{request_id}#{attempt}"
    return "job-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def next_step(last: dict | None, requested_at: datetime | None = None) -> str:
    """What a request needs, given its episode's last stored job: ``start`` (no job yet), ``retry``
    (the job failed before this request was made: a new request for the episode runs once more),
    ``skip`` (the job succeeded, or failed after this request: a redelivery) or ``resume`` (queued
    or running when the process stopped)."""
    if last is None:
        return "start"
    if last["status"] == "failed" and requested_at is not None and last.get("updated_at") is not None \
            and requested_at > last["updated_at"]:
        return "retry"
    return "skip" if last["status"] in FINAL else "resume"


@dataclass(frozen=True)
class Segment:
    """Enough of a request to report on its job when the request itself is not stored."""

    request_id: str
    app: str
    model_version: str


class RetrainWorkflow:
    """One process's retraining: requests handled once each, jobs launched, watched and resumed."""

    def __init__(self, settings: Settings, store: Store, launcher: Launcher,
                 publish: Callable[[RetrainStatus], Awaitable[None]],
                 spawn: Callable[[Coroutine[Any, Any, None], str], Any] | None = None, *,
                 redactor: Callable[[Settings], Callable[[str], str]] = pii_redactor, settle_timeout_s: float = 15.0,
                 settle_poll_s: float = 1.0, promotion: PromotionPolicy | None = None,
                 notify: Callable[[RetrainStatus, str], Awaitable[None]] | None = None,
                 registry: ModelRegistry | None = None):
        """``publish`` sends a job status out; ``spawn(coroutine, name)`` runs a watch in the
        background (default: a task on the running loop); ``redactor`` builds the PII redaction
        (once, on first use); ``promotion`` decides on a succeeded job (default: the policy file's);
        ``notify(status, table)`` tells the alert receivers of a decision; ``registry``: MLflow
        (default: the settings')."""
        self.settings = settings
        self.store = store
        self.launcher = launcher
        self.publish = publish
        self.spawn = spawn or (lambda coro, name: asyncio.get_running_loop().create_task(coro, name=name))
        self.redactor = redactor
        self.settle_timeout_s = settle_timeout_s
        self.settle_poll_s = settle_poll_s
        self.handled: set[tuple[str, str]] = set()
        """(request id, requested at) of every request this process took."""
        self.touched: set[str] = set()
        """Request ids whose job this process started or resumed (its store rows may lag)."""
        self.in_flight: dict[str, str] = {}
        """Request id -> the job this process runs or watches for it, until that job's final status."""
        self.promotion = promotion
        self.notify = notify
        self.registry = registry
        self.watches: set[Any] = set()
        self._redact: Callable[[str], str] | None = None
        self._secrets = url_secrets(settings.clickhouse_url)

    # --- entry points ---

    async def on_request(self, request: RetrainRequest) -> None:
        """Handle one request from the stream; never raises (a failure is the job's, reported)."""
        key = (request.request_id, request.requested_at.isoformat())
        if key in self.handled:
            log.info("retraining request %r is handled by this process already", request.request_id)
            return
        self.handled.add(key)
        try:
            last = await asyncio.to_thread(self.store.last_job, request.request_id)
            step = next_step(last, request.requested_at)
            if step == "retry" and request.request_id in self.in_flight:
                log.info("retraining request %r: its job %s runs in this process already", request.request_id,
                         self.in_flight[request.request_id])
                return
            if step in ("start", "resume") and request.request_id in self.touched:
                log.info("retraining request %r: its job is in this process's hands already", request.request_id)
                return
            self.touched.add(request.request_id)
            if step == "skip":
                log.info("retraining request %r was handled before (its job %s); not starting it again",
                         request.request_id, last["status"])
            elif step == "resume":
                await self.resume(request, last)
            elif step == "retry":
                attempt = int(last.get("attempts", 1)) + 1
                log.warning("retraining request %r: its last job %s failed before this request was made; running "
                            "it again (attempt %d)", request.request_id, last.get("job_id", ""), attempt)
                await self.handle(request, attempt)
            else:
                await self.handle(request)
        except Exception as exc:  # noqa: BLE001 - no exception escapes per-message handling
            await self.fail_unexpectedly(request, exc)

    async def resume_unfinished(self) -> None:
        """At start: jobs whose last status is not final are resumed (or failed, saying why)."""
        try:
            jobs = await asyncio.to_thread(self.store.unfinished_jobs)
        except Exception as exc:  # noqa: BLE001 - logged; a redelivered request still resumes its job
            log.error("cannot list unfinished retraining jobs (%s: %s); they are not resumed now — they will be "
                      "when their request is redelivered or the sink restarts", type(exc).__name__, str(exc)[:300])
            return
        for last in jobs:
            if last["request_id"] in self.touched:
                continue
            self.touched.add(last["request_id"])
            segment = Segment(last["request_id"], last["app"], last["model_version"])
            try:
                request = await asyncio.to_thread(self.store.retrain_request, last["request_id"]) or segment
                log.info("resuming retraining job %s (%s when the sink stopped)", last.get("job_id", ""),
                         last["status"])
                await self.resume(request, last)
            except Exception as exc:  # noqa: BLE001 - one job's trouble does not stop the others
                await self.fail_unexpectedly(segment, exc, last.get("job_id"))

    # --- the steps ---

    async def report(self, request, job_id: str, status: str, **fields) -> RetrainStatus:
        if fields.get("message"):  # error texts (the store's, a job's log) must not carry a secret or URL
            fields["message"] = scrub(fields["message"], self._secrets)
        if status in FINAL and self.in_flight.get(request.request_id) == job_id:
            del self.in_flight[request.request_id]
        status_ = RetrainStatus(job_id=job_id, request_id=request.request_id, app=request.app,
                                model_version=request.model_version, status=status, launcher=self.launcher.name,
                                updated_at=datetime.now(UTC), **fields)
        log.log(logging.ERROR if status == "failed" else logging.INFO, "retraining job %s: %s %s", job_id, status,
                fields.get("message", "")[:500])
        await self.publish(status_)
        return status_

    async def settled(self, request: RetrainRequest) -> None:
        """The events of the range may still be on their way to the store: wait until the count holds."""
        last, waited = -1, 0.0
        while waited < self.settle_timeout_s:
            now = await asyncio.to_thread(self.store.count_events, request.app, request.model_version,
                                          request.start, request.end)
            if now == last and now > 0:
                return
            last = now
            await asyncio.sleep(self.settle_poll_s)
            waited += self.settle_poll_s

    async def handle(self, request: RetrainRequest, attempt: int = 1, job_id: str | None = None) -> None:
        """Curate, snapshot and launch attempt ``attempt`` of a request (or the job ``job_id``, resumed)."""
        settings = self.settings
        job_id = job_id or job_id_for(request.request_id, attempt)
        self.in_flight[request.request_id] = job_id
        await self.report(request, job_id, "queued", message=request.reason[:1000])
        await self.settled(request)
        try:
            if self._redact is None:
                self._redact = await asyncio.to_thread(self.redactor, settings)
            curated = await asyncio.to_thread(curate, self.store, request, self._redact,
                                              settings.retrain.regression_rows)
            snapshot = await asyncio.to_thread(write_snapshot, settings.datasets_dir, request, curated)
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure, the stream goes on
            log.exception("curation for %r failed", request.request_id)
            await self.report(request, job_id, "failed", message=f"curation failed: {type(exc).__name__}: {exc}"[:2000])
            return
        rows = len(curated.train)
        log.info("snapshot %s: %d training rows, %d for review (%s)", snapshot.version, rows, len(curated.review),
                 snapshot.path)
        if rows < settings.retrain.min_rows:
            await self.report(request, job_id, "failed", dataset_version=snapshot.version, dataset_rows=rows,
                              message=f"only {rows} training rows after curation (at least {settings.retrain.min_rows}"
                                      f" needed: DRIFTWARDEN_RETRAIN__MIN_ROWS); snapshot {snapshot.path}")
            return
        job = JobSpec(job_id=job_id, snapshot_dir=snapshot.path, out_dir=settings.jobs_dir / job_id)
        job.current_adapter = await asyncio.to_thread(self.current_adapter, request.app, job)
        lag_s = (datetime.now(UTC) - request.requested_at).total_seconds()
        await self.launch(request, job, snapshot.version, rows, lag_s, "")

    def current_adapter(self, app: str, job: JobSpec) -> Path | None:
        """The app's champion adapter, copied into the job's directory (the job starts from it and
        compares with it); None: the base model. Which champion it was (none, or unknown when the
        registry could not say) is kept in ``<job>/started-from.json``: a job compared with another
        model than the champion at its end is held, not promoted (:meth:`decide`)."""
        started_from: str | None = None
        path = None
        try:
            champion = self.get_registry().champion(app)
            started_from = "" if champion is None else champion.version
            if champion is not None:
                path = self.get_registry().fetch_adapter(champion, private_dir(job.out_dir) / CURRENT_ADAPTER)
                log.info("job %s starts from %s version %s (the champion)", job.job_id, champion.name,
                         champion.version)
        except DriftwardenError as exc:
            started_from, path = None, None
            log.warning("job %s starts from the base model: the champion of %r cannot be read (%s); its decision "
                        "will be held for a person", job.job_id, app, exc)
        try:
            (private_dir(job.out_dir) / STARTED_FROM).write_text(json.dumps({"champion": started_from}))
        except OSError as exc:
            log.warning("cannot write %s (%s)", job.out_dir / STARTED_FROM, exc)
        return path

    def get_registry(self) -> ModelRegistry:
        if self.registry is None:
            self.registry = ModelRegistry(self.settings)
        return self.registry

    async def launch(self, request, job: JobSpec, version: str, rows: int, lag_s: float | None, note: str) -> None:
        try:
            state = await asyncio.to_thread(self.launcher.launch, job)
        except DriftwardenError as exc:
            await self.report(request, job.job_id, "failed", dataset_version=version, dataset_rows=rows,
                              message=str(exc))
            return
        await self.report(request, job.job_id, state, dataset_version=version, dataset_rows=rows,
                          metrics={"request_to_start_s": lag_s} if lag_s is not None else {},
                          message=f"{self.launcher.name} job on snapshot {version}{note}", output_dir=str(job.out_dir))
        self.start_watch(request, job, version, rows, lag_s, state)

    def start_watch(self, request, job: JobSpec, version: str, rows: int, lag_s: float | None, state: str) -> None:
        if not self.launcher.watchable:
            return  # the launch wrote what a person runs: nothing to follow until then
        task = self.spawn(self.watch(request, job, version, rows, lag_s, state), f"watch-{job.job_id}")
        self.watches.add(task)
        if hasattr(task, "add_done_callback"):
            task.add_done_callback(self.watches.discard)

    async def watch(self, request, job: JobSpec, version: str, rows: int, lag_s: float | None, state: str) -> None:
        try:
            while state in ("queued", "running"):
                await asyncio.sleep(self.launcher.poll_interval_s)
                try:
                    new, message = await asyncio.to_thread(self.launcher.poll, job)
                except Exception as exc:  # noqa: BLE001 - a poll that fails ends the watch as the job's failure
                    new, message = "failed", f"cannot follow the job: {type(exc).__name__}: {exc}"
                if new == state:
                    continue
                state = new
                if state in FINAL:
                    await self.finish(request, job, version, rows, lag_s, state, message)
                else:
                    await self.report(request, job.job_id, state, dataset_version=version, dataset_rows=rows,
                                      message=message, output_dir=str(job.out_dir))
        except Exception as exc:  # noqa: BLE001 - a task must not die silently
            log.error("watching retraining job %s stopped: %s: %s; the job's outputs are in %s; restart the sink "
                      "to resume watching it", job.job_id, type(exc).__name__, str(exc)[:300], job.out_dir)

    async def finish(self, request, job: JobSpec, version: str, rows: int, lag_s: float | None, state: str,
                     message: str) -> None:
        """Report a final state (with the launcher's result when it succeeded), recorded beside the job's outputs first."""
        metrics: dict[str, float] = {}
        result = None
        if state == "succeeded":
            try:
                result = await asyncio.to_thread(self.launcher.result, job)
                metrics, message = dict(result.metrics), result.message
                if lag_s is not None:
                    metrics["request_to_start_s"] = lag_s
            except DriftwardenError as exc:
                state, message = "failed", str(exc)
        await asyncio.to_thread(record, job, state, message)
        decided: dict = {}
        if result is not None:
            decided = await self.decide(request, job, rows, metrics, result.raw)
        status = await self.report(request, job.job_id, state, dataset_version=version, dataset_rows=rows,
                                   metrics=metrics, message=message, output_dir=str(job.out_dir), **decided)
        if decided and self.notify is not None:
            try:
                await self.notify(status, Table.from_flat(metrics).render())
            except Exception as exc:  # noqa: BLE001 - the decision stands; only its notice is lost
                log.error("the decision on job %s could not be sent to the alert receivers (%s: %s); it is in "
                          "retrain_jobs and the registry", job.job_id, type(exc).__name__, str(exc)[:300])

    async def decide(self, request, job: JobSpec, rows: int, metrics: dict[str, float], raw: dict) -> dict:
        """Register the job's adapter in MLflow, judge its evaluation by the promotion policy, and
        record the decision (the ``champion`` alias on promote). Never raises: a registry that
        cannot be reached holds the candidate, saying why."""
        try:
            policy = self.promotion if self.promotion is not None else load_policy(self.settings.policy_file).promotion
        except DriftwardenError as exc:  # the file changed under a running sink: hold, saying why
            policy = PromotionPolicy()
            log.error("the promotion rules cannot be read (%s); job %s is held for a person", exc, job.job_id)
        verdict = decide(Table.from_flat(metrics), policy)
        try:
            stale = await asyncio.to_thread(self.stale_comparison, request.app, job)
        except DriftwardenError as exc:
            stale = f"the champion cannot be read now ({exc}): held for a person"
        if stale is not None:
            verdict = Verdict("hold", [stale, *verdict.reasons])
        out: dict = {"decision": verdict.decision, "decision_reasons": verdict.reasons}
        try:
            registry = self.get_registry()
            manifest = await asyncio.to_thread(load_manifest, job.snapshot_dir)
            info = await asyncio.to_thread(
                registry.record, app=request.app, job_id=job.job_id, out_dir=job.out_dir,
                tags=version_tags(request, job.job_id, manifest, output_dir=job.out_dir, launcher=self.launcher.name,
                                  dataset_rows=rows), params=job_params(raw), metrics=metrics,
                manifest=manifest)
        except DriftwardenError as exc:
            log.error("job %s is not registered (%s); it is held for a person — fix the registry "
                      "(DRIFTWARDEN_RETRAIN__MLFLOW_TRACKING_URI) and decide with driftwarden models", job.job_id,
                      exc)
            out = {"decision": "hold", "decision_reasons": [f"not registered: {exc}", *verdict.reasons]}
        else:
            out.update(registered_model=info.name, registered_version=info.version)
            try:
                await asyncio.to_thread(registry.set_decision, info.name, info.version, verdict.decision, "policy",
                                        "; ".join(verdict.reasons))
            except DriftwardenError as exc:
                log.error("job %s is registered as %s version %s but the decision could not be written there (%s); "
                          "it is held for a person", job.job_id, info.name, info.version, exc)
                out.update(decision="hold", decision_reasons=[
                    f"registered, but the policy's decision ({verdict.decision}) could not be written to the "
                    f"registry: {exc}", *verdict.reasons])
        out["decision_reasons"] = [r[:1000] for r in out["decision_reasons"]][:MAX_REASONS]
        log.info("job %s: %s (%s)", job.job_id, out["decision"], "; ".join(out["decision_reasons"])[:1000])
        return out

    def stale_comparison(self, app: str, job: JobSpec) -> str | None:
        """Why the job's evaluation does not compare with today's champion (None when it does): the
        champion could not be read when the job started, or it changed since (another job was
        promoted meanwhile). A job without ``started-from.json`` (an older one) is not checked."""
        try:
            started = json.loads((job.out_dir / STARTED_FROM).read_text())["champion"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if started is None:
            return ("the champion could not be read when the job started, so the candidate was compared with the "
                    "base model, maybe not with the champion: held for a person")
        now = self.get_registry().champion(app)
        now_version = "" if now is None else now.version
        if now_version != started:
            return (f"the champion changed since the job started (version {started or 'none'} then, "
                    f"{now_version or 'none'} now): the candidate was not compared with it; held for a person")
        return None

    async def resume(self, request, last: dict) -> None:
        """Pick up a job that was queued or running when the process stopped."""
        settings = self.settings
        job_id = last.get("job_id") or job_id_for(request.request_id)
        self.in_flight[request.request_id] = job_id
        version, rows = last["dataset_version"], last["dataset_rows"]
        if not version:  # stopped before its snapshot was written: start over (same content, same snapshot)
            if isinstance(request, RetrainRequest):
                log.info("retraining request %r was interrupted before its snapshot; starting it again",
                         request.request_id)
                await self.handle(request, job_id=job_id)
            else:
                await self.report(request, job_id, "failed", message="interrupted by a restart before its snapshot "
                                  "was written, and the request is not in the store to start it again; send it again")
            return
        try:
            snapshot = await asyncio.to_thread(find_snapshot, settings.datasets_dir, version)
        except DriftwardenError:
            await self.report(request, job_id, "failed", dataset_version=version, dataset_rows=rows,
                              message=f"interrupted by a restart, and its snapshot {version} is no longer under "
                                      f"{settings.datasets_dir}: it cannot be resumed; send the request again")
            return
        job = JobSpec(job_id=job_id, snapshot_dir=snapshot.path, out_dir=settings.jobs_dir / job_id)
        if (job.out_dir / CURRENT_ADAPTER).is_dir():
            job.current_adapter = job.out_dir / CURRENT_ADAPTER
        found = await asyncio.to_thread(self.launcher.adopt, job)
        if found is None:
            log.warning("retraining job %s was %s when the sink stopped and its process is gone: launching it again",
                        job_id, last["status"])
            await self.launch(request, job, version, rows, None, " (launched again after a restart)")
            return
        state, message = found
        if state in FINAL:
            await self.finish(request, job, version, rows, None, state, message)
            return
        if state != last["status"]:
            await self.report(request, job_id, state, dataset_version=version, dataset_rows=rows, message=message,
                              output_dir=str(job.out_dir))
        log.info("retraining job %s: %s after a restart; watching it (%s)", job_id, state, message)
        self.start_watch(request, job, version, rows, None, state)

    async def fail_unexpectedly(self, request, exc: BaseException, job_id: str | None = None) -> None:
        log.error("retraining request %r failed unexpectedly (%s: %s); it is reported failed and the stream goes "
                  "on — look at the error, then send the request again or run `driftwarden finetune` by hand",
                  request.request_id, type(exc).__name__, str(exc)[:300])
        try:
            job_id = job_id or self.in_flight.get(request.request_id) or job_id_for(request.request_id)
            await self.report(request, job_id, "failed",
                              message=f"unexpected error: {type(exc).__name__}: {exc}"[:2000])
        except Exception as again:  # noqa: BLE001 - nothing more to do than say so
            log.error("the failure of retraining request %r could not be reported either (%s: %s)",
                      request.request_id, type(again).__name__, str(again)[:300])
