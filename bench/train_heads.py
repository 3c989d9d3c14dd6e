"""Fit the linear heads that ship with driftwarden, on labelled data shipped in the package.

- ``toxicity``: ``surge_toxicity.jsonl`` (text, toxic);
- ``prompt_injection``: ``prompt_injection.jsonl`` (text, label).

Each head is a logistic regression (scikit-learn, C=1, its default) on the unit-norm
all-MiniLM-L6-v2 embeddings. The figures written beside the weights are 5-fold stratified
cross-validated ROC AUC, so that no figure is measured on data the head was fitted on; the
shipped weights are then fitted on all rows. Run: ``.venv/bin/python bench/train_heads.py``.
Last line: ``key=value`` pairs.
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

HEADS = {"toxicity": ("surge_toxicity", "text", "toxic"), "prompt_injection": ("prompt_injection", "text", "label")}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    encoder = Encoder()
    pairs = []
    for name in HEADS:
        head = fit(name, encoder)
        (args.out / f"{name}.json").write_text(head.to_json() + "\n")
        print(f"{name}: {head.metrics}")
        pairs.append(f"{name}_cv_auc={head.metrics['cv_roc_auc_5fold']}")
    print(" ".join(pairs))


if __name__ == "__main__":
    main()
