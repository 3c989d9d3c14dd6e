"""Fit the grounding head of the hallucination detector, and measure it on sources it never saw.

Data: ``bench/grounding_data.py`` (``grounding_train.jsonl``'s four sources and the shipped
``halueval_qa.jsonl``); features: ``driftwarden.detectors.grounding`` (sentence alignment with
the shipped MiniLM). Model: logistic regression on standardised features (scikit-learn,
C=1, balanced class weights), the standardisation folded into the shipped weights; it is
deterministic (lbfgs, no sampling).

A response's score is the mean of the whole response's and its most unsupported sentence's
(``grounding.response_score``; the head scores one sentence alone as a one-sentence response).
Figures, all on rows the scoring head was not fitted on:

- **cv**: 5-fold cross-validation grouped by document (rows sharing a context, whatever its case
  or tokenisation, never straddle train and test), per source, F1 at a threshold chosen on the
  other folds;
- **loso**: leave one source out: fitted on the other sources (less any document the left-out
  source shares), scored on that one, at a threshold chosen without it;
- **shortcuts**: on the same rows, the share of response words absent from the context
  (lexical overlap) and the response length, alone.

The default threshold is chosen on the cross-validated scores: the lowest threshold whose
precision is at least ``--precision`` (0.8) with supported and hallucinated responses weighted
equally (the training mix is 72 % hallucinated, far more than production traffic: a threshold
chosen on raw counts flags most supported answers), i.e. the best recall at that precision. It
is written into the head's metrics with the share of supported (label 0) responses it flags. Run: ``.venv/bin/python bench/train_grounding.py``
(features cached under ``--cache``; about 6 minutes the first time). Last line: ``key=value``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from driftwarden.bench.grounding_data import CACHE_DEFAULT, DATA, TASK, features, load_rows
from driftwarden.bench.thresholds import threshold_for_precision
from driftwarden.detectors import grounding
from driftwarden.detectors.heads import LinearHead

OUT = Path(__file__).resolve().parents[1] / "pkg" / "data" / "heads" / "grounding.json"


def fit(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """(coef, intercept) on raw features: the scaler folded into a logistic regression."""
    scaler = StandardScaler().fit(X)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    model = LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced").fit((X - scaler.mean_) / scale, y)
    coef = model.coef_[0] / scale
    return coef, float(model.intercept_[0] - coef @ scaler.mean_)


def predict(coef: np.ndarray, intercept: float, X: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(X @ coef + intercept)))


def scored(coef: np.ndarray, intercept: float, f: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The detector's score of each row in ``rows`` (``grounding.response_score`` of the whole
    response's and each sentence's)."""
    whole = predict(coef, intercept, f["X"][rows])
    position = {int(r): n for n, r in enumerate(rows)}
    per_sentence: list[list[float]] = [[] for _ in rows]
    mine = np.isin(f["S_row"], rows)
    for r, p in zip(f["S_row"][mine], predict(coef, intercept, f["S"][mine]), strict=True):
        per_sentence[position[int(r)]].append(float(p))
    return np.array([grounding.response_score(float(w), s) for w, s in zip(whole, per_sentence, strict=True)])


