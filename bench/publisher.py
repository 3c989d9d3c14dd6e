"""Publisher benchmark: cost of ``publish()`` on the caller's thread, and sustained events/s.

Starts the local broker on a free port, publishes real events (HaluEval prompts and responses,
as dicts, the way an app would) and prints:

- median and p99 microseconds of one ``publish()`` call on the caller's thread, measured while
  the background thread validates and sends (goal: median under 20 µs);
- sustained events/s acknowledged by the broker from one process (time from the first
  ``publish()`` to the end of ``flush()``).

Last line: ``key=value`` pairs. Run: ``.venv/bin/python bench/publisher.py [--events N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from driftwarden.core.logging import setup_logging
from driftwarden.core.settings import load_settings
from driftwarden.deploy.local.broker import LocalBroker, free_port
from driftwarden.pkg_data import path as data_path
from driftwarden.streams.publisher import Publisher
from driftwarden.core.ingest.datasets import ReplayOptions, synthesise
from driftwarden.core.ingest.jsonl import read_jsonl
from driftwarden.streams.topics import ensure_topics


def events(n: int) -> list[dict]:
    base = list(synthesise(read_jsonl(data_path("halueval_general")), 2737, ReplayOptions(id_prefix="bench")))
    return [{**base[i % len(base)], "event_id": f"bench-pub-{i}"} for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    setup_logging("WARNING")
    payload = events(args.events)
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(free_port(), log_file=Path(tmp) / "broker.log") as broker:
        settings = load_settings(data_dir=tmp, kafka_bootstrap=broker.bootstrap)
        ensure_topics(settings)
        # Warm the producer's connection and metadata so the first calls measure publish() alone.
        with Publisher(settings=settings) as warm:
            warm.publish(payload[0])
        pub = Publisher(settings=settings)
        per_call_ns = []
        perf = time.perf_counter_ns
        started = time.perf_counter()
        for event in payload:
            t0 = perf()
            pub.publish(event)
            per_call_ns.append(perf() - t0)
        queued_s = time.perf_counter() - started
        pub.flush()
        total_s = time.perf_counter() - started
        pub.close()
        stats = pub.stats
    per_call_ns.sort()
    median_us = statistics.median(per_call_ns) / 1000
    p99_us = per_call_ns[int(len(per_call_ns) * 0.99)] / 1000
    rate = stats.sent / total_s
    print(f"events: {args.events}, acknowledged {stats.sent}, refused {stats.refused}, retries {stats.send_retries}")
    print(f"publish() on the caller's thread: median {median_us:.2f} us, p99 {p99_us:.2f} us "
          f"(all {args.events} queued in {queued_s:.2f} s)")
    print(f"sustained to the broker: {rate:,.0f} events/s ({total_s:.2f} s until flush() returned)")
    print(f"publish_median_us={median_us:.2f} publish_p99_us={p99_us:.2f} sustained_events_per_s={rate:.0f} "
          f"events={args.events} refused={stats.refused}")


if __name__ == "__main__":
    main()
