"""Pipeline benchmark: events/s through one worker against the same detectors alone, and latency.

In one run, on the same real events (HaluEval prompts and responses):

1. **alone**: the enabled detectors (``ScoringPipeline.run``) on the parsed events, in-process,
   in batches of ``DRIFTWARDEN_BATCH_SIZE``; and the same with validation of the wire bytes;
2. **through the pipeline**: the events are published first, then one worker and the sink
   start; events/s is the count over the time from the first to the last detection row stored
   (read from the sink's ``/stats/``), so the group join is not counted;
3. **latency**: at a fixed load below saturation (``--rate`` events/s for ``--seconds``), the
   time from ``publish()`` to the row being visible in ClickHouse (the row's ``ingested_at``,
   written in the same insert that makes it visible), p50 and p99.

Last line: ``key=value`` pairs. Run: ``.venv/bin/python bench/pipeline.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from driftwarden.core.logging import setup_logging
from driftwarden.core.schemas import EventLimits, encode_event, parse_event
from driftwarden.core.settings import load_settings
from driftwarden.core.storage.client import open_client
from driftwarden.streams.sink_pages import read_progress, read_stats
from driftwarden.deploy.local.broker import LocalBroker, free_port
from driftwarden.deploy.local.stack import Stack
from driftwarden.detectors.pipeline import ScoringPipeline
from driftwarden.pkg_data import path as data_path
from driftwarden.streams.publisher import Publisher
from driftwarden.core.ingest.datasets import ReplayOptions, synthesise
from driftwarden.core.ingest.jsonl import read_jsonl
from driftwarden.streams.topics import ensure_topics


def real_events(n: int, prefix: str) -> list[dict]:
    base = list(synthesise(read_jsonl(data_path("halueval_general")), 2737, ReplayOptions(id_prefix=prefix)))
    return [{**base[i % len(base)], "event_id": f"{prefix}-{i}"} for i in range(n)]


def alone(settings, events: list[dict]) -> tuple[float, float]:
    """events/s of the detectors alone, and of validation + detectors, in batches."""
    pipeline = ScoringPipeline.from_settings(settings)
    limits = EventLimits.from_settings(settings)
    raws = [encode_event(e, limits)[1] for e in events]
    parsed = [parse_event(r, limits) for r in raws]
    size = settings.batch_size
    t = time.perf_counter()
    for i in range(0, len(parsed), size):
        pipeline.run(parsed[i:i + size])
    detectors_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(0, len(raws), size):
        pipeline.run([parse_event(r, limits) for r in raws[i:i + size]])
    with_validation_s = time.perf_counter() - t
    return len(events) / detectors_s, len(events) / with_validation_s


def expected_rows(settings, events: list[dict]) -> dict[str, int]:
    """The rows a fully scored run stores: every event, and per detector the events it samples."""
    from driftwarden.detectors.base import sampled
    from driftwarden.detectors.registry import config_of, enabled_names

    out = {"inference_events": len(events)}
    for name in enabled_names(settings):
        rate = config_of(name, settings).sample_rate
        out[f"detections/{name}"] = sum(sampled(e["event_id"], rate) for e in events)
    return out


def fully_scored(expected: dict[str, int], progress: dict) -> float:
    """The share of the expected rows stored, of the least complete table, from the sink's
    counters (``/progress/``: no query runs in the sink, so polling it costs the stack nothing)."""
    rows = progress["rows_written"]
    return min(rows.get(key, 0) / want for key, want in expected.items() if want)


def through_pipeline(stack: Stack, settings, events: list[dict]) -> float:
    with Publisher(stack.bootstrap, settings=settings) as pub:
        for e in events:
            pub.publish(e)
        pub.flush()
    stack.start_sink()
    stack.start_worker()
    n = len(events)
    expected = expected_rows(settings, events)
    first = last = None
    while True:
        stack.check()
        done = fully_scored(expected, read_progress(settings)) * n
        now = time.perf_counter()
        if first is None and done > 0:
            first = (now, done)
        if done >= n:
            last = now
            break
        time.sleep(0.2)
    # The first poll that saw rows missed up to one poll interval; count from the rows it saw.
    return (n - first[1]) / max(last - first[0], 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000, help="events for the throughput part")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="events/s for the latency part; 0: half the measured throughput (below saturation)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the latency part")
    args = parser.parse_args()
    setup_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        with LocalBroker(free_port(), log_file=Path(tmp) / "broker.log") as broker:
            settings = load_settings(data_dir=tmp, kafka_bootstrap=broker.bootstrap, sink_web_port=free_port())
            ensure_topics(settings)
            events = real_events(args.events, "tput")
            alone_eps, alone_validated_eps = alone(settings, events)
            stack = Stack(settings=settings, bootstrap=broker.bootstrap, log_dir=Path(tmp) / "logs")
            try:
                pipeline_eps = through_pipeline(stack, settings, events)
                rate = args.rate or round(pipeline_eps / 2, 1)
                lat_events = real_events(int(rate * args.seconds), "lat")
                sent_at: dict[str, datetime] = {}
                interval = 1.0 / rate
                with Publisher(stack.bootstrap, settings=settings, flush_interval=0.005) as pub:
                    next_at = time.perf_counter()
                    for e in lat_events:
                        next_at += interval
                        delay = next_at - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                        sent_at[e["event_id"]] = datetime.now(UTC)
                        pub.publish(e)
                    pub.flush()
                want = args.events + len(lat_events)
                deadline = time.monotonic() + 300
                while read_progress(settings)["rows_written"].get("inference_events", 0) < want and \
                        time.monotonic() < deadline:
                    time.sleep(0.2)
            finally:
                stack.stop()
        client = open_client(settings)
        rows = client.query(
            f"SELECT event_id, ingested_at FROM {settings.clickhouse_database}.inference_events FINAL "
            f"WHERE startsWith(event_id, 'lat-')"
        ).result_rows
    visible = {eid: ts for eid, ts in rows}
    delays = sorted((visible[eid].replace(tzinfo=UTC) - t).total_seconds() for eid, t in sent_at.items() if eid in visible)
    missing = len(sent_at) - len(delays)
    p50 = delays[len(delays) // 2] if delays else float("nan")
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))] if delays else float("nan")
    ratio = pipeline_eps / alone_eps
    print(f"detectors alone: {alone_eps:,.0f} events/s; with validation of the wire bytes: {alone_validated_eps:,.0f} events/s")
    print(f"through one worker (Kafka in, results to Kafka, sink to ClickHouse): {pipeline_eps:,.0f} events/s")
    print(f"ratio pipeline / detectors alone: {ratio:.3f}; pipeline / (validation + detectors): "
          f"{pipeline_eps / alone_validated_eps:.3f}")
    print(f"publish -> row visible at {rate:.1f} events/s: p50 {p50:.3f} s, p99 {p99:.3f} s "
          f"({len(delays)} rows, {missing} missing)")
    print(f"pipeline_events_per_s={pipeline_eps:.0f} detectors_alone_events_per_s={alone_eps:.0f} "
          f"validated_alone_events_per_s={alone_validated_eps:.0f} ratio={ratio:.3f} "
          f"latency_p50_s={p50:.3f} latency_p99_s={p99:.3f} latency_rate={rate:.1f} missing={missing}")


if __name__ == "__main__":
    main()
