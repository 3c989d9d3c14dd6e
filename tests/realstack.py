"""Real components for integration and e2e tests: the Tansu broker and the embedded ClickHouse engine.

Each test module gets its own broker (in-memory, on a free port) and its own local stack (sink +
score workers as separate processes, started by the project's own code), shared by the tests of
that module because a consumer group's first join takes seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from driftwarden.core.errors import DriftwardenError
from driftwarden.core.settings import Settings, get_settings, load_settings
from driftwarden.streams.sink_pages import read_stats
from driftwarden.deploy.local.broker import LocalBroker, free_port
from driftwarden.deploy.local.stack import Stack, start_stack
from driftwarden.tests.cases import TEST_MAX_PROMPT_CHARS



@pytest.fixture(scope="module")
def stack_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Environment of the module's stack (the child processes inherit it)."""
    data_dir = tmp_path_factory.mktemp("driftwarden")
    env = {
        "DRIFTWARDEN_DATA_DIR": str(data_dir),
        "DRIFTWARDEN_SINK_WEB_PORT": str(free_port()),
        "DRIFTWARDEN_LOCAL_BROKER_PORT": str(free_port()),
        "DRIFTWARDEN_OTLP__PORT": str(free_port()),
        "DRIFTWARDEN_OTLP__JOIN_WAIT_S": "1",
        "DRIFTWARDEN_BATCH_LINGER_MS": "100",
        "DRIFTWARDEN_SINK_LINGER_MS": "200",
        "DRIFTWARDEN_SINK_RETRY_MAX_S": "1",
        # A stop waits this long for batches in flight (20 s by default), then goes on without them.
        "DRIFTWARDEN_STOP_WAIT_S": "5",
        "DRIFTWARDEN_MAX_PROMPT_CHARS": str(TEST_MAX_PROMPT_CHARS),
        # Retraining jobs are CPU-heavy: only the loop's own test turns them on.
        "DRIFTWARDEN_RETRAIN__ENABLED": "false",
        # Every detector scores every event, so the tests can count one result per event and detector.
        "DRIFTWARDEN_DETECTORS__HALLUCINATION__SAMPLE_RATE": "1",
    }
    yield env


def small_drift_windows(window: int, **extra: str) -> dict[str, str]:
    """Settings for drift tests: prompt windows (and baseline) of ``window`` events, 500 permutations;
    ``extra`` adds ``DRIFTWARDEN_DRIFT__<KEY>`` values."""
    env = {"DRIFTWARDEN_DRIFT__WINDOW_SIZE": str(window), "DRIFTWARDEN_DRIFT__BASELINE_SIZE": str(window),
           "DRIFTWARDEN_DRIFT__FIELDS": '["prompt"]', "DRIFTWARDEN_DRIFT__PERMUTATIONS": "500"}
    env.update({f"DRIFTWARDEN_DRIFT__{k.upper()}": v for k, v in extra.items()})
    return env


def _apply(env: dict[str, str]) -> pytest.MonkeyPatch:
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    get_settings.cache_clear()
    return mp


@pytest.fixture(scope="module")
def stack_settings(stack_env) -> Iterator[Settings]:
    mp = _apply(stack_env)
    yield load_settings()
    mp.undo()
    get_settings.cache_clear()


def start(settings: Settings, workers: int = 1) -> Stack:
    return start_stack(settings, workers=workers)


@pytest.fixture(scope="module")
def stack(stack_settings) -> Iterator[Stack]:
    """Broker, sink and one worker, for the module."""
    s = start(stack_settings)
    try:
        yield s
    finally:
        s.stop()
        dump_logs_on_failure(s.log_dir)


def dump_logs_on_failure(log_dir: Path) -> None:
    for f in sorted(log_dir.glob("*.log")):
        tail = f.read_text(errors="replace").splitlines()[-15:]
        print(f"--- {f.name} (last lines) ---\n" + "\n".join(tail))


def wait_for(settings: Settings, done: Callable[[dict], bool], timeout_s: float = 90.0,
             stack: Stack | None = None) -> dict:
    """Poll the stored counts until ``done(counts)``; fail with the last counts on timeout."""
    deadline = time.monotonic() + timeout_s
    counts: dict = {}
    while time.monotonic() < deadline:
        if stack is not None:
            stack.check()
        try:
            counts = read_stats(settings)
        except DriftwardenError:
            counts = {}
        if counts and done(counts):
            return counts
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s; last counts: {json.dumps(counts)}")


def workers_ready(settings: Settings, n: int, stack: Stack, timeout_s: float = 120.0) -> None:
    """Wait until ``n`` score workers answer ``/readyz`` ready at once: each holds partitions and no
    rebalance runs, so the consumer group has settled with all of them in it."""
    import urllib.error
    import urllib.request

    from driftwarden.streams.web import live_processes

    deadline = time.monotonic() + timeout_s
    answers: dict[int, str] = {}
    while time.monotonic() < deadline:
        stack.check()
        answers = {}
        for info in (i for i in live_processes(settings) if i.get("role") == "score"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{info['port']}/readyz", timeout=5) as r:
                    answers[info["port"]] = r.read().decode()
            except urllib.error.HTTPError as exc:
                answers[info["port"]] = f"{exc.code}: {exc.read().decode(errors='replace')[:300]}"
            except OSError as exc:
                answers[info["port"]] = repr(exc)
        if len(answers) == n and all('"ready": true' in a or '"ready":true' in a for a in answers.values()):
            return
        time.sleep(0.5)
    raise AssertionError(f"{n} workers were not ready within {timeout_s} s: {answers}")


def all_scored(settings: Settings, n: int) -> Callable[[dict], bool]:
    """A ``wait_for`` condition: ``n`` events stored and the result of every detector that scores
    every event (a sampled one has fewer)."""
    from driftwarden.detectors.registry import unsampled_names

    detectors = unsampled_names(settings)

    def done(c: dict) -> bool:
        per = c["detections_by_detector"]
        return c["events"] >= n and all(per.get(d, {}).get("results", 0) >= n for d in detectors)

    return done


def producer(bootstrap: str):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=[bootstrap], acks="all", linger_ms=5)


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0, linger_s: float = 0.0) -> list:
    """Every record of ``topic`` from the start, until ``expected`` were read or time ran out; with
    ``linger_s``, reading goes on that long after ``expected`` were read (to see that no more come)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=[bootstrap], group_id=None, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=1000,
    )
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        until = time.monotonic() + linger_s if len(records) >= expected else 0.0
        while time.monotonic() < until:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


__all__ = ["LocalBroker", "all_scored", "consume_all", "producer", "start", "wait_for", "workers_ready"]
