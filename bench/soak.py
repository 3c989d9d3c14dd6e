"""Soak: steady load with faults, and what the stack loses (nothing, it must be).

Each run, on a fresh local stack (real broker, real engine, real detectors, real events):

1. **measure** one worker's events/s (a burst published first, the count over the time its rows
   took to be stored);
2. **load** at ``--load`` (0.8) of that rate for ``--minutes`` (10), with faults at fixed points:
   a second worker joins at 20 % of the run and leaves at 60 %, the sink is killed with SIGKILL at
   30 % and 75 % (the stack restarts it, as ``up`` does), and every ClickHouse write fails for
   ``--store-down-s`` (60) from 45 % on;
3. **drain**: after the last event, the time until every event is stored.

Sampled every 2 s: the consumer lag the workers and the sink report on ``/metrics`` (summed over
their topics), and each process's resident memory from ``WARM_S`` (120 s) after it started, to a
file whose path is printed. A **clean run** first (same events, same rate, no faults) gives the
alerts the faulted run must match, rule by rule. The last line is ``key=value`` pairs: events
published, stored and distinct ids, alerts fired (and the clean run's, and whether they match
by rule), the largest lag and the drain time, RSS of each role's first process at its warm mark
and of its last at the end, and the largest growth of any one process of the role.
Run: ``.venv/bin/python bench/soak.py [--minutes 10] [--no-clean-run]``.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
import urllib.request
from pathlib import Path

from driftwarden.core.errors import DriftwardenError
from driftwarden.core.ingest.datasets import ReplayOptions, synthesise
from driftwarden.core.ingest.jsonl import read_jsonl
from driftwarden.core.logging import setup_logging
from driftwarden.core.settings import load_settings
from driftwarden.deploy.local.broker import free_port
from driftwarden.deploy.local.stack import start_stack
from driftwarden.pkg_data import path as data_path
from driftwarden.streams.publisher import Publisher
from driftwarden.streams.sink_pages import read_stats
from driftwarden.streams.web import live_processes


#: Seconds after a process starts before its memory counts. Measured (timeline of a 12-minute run):
#: a worker's and a sink's resident memory grow 25-45 % over their first one to two minutes of work
#: (models initialised lazily, the first batches of each shape, tokenizer and allocator caches),
#: then stay within a few per cent; from 30 s on the figure was mostly that warm-up.
WARM_S = 120.0
#: Seconds after the drain before the counts are read: the last windows close and raise their alerts.
SETTLE_S = 10.0


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def lag(settings) -> int:
    """Sum of ``driftwarden_consumer_lag`` over every process's /metrics."""
    total = 0
    for p in live_processes(settings):
        if p["role"] == "otlp":
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{p['port']}/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        total += sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                     if line.startswith("driftwarden_consumer_lag{"))
    return total


def stats(settings) -> dict:
    for _ in range(60):
        try:
            return read_stats(settings, timeout_s=30)
        except DriftwardenError:
            time.sleep(1)
    raise RuntimeError("the sink did not answer for a minute")


FAULTS = {0.2: "worker joins", 0.3: "sink killed", 0.45: "store down", 0.6: "worker leaves", 0.75: "sink killed"}


