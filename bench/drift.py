"""Drift test timing: ours at n_ref = n_cur in {500, 2000, 10000}, beside alibi-detect's MMDDrift.

Data: 384-d unit vectors. For n ≤ 2,000 they are real MiniLM embeddings of the shipped prompts
(halueval_general as reference, a random half mixed with halueval_qa questions as current); for
larger n (more rows than ship) the rows are drawn from a Gaussian fitted to the real embeddings.
Each run uses 1,000 permutations and prints seconds and peak memory (CPU: what the test adds to
the peak RSS of a fresh process holding the data; GPU: torch's peak allocation), for the MMD
test and for the default (``aggregate``) test.

With ``--power``: the power curve. For each method of ``detectors/drift/methods.py``, windows of
100, 200 and 500 per side, and a share of 0, 2, 5, 10, 20 and 50 % of the current window drawn
from ``halueval_qa`` questions (a new intent; the rest and the reference are disjoint draws of
``halueval_general`` prompts), the share of ``--draws`` draws with p < 0.05 (0 %: the false-alarm
rate), as a markdown table for the README; with ``--alibi`` alibi-detect's ``MMDDrift``, with
``--evidently`` Evidently's four embedding-drift methods (model, mmd, ratio, distance: their
defaults; they decide drifted or not, with no p-value) on the same draws beside them. Then a change of mix with nothing new (15 % and 30 % more of one
k-means topic the reference already has), and, for the 10 % draws, how many of the new rows the default test calls
novel and how pure the largest group of "what is new" is.

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


SHARES = (0.0, 0.02, 0.05, 0.10, 0.20, 0.50)
WINDOWS = (100, 200, 500)


def contaminated_draw(general: np.ndarray, questions: np.ndarray, n: int, share: float, rng):
    """(reference, current, number of new rows): disjoint draws of ``general``, with the last
    ``round(share·n)`` current rows drawn from ``questions``."""
    k = round(share * n)
    idx = rng.choice(len(general), 2 * n - k, replace=False)
    cur = np.concatenate([general[idx[n:]], questions[rng.choice(len(questions), k, replace=False)]])
    return general[idx[:n]], cur, k


def evidently_peers() -> dict:
    """Evidently's embedding-drift methods with their defaults (its legacy API, as installed here:
    ``evidently==0.7.*``); each returns (value, drifted, name) and no p-value."""
    import pandas as pd
    from evidently.legacy.metrics.data_drift import embedding_drift_methods as edm

    def wrap(method):
        return lambda ref, cur: bool(method(pd.DataFrame(cur), pd.DataFrame(ref))[1])

    return {f"Evidently {name}": wrap(getattr(edm, name)()) for name in ("model", "mmd", "ratio", "distance")}


def power_curve(general: np.ndarray, questions: np.ndarray, draws: int, permutations: int,
                alibi_python: Path | None = None, peers: dict | None = None,
                peer_windows: tuple[int, ...] = WINDOWS) -> tuple[dict, dict]:
    """({(method, window, share): detection rate}, what-is-new figures of the default test at 10 %).
    ``peers``: name -> (reference, current) -> drifted, run on the same draws at ``peer_windows``."""
    from driftwarden.detectors.drift.clusters import group
    from driftwarden.detectors.drift.methods import METHODS, run

    rates: dict[tuple[str, int, float], float] = {}
    named = {"novel_recall": [], "novel_precision": [], "group_size": [], "group_purity": []}
    for n in WINDOWS:
        for share in SHARES:
            hits: dict[str, int] = {}
            pairs = []
            for i in range(draws):
                rng = np.random.default_rng([n, round(share * 100), i])
                ref, cur, k = contaminated_draw(general, questions, n, share, rng)
                for method in METHODS:
                    result = run(method, ref, cur, permutations=permutations, seed=i)
                    hits[method] = hits.get(method, 0) + (result.p_value < 0.05)
                    if method == "aggregate" and share == 0.10 and n == 200 and result.novel:
                        new = set(range(len(cur) - k, len(cur)))
                        named["novel_recall"].append(len(new & set(result.novel)) / k)
                        named["novel_precision"].append(len(new & set(result.novel)) / len(result.novel))
                        groups = group(cur, result.novel, ref.mean(axis=0))
                        if groups:
                            named["group_size"].append(groups[0].size)
                            named["group_purity"].append(len(new & set(groups[0].rows)) / groups[0].size)
                for name, drifted in (peers or {}).items() if n in peer_windows else ():
                    hits[name] = hits.get(name, 0) + drifted(ref, cur)
                pairs.append((ref, cur))
            if alibi_python is not None:
                hits["alibi-detect MMDDrift"] = sum(p < 0.05 for p in alibi_p_values(alibi_python, pairs, permutations))
            for method, h in hits.items():
                rates[(method, n, share)] = h / draws
            print(f"window {n}, share {share:.0%}: " + ", ".join(f"{m} {h / draws:.2f}" for m, h in hits.items()),
                  flush=True)
    return rates, {key: float(np.mean(v)) if v else float("nan") for key, v in named.items()}


def reweighting_power(general: np.ndarray, draws: int, permutations: int, shares=(0.15, 0.30)) -> dict:
    """Detection rates when the current window holds ``share`` more of one topic that the
    reference already has (k-means topics of the general prompts): a change of mix with nothing
    new, where a novelty test alone is weak and MMD is not."""
    from sklearn.cluster import KMeans

    from driftwarden.detectors.drift.methods import METHODS, run

    topics = KMeans(8, n_init=4, random_state=0).fit_predict(general)
    out = {}
    for share in shares:
        hits = dict.fromkeys(METHODS, 0)
        for i in range(draws):
            rng = np.random.default_rng([7, round(share * 100), i])
            idx = rng.permutation(len(general))
            rest = idx[200:]
            topic = rest[topics[rest] == i % 8]
            k = round(share * 200)
            cur = np.concatenate([general[rest[:200 - k]], general[rng.choice(topic, k, replace=len(topic) < k)]])
            for method in METHODS:
                hits[method] += run(method, general[idx[:200]], cur, permutations=permutations, seed=i).p_value < 0.05
        out[share] = {m: h / draws for m, h in hits.items()}
        print(f"window 200, {share:.0%} more of an existing topic: "
              + ", ".join(f"{m} {r:.2f}" for m, r in out[share].items()), flush=True)
    return out


ALIBI_BATCH_SCRIPT = """
import sys, json, numpy as np
from alibi_detect.cd import MMDDrift
pairs = np.load(sys.argv[1]); n_perm = int(sys.argv[2]); out = []
for i in range(len(pairs.files) // 2):
    cd = MMDDrift(pairs[f"ref{i}"], backend="pytorch", p_val=0.05, n_permutations=n_perm, device="cpu")
    out.append(float(cd.predict(pairs[f"cur{i}"])["data"]["p_val"]))
print(json.dumps(out))
"""


def alibi_p_values(python: Path, pairs: list[tuple[np.ndarray, np.ndarray]], permutations: int) -> list[float]:
    """alibi-detect's MMDDrift p-value of each (reference, current) pair, in one process of its own venv."""
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {f"{side}{i}": a for i, (ref, cur) in enumerate(pairs) for side, a in (("ref", ref), ("cur", cur))}
        np.savez(f"{tmp}/pairs.npz", **arrays)
        out = subprocess.run([str(python), "-c", ALIBI_BATCH_SCRIPT, f"{tmp}/pairs.npz", str(permutations)],
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def power_table(rates: dict, draws: int) -> str:
    methods = list(dict.fromkeys(m for m, _, _ in rates))
    lines = ["| method | window | " + " | ".join(f"{s:.0%}" for s in SHARES) + " |",
             "| --- | --- | " + " | ".join("---" for _ in SHARES) + " |"]
    for method in methods:
        for n in WINDOWS:
            if all((method, n, s) in rates for s in SHARES):
                lines.append(f"| {method} | {n} | " + " | ".join(f"{rates[(method, n, s)]:.2f}" for s in SHARES)
                             + " |")
    return "\n".join(lines) + f"\n\n(share of {draws} draws with p < 0.05; the 0 % column is the false-alarm rate)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 10000])
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--alibi", action="store_true", help="also run alibi-detect's MMDDrift (its own venv)")
    parser.add_argument("--alibi-max-n", type=int, default=2000, help="largest n to give alibi-detect")
    parser.add_argument("--power", action="store_true", help="also the power curve of every method")
    parser.add_argument("--draws", type=int, default=40, help="draws per cell of the power curve")
    parser.add_argument("--evidently", action="store_true",
                        help="also Evidently's embedding-drift methods on the same draws")
    parser.add_argument("--power-permutations", type=int, default=500)
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
        from driftwarden.detectors.drift.methods import run

        t = time.perf_counter()
        default = run("aggregate", ref, cur, permutations=args.permutations)
        aggregate_seconds = time.perf_counter() - t
        report[f"{tag}_aggregate_seconds"] = aggregate_seconds
        report[f"{tag}_aggregate_p_value"] = default.p_value
        report[f"{tag}_seconds"] = seconds
        report[f"{tag}_p_value"] = ours.p_value
        report[f"{tag}_peak_mb"] = peak
        line = (f"n={n} ({kind}): ours {seconds:.2f} s, p={ours.p_value:.4f}, MMD²={ours.statistic:.5f}, peak +{peak:.0f} MB;"
                f" aggregate (default) {aggregate_seconds:.2f} s, p={default.p_value:.4f}")
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
        rates, named = power_curve(general, questions, args.draws, args.power_permutations, alibi_python,
                                   evidently_peers() if args.evidently else None)
        print(power_table(rates, args.draws))
        print("what is new, default test, windows of 200 with 10 % new: "
              + ", ".join(f"{k} {v:.2f}" for k, v in named.items()))
        for (method, n, share), rate in rates.items():
            if n == 200 and share in (0.0, 0.05, 0.10):
                report[f"power_{method.replace(' ', '_')}_n{n}_{round(share * 100)}pct"] = rate
        report.update({f"aggregate_n200_10pct_{k}": v for k, v in named.items()})
        for share, by_method in reweighting_power(general, args.draws, args.power_permutations).items():
            report.update({f"reweight_{m}_n200_{round(share * 100)}pct": r for m, r in by_method.items()})
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
