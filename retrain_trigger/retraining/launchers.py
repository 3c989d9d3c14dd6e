"""Launchers run the fine-tuning job: a local subprocess (default) or a Kubernetes Job.

Both run the same command, ``driftwarden finetune --snapshot DIR --out DIR``, behind one small
protocol: ``launch(job)`` starts it, ``poll(job)`` says queued, running, succeeded or failed,
``adopt(job)`` finds a job that an earlier sink process started (after a restart), and
``record(job, state, message)`` keeps a final outcome beside the job's outputs.
The Kubernetes launcher renders a ``batch/v1`` Job manifest (written beside the job's outputs);
with ``kubectl`` configured it applies it and polls the Job's status, otherwise the manifest is
the output and the job stays ``queued`` until someone applies it.

A job sees only the settings it reads (:data:`~driftwarden.retrain_trigger.retraining.finetune.JOB_SETTINGS`)
and, locally, an allow-listed environment (:func:`~driftwarden.core.settings.job_environment`):
no secret of the sink. Its output directory is the owner's only.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import SecretStr

from driftwarden.core.errors import RetrainError
from driftwarden.core.settings import Settings, job_environment, setting_text, setting_variables
from driftwarden.retrain_trigger.retraining.finetune import JOB_SETTINGS
from driftwarden.retrain_trigger.retraining.snapshots import FILE_MODE, private_dir

log = logging.getLogger(__name__)

State = Literal["queued", "running", "succeeded", "failed"]


@dataclass
class JobSpec:
    job_id: str
    snapshot_dir: Path
    out_dir: Path
    handle: object = None
    """The launcher's own reference (a Popen, a Job name)."""
    extra: dict = field(default_factory=dict)
    current_adapter: Path | None = None
    """The champion's adapter the job starts from and compares with (None: the base model)."""

    def argv(self, python: str | None = None) -> list[str]:
        head = [python, "-m", "driftwarden"] if python else ["driftwarden"]
        tail = ["--current-adapter", str(self.current_adapter)] if self.current_adapter else []
        return [*head, "finetune", "--snapshot", str(self.snapshot_dir), "--out", str(self.out_dir),
                "--job-id", self.job_id, *tail]


class Launcher(Protocol):
    """Starts fine-tuning jobs somewhere and says how they are doing; the workflow
    (``workflow.py``) knows nothing else of where a job runs."""

    name: str
    poll_interval_s: float

    @property
    def watchable(self) -> bool:
        """Whether :meth:`poll` can follow a launched job (False: the launch wrote what a person runs)."""
        ...

    def launch(self, job: JobSpec) -> State: ...

    def poll(self, job: JobSpec) -> tuple[State, str]: ...

    def adopt(self, job: JobSpec) -> tuple[State, str] | None: ...

    def result(self, job: JobSpec) -> JobResult:
        """The metrics and a one-line message of a job that succeeded (raises RetrainError when
        there are none to read)."""
        ...


@dataclass(frozen=True)
class JobResult:
    metrics: dict[str, float]
    message: str
    raw: dict = field(default_factory=dict)
    """The whole ``metrics.json`` (parameters, the evaluation table)."""


