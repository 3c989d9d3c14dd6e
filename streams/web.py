"""The HTTP surface every faust process shares: ``/metrics``, ``/healthz``, ``/readyz``, and the
bearer-token guard of the sink's data pages.

- ``/healthz``: the event loop answers (a stuck loop answers nothing; a crashed agent ends the
  process, :mod:`driftwarden.streams.guard`). 503 while the process stops.
- ``/readyz``: every readiness check of the process passes: partitions assigned (and no rebalance
  in progress), the store reachable (the sink), the models loaded (workers). 503 names the failing
  checks. A worker with no partition (more workers than partitions) is not ready.
- ``/metrics``: :class:`~driftwarden.streams.metrics.Metrics` in the Prometheus text format.

Pages that show data (the sink's ``/stats/``, ``/progress/``, ``/report/``, ``/alerts/``) are
wrapped by :func:`protected`: when the server listens beyond loopback they need
``Authorization: Bearer <DRIFTWARDEN_WEB_TOKEN>`` (settings refuse such a bind without a token).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import hmac
import json
import logging
import os
import time
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from driftwarden.core.settings import Settings, is_loopback
from driftwarden.streams.metrics import ConsumerLag, Metrics  # prometheus-client only, no faust

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)

#: A readiness check: (passed, detail).
Check = Callable[[], Awaitable[tuple[bool, str]]]
#: How long one readiness check may take before it counts as failed.
CHECK_TIMEOUT_S = 3.0
#: The store is asked at most this often; readiness probes in between get the last answer.
STORE_CHECK_EVERY_S = 5.0


class Readiness:
    """Named readiness checks of one process, run concurrently on each ``/readyz``."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def run(self) -> tuple[bool, dict[str, dict]]:
        async def one(check: Check) -> tuple[bool, str]:
            try:
                return await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except TimeoutError:
                return False, f"no answer within {CHECK_TIMEOUT_S:.0f} s"
            except Exception as exc:  # noqa: BLE001 - a failing check is an answer, not an error page
                return False, f"{type(exc).__name__}"

        names = list(self.checks)
        outcomes = await asyncio.gather(*(one(self.checks[n]) for n in names))
        detail = {n: {"ok": ok, "detail": text} for n, (ok, text) in zip(names, outcomes, strict=True)}
        return all(ok for ok, _ in outcomes), detail


def authorized(settings: Settings, header: str | None) -> bool:
    """Whether a request with this ``Authorization`` header may see data pages."""
    if is_loopback(settings.web_bind):
        return True
    token = settings.web_token.get_secret_value() if settings.web_token is not None else ""
    if not token or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


def protected(settings: Settings):
    """Decorator for a faust page handler ``(web, request)`` that shows data: 401 without the token
    when the server listens beyond loopback."""

    def wrap(handler):
        @functools.wraps(handler)
        async def page(web, request):
            if not authorized(settings, request.headers.get("Authorization")):
                return web.json({"error": "this page needs Authorization: Bearer <DRIFTWARDEN_WEB_TOKEN>"},
                                status=401, headers={"WWW-Authenticate": "Bearer"})
            return await handler(web, request)

        return page

    return wrap


def partitions_check(app: faust.App) -> Check:
    async def check() -> tuple[bool, str]:
        if getattr(app, "rebalancing", False):
            return False, "a rebalance is in progress"
        assigned = app.consumer.assignment()
        return (True, f"{len(assigned)} partition(s)") if assigned else (False, "no partition assigned")

    return check


def store_check(store) -> Check:
    """The store answers a trivial query (at most every few seconds; probes come often)."""
    last = {"at": -1e9, "ok": False, "detail": ""}

    async def check() -> tuple[bool, str]:
        if time.monotonic() - last["at"] >= STORE_CHECK_EVERY_S:
            try:
                await asyncio.to_thread(store.ping)
                last.update(ok=True, detail="answers")
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                last.update(ok=False, detail=f"{type(exc).__name__}")
            last["at"] = time.monotonic()
        return bool(last["ok"]), str(last["detail"])

    return check


def process_dir(settings: Settings) -> Path:
    return settings.data_dir / "processes"


def register_process(settings: Settings, role: str, port: int) -> None:
    """Note this process and its web port under ``<data_dir>/processes/`` (removed at exit), so
    ``driftwarden stats`` can list where each process serves ``/metrics``."""
    folder = process_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{role}-{os.getpid()}.json"
    path.write_text(json.dumps({"role": role, "pid": os.getpid(), "port": port, "bind": settings.web_bind}))
    atexit.register(lambda: path.unlink(missing_ok=True))


def live_processes(settings: Settings) -> list[dict]:
    """The processes registered under the data directory that still run, sinks first."""
    out = []
    for path in sorted(process_dir(settings).glob("*.json")) if process_dir(settings).is_dir() else []:
        try:
            info = json.loads(path.read_text())
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)  # left by a process killed with SIGKILL
            continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out.append(info)
    order = {"sink": 0, "score": 1, "otlp": 2}
    return sorted(out, key=lambda i: (order.get(i.get("role"), 3), i.get("port", 0)))


def install(app: faust.App, settings: Settings, role: str) -> tuple[Metrics, Readiness]:
    """Give the app its metrics (with faust's sensor and the consumer lag) and its health pages;
    returns the metrics the agents count into and the readiness the agents add checks to."""
    from faust.sensors.prometheus import setup_prometheus_sensors

    metrics = Metrics(role, settings.metrics_max_segments)
    readiness = Readiness()
    started = time.monotonic()
    stopping = {"now": False}
    readiness.add("partitions_assigned", partitions_check(app))
    metrics.registry.register(ConsumerLag(app))
    if not app.conf.web_enabled:
        return metrics, readiness
    register_process(settings, role, app.conf.web_port)
    # faust's own sensor (messages, offsets, rebalances) on the same registry, served on /metrics.
    setup_prometheus_sensors(app, pattern="/metrics", registry=metrics.registry, name_prefix="faust")

    @app.page("/healthz")
    async def healthz(web, request):
        status = "stopping" if stopping["now"] else "ok"
        return web.json({"status": status, "role": role, "uptime_s": round(time.monotonic() - started, 1)},
                        status=503 if stopping["now"] else 200)

    @app.page("/readyz")
    async def readyz(web, request):
        ready, detail = await readiness.run()
        return web.json({"ready": ready, "role": role, "checks": detail}, status=200 if ready else 503)

    @app.on_before_shutdown.connect
    async def _mark_stopping(sender, **kwargs):  # noqa: ARG001 - faust's signal signature
        stopping["now"] = True

    return metrics, readiness