def run(args, rows: list[dict], *, faults: bool, rate: float | None) -> dict:
    """One run on a fresh stack; ``rate`` None: measure one worker first and load at ``--load`` of it
    (else load at ``rate``, the measurement's burst still sent first, so both runs see the same events)."""
    work = Path(tempfile.mkdtemp(prefix="dw-soak-"))
    down = work / "store-down"
    timeline = work / "rss.txt"
    print(f"{'faults' if faults else 'clean'} run: memory samples in {timeline} (seconds, role, pid, MB, events "
          f"published)", flush=True)
    settings = load_settings(data_dir=work / "data", local_broker_port=free_port(), sink_web_port=free_port(),
                             otlp={"enabled": False}, retrain={"enabled": False}, chaos_store_down_file=down,
                             sink_retry_max_s=2.0)
    stack = start_stack(settings, workers=1)
    published = 0
    try:
        with Publisher(stack.bootstrap, settings=settings) as pub:
            def send(n: int) -> None:
                nonlocal published
                for _ in range(n):
                    row = rows[published % len(rows)]
                    pub.publish({**row, "event_id": f"soak-{published}", "app": f"soak-{published % 3}"})
                    published += 1

            # 1. one worker's events/s
            send(args.burst)
            pub.flush(120)
            first = 0
            while (first := stats(settings)["events"]) == 0:  # the consumer group's join is not counted
                stack.supervise()
                time.sleep(0.2)
            t0 = time.monotonic()
            while (n := stats(settings)["events"]) < args.burst:
                stack.supervise()
                time.sleep(0.5)
            rate1 = (n - first) / (time.monotonic() - t0)
            if rate is None:
                rate = args.load * rate1
            print(f"one worker: {rate1:.1f} events/s; loading at {rate:.1f} events/s for {args.minutes:g} min",
                  flush=True)
            # 2. load (with faults)
            duration = args.minutes * 60
            done: set[float] = set()
            rss: dict[tuple[str, int], list[float]] = {}
            """Each process's samples, by role and pid (a restarted sink is a new process)."""
            born: dict[int, float] = {}
            """When each process was first seen: its memory is sampled after WARM_S (models loaded)."""
            max_lag = 0
            store_back_at = None
            start = time.monotonic()
            next_sample = start
            while (now := time.monotonic()) - start < duration:
                due = int((now - start) * rate) - (published - args.burst)
                if due > 0:
                    send(due)
                share = (now - start) / duration
                for at, what in FAULTS.items() if faults else ():
                    if share >= at and at not in done:
                        done.add(at)
                        print(f"{now - start:6.0f} s: {what}", flush=True)
                        if what == "worker joins":
                            stack.start_worker()
                        elif what == "worker leaves":
                            stack.workers[-1].send_signal(signal.SIGTERM)
                            stack.workers[-1].wait(60)
                            stack.workers.pop()
                        elif what == "sink killed":
                            stack.sink.send_signal(signal.SIGKILL)
                            stack.sink.wait(10)
                        elif what == "store down":
                            down.touch()
                            store_back_at = now + args.store_down_s
                if store_back_at is not None and now >= store_back_at:
                    down.unlink(missing_ok=True)
                    store_back_at = None
                    print(f"{now - start:6.0f} s: store back", flush=True)
                stack.supervise()
                if now >= next_sample:
                    next_sample = now + 2.0
                    max_lag = max(max_lag, lag(settings))
                    for role, proc in [("sink", stack.sink), *((f"worker{i}", w) for i, w in enumerate(stack.workers))]:
                        if proc is None or now - born.setdefault(proc.pid, now) < WARM_S:
                            continue
                        if (mb := rss_mb(proc.pid)) is not None:
                            rss.setdefault((role, proc.pid), []).append(mb)
                            with timeline.open("a") as fh:
                                fh.write(f"{now - start:.1f} {role} {proc.pid} {mb:.1f} {published}\n")
                time.sleep(0.05)
            down.unlink(missing_ok=True)
            pub.flush(120)
            refused = pub.stats.refused
        # 3. drain
        end = time.monotonic()
        counts = stats(settings)
        while counts["events"] < published and time.monotonic() - end < 900:
            stack.supervise()
            max_lag = max(max_lag, lag(settings))
            time.sleep(1)
            counts = stats(settings)
        drain_s = time.monotonic() - end
        time.sleep(SETTLE_S)  # the last windows and the alerts they raise
        counts = stats(settings)
    finally:
        stack.stop()
    roles = sorted({role for role, _ in rss})
    first = {role: next(v for (r, _), v in rss.items() if r == role) for role in roles}
    last = {role: [v for (r, _), v in rss.items() if r == role][-1] for role in roles}
    growth = {role: max((v[-1] / v[0] - 1) * 100 for (r, _), v in rss.items() if r == role) for role in roles}
    return {"published": published, "refused": refused, "stored": counts["events"],
            "distinct_ids": counts["events_distinct_ids"], "dead_letters": counts["dead_letters"],
            "drift_windows": counts["drift_windows"], "alerts_fired": counts["alerts_firing"] + counts["alerts_resolved"],
            "alerts_by_rule": counts["alerts_by_rule"], "rate_one_worker": round(rate1, 1), "load_rate": round(rate, 1),
            "max_lag": max_lag, "drain_s": round(drain_s, 1),
            **{f"rss_{role}_start_mb": round(v[0]) for role, v in first.items()},
            **{f"rss_{role}_end_mb": round(v[-1]) for role, v in last.items()},
            **{f"rss_{role}_growth_pct": round(g, 1) for role, g in growth.items()},
            "processes_sampled": len(rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.8, help="share of one worker's measured events/s")
    parser.add_argument("--store-down-s", type=float, default=60.0)
    parser.add_argument("--burst", type=int, default=600, help="events of the throughput measurement")
    parser.add_argument("--no-clean-run", action="store_true",
                        help="skip the clean run (no faults) whose alerts the faulted run is compared with")
    args = parser.parse_args()
    setup_logging("WARNING")
    rows = list(synthesise(read_jsonl(data_path("halueval_general")), 2737, ReplayOptions(id_prefix="soak")))
    clean = None if args.no_clean_run else run(args, rows, faults=False, rate=None)
    if clean is not None:
        print("clean: " + " ".join(f"{k}={v}" for k, v in clean.items()), flush=True)
    faulted = run(args, rows, faults=True, rate=None if clean is None else clean["load_rate"])
    pairs = dict(faulted)
    if clean is not None:
        pairs["clean_alerts_fired"] = clean["alerts_fired"]
        pairs["clean_drift_windows"] = clean["drift_windows"]
        pairs["alerts_as_clean"] = faulted["alerts_by_rule"] == clean["alerts_by_rule"]
    pairs["alerts_by_rule"] = ",".join(f"{k}:{v}" for k, v in sorted(faulted["alerts_by_rule"].items())) or "none"
    print(" ".join(f"{k}={v}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()
