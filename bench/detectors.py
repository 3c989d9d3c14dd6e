"""Detector throughput: each detector alone, the whole pipeline in-process, and one worker.

On the same real events (HaluEval general prompts and responses, plus HaluEval QA events that
carry a context), in one run on this machine:

- texts/s of the embedding encoder alone (prompt and response of each event);
- events/s of each detector alone (builtin heads compute their own embeddings here);
- events/s of all detectors in-process (``ScoringPipeline.run``: embeddings computed once);
- events/s through one score worker (Kafka in, results to Kafka, sink to ClickHouse), counted
  until every detector's result for every event is stored;
- the ratio of the worker to the slowest model alone (goal ≥ 0.9).

On a GPU (``torch.cuda.is_available()``) the same runs in half precision and the largest
encoder batch that fits is searched. Last line: ``key=value`` pairs.
Run: ``.venv/bin/python bench/detectors.py [--events N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import through_pipeline  # noqa: E402  (the same measurement as bench/pipeline.py)

from driftwarden.core.logging import setup_logging  # noqa: E402
from driftwarden.core.schemas import event_from_mapping  # noqa: E402
from driftwarden.core.settings import load_settings  # noqa: E402
from driftwarden.deploy.local.broker import LocalBroker, free_port  # noqa: E402
from driftwarden.deploy.local.stack import Stack  # noqa: E402
from driftwarden.detectors.base import BatchContext  # noqa: E402
from driftwarden.detectors.pipeline import ScoringPipeline  # noqa: E402
from driftwarden.pkg_data import path as data_path  # noqa: E402
from driftwarden.core.ingest.datasets import ReplayOptions, synthesise  # noqa: E402
from driftwarden.core.ingest.jsonl import read_jsonl  # noqa: E402
from driftwarden.streams.topics import ensure_topics  # noqa: E402


def real_events(n: int) -> list[dict]:
    general = list(synthesise(read_jsonl(data_path("halueval_general")), 2737, ReplayOptions(id_prefix="g")))
    qa = list(synthesise(read_jsonl(data_path("halueval_qa")), 574, ReplayOptions(id_prefix="q")))
    mixed = [e for pair in zip(general, qa * 5, strict=False) for e in pair]  # half of the events carry a context
    return [{**mixed[i % len(mixed)], "event_id": f"det-{i}"} for i in range(n)]


def timed(fn, n: int) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def largest_gpu_batch(encoder) -> int:
    import torch

    size, best = 64, 0
    text = "word " * encoder.config.max_length
    while size <= 65536:
        try:
            encoder.model.encode([text] * size, batch_size=size)
            best = size
            size *= 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1536)
    args = parser.parse_args()
    setup_logging("WARNING")
    settings = load_settings()
    raw = real_events(args.events)
    events = [event_from_mapping(e) for e in raw]
    pipeline = ScoringPipeline.from_settings(settings)
    encoder = pipeline.encoder
    pipeline.run(events[:16])  # warm up (lazy initialisation, first kernels)
    report: dict[str, float | int | str] = {"device": encoder.device, "precision": "float16" if encoder.half else "float32",
                                            "events": len(events)}
    texts = [e.prompt for e in events] + [e.response for e in events if e.response]
    report["embeddings_texts_per_s"] = timed(lambda: encoder.encode(texts), len(texts))
    report["embeddings_events_per_s"] = timed(
        lambda: (encoder.encode([e.prompt for e in events]), encoder.encode([e.response for e in events])), len(events))
    for detector in pipeline.detectors:
        report[f"{detector.name}_alone_events_per_s"] = timed(lambda d=detector: d.detect(events, BatchContext(
            events, encoder.encode)), len(events))
    report["pipeline_in_process_events_per_s"] = timed(lambda: [pipeline.run(events[i:i + settings.batch_size])
                                                               for i in range(0, len(events), settings.batch_size)],
                                                       len(events))
    slowest = min(v for k, v in report.items() if k.endswith("_alone_events_per_s") or k == "embeddings_events_per_s")
    report["slowest_model_alone_events_per_s"] = slowest
    if encoder.device == "cuda":
        report["largest_encoder_batch"] = largest_gpu_batch(encoder)
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(free_port(), log_file=Path(tmp) / "broker.log") as broker:
        stack_settings = load_settings(data_dir=tmp, kafka_bootstrap=broker.bootstrap, sink_web_port=free_port())
        ensure_topics(stack_settings)
        stack = Stack(settings=stack_settings, bootstrap=broker.bootstrap, log_dir=Path(tmp) / "logs")
        try:
            report["worker_events_per_s"] = through_pipeline(stack, stack_settings, raw)
        finally:
            stack.stop()
    report["ratio_worker_to_slowest_alone"] = report["worker_events_per_s"] / slowest
    report["ratio_worker_to_pipeline_in_process"] = report["worker_events_per_s"] / report[
        "pipeline_in_process_events_per_s"]
    for key, value in report.items():
        print(f"{key:<40} {value:,.2f}" if isinstance(value, float) else f"{key:<40} {value}")
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
