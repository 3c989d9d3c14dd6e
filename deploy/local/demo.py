"""The README's main job: the local stack, real traffic replayed through it, what was stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from driftwarden.core.errors import DriftwardenError
from driftwarden.core.settings import Settings
from driftwarden.core.storage.queries import read_stats
from driftwarden.deploy.local.stack import start_stack
from driftwarden.detectors.registry import enabled_names
from driftwarden.pkg_data import path as data_path
from driftwarden.streams.publisher import Publisher
from driftwarden.streams.replay import ReplayOptions, replay_file


class DemoTimeoutError(DriftwardenError):
    def __init__(self, expected: int, stored: int, timeout_s: float, log_dir: str):
        super().__init__(
            f"the demo stored {stored} of {expected} events within {timeout_s:.0f} s; "
            f"the stack is too slow or a process is stuck. Look at the logs in {log_dir}."
        )


def run_demo(settings: Settings, *, limit: int | None = None, workers: int = 1, timeout_s: float = 600.0,
             echo: Callable[[str], None] = print) -> dict:
    """Start the stack, replay ``halueval_general.jsonl`` (shipped), wait until stored, summarise."""
    started = time.monotonic()
    echo("starting the local stack (broker, sink, worker) ...")
    with start_stack(settings, workers=workers) as stack:
        before = read_stats(settings)["events"]
        source = data_path("halueval_general")
        run_id = f"demo{int(time.time())}"
        echo(f"replaying {source.name} as traffic of app demo-chat (ids {run_id}-*) ...")
        options = ReplayOptions(id_prefix=run_id, span=timedelta(hours=1), shuffle=True)
        with Publisher(stack.bootstrap, settings=settings) as publisher:
            counts = replay_file(source, publisher.publish, options, limit=limit)
            publisher.flush()
        expected = before + publisher.stats.sent
        echo(f"published {publisher.stats.sent} events; waiting for them in ClickHouse ...")
        deadline = time.monotonic() + timeout_s
        last = -1
        while True:
            stack.check()
            stored = read_stats(settings)["events"]
            if stored != last:
                echo(f"  stored {stored - before}/{publisher.stats.sent}")
                last = stored
            if stored >= expected:
                break
            if time.monotonic() > deadline:
                raise DemoTimeoutError(publisher.stats.sent, stored - before, timeout_s, str(stack.log_dir))
            time.sleep(1.0)
        # Detections trail events by at most one sink batch; wait for every detector's too.
        detectors = enabled_names(settings)
        while time.monotonic() < deadline:
            per = read_stats(settings)["detections_by_detector"]
            if all(per.get(d, {}).get("results", 0) >= expected for d in detectors):
                break
            time.sleep(0.5)
        summary = read_stats(settings)
    summary["replayed"] = counts
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["store"] = settings.clickhouse_url
    return summary
