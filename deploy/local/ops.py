"""Prometheus and Alertmanager beside the local stack, as plain processes on 127.0.0.1.

Debian's ``prometheus`` and ``prometheus-alertmanager`` packages (``deploy/local/install.sh``
installs them when run as root). :class:`OpsProcess` starts one with a configuration written
into its own directory and waits until it answers; the integration tests use them, and so can a
person who wants to see the stack's metrics and alerts on one machine::

    prom = start_prometheus(workdir, targets={"driftwarden-sink": ["127.0.0.1:6066"]},
                            rules=[Path("deploy/prometheus/rules.yml")])
    am = start_alertmanager(workdir, resolve_timeout_s=300)
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from driftwarden.core.errors import DriftwardenError
from driftwarden.deploy.local.broker import free_port, stop_process

log = logging.getLogger(__name__)


class OpsError(DriftwardenError):
    """Prometheus or Alertmanager is missing or did not start."""

    def __init__(self, what: str, detail: str):
        super().__init__(f"{what} {detail}")


class OpsProcess:
    """One Prometheus or Alertmanager process; stop it with :meth:`stop` (or use ``with``)."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path, ready_path: str):
        self.name, self.argv, self.port, self.workdir, self.ready_path = name, argv, port, workdir, ready_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> OpsProcess:
        log_file = (self.workdir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(self.argv, stdout=log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OpsError(self.name, f"exited with code {self.process.returncode}; its log: "
                                          f"{self.workdir / (self.name + '.log')}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1):
                    log.info("%s answers on %s", self.name, self.url)
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise OpsError(self.name, f"did not answer on {self.url}{self.ready_path} within {timeout_s:.0f} s")

    def get_json(self, path: str, timeout_s: float = 5.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout_s) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def __enter__(self) -> OpsProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise OpsError(name, f"is not installed: apt-get install {package} (deploy/local/install.sh does, as root)")
    return path


def start_prometheus(workdir: Path, targets: dict[str, list[str]], rules: list[Path] = (),
                     scrape_interval_s: float = 1.0, port: int | None = None,
                     bearer_token: str | None = None) -> OpsProcess:
    """Prometheus scraping ``targets`` (``{job: ["host:port", ...]}``) every ``scrape_interval_s``,
    with ``rules`` loaded."""
    workdir = Path(workdir) / "prometheus"
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for job, hosts in targets.items():
        entry = {"job_name": job, "static_configs": [{"targets": list(hosts)}]}
        if bearer_token:
            entry["authorization"] = {"credentials": bearer_token}
        jobs.append(entry)
    every = f"{max(1, round(scrape_interval_s * 1000))}ms"
    config = {"global": {"scrape_interval": every, "evaluation_interval": every},
              "rule_files": [str(Path(r).resolve()) for r in rules], "scrape_configs": jobs}
    (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    port = port or free_port()
    argv = [binary("prometheus", "prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]
    return OpsProcess("prometheus", argv, port, workdir, "/-/ready").start()


def start_alertmanager(workdir: Path, resolve_timeout_s: float = 300.0, port: int | None = None) -> OpsProcess:
    """Alertmanager with one route to a receiver that sends nowhere (alerts are read back over its
    API), clustering off, ``resolve_timeout`` as given."""
    workdir = Path(workdir) / "alertmanager"
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"global": {"resolve_timeout": f"{max(1, round(resolve_timeout_s * 1000))}ms"},
              "route": {"receiver": "null", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                        "repeat_interval": "1h"},
              "receivers": [{"name": "null"}]}
    (workdir / "alertmanager.yml").write_text(json.dumps(config, indent=2))
    port = port or free_port()
    argv = [binary("prometheus-alertmanager", "prometheus-alertmanager"),
            f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    return OpsProcess("alertmanager", argv, port, workdir, "/-/ready").start()
