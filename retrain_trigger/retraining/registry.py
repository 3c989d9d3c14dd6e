"""The model registry: MLflow, where ML teams already look. The one place that talks to it.

Each succeeded job becomes an MLflow run (experiment ``driftwarden/<app>``; run name = the job id)
holding its parameters, its metrics (held-out losses, the evaluation table), its snapshot's
content hash and manifest, its ``metrics.json`` and its adapter as artifacts; and a version of the
registered model ``driftwarden-<app>`` whose source is that adapter, tagged with the app, the
model version, the request, the alert, the snapshot and the job. The alias ``champion`` names the
promoted version: what the next job of that app starts from and is compared with. Decisions
(by the promotion policy or a person) are tags of the version: ``decision``, ``decided_by``,
``decision_reason``, ``decided_at``.

Where: ``DRIFTWARDEN_RETRAIN__MLFLOW_TRACKING_URI`` (a tracking server in production), by default
a SQLite file under the data directory with artifacts beside it; nothing is fetched from the
network otherwise. A job is registered once: :meth:`ModelRegistry.record` finds the version of a
job already registered (by its ``job_id`` tag) instead of adding a second one.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from driftwarden.core.errors import RetrainError
from driftwarden.core.extras import require
from driftwarden.core.secrets import scrub, url_secrets
from driftwarden.core.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def quiet_mlflow() -> None:
    """MLflow sends usage telemetry (it fetches a config from the internet, then posts events)
    unless told not to, and tells itself only under pytest or CI: driftwarden fetches nothing at
    run time, so it is told, before MLflow is imported (which is when MLflow reads it). An
    operator who sets these variables keeps their value."""
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


def model_name(app: str) -> str:
    """The registered model of an app's adapters."""
    return "driftwarden-" + (_SAFE.sub("_", app).strip("_") or "_")[:200]


@dataclass
class VersionInfo:
    """One registered adapter, as the CLI and the workflow show it."""

    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def champion(self) -> bool:
        return CHAMPION in self.aliases


