"""The encoder's quality gate: which variants may run, and which is fastest.

For every variant of the shared embedding model (torch, ONNX Runtime, OpenVINO; float32,
bfloat16, int8), in one run on this machine:

- texts/s encoding the prompts and responses of the benchmark's real events
  (``bench/detectors.py``'s mix), tokenized once and batched by length: the best of three passes,
  the variants taken in turn (``--rounds``);
- the cosine of its embeddings of the shipped prompts and responses to the float32 ones
  (lowest and mean; the gate wants the lowest ≥ 0.99);
- for each reduced precision that passes the cosine, every detector's AUC from
  ``bench/eval_detectors.py`` (cross-validated, left-out sources, in-sample: toxicity,
  hallucination, prompt injection) run with that variant, against the float32 run (the gate
  wants every one within 0.005). float32 variants compute the same numbers up to rounding and
  are judged on the cosine alone.

Writes the verdict to ``pkg/data/encoder_gate.json`` (``backend=auto`` takes the fastest variant
it passed), prints a table, and ends with a ``key=value`` line. 20 to 40 minutes on two cores
(three runs of the quality evaluation). Run: ``.venv/bin/python bench/encoder_gate.py``
(``--no-quality`` for speed and cosine only, which writes nothing; ``--speed-only`` to update
them in the shipped verdict, keeping its AUC comparisons).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from detectors import real_events  # noqa: E402  (the same events as bench/detectors.py)

from driftwarden.core.detector_configs import EmbeddingsConfig  # noqa: E402
from driftwarden.detectors.embeddings import Encoder  # noqa: E402
from driftwarden.detectors.encoders import export  # noqa: E402
from driftwarden.detectors.encoders.variants import BACKENDS, FLOAT, PRECISIONS, Variant, runs_here  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "pkg" / "data" / "encoder_gate.json"
AUC_TOLERANCE = 0.005
MIN_COSINE = 0.99
QUALITY = ("toxicity", "hallucination", "prompt_injection")


ROUNDS = 3
"""Timed passes per variant, taken in turn (each variant once per round): the best pass counts.
Two shared cores are noisy: one pass each had OpenVINO and torch bfloat16 within a few per cent
in some runs, in either order, and ``backend=auto`` ranks by these figures."""


def speed_and_cosine(variants: list[Variant], texts: list[str], cache: Path, rounds: int = ROUNDS) -> dict[str, dict]:
    """Per variant: texts/s (the best of ``rounds`` passes over ``texts``, the variants taken in
    turn so that a slow spell of the machine falls on all of them alike) and the lowest and mean
    cosine of its embeddings of the gate's texts to the float32 reference."""
    encoders = {}
    for variant in variants:
        encoders[variant.name] = Encoder(EmbeddingsConfig(backend=variant.backend, precision=variant.precision,
                                                          min_cosine=0.0), cache)
        encoders[variant.name].encode(texts[:64])  # warm up
    best = dict.fromkeys(encoders, 0.0)
    for _ in range(rounds):
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode(texts)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - started))
    gate = export.gate_texts()
    float32 = encoders.get(FLOAT) or Encoder(EmbeddingsConfig(backend="torch", precision="float32"), cache)
    reference = float32.encode(gate)  # the reference model, not loaded again when it was measured
    out = {}
    for name, encoder in encoders.items():
        cosine = np.sum(reference * encoder.encode(gate), axis=1)
        out[name] = {"texts_per_s": round(best[name], 1), "min_cosine": round(float(cosine.min()), 6),
                     "mean_cosine": round(float(cosine.mean()), 6)}
    return out


