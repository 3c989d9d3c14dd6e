"""Detector throughput per encoder variant: the encoder alone, each detector alone, the whole
pipeline in-process, and one worker through Kafka to ClickHouse.

On the same real events (HaluEval general prompts and responses, plus HaluEval QA events that
carry a context), in one run on this machine, for each encoder variant (``--variants``; by
default the torch backend in float32 and the default, ``auto``: the fastest that passed the
quality gate, ``bench/encoder_gate.py``):

- texts/s of the embedding encoder alone, and events/s of it on prompt and response;
- events/s of each detector alone (each encodes what it needs);
- events/s of all detectors in-process (``ScoringPipeline.run``: every text encoded once);
- events/s through one score worker (Kafka in, results to Kafka, sink to ClickHouse), counted
  until every detector's result for every event it samples is stored;
- the ratios pipeline / encoder alone (goal ≥ 0.85) and worker / pipeline (goal ≥ 0.9);
- the texts the pipeline encodes per event (context sentences and chunks beside the prompt and
  response) and events/s of the encoder alone on exactly those texts, in the same calls: the
  pipeline's ratio to it says how much of the pipeline's time is anything but the encoder.

The last line carries ``speedup=``: the default variant's worker events/s over the torch
float32 worker's in the same run (goal ≥ 2). On a GPU (``torch.cuda.is_available()``) the
default runs torch in half precision and the largest encoder batch that fits is searched.
Run: ``.venv/bin/python bench/detectors.py [--events N] [--variants torch-float32,auto]``.
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


def timed(fn, n: int, repeat: int = 1) -> float:
    """n / seconds of ``fn()``, the best of ``repeat`` runs (a shared machine's noise only slows)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n / best


def largest_gpu_batch(settings) -> int:
    import torch

    from driftwarden.detectors.embeddings import Encoder

    config = settings.detectors.embeddings
    size, best = 64, 0
    text = "word " * config.max_length
    while size <= 65536:
        try:
            Encoder(config.model_copy(update={"batch_size": size, "max_batch_tokens": size * config.max_length}),
                    settings.data_dir / "encoders").encode([text] * size)
            best = size
            size *= 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return best


def texts_the_pipeline_encodes(pipeline: ScoringPipeline, events: list, batch_size: int) -> list[list[str]]:
    """Every encoder call's texts while the pipeline scores ``events`` (prompts, responses,
    context sentences and chunks): the encoder's share of the pipeline's work."""
    calls: list[list[str]] = []
    encode = pipeline.encoder.encode

    def recording(texts, *args, **kwargs):
        calls.append(list(texts))
        return encode(texts, *args, **kwargs)

    pipeline.encoder.encode = recording
    try:
        for i in range(0, len(events), batch_size):
            pipeline.run(events[i:i + batch_size])
    finally:
        del pipeline.encoder.encode
    return calls


def variant_settings(variant: str, **overrides):
    """Settings whose embedding encoder runs ``variant`` (``auto``: the default)."""
    if variant == "auto":
        return load_settings(**overrides)
    backend, _, precision = variant.partition("-")
    return load_settings(detectors={"embeddings": {"backend": backend, "precision": precision}}, **overrides)


def measure(variant: str, raw: list[dict], events: list, alone: bool) -> dict[str, float | int | str]:
    """One variant's figures, in-process then through one worker."""
    settings = variant_settings(variant)
    pipeline = ScoringPipeline.from_settings(settings)
    encoder = pipeline.encoder
    pipeline.run(events[:16])  # warm up (lazy initialisation, first kernels)
    report: dict[str, float | int | str] = {"variant": encoder.variant.name, "device": encoder.device}
    texts = [e.prompt for e in events] + [e.response for e in events if e.response]
    report["encoder_texts_per_s"] = timed(lambda: encoder.encode(texts), len(texts), repeat=3)
    report["encoder_events_per_s"] = timed(
        lambda: (encoder.encode([e.prompt for e in events]), encoder.encode([e.response for e in events])), len(events),
        repeat=3)
    if alone:
        for detector in pipeline.detectors:
            report[f"{detector.name}_alone_events_per_s"] = timed(lambda d=detector: d.detect(events, BatchContext(
                events, encoder.encode)), len(events))
    report["pipeline_events_per_s"] = timed(lambda: [pipeline.run(events[i:i + settings.batch_size])
                                                     for i in range(0, len(events), settings.batch_size)], len(events))
    calls = texts_the_pipeline_encodes(pipeline, events, settings.batch_size)
    report["texts_encoded_per_event"] = sum(map(len, calls)) / len(events)
    report["encoder_on_pipeline_texts_events_per_s"] = timed(lambda: [encoder.encode(c) for c in calls], len(events),
                                                             repeat=2)
    if encoder.device == "cuda":
        report["largest_encoder_batch"] = largest_gpu_batch(settings)
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(free_port(), log_file=Path(tmp) / "broker.log") as broker:
        stack_settings = variant_settings(variant, data_dir=tmp, kafka_bootstrap=broker.bootstrap,
                                          sink_web_port=free_port())
        ensure_topics(stack_settings)
        stack = Stack(settings=stack_settings, bootstrap=broker.bootstrap, log_dir=Path(tmp) / "logs")
        try:
            report["worker_events_per_s"] = through_pipeline(stack, stack_settings, raw)
        finally:
            stack.stop()
    report["ratio_pipeline_to_encoder"] = report["pipeline_events_per_s"] / report["encoder_events_per_s"]
    report["ratio_pipeline_to_encoder_on_its_texts"] = (report["pipeline_events_per_s"]
                                                        / report["encoder_on_pipeline_texts_events_per_s"])
    report["ratio_worker_to_pipeline"] = report["worker_events_per_s"] / report["pipeline_events_per_s"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1536)
    parser.add_argument("--variants", default="torch-float32,auto",
                        help="comma-separated encoder variants (backend-precision, or auto); the first is the baseline")
    args = parser.parse_args()
    setup_logging("WARNING")
    raw = real_events(args.events)
    events = [event_from_mapping(e) for e in raw]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    reports = {}
    for n, variant in enumerate(variants):
        if n:
            time.sleep(15)  # the previous variant's stack and broker finish exiting before anything is timed
        reports[variant] = measure(variant, raw, events, alone=n == len(variants) - 1)
    for variant, report in reports.items():
        print(f"-- {variant}")
        for key, value in report.items():
            print(f"{key:<40} {value:,.2f}" if isinstance(value, float) else f"{key:<40} {value}")
    base, default = reports[variants[0]], reports[variants[-1]]
    pairs = {"events": len(events), "baseline": base["variant"], "default": default["variant"],
             **{f"{k}": v for k, v in default.items() if k != "variant"},
             "baseline_worker_events_per_s": base["worker_events_per_s"],
             "baseline_pipeline_events_per_s": base["pipeline_events_per_s"],
             "speedup": default["worker_events_per_s"] / base["worker_events_per_s"]}
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()