class ModelRegistry:
    """Runs, versions, the champion alias and decisions, through MLflow's client."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.uri = settings.mlflow_tracking_uri
        self._client = None
        self._secrets = url_secrets(self.uri)

    def describe(self) -> str:
        """The registry's address for messages (credentials masked; a local file is shown as it is)."""
        if self.uri.startswith("sqlite:///"):
            return self.uri
        return scrub(self.uri, self._secrets)

    @property
    def client(self):
        if self._client is None:
            quiet_mlflow()
            mlflow = require("mlflow", "registry")
            if self.uri.startswith("sqlite:///"):
                from driftwarden.retrain_trigger.retraining.snapshots import private_dir

                private_dir(Path(self.uri.removeprefix("sqlite:///")).parent)
                private_dir(self.settings.mlflow_artifacts_dir)
            try:
                self._client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; one message says where
                raise RetrainError("registry", f"cannot open the MLflow registry at {self.describe()}: "
                                               f"{type(exc).__name__}: {scrub(str(exc), self._secrets)[:500]}") from exc
        return self._client

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RetrainError:
            raise
        except Exception as exc:  # noqa: BLE001 - turned into one error that says what and where
            raise RetrainError("registry", f"{what} failed at {self.describe()}: {type(exc).__name__}: "
                                           f"{scrub(str(exc), self._secrets)[:500]}") from exc

    # --- writing ---

    def _experiment(self, app: str) -> str:
        name = f"driftwarden/{app}"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (self.settings.mlflow_artifacts_dir / _SAFE.sub("_", app)).as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def find_job(self, app: str, job_id: str) -> VersionInfo | None:
        """The version registered for ``job_id``, if any."""
        name = model_name(app)
        found = self._call("searching the registry", self.client.search_model_versions,
                           f"name = '{name}' and tags.job_id = '{job_id}'")
        return self._info(found[0]) if found else None

    def record(self, *, app: str, job_id: str, out_dir: Path, tags: dict[str, str], params: dict[str, str],
               metrics: dict[str, float], manifest: dict) -> VersionInfo:
        """Log the job's run and register its adapter as a version (once per job)."""
        if (done := self.find_job(app, job_id)) is not None:
            log.info("job %s is registered already as %s version %s", job_id, done.name, done.version)
            return done
        adapter = Path(out_dir) / "adapter"
        if not adapter.is_dir():
            raise RetrainError("registry", f"job {job_id} has no adapter in {adapter}: nothing to register")
        return self._call("registering the job's run and adapter", self._record, app, job_id, out_dir, adapter, tags,
                          params, metrics, manifest)

    def _record(self, app, job_id, out_dir, adapter, tags, params, metrics, manifest) -> VersionInfo:
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException

        client = self.client
        experiment = self._experiment(app)
        all_tags = {**tags, "job_id": job_id, "app": app}
        run = client.create_run(experiment, run_name=job_id, tags=all_tags)
        run_id = run.info.run_id
        now = int(datetime.now(UTC).timestamp() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())],
                         params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())])
        client.log_dict(run_id, manifest, "snapshot/manifest.json")
        if (Path(out_dir) / "metrics.json").is_file():
            client.log_artifact(run_id, str(Path(out_dir) / "metrics.json"))
        client.log_artifacts(run_id, str(adapter), "adapter")
        client.set_terminated(run_id, "FINISHED")
        name = model_name(app)
        try:
            client.create_registered_model(name, description=f"LoRA adapters of app {app!r}, by driftwarden")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(name, source=f"{run.info.artifact_uri}/adapter", run_id=run_id,
                                              tags=all_tags, description=all_tags.get("reason", "")[:1000])
        log.info("registered %s version %s (run %s) in %s", name, version.version, run_id, self.describe())
        return self._info(version)

    def set_decision(self, name: str, version: str, decision: str, who: str, why: str) -> VersionInfo:
        """Record a decision on a version; ``promote`` also points the ``champion`` alias at it."""
        def apply():
            client = self.client
            client.get_model_version(name, version)  # raises when there is no such version
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            for key, value in (("decision", decision), ("decided_by", who), ("decision_reason", why[:5000]),
                               ("decided_at", stamp)):
                client.set_model_version_tag(name, version, key, value)
            if decision == "promote":
                client.set_registered_model_alias(name, CHAMPION, version)
            elif decision == "reject" and CHAMPION in (client.get_model_version(name, version).aliases or []):
                client.delete_registered_model_alias(name, CHAMPION)
            return self._info(client.get_model_version(name, version))
        return self._call(f"recording the decision on {name} version {version}", apply)

    # --- reading ---

    def _info(self, mv) -> VersionInfo:
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC) if mv.creation_timestamp else None
        return VersionInfo(name=mv.name, version=str(mv.version), run_id=mv.run_id or "", source=mv.source or "",
                           tags=dict(mv.tags or {}), aliases=list(mv.aliases or []), created_at=created)

    def versions(self, app: str | None = None) -> list[VersionInfo]:
        """Registered adapters (of ``app``, or of every app), newest first."""
        query = f"name = '{model_name(app)}'" if app is not None else "name LIKE 'driftwarden-%'"
        found = self._call("listing the registry", self.client.search_model_versions, query)
        out = [self._info(mv) for mv in found]
        # search results do not always carry aliases: read them from the registered models
        for info in out:
            if not info.aliases:
                info.aliases = list(self._call("reading a version", self.client.get_model_version, info.name,
                                               info.version).aliases or [])
        return sorted(out, key=lambda v: (v.name, -int(v.version)))

    def version(self, ref: str, app: str | None = None) -> VersionInfo:
        """``ref``: ``NAME/VERSION``, or ``VERSION`` with ``app`` (or the only app that has one)."""
        if "/" in ref:
            name, number = ref.rsplit("/", 1)
        else:
            number = ref
            if app is not None:
                name = model_name(app)
            else:
                names = sorted(m.name for m in self._call("listing the registry", self.client.search_registered_models,
                                                          "name LIKE 'driftwarden-%'"))
                if len(names) != 1:
                    raise RetrainError("registry", f"version {ref!r} is ambiguous or unknown: give --app or "
                                                   f"NAME/VERSION (registered models: {', '.join(names) or 'none'})")
                name = names[0]
        info = self._info(self._call(f"reading {name} version {number}", self.client.get_model_version, name,
                                     number))
        run = self._call("reading the version's run", self.client.get_run, info.run_id) if info.run_id else None
        if run is not None:
            info.metrics = dict(run.data.metrics)
        return info

    def champion(self, app: str) -> VersionInfo | None:
        """The app's champion, None when it has none; RetrainError when the registry cannot say
        (an outage must not pass for "no champion": the job would be compared with the wrong model)."""
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            mv = client.get_model_version_by_alias(model_name(app), CHAMPION)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None  # no such registered model, or no such alias on it
            raise RetrainError("registry", f"cannot read the champion of {app!r} at {self.describe()}: "
                                           f"{scrub(str(exc), self._secrets)[:500]}") from exc
        except Exception as exc:  # noqa: BLE001 - the registry is unreachable or broken: say so
            raise RetrainError("registry", f"cannot read the champion of {app!r} at {self.describe()}: "
                                           f"{type(exc).__name__}: {scrub(str(exc), self._secrets)[:500]}") from exc
        return self._info(mv)

    def fetch_adapter(self, info: VersionInfo, dest: Path) -> Path:
        """The version's adapter files, copied to ``dest`` (a job's own directory)."""
        def fetch():
            if dest.exists():
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            got = Path(self.client.download_artifacts(info.run_id, "adapter", str(dest.parent / ".fetch")))
            got.rename(dest)
            shutil.rmtree(dest.parent / ".fetch", ignore_errors=True)
            return dest
        return self._call(f"fetching the adapter of {info.name} version {info.version}", fetch)


def version_tags(request, job_id: str, manifest: dict, **job: object) -> dict[str, str]:
    """The tags of a job's version: app, model version, request, alert, snapshot; and ``job``'s
    (output directory, launcher, rows: what a later decision's status repeats)."""
    return {"model_version": request.model_version, "request_id": request.request_id,
            "alert_id": getattr(request, "alert_id", ""), "snapshot": manifest.get("version", ""),
            "snapshot_sha256": manifest.get("content_sha256", ""), "reason": getattr(request, "reason", "")[:500],
            "job_id": job_id, **{k: str(v) for k, v in job.items()}}


def job_params(raw: dict) -> dict[str, str]:
    """A job's parameters (from its metrics.json): base model, adapter it started from, LoRA, device."""
    keys = ("base_model", "current_adapter", "device", "precision", "dataset_version", "dataset_sha256")
    out = {k: str(raw.get(k, "")) for k in keys}
    out["lora"] = json.dumps(raw.get("lora", {}))
    return out
