"""Launchers run the fine-tuning job: a local subprocess (default) or a Kubernetes Job.

Both run the same command, ``driftwarden finetune --snapshot DIR --out DIR``, behind one small
protocol: ``launch(job)`` starts it, ``poll(job)`` says queued, running, succeeded or failed.
The Kubernetes launcher renders a ``batch/v1`` Job manifest (written beside the job's outputs);
with ``kubectl`` configured it applies it and polls the Job's status, otherwise the manifest is
the output and the job stays ``queued`` until someone applies it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from driftwarden.core.errors import RetrainError
from driftwarden.core.settings import Settings, child_environment

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

    def argv(self, python: str | None = None) -> list[str]:
        head = [python, "-m", "driftwarden"] if python else ["driftwarden"]
        return [*head, "finetune", "--snapshot", str(self.snapshot_dir), "--out", str(self.out_dir),
                "--job-id", self.job_id]


class Launcher(Protocol):
    name: str
    poll_interval_s: float

    def launch(self, job: JobSpec) -> State: ...

    def poll(self, job: JobSpec) -> tuple[State, str]: ...


class LocalLauncher:
    """A subprocess on this machine, with the same settings as the parent; log in ``<out>/job.log``."""

    name = "local"
    poll_interval_s = 1.0

    def __init__(self, settings: Settings):
        self.settings = settings

    def launch(self, job: JobSpec) -> State:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        log_file = (job.out_dir / "job.log").open("ab")
        try:
            job.handle = subprocess.Popen(job.argv(sys.executable), stdout=log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=child_environment(self.settings))
        except OSError as exc:
            raise RetrainError("launch", f"cannot start the local job: {exc}") from exc
        finally:
            log_file.close()
        log.info("job %s started (pid %d), log %s", job.job_id, job.handle.pid, job.out_dir / "job.log")
        return "running"

    def poll(self, job: JobSpec) -> tuple[State, str]:
        code = job.handle.poll()
        if code is None:
            return "running", ""
        if code == 0:
            return "succeeded", ""
        return "failed", f"exit code {code}; last lines of {job.out_dir / 'job.log'}:\n{_tail(job.out_dir / 'job.log')}"


class KubernetesLauncher:
    """A Kubernetes Job running the driftwarden image, datasets and outputs on a shared volume."""

    name = "kubernetes"
    poll_interval_s = 10.0
    MOUNT = "/var/lib/driftwarden"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.config = settings.retrain

    def container_path(self, path: Path, root: Path, sub: str) -> str:
        return f"{self.MOUNT}/{sub}/{Path(path).resolve().relative_to(root)}"

    def manifest(self, job: JobSpec) -> dict:
        c = self.config
        name = "driftwarden-finetune-" + "".join(ch if ch.isalnum() else "-" for ch in job.job_id.lower())[:40].strip("-")
        snapshot = self.container_path(job.snapshot_dir, self.settings.datasets_dir, "datasets")
        out = self.container_path(job.out_dir, self.settings.jobs_dir, "jobs")
        env = [{"name": "DRIFTWARDEN_RETRAIN__MAX_STEPS", "value": str(c.max_steps)},
               {"name": "DRIFTWARDEN_RETRAIN__BATCH_SIZE", "value": str(c.batch_size)},
               {"name": "DRIFTWARDEN_RETRAIN__DEVICE", "value": "cuda" if c.k8s_gpu else "cpu"}]
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
                                        "--job-id", job.job_id],
                            "env": env,
                            "resources": resources,
                            "volumeMounts": [{"name": "data", "mountPath": self.MOUNT}],
                        }],
                        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": c.k8s_datasets_claim}}],
                    },
                },
            },
        }

    def launch(self, job: JobSpec) -> State:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest(job)
        path = job.out_dir / "job.json"
        path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
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
