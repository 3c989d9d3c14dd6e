"""The local stack on one machine: the broker (unless a bootstrap is set), the sink, N workers and
the OTLP receiver.

Each faust role runs in its own process (``python -m driftwarden sink|worker``), so a worker
can be killed and restarted like in production; the sink is the one process that owns the
embedded ClickHouse store and serves counts on ``/stats/`` for everyone else.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from driftwarden.core.errors import DriftwardenError
from driftwarden.core.settings import SINK_ONLY_SETTINGS, Settings, child_environment
from driftwarden.streams.sink_pages import read_stats
from driftwarden.deploy.local.broker import LocalBroker, free_port
from driftwarden.streams.topics import ensure_topics

log = logging.getLogger(__name__)

#: Seconds each group of processes (the OTLP receiver, the workers, the sink) gets to stop after
#: SIGTERM before it is killed; the broker then gets 10 s more.
STOP_GRACE_S = 45.0


class StackError(DriftwardenError):
    """A process of the local stack did not start or died."""

    def __init__(self, what: str, detail: str, log_file: Path | None = None):
        hint = f" Its log: {log_file}" if log_file else ""
        super().__init__(f"the local stack's {what} {detail}.{hint}")


@dataclass
class Stack:
    """Processes of the local stack. Build with :func:`start_stack`; stop with :meth:`stop`."""

    settings: Settings
    bootstrap: str
    broker: LocalBroker | None = None
    sink: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    otlp: subprocess.Popen | None = None
    """The OTLP receiver (``DRIFTWARDEN_OTLP__ENABLED``)."""
    log_dir: Path = Path(".")
    restarts: dict[str, list[float]] = field(default_factory=dict)
    """When each process was restarted by :meth:`supervise` (monotonic seconds)."""

    def _spawn(self, role: str, name: str, extra: list[str], nice: int = 0) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = (self.log_dir / f"{name}.log").open("ab")
        cmd = [sys.executable, "-m", "driftwarden", role, "--bootstrap", self.bootstrap, *extra]
        if nice and shutil.which("nice"):
            cmd = ["nice", "-n", str(nice), *cmd]  # nice execs the command: the pid stays the process's
        omit = () if role == "sink" else SINK_ONLY_SETTINGS  # a worker never sees the store's or receivers' secrets
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_environment(self.settings, omit))

    def start_sink(self, timeout_s: float = 120.0) -> None:
        """Start the sink and wait until it answers on ``/stats/`` (its store is open and migrated)."""
        self.spawn_sink()
        self.wait_for_sink(timeout_s)

    def spawn_sink(self) -> None:
        # On one machine, scoring gets the CPU first: the sink batches and catches up (bench/detectors.py).
        self.sink = self._spawn("sink", "sink", [], nice=self.settings.local_sink_nice)

    def wait_for_sink(self, timeout_s: float = 120.0) -> None:
        """Wait until the sink answers on ``/stats/``; StackError if it exits or does not answer in time."""
        if self.sink is None:
            raise StackError("sink", "was not started")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sink.poll() is not None:
                raise StackError("sink", f"exited with code {self.sink.returncode}", self.log_dir / "sink.log")
            try:
                read_stats(self.settings, require_owner=True)
                return
            except DriftwardenError:
                time.sleep(0.3)
        raise StackError("sink", f"did not answer on /stats/ within {timeout_s:.0f} s", self.log_dir / "sink.log")

    def start_otlp(self, timeout_s: float = 60.0) -> None:
        """Start the OTLP receiver and wait until it answers on its port."""
        import urllib.request

        if not self.settings.otlp.port:
            raise StackError("OTLP receiver", "needs a fixed port in the local stack (DRIFTWARDEN_OTLP__PORT is 0)")
        self.otlp = self._spawn("otlp", "otlp", [])
        url = f"http://{self.settings.otlp.host}:{self.settings.otlp.port}/"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.otlp.poll() is not None:
                raise StackError("OTLP receiver", f"exited with code {self.otlp.returncode} (is port "
                                 f"{self.settings.otlp.port} taken? set DRIFTWARDEN_OTLP__PORT)", self.log_dir / "otlp.log")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise StackError("OTLP receiver", f"did not answer on {url} within {timeout_s:.0f} s", self.log_dir / "otlp.log")

    def start_worker(self) -> subprocess.Popen:
        index = len(self.workers)
        proc = self._spawn("worker", f"worker-{index}", self._worker_args(index))
        self.workers.append(proc)
        return proc

    def _worker_args(self, index: int) -> list[str]:
        """Each worker serves /metrics, /healthz and /readyz on a port of its own (a free one unless
        DRIFTWARDEN_WORKER_WEB_PORT is set; then that port plus the worker's index)."""
        base = self.settings.worker_web_port
        if base:
            return ["--web-port", str(base + index)]
        # Not one the sink, the OTLP receiver or the broker is configured for: they may not have bound it yet.
        return ["--web-port", str(free_port(avoid=configured_ports(self.settings)))]

    def check(self) -> None:
        """Raise StackError if a process of the stack died."""
        if self.broker is not None and self.broker.process is not None and self.broker.process.poll() is not None:
            raise StackError("broker", f"exited with code {self.broker.process.returncode}")
        if self.sink is not None and self.sink.poll() is not None:
            raise StackError("sink", f"exited with code {self.sink.returncode}", self.log_dir / "sink.log")
        if self.otlp is not None and self.otlp.poll() is not None:
            raise StackError("OTLP receiver", f"exited with code {self.otlp.returncode}", self.log_dir / "otlp.log")
        for i, w in enumerate(self.workers):
            if w.poll() is not None:
                raise StackError(f"worker {i}", f"exited with code {w.returncode}", self.log_dir / f"worker-{i}.log")

    def supervise(self, max_restarts: int = 5, window_s: float = 600.0) -> list[str]:
        """Restart a sink or worker that exited (an agent that crashes ends its process on purpose,
        so that it restarts and its unacknowledged messages are redelivered); returns what was
        restarted. More than ``max_restarts`` restarts of one process within ``window_s`` raise
        StackError (a crash loop needs a person). The broker is not restarted: it keeps messages
        in memory, so its loss needs a person too."""
        if self.broker is not None and self.broker.process is not None and self.broker.process.poll() is not None:
            raise StackError("broker", f"exited with code {self.broker.process.returncode}")
        restarted = []
        now = time.monotonic()
        dead = [("sink", self.sink)] if self.sink is not None and self.sink.poll() is not None else []
        dead += [("otlp", self.otlp)] if self.otlp is not None and self.otlp.poll() is not None else []
        dead += [(f"worker-{i}", w) for i, w in enumerate(self.workers) if w.poll() is not None]
        for name, proc in dead:
            recent = [t for t in self.restarts.get(name, []) if now - t < window_s]
            log_file = self.log_dir / f"{name}.log"
            if len(recent) >= max_restarts:
                raise StackError(name, f"exited with code {proc.returncode} for the {len(recent) + 1}th time within "
                                       f"{window_s:.0f} s; not restarted again", log_file)
            self.restarts[name] = [*recent, now]
            log.warning("%s exited with code %s; restarting it (restart %d within %.0f s). Its log: %s", name,
                        proc.returncode, len(recent) + 1, window_s, log_file)
            if name == "sink":
                self.start_sink()
            elif name == "otlp":
                self.start_otlp()
            else:
                index = int(name.split("-")[1])
                self.workers[index] = self._spawn("worker", name, self._worker_args(index))
            restarted.append(name)
        return restarted

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the OTLP receiver first (it hands what it holds to the broker), then workers (they
        finish their batch), then the sink, then the broker; a group still running after
        ``grace_s`` is killed (its unacknowledged input is redelivered)."""
        for what, group in (("OTLP receiver", [self.otlp] if self.otlp is not None else []),
                            ("workers", self.workers), ("sink", [self.sink] if self.sink is not None else [])):
            running = [p for p in group if p.poll() is None]
            if not running:
                continue
            log.info("stopping the %s (pids %s) ...", what, ", ".join(str(p.pid) for p in running))
            for p in running:
                p.terminate()
            deadline = time.monotonic() + grace_s
            for p in running:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("process %d did not stop within %.0f s; killing it (its unacknowledged input is "
                                "redelivered). Its log is in %s", p.pid, grace_s, self.log_dir)
                    p.kill()
                    p.wait(5)
        if self.broker is not None:
            log.info("stopping the local broker ...")
            self.broker.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def configured_ports(settings: Settings, workers: int = 0) -> set[int]:
    """The ports the local stack is configured to bind (broker, sink, OTLP receiver, and the
    workers' when ``DRIFTWARDEN_WORKER_WEB_PORT`` is set): a free port chosen for anything else
    must avoid them, since they may not be bound yet."""
    base = settings.worker_web_port
    return {settings.local_broker_port, settings.sink_web_port, settings.otlp.port,
            *(range(base, base + workers) if base else ())}


def start_stack(settings: Settings, workers: int = 1) -> Stack:
    """Start the broker (when no bootstrap is set), create topics, start the sink and workers.
    Whatever was started is stopped again when a step fails or a signal interrupts it."""
    log_dir = settings.data_dir / "logs"
    stack = Stack(settings=settings, bootstrap=settings.kafka_bootstrap, log_dir=log_dir)
    try:
        if not stack.bootstrap:
            stack.broker = LocalBroker(settings.local_broker_port, log_file=log_dir / "broker.log")
            stack.broker.start()
            stack.bootstrap = stack.broker.bootstrap
        ensure_topics(settings, stack.bootstrap)
        # Workers and the OTLP receiver need nothing of the sink: they load their models while it
        # opens and migrates the store (one after the other, a test's stack took 25 s more to start).
        stack.spawn_sink()
        for _ in range(workers):
            stack.start_worker()
        if settings.otlp.enabled:
            stack.start_otlp()
        stack.wait_for_sink()
    except BaseException:
        stack.stop()
        raise
    return stack