def read_result(job: JobSpec) -> JobResult:
    """What ``driftwarden finetune`` wrote: ``<out>/metrics.json`` (numbers), the adapter beside it."""
    try:
        raw = json.loads((job.out_dir / "metrics.json").read_text(encoding="utf-8"))
        metrics = {k: float(v) for k, v in raw.items() if isinstance(v, int | float) and not isinstance(v, bool)
                   and math.isfinite(v)}  # a NaN loss is no figure (and no status may carry one)
        message = (f"held-out loss {raw['loss_before']:.4f} -> {raw['loss_after']:.4f} on {raw['held_out_rows']} "
                   f"rows; adapter in {job.out_dir / 'adapter'}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RetrainError("result", f"the job exited 0 but wrote no readable metrics.json: {exc}") from exc
    return JobResult(metrics, message, raw)


OUTCOME = "outcome.json"
PID_FILE = "job.pid"
#: A job whose process vanished (the machine or the sink restarted) is launched again at most
#: this many times in all; then it is failed, saying so.
MAX_LAUNCHES = 3


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, created (or truncated) readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    path.chmod(FILE_MODE)


def record(job: JobSpec, state: State, message: str) -> None:
    """Keep a job's final outcome beside its outputs, so that a restarted sink neither launches a
    failed job again nor waits for one that ended."""
    try:
        _write_private(job.out_dir / OUTCOME, json.dumps({"state": state, "message": message[:2000]}))
    except OSError as exc:
        log.warning("cannot record the outcome of job %s in %s: %s", job.job_id, job.out_dir, exc)


def recorded(job: JobSpec) -> tuple[State, str] | None:
    try:
        raw = json.loads((job.out_dir / OUTCOME).read_text(encoding="utf-8"))
        if raw.get("state") in ("succeeded", "failed"):
            return raw["state"], str(raw.get("message", ""))
    except (OSError, ValueError, AttributeError):
        pass
    return None


class _Adopted:
    """A job process started by an earlier sink: not our child, so watched by its pid."""

    def __init__(self, pid: int, out_dir: Path):
        self.pid, self.out_dir = pid, out_dir

    def poll(self) -> int | None:
        try:  # our own child after all (same process): reap it and get its exit code
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                return None
            return os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            pass
        if _alive(self.pid, self.out_dir):
            return None
        # Ended while no one was its parent: the exit code is lost; its outputs tell.
        return 0 if (self.out_dir / "metrics.json").is_file() else -1


def _alive(pid: int, out_dir: Path) -> bool:
    """Whether ``pid`` runs and is this job (its command line names the output directory)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True  # no /proc: trust the signal check
    if state == "Z":
        return False
    # An empty command line: a process still being set up (or one /proc hides): trust the signal
    # check rather than launch a second job into the same directory.
    return cmdline == [b""] or os.fsencode(str(out_dir)) in cmdline


def exit_reason(code: int, job: JobSpec) -> str:
    """Why a local job ended without success, in words (its partial outputs are never taken as a result)."""
    if code == -1 and isinstance(job.handle, _Adopted):
        return "it ended while the sink was restarting, without writing metrics.json"
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        return (f"killed by signal {-code} ({name}) before it finished; its partial outputs in {job.out_dir} are "
                f"not registered — send the request again to run it anew")
    return f"exit code {code}"


class LocalLauncher:
    """A subprocess on this machine, with the job's settings and an allow-listed environment only;
    log in ``<out>/job.log``, pid in ``<out>/job.pid``."""

    name = "local"
    poll_interval_s = 1.0
    watchable = True

    def __init__(self, settings: Settings):
        self.settings = settings

    def result(self, job: JobSpec) -> JobResult:
        return read_result(job)

    def environment(self) -> dict[str, str]:
        """What the job process gets: no secret of the sink (see :func:`job_environment`)."""
        return job_environment(self.settings, JOB_SETTINGS)

    def launch(self, job: JobSpec) -> State:
        try:
            private_dir(job.out_dir)
            launches = self._launches(job) + 1
            fd = os.open(job.out_dir / "job.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        except OSError as exc:
            raise RetrainError("launch", f"cannot prepare {job.out_dir}: {exc}") from exc
        log_file = os.fdopen(fd, "ab")
        try:
            job.handle = subprocess.Popen(job.argv(sys.executable), stdout=log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=self.environment())
        except OSError as exc:
            raise RetrainError("launch", f"cannot start the local job: {exc}") from exc
        finally:
            log_file.close()
        try:
            _write_private(job.out_dir / PID_FILE, f"{job.handle.pid} {launches}\n")
        except OSError as exc:
            log.warning("cannot write %s (%s): after a restart this job cannot be found", job.out_dir / PID_FILE,
                        exc)
        log.info("job %s started (pid %d), log %s", job.job_id, job.handle.pid, job.out_dir / "job.log")
        return "running"

    def poll(self, job: JobSpec) -> tuple[State, str]:
        code = job.handle.poll()
        if code is None:
            return "running", ""
        if code == 0:
            return "succeeded", ""
        log_file = job.out_dir / "job.log"
        return "failed", f"{exit_reason(code, job)}; last lines of {log_file}:\n{_tail(log_file)}"

    def adopt(self, job: JobSpec) -> tuple[State, str] | None:
        """After a restart: the job's recorded outcome, ``running`` (watched by pid) when its process
        still runs, ``succeeded`` when it ended with its metrics written; None when it is gone and
        may be launched again; ``failed`` when it was launched :data:`MAX_LAUNCHES` times already."""
        if (done := recorded(job)) is not None:
            return done
        try:
            pid = int((job.out_dir / PID_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if pid and _alive(pid, job.out_dir):
            job.handle = _Adopted(pid, job.out_dir)
            return "running", f"process {pid} still runs: watching it again after a restart"
        if (job.out_dir / "metrics.json").is_file():
            return "succeeded", ""
        if self._launches(job) >= MAX_LAUNCHES:
            return "failed", (f"the job's process was gone after {MAX_LAUNCHES} launches (the sink or the machine "
                              f"restarted while it ran); not launched again — look at {job.out_dir / 'job.log'}")
        return None

    @staticmethod
    def _launches(job: JobSpec) -> int:
        try:
            return int((job.out_dir / PID_FILE).read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return 0


class KubernetesLauncher:
    """A Kubernetes Job running the driftwarden image, datasets and outputs on a shared volume."""

    name = "kubernetes"
    poll_interval_s = 10.0
    MOUNT = "/var/lib/driftwarden"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.config = settings.retrain

    @property
    def watchable(self) -> bool:
        """Only with kubectl configured: otherwise the manifest is the output, applied by a person."""
        return bool(self.config.kubectl)

    def result(self, job: JobSpec) -> JobResult:
        return read_result(job)  # the Job writes to the shared volume, which out_dir is

    def container_path(self, path: Path, root: Path, sub: str) -> str:
        return f"{self.MOUNT}/{sub}/{Path(path).resolve().relative_to(root)}"

    def manifest(self, job: JobSpec) -> dict:
        c = self.config
        name = "driftwarden-finetune-" + "".join(ch if ch.isalnum() else "-" for ch in job.job_id.lower())[:40].strip("-")
        snapshot = self.container_path(job.snapshot_dir, self.settings.datasets_dir, "datasets")
        out = self.container_path(job.out_dir, self.settings.jobs_dir, "jobs")
        env = self.env(JOB_SETTINGS)
        current = (["--current-adapter", self.container_path(job.current_adapter, self.settings.jobs_dir, "jobs")]
                   if job.current_adapter else [])
        resources = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}
        if c.k8s_gpu:
            resources["limits"]["nvidia.com/gpu"] = 1
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": c.k8s_namespace,
                         "labels": {"app.kubernetes.io/name": "driftwarden", "app.kubernetes.io/component": "finetune",
                                    "driftwarden/job-id": name[-63:]}},
            "spec": {
                "backoffLimit": 1,
                "ttlSecondsAfterFinished": 86_400,
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "driftwarden",
                                            "app.kubernetes.io/component": "finetune"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "finetune",
                            "image": c.k8s_image,
                            "command": ["driftwarden", "finetune", "--snapshot", snapshot, "--out", out,
                                        "--job-id", job.job_id, *current],
                            "env": env,
                            "resources": resources,
                            "volumeMounts": [{"name": "data", "mountPath": self.MOUNT}],
                        }],
                        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": c.k8s_datasets_claim}}],
                    },
                },
            },
        }

    def env(self, names: tuple[str, ...] | list[str]) -> list[dict]:
        """The container's ``env``: every named setting (the job's, :data:`JOB_SETTINGS`), plain
        values inlined, secrets referenced from the Kubernetes Secret ``k8s_secret`` (key = the
        variable's name) and never written into the manifest. The device follows ``k8s_gpu``."""
        out = []
        for name, value in setting_variables(self.settings, names).items():
            if isinstance(value, SecretStr):
                ref = {"name": self.config.k8s_secret, "key": name}
                out.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
            else:
                out.append({"name": name, "value": setting_text(value)})
        for item in out:
            if item["name"] == "DRIFTWARDEN_RETRAIN__DEVICE":
                item["value"] = "cuda" if self.config.k8s_gpu else "cpu"
        return out

    def launch(self, job: JobSpec) -> State:
        manifest = self.manifest(job)
        path = job.out_dir / "job.json"
        try:
            private_dir(job.out_dir)
            _write_private(path, json.dumps(manifest, indent=2))
        except OSError as exc:
            raise RetrainError("launch", f"cannot write the Job manifest {path}: {exc}") from exc
        job.handle = manifest["metadata"]["name"]
        if not self.config.kubectl:
            log.warning("Kubernetes Job manifest written to %s; no kubectl is configured "
                        "(DRIFTWARDEN_RETRAIN__KUBECTL), so apply it yourself: kubectl apply -f %s", path, path)
            return "queued"
        self._kubectl("apply", "-f", str(path))
        return "queued"

    def poll(self, job: JobSpec) -> tuple[State, str]:
        if not self.config.kubectl:
            return "queued", f"manifest at {job.out_dir / 'job.json'}, not applied (no kubectl configured)"
        status = json.loads(self._kubectl("get", "job", str(job.handle), "-n", self.config.k8s_namespace,
                                          "-o", "json")).get("status", {})
        if status.get("succeeded"):
            return "succeeded", ""
        if status.get("failed"):
            return "failed", "the Job's pod failed; see kubectl logs job/" + str(job.handle)
        return ("running", "") if status.get("active") else ("queued", "")

    def adopt(self, job: JobSpec) -> tuple[State, str] | None:
        """After a restart: the recorded outcome, else the Job's state (by its name, which the job id
        fixes); None when the manifest is not there (launch again)."""
        if (done := recorded(job)) is not None:
            return done
        if not (job.out_dir / "job.json").is_file():
            return None
        job.handle = self.manifest(job)["metadata"]["name"]
        if not self.config.kubectl:
            return "queued", f"manifest at {job.out_dir / 'job.json'}, not applied (no kubectl configured)"
        try:
            return self.poll(job)
        except RetrainError:
            return None  # not found (deleted, expired): apply it again

    def _kubectl(self, *args: str) -> str:
        try:
            done = subprocess.run([self.config.kubectl, *args], capture_output=True, text=True, timeout=60,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RetrainError("launch", f"kubectl {' '.join(args[:2])} failed: {exc}") from exc
        if done.returncode != 0:
            raise RetrainError("launch", f"kubectl {' '.join(args[:2])} exited {done.returncode}: "
                                         f"{done.stderr.strip()[:500]}")
        return done.stdout


def build_launcher(settings: Settings) -> Launcher:
    return {"local": LocalLauncher, "kubernetes": KubernetesLauncher}[settings.retrain.launcher](settings)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
