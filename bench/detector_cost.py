"""What the issue-12 detectors cost: the score worker's in-process events/s, before and after, in one run.

The same events go through ``ScoringPipeline.run`` (what a score worker runs per batch, with
redaction as configured) twice, in one process, alternating rounds so that both see the same
machine load:

- **previous**: the detectors as they were configured before grounded hallucination, context
  scanning and names-and-places PII (``hallucination.backend=lexical``,
  ``prompt_injection.scan_context=false``, ``pii.nlp_model`` unset);
- **current**: the defaults.

Events: half HaluEval general prompt/response pairs (no context), half RAG events whose context
is a real document (an XSum article or a BIPIA e-mail, table or answer from
``../shared/datasets``, or HaluEval QA passages when those files are absent) with a summary or
answer as the response. Prints events/s of each and their ratio (goal ≥ 0.6), and the same per
detector. Last line: ``key=value`` pairs. Run: ``.venv/bin/python bench/detector_cost.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from driftwarden.core.logging import setup_logging
from driftwarden.core.schemas import event_from_mapping
from driftwarden.core.settings import load_settings
from driftwarden.detectors.base import BatchContext
from driftwarden.detectors.pipeline import ScoringPipeline
from driftwarden.pkg_data import path as data_path
from driftwarden.pkg_data import rows
from driftwarden.core.ingest.datasets import ReplayOptions, synthesise
from driftwarden.core.ingest.jsonl import read_jsonl

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def rag_pairs(n: int) -> list[tuple[str, str, str]]:
    """(question, context, response) of real documents."""
    out: list[tuple[str, str, str]] = []
    grounding, bipia = DATA / "grounding_train.jsonl", DATA / "indirect_injection_train.jsonl"
    if grounding.exists() and bipia.exists():
        with grounding.open(encoding="utf-8") as fh:
            docs = [json.loads(line) for line in fh]
        out += [("Summarise the article.", r["context"], r["answer"]) for r in docs
                if r["source"] == "xsum_hallucination_annotations"][: n // 2]
        with bipia.open(encoding="utf-8") as fh:
            docs = [json.loads(line) for line in fh]
        out += [(r["question"], r["context"], "The document does not say.") for r in docs][: n - len(out)]
    else:
        out = [(r["question"], r["context"], r["answer"]) for r in rows("halueval_qa")][:n]
    return out


def events(n: int) -> list:
    general = list(synthesise(read_jsonl(data_path("halueval_general")), n, ReplayOptions(id_prefix="g")))
    rag = rag_pairs(n)
    out = []
    for i in range(n):
        base = general[i % len(general)]
        if i % 2:
            q, c, a = rag[(i // 2) % len(rag)]
            base = {**base, "prompt": q, "response": a, "context": [c]}
        out.append(event_from_mapping({**base, "event_id": f"cost-{i}"}))
    return out


def previous(settings):
    d = settings.detectors
    changes = {"hallucination": d.hallucination.model_copy(update={"backend": "lexical"}),
               "prompt_injection": d.prompt_injection.model_copy(update={"scan_context": False})}
    if "nlp_model" in type(d.pii).model_fields:
        changes["pii"] = d.pii.model_copy(update={"nlp_model": None})
    return settings.model_copy(update={"detectors": d.model_copy(update=changes)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    setup_logging("WARNING")
    settings = load_settings()
    batch = events(args.events)
    pipelines = {"previous": ScoringPipeline.from_settings(previous(settings)),
                 "current": ScoringPipeline.from_settings(settings)}
    spent = dict.fromkeys(pipelines, 0.0)
    per_detector: dict[str, float] = {}
    size = settings.batch_size
    for p in pipelines.values():
        p.run(batch[:8])  # warm up
    for _ in range(args.rounds):
        for name, p in pipelines.items():
            started = time.perf_counter()
            for i in range(0, len(batch), size):
                p.run(batch[i:i + size])
            spent[name] += time.perf_counter() - started
    for name, p in pipelines.items():
        for d in p.detectors:
            started = time.perf_counter()
            for i in range(0, len(batch), size):
                part = batch[i:i + size]
                d.detect(part, BatchContext(part, p.encoder.encode if p.encoder else None))
            per_detector[f"{name}_{d.name}_alone_events_per_s"] = len(batch) / (time.perf_counter() - started)
    report: dict[str, float | int] = {"events": len(batch), "redact_pii": int(settings.redact_pii)}
    for name in pipelines:
        report[f"{name}_events_per_s"] = len(batch) * args.rounds / spent[name]
    report["ratio_current_to_previous"] = report["current_events_per_s"] / report["previous_events_per_s"]
    report.update(per_detector)
    for key, value in report.items():
        print(f"{key:<52} {value:,.3f}" if isinstance(value, float) else f"{key:<52} {value}")
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