def quality(variant: Variant) -> dict[str, float]:
    """The AUC figures of ``bench/eval_detectors.py`` with ``variant`` (a fresh process)."""
    env = {**os.environ, "DRIFTWARDEN_DETECTORS__EMBEDDINGS__BACKEND": variant.backend,
           "DRIFTWARDEN_DETECTORS__EMBEDDINGS__PRECISION": variant.precision}
    figures: dict[str, float] = {}
    for only in QUALITY:
        run = subprocess.run([sys.executable, str(Path(__file__).with_name("eval_detectors.py")), "--only", only],
                             env=env, capture_output=True, text=True, check=True)
        last = run.stdout.strip().splitlines()[-1]
        for pair in last.split():
            key, _, value = pair.partition("=")
            if "auc" in key:
                try:
                    figures[key] = float(value)
                except ValueError:
                    continue
    return {k: v for k, v in figures.items() if np.isfinite(v)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=768)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timed passes per variant; the best counts")
    parser.add_argument("--no-quality", action="store_true", help="speed and cosine only; writes nothing")
    parser.add_argument("--speed-only", action="store_true",
                        help="measure speed and cosine again and update them in the shipped verdict, keeping its "
                             "AUC comparisons (speed varies with the machine and its load, the AUCs do not)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    args.no_quality = args.no_quality or args.speed_only
    events = real_events(args.events)
    texts = [e["prompt"] for e in events] + [e["response"] for e in events if e.get("response")]
    rows: dict[str, dict] = {}
    runnable = []
    for backend in BACKENDS:
        for precision in PRECISIONS[backend]:
            variant = Variant(backend, precision)
            why = runs_here(variant)
            rows[variant.name] = {"runs_here": why is None, **({"reason": why} if why else {})}
            if why is None:
                runnable.append(variant)
    with tempfile.TemporaryDirectory() as tmp:
        for name, measured in speed_and_cosine(runnable, texts, Path(tmp), args.rounds).items():
            rows[name].update(measured)
            print(f"{name:<20} {rows[name]}", flush=True)
    reference = quality(Variant.parse(FLOAT)) if not args.no_quality else {}
    for name, row in rows.items():
        variant = Variant.parse(name)
        if not row["runs_here"]:
            row["passed"] = False
            continue
        row["passed"] = row["min_cosine"] >= MIN_COSINE
        if not row["passed"]:
            row["reason"] = f"lowest cosine {row['min_cosine']:.4f} < {MIN_COSINE}"
        elif variant.reduced and not args.no_quality:
            figures = quality(variant)
            changes = {k: round(figures[k] - reference[k], 4) for k in reference if k in figures}
            worst = max(changes, key=lambda k: abs(changes[k]))
            row["largest_auc_change"] = {worst: changes[worst]}
            row["auc_figures_compared"] = len(changes)
            if abs(changes[worst]) > AUC_TOLERANCE or len(changes) < len(reference):
                row["passed"] = False
                row["reason"] = f"{worst} moved by {changes[worst]:+.4f} (at most ±{AUC_TOLERANCE})"
            print(f"{name:<20} largest AUC change {worst} {changes[worst]:+.4f}", flush=True)
    print(f"\n{'variant':<20} {'texts/s':>8} {'min cos':>9} {'passed':>7}  note")
    for name, row in rows.items():
        print(f"{name:<20} {row.get('texts_per_s', 0):>8.1f} {row.get('min_cosine', 0):>9.5f} "
              f"{str(row['passed']):>7}  {row.get('reason', '')}")
    if args.speed_only:
        shipped = json.loads(OUT.read_text())
        for name, row in rows.items():
            kept = shipped["variants"].get(name, {})
            merged = {**kept, **{k: row[k] for k in ("runs_here", "texts_per_s", "min_cosine", "mean_cosine")
                                 if k in row}}
            merged["passed"] = bool(kept.get("passed")) and row["passed"]
            shipped["variants"][name] = merged
        shipped["speed_measured_at"] = datetime.now(UTC).date().isoformat()
        OUT.write_text(json.dumps(shipped, indent=1) + "\n")
        print(f"updated speed and cosine in {OUT}")
    elif not args.no_quality:
        OUT.write_text(json.dumps({
            "measured_at": datetime.now(UTC).date().isoformat(), "machine": platform.processor() or platform.machine(),
            "cpu_threads": os.cpu_count(), "min_cosine": MIN_COSINE, "auc_tolerance": AUC_TOLERANCE,
            "reference_auc": reference, "variants": rows}, indent=1) + "\n")
        print(f"wrote {OUT}")
    passed = [n for n, r in rows.items() if r["passed"]]
    fastest = max(passed, key=lambda n: rows[n]["texts_per_s"]) if passed else FLOAT
    print(" ".join([f"fastest_passed={fastest}", *(f"{n}_texts_per_s={r.get('texts_per_s', 0)}" for n, r in rows.items()),
                    f"speedup_vs_float={rows[fastest]['texts_per_s'] / rows[FLOAT]['texts_per_s']:.2f}"]))


if __name__ == "__main__":
    main()
