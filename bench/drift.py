"""Drift test timing: ours at n_ref = n_cur in {500, 2000, 10000}, beside alibi-detect's MMDDrift.

Data: 384-d unit vectors. For n ≤ 2,000 they are real MiniLM embeddings of the shipped prompts
(halueval_general as reference, a random half mixed with halueval_qa questions as current); for
larger n (more rows than ship) the rows are drawn from a Gaussian fitted to the real embeddings.
Each run uses 1,000 permutations and prints seconds and peak memory (CPU: what the test adds to
the peak RSS of a fresh process holding the data; GPU: torch's peak allocation). With
``--power`` it also finds the smallest window per side at which halueval_general prompts
against halueval_qa questions give p < 0.05 in at least 95 % of 100 draws.

alibi-detect is a benchmark-only peer (BSL licence since 2024; it pins numpy < 2 and
transformers < 5): with ``--alibi`` it is installed into ``bench/.venv-alibi`` (once) and run
there as a separate process on the same arrays (saved as .npy), with the same number of
permutations; its time and p-value are printed beside ours. Last line: ``key=value`` pairs.
Run: ``.venv/bin/python bench/drift.py [--alibi] [--power] [--sizes 500 2000 10000]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from driftwarden.detectors.drift.mmd import mmd_permutation_test

HERE = Path(__file__).resolve().parent
ALIBI_VENV = HERE / ".venv-alibi"
ALIBI_SCRIPT = """
import sys, time, json, numpy as np
from alibi_detect.cd import MMDDrift
x = np.load(sys.argv[1]); y = np.load(sys.argv[2]); n_perm = int(sys.argv[3])
t = time.perf_counter()
cd = MMDDrift(x, backend="pytorch", p_val=0.05, n_permutations=n_perm, device="cpu")
out = cd.predict(y)
print(json.dumps({"seconds": time.perf_counter() - t, "p_value": float(out["data"]["p_val"]),
                  "statistic": float(out["data"]["distance"])}))
"""


def real_embeddings() -> tuple[np.ndarray, np.ndarray]:
    from driftwarden.detectors.embeddings import Encoder
    from driftwarden.pkg_data import rows

    enc = Encoder()
    general = enc.encode([r["prompt"] for r in rows("halueval_general")])
    questions = enc.encode(sorted({r["question"] for r in rows("halueval_qa")}))
    return general, questions


def samples(n: int, general: np.ndarray, questions: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    if 2 * n <= len(general):
        idx = rng.permutation(len(general))
        ref = general[idx[:n]]
        cur = np.concatenate([general[idx[n:n + n // 2]], questions[rng.integers(0, len(questions), n - n // 2)]])
        return ref, cur
    mean, cov = general.mean(0), np.cov(general, rowvar=False)
    ref = rng.multivariate_normal(mean, cov, size=n).astype(np.float32)
    cur = rng.multivariate_normal(mean + 0.01, cov, size=n).astype(np.float32)
    return ref, cur


def ensure_alibi() -> Path:
    python = ALIBI_VENV / "bin" / "python"
    if not python.exists():
        print("installing alibi-detect into bench/.venv-alibi (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(ALIBI_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "alibi-detect[torch]==0.13.*"],
                       check=True)
    return python


PEAK_SCRIPT = """
import resource, sys, time, numpy as np, torch
from driftwarden.detectors.drift.mmd import mmd_permutation_test
x = np.load(sys.argv[1]); y = np.load(sys.argv[2])
mmd_permutation_test(x[:20], y[:20], permutations=10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
mmd_permutation_test(x, y, permutations=int(sys.argv[3]))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def peak_in_fresh_process(ref: np.ndarray, cur: np.ndarray, permutations: int) -> float:
    """MB the test adds to the peak RSS of a fresh process that already holds the data."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", ref)
        np.save(f"{tmp}/y.npy", cur)
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, f"{tmp}/x.npy", f"{tmp}/y.npy", str(permutations)],
                             capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def smallest_powerful_window(general: np.ndarray, questions: np.ndarray, rng, draws: int = 100,
                             sizes=(4, 5, 6, 8, 10, 15, 20, 30, 50, 100, 200)) -> tuple[int | None, dict[int, float]]:
    """Smallest window (per side) where general-vs-QA gives p < 0.05 in at least 95 % of draws."""
    power = {}
    for n in sizes:
        hits = sum(
            mmd_permutation_test(general[rng.choice(len(general), n, replace=False)],
                                 questions[rng.choice(len(questions), n, replace=False)],
                                 permutations=500, seed=i).p_value < 0.05
            for i in range(draws)
        )
        power[n] = hits / draws
        if power[n] >= 0.95:
            return n, power
    return None, power


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 10000])
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--alibi", action="store_true", help="also run alibi-detect's MMDDrift (its own venv)")
    parser.add_argument("--alibi-max-n", type=int, default=2000, help="largest n to give alibi-detect")
    parser.add_argument("--power", action="store_true", help="also find the smallest window with 95 %% power")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    general, questions = real_embeddings()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    alibi_python = ensure_alibi() if args.alibi else None
    report: dict[str, float | str] = {"device": device, "permutations": args.permutations}
    cases = [(n, "drifted") for n in args.sizes]
    if alibi_python is not None:
        cases.append((500, "same-population"))  # p-values mid-range, where agreement means something
    for n, kind in cases:
        if kind == "drifted":
            ref, cur = samples(n, general, questions, rng)
        else:
            idx = rng.permutation(len(general))
            ref, cur = general[idx[:n]], general[idx[n:2 * n]]
        tag = f"n{n}" if kind == "drifted" else f"n{n}_null"
        mmd_permutation_test(ref[:50], cur[:50], permutations=10)  # warm up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        ours = mmd_permutation_test(ref, cur, permutations=args.permutations)
        seconds = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_in_fresh_process(
            ref, cur, args.permutations)
        report[f"{tag}_seconds"] = seconds
        report[f"{tag}_p_value"] = ours.p_value
        report[f"{tag}_peak_mb"] = peak
        line = f"n={n} ({kind}): ours {seconds:.2f} s, p={ours.p_value:.4f}, MMD²={ours.statistic:.5f}, peak +{peak:.0f} MB"
        if alibi_python is not None and n <= args.alibi_max_n:
            with tempfile.TemporaryDirectory() as tmp:
                np.save(f"{tmp}/x.npy", ref)
                np.save(f"{tmp}/y.npy", cur)
                out = subprocess.run([str(alibi_python), "-c", ALIBI_SCRIPT, f"{tmp}/x.npy", f"{tmp}/y.npy",
                                      str(args.permutations)], capture_output=True, text=True, check=True)
            alibi = json.loads(out.stdout.strip().splitlines()[-1])
            report[f"{tag}_alibi_seconds"] = alibi["seconds"]
            report[f"{tag}_alibi_p_value"] = alibi["p_value"]
            report[f"{tag}_speedup"] = alibi["seconds"] / seconds
            line += (f"; alibi-detect {alibi['seconds']:.2f} s, p={alibi['p_value']:.4f} "
                     f"(×{alibi['seconds'] / seconds:.1f} faster, |Δp|={abs(alibi['p_value'] - ours.p_value):.4f})")
        print(line, flush=True)
    if args.power:
        window, power = smallest_powerful_window(general, questions, rng)
        print("power, halueval_general vs halueval_qa questions, 100 draws per window size: "
              + ", ".join(f"{n}: {p:.2f}" for n, p in power.items()))
        report["smallest_window_95pct_power"] = window if window is not None else "none"
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
