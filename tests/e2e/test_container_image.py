"""The container image, built and run for real: ``deploy/container/build.sh`` builds it with podman
from Debian packages, the broker runs on the host, ``driftwarden worker`` and ``driftwarden sink``
run in containers against it, 200 events replayed from the host are read back from the sink, the
image's health check passes, and both containers stop cleanly on SIGTERM.

Skipped, with the reason, where podman, runc or debootstrap is missing or the test does not run
as root (podman with runc, as DESIGN.md says works on these machines); deploy/local/install.sh
installs them as root, so CI runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from driftwarden.core.ingest.datasets import ReplayOptions
from driftwarden.core.settings import load_settings
from driftwarden.deploy.local.broker import LocalBroker, free_port
from driftwarden.detectors.registry import unsampled_names
from driftwarden.pkg_data import path as data_path
from driftwarden.streams.publisher import Publisher
from driftwarden.streams.replay import replay_file
from driftwarden.streams.sink_pages import sink_page

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 200

missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} missing: deploy/local/install.sh installs "
                                              "them as root (apt-get install podman runc debootstrap)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="podman with runc runs as root on these machines (DESIGN.md)"),
    pytest.mark.timeout(2400),
]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "container" / "containers.conf")})
    if check:
        assert done.returncode == 0, f"podman {' '.join(args[:3])}: {done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built by the project's script (its base and layers are cached between runs)."""
    done = subprocess.run(["bash", str(ROOT / "deploy" / "container" / "build.sh")], capture_output=True, text=True,
                          timeout=1200, cwd=ROOT)
    assert done.returncode == 0, f"build.sh failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout.strip().splitlines()[-1]


def stats(port: int) -> dict:
    try:
        return sink_page(port, "stats", 5.0)
    except Exception:  # noqa: BLE001 - not answering yet
        return {}


def test_the_image_runs_a_worker_and_a_sink_that_store_what_the_host_publishes(image, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # the image's user (10001) writes the sink's store here
    broker_port, sink_port, worker_port = free_port(), free_port(), free_port()
    suffix = uuid.uuid4().hex[:8]
    names = {"sink": f"dw-sink-{suffix}", "worker": f"dw-worker-{suffix}"}
    common = ["run", "-d", "--network", "host", "-e", f"DRIFTWARDEN_KAFKA_BOOTSTRAP=127.0.0.1:{broker_port}",
              "-e", f"DRIFTWARDEN_SINK_WEB_PORT={sink_port}", "-e", "DRIFTWARDEN_RETRAIN__ENABLED=false",
              "-e", "DRIFTWARDEN_BATCH_LINGER_MS=100", "-e", "DRIFTWARDEN_SINK_LINGER_MS=200"]
    with LocalBroker(broker_port, log_file=tmp_path / "broker.log"):
        try:
            podman(*common, "--name", names["sink"], "-v", f"{data}:/var/lib/driftwarden", image, "sink")
            podman(*common, "--name", names["worker"], "--read-only", "--tmpfs", "/tmp:rw,U", "--tmpfs",
                   "/var/lib/driftwarden:rw,U", "-e", f"DRIFTWARDEN_WORKER_WEB_PORT={worker_port}", image, "worker")
            deadline = time.monotonic() + 300
            while not stats(sink_port) and time.monotonic() < deadline:
                time.sleep(2)
            assert stats(sink_port), "the sink in its container never answered /stats/"

            settings = load_settings(kafka_bootstrap=f"127.0.0.1:{broker_port}", data_dir=tmp_path / "host")
            with Publisher(settings.kafka_bootstrap, settings=settings) as pub:
                sent = replay_file(data_path("halueval_general"), pub.publish,
                                   ReplayOptions(id_prefix=f"image-{suffix}", app="in-a-container"), limit=EVENTS)
                assert pub.flush(60)
            assert sent["published"] == EVENTS

            deadline = time.monotonic() + 600
            counts: dict = {}
            while time.monotonic() < deadline:
                counts = stats(sink_port)
                detectors = counts.get("detections_by_detector", {})
                if counts.get("events", 0) >= EVENTS and detectors and all(  # hallucination samples: fewer
                        detectors.get(d, {}).get("results", 0) >= EVENTS for d in unsampled_names(load_settings(detectors={}))):
                    break
                time.sleep(2)
            assert counts.get("events") == EVENTS, json.dumps(counts)[:2000]
            assert counts.get("dead_letters", 0) == 0
            assert {"toxicity", "pii", "prompt_injection"} <= set(counts["detections_by_detector"])

            for name in names.values():  # the image's HEALTHCHECK command, run in each container
                assert podman("exec", name, "python3", "/usr/local/bin/driftwarden-healthcheck",
                              check=False).returncode == 0, name
            assert podman("exec", names["worker"], "id", "-u").stdout.strip() == "10001"
        finally:
            for name in names.values():
                podman("stop", "--time", "60", name, timeout=120, check=False)
            exits = {name: podman("inspect", name, "--format", "{{.State.ExitCode}}", check=False).stdout.strip()
                     for name in names.values()}
            logs = {name: podman("logs", "--tail", "20", name, check=False).stderr for name in names.values()}
            for name in names.values():
                podman("rm", "-f", name, check=False)
    assert all(code == "0" for code in exits.values()), f"exit codes on SIGTERM: {exits}; logs: {logs}"