def folds(groups: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """A fold number per row, the same for every row of a group."""
    rng = np.random.default_rng(seed)
    names = sorted(set(groups))
    fold = dict(zip(names, rng.integers(k, size=len(names)), strict=True))
    return np.array([fold[g] for g in groups])


def out_of_fold(f: dict[str, np.ndarray], groups: np.ndarray, k: int = 5) -> np.ndarray:
    X, y = f["X"], f["y"]
    oof = np.zeros(len(y))
    fold = folds(groups, k)
    for part in range(k):
        coef, b = fit(X[fold != part], y[fold != part])
        rows = np.nonzero(fold == part)[0]
        oof[rows] = scored(coef, b, f, rows)
    return oof


def leave_one_source_out(f: dict[str, np.ndarray], sources: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Scores of each source by a head fitted on the others, less any row whose document the
    left-out source also holds (BEGIN and FaithDial share Wikipedia passages)."""
    X, y = f["X"], f["y"]
    out = np.zeros(len(y))
    for s in sorted(set(sources)):
        test = sources == s
        train = ~test & ~np.isin(groups, groups[test])
        coef, b = fit(X[train], y[train])
        rows = np.nonzero(test)[0]
        out[rows] = scored(coef, b, f, rows)
    return out


def auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def evaluate(data: list[dict], f: dict[str, np.ndarray], threshold: float | None = None,
             precision: float = 0.8) -> dict:
    """Per source and per task: cv and loso AUC and F1 beside the shortcuts.

    The shipped threshold is chosen on all out-of-fold scores. Each figure at a threshold uses
    one chosen without the rows it is measured on: for a left-out source, on the other
    sources' out-of-fold scores; for cross-validated figures, on the other folds' (nested).
    """
    f = {**f, "X": f["X"].astype(np.float64), "S": f["S"].astype(np.float64)}
    y = f["y"].astype(int)
    sources = np.array([r["source"] for r in data])
    groups = np.array([r["group"] for r in data])
    oof = out_of_fold(f, groups)
    loso = leave_one_source_out(f, sources, groups)
    if threshold is None:
        threshold = threshold_for_precision(y, oof, precision, balanced=True)
    fold = folds(groups)
    nested = np.zeros(len(y), bool)
    for part in range(5):
        m = fold == part
        nested[m] = oof[m] >= threshold_for_precision(y[~m], oof[~m], precision, balanced=True)
    loso_flag = np.zeros(len(y), bool)
    for s in set(sources):
        m = sources == s
        loso_flag[m] = loso[m] >= threshold_for_precision(y[~m], oof[~m], precision, balanced=True)
    overlap = f["X"][:, grounding.FEATURES.index("unsup_words_mean")]
    length = np.array([len(r["response"].split()) for r in data], float)
    rows = {}
    tasks = np.array([TASK[s] for s in sources])
    for kind, keys, column in (("source", sorted(set(sources)), sources), ("task", sorted(set(tasks)), tasks)):
        for key in keys:
            m = column == key
            rows[f"{kind}:{key}"] = {
                "n": int(m.sum()), "positive": round(float(y[m].mean()), 3),
                "cv_auc": auc(y[m], oof[m]), "loso_auc": auc(y[m], loso[m]),
                "cv_f1": float(f1_score(y[m], nested[m])), "loso_f1": float(f1_score(y[m], loso_flag[m])),
                "loso_flagged": float(loso_flag[m].mean()),
                "overlap_auc": auc(y[m], overlap[m]), "length_auc": auc(y[m], length[m]),
            }
    clean = y == 0
    return {"threshold": threshold, "rows": rows, "cv_auc": auc(y, oof), "cv_f1": float(f1_score(y, nested)),
            "cv_precision": float((nested & (y == 1)).sum() / max(1, nested.sum())),
            "cv_recall": float((nested & (y == 1)).sum() / max(1, y.sum())),
            "cv_flagged_supported": float(nested[clean].mean())}


def table(report: dict) -> str:
    lines = [f"{'rows':<38} {'n':>5} {'pos':>5} {'cv AUC':>7} {'LOSO AUC':>8} {'cv F1':>6} {'LOSO F1':>7} "
             f"{'overlap':>7} {'length':>6}"]
    for key, r in report["rows"].items():
        lines.append(f"{key:<38} {r['n']:>5} {r['positive']:>5.2f} {r['cv_auc']:>7.3f} {r['loso_auc']:>8.3f} "
                     f"{r['cv_f1']:>6.3f} {r['loso_f1']:>7.3f} {r['overlap_auc']:>7.3f} {r['length_auc']:>6.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding grounding_train.jsonl")
    parser.add_argument("--cache", type=Path, default=CACHE_DEFAULT)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--precision", type=float, default=0.8)
    args = parser.parse_args()
    data = load_rows(args.data)
    f = features(data, args.cache)
    X, y = f["X"].astype(np.float64), f["y"].astype(int)
    report = evaluate(data, f, precision=args.precision)
    print(table(report))
    coef, intercept = fit(X, y)
    metrics = {
        "trained_on": f"grounding_train.jsonl + halueval_qa.jsonl ({len(y)} rows, {int(y.sum())} hallucinated)",
        "threshold": report["threshold"],
        "threshold_rule": f"lowest threshold with cross-validated precision >= {args.precision}, classes weighted "
                          f"equally (all sources pooled)",
        "cv_roc_auc_grouped_5fold": round(report["cv_auc"], 4),
        "cv_f1_at_threshold": round(report["cv_f1"], 4),
        "cv_precision_at_threshold": round(report["cv_precision"], 4),
        "cv_recall_at_threshold": round(report["cv_recall"], 4),
        "cv_supported_flagged_at_threshold": round(report["cv_flagged_supported"], 4),
        "per_rows": {k: {m: round(v, 4) if isinstance(v, float) else v for m, v in r.items()}
                     for k, r in report["rows"].items()},
        "fitted_at": datetime.now(UTC).date().isoformat(),
        "model": "StandardScaler + LogisticRegression(C=1, class_weight=balanced), scaler folded in",
    }
    from driftwarden.detectors.embeddings import Encoder

    head = LinearHead(name="grounding", coef=tuple(float(c) for c in coef), intercept=intercept,
                      encoder=Encoder().version, metrics=metrics, features=grounding.FEATURES)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(head.to_json() + "\n")
    print(f"wrote {args.out}")
    print(f"threshold={report['threshold']} cv_auc={report['cv_auc']:.4f} cv_f1={report['cv_f1']:.4f} "
          f"cv_precision={report['cv_precision']:.4f} cv_recall={report['cv_recall']:.4f} "
          f"supported_flagged={report['cv_flagged_supported']:.4f}")


if __name__ == "__main__":
    main()
