"""Detector quality on the labelled public data shipped in the package, beside the shortcuts.

- toxicity on ``surge_toxicity.jsonl``: ROC AUC, precision and recall at the threshold, and
  profanity-check alone (the previous default) for comparison;
- hallucination on ``halueval_qa.jsonl`` (answer against context): ROC AUC overall and on
  answers of at most four words, beside the answer-length-only baseline on both;
- prompt injection on ``prompt_injection.jsonl``: ROC AUC beside the length-only baseline;
- PII on ``pii_spans.jsonl``: span precision and recall per entity type (a predicted span
  matches a labelled one of the same type when they overlap), and the share of
  ``halueval_general.jsonl`` prompts flagged (mostly PII-free real queries).

The toxicity and injection heads were fitted on these same files (``bench/train_heads.py``):
their figures here are in-sample and optimistic; the honest figures are the 5-fold
cross-validated ones, printed beside them (``cv_*``), recomputed here from scratch.
Everything runs through ``driftwarden.detectors.offline`` (what ``driftwarden score`` runs).
Last line: ``key=value`` pairs. Run: ``.venv/bin/python bench/eval_detectors.py``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from sklearn.metrics import roc_auc_score

from driftwarden.core.settings import load_settings
from driftwarden.detectors.offline import build_offline, score_rows
from driftwarden.pkg_data import rows

PII_PATTERN_TYPES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS", "IBAN_CODE", "US_SSN", "URL")


def scored(name: str, settings, data: list[dict], field: str, context_field: str | None = None) -> tuple[list[dict], float]:
    detector = build_offline(name, settings)
    started = time.perf_counter()
    out = list(score_rows(detector, list(enumerate(data, 1)), field, context_field))
    return out, len(data) / (time.perf_counter() - started)


def pr_at(labels: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    tp = int((flagged & (labels == 1)).sum())
    return tp / max(1, int(flagged.sum())), tp / max(1, int((labels == 1).sum()))


def cv_scores(dataset: str, text_field: str, label_field: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(texts, labels, out-of-fold head probabilities): the head refitted per fold, as in
    bench/train_heads.py, so that no row is scored by a head fitted on it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from driftwarden.detectors.embeddings import Encoder

    data = list(rows(dataset))
    texts = [r[text_field] for r in data]
    y = np.array([int(r[label_field]) for r in data])
    oof = cross_val_predict(LogisticRegression(C=1.0, max_iter=5000), Encoder().encode(texts), y,
                            cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    return texts, y, oof


def cv_toxicity_blend(settings) -> float:
    """Cross-validated AUC of the whole builtin toxicity score (profanity-check + refitted head)."""
    from profanity_check import predict_prob

    texts, y, oof = cv_scores("surge_toxicity", "text", "toxic")
    w = settings.detectors.toxicity.lexical_weight
    return float(roc_auc_score(y, w * np.asarray(predict_prob(texts)) + (1 - w) * oof))


def toxicity(settings, report: dict) -> None:
    from profanity_check import predict_prob

    data = list(rows("surge_toxicity"))
    y = np.array([r["toxic"] for r in data])
    out, rate = scored("toxicity", settings, data, "text")
    s = np.array([o["score"] for o in out])
    precision, recall = pr_at(y, s >= settings.detectors.toxicity.threshold)
    report.update(
        toxicity_auc_in_sample=roc_auc_score(y, s),
        toxicity_auc_cv=cv_toxicity_blend(settings),
        toxicity_precision=precision, toxicity_recall=recall,
        toxicity_threshold=settings.detectors.toxicity.threshold,
        toxicity_profanity_check_auc=roc_auc_score(y, predict_prob([r["text"] for r in data])),
        toxicity_texts_per_s=rate,
    )


def hallucination(settings, report: dict) -> None:
    data = list(rows("halueval_qa"))
    y = np.array([r["hallucinated"] for r in data])
    out, rate = scored("hallucination", settings, data, "answer", "context")
    s = np.array([o["score"] for o in out])
    length = np.array([len(r["answer"]) for r in data])
    short = np.array([len(r["answer"].split()) <= 4 for r in data])
    precision, recall = pr_at(y, s >= settings.detectors.hallucination.threshold)
    report.update(
        hallucination_auc=roc_auc_score(y, s), hallucination_length_baseline_auc=roc_auc_score(y, length),
        hallucination_auc_short=roc_auc_score(y[short], s[short]),
        hallucination_length_baseline_auc_short=roc_auc_score(y[short], length[short]),
        hallucination_short_n=int(short.sum()), hallucination_precision=precision, hallucination_recall=recall,
        hallucination_threshold=settings.detectors.hallucination.threshold, hallucination_texts_per_s=rate,
    )


def injection(settings, report: dict) -> None:
    data = list(rows("prompt_injection"))
    y = np.array([r["label"] for r in data])
    out, rate = scored("prompt_injection", settings, data, "text")
    s = np.array([o["score"] for o in out])
    precision, recall = pr_at(y, s >= settings.detectors.prompt_injection.threshold)
    report.update(
        injection_auc_in_sample=roc_auc_score(y, s),
        injection_auc_cv=float(roc_auc_score(*cv_scores("prompt_injection", "text", "label")[1:])),
        injection_length_baseline_auc=roc_auc_score(y, [len(r["text"]) for r in data]),
        injection_precision=precision, injection_recall=recall, injection_texts_per_s=rate,
    )


def pii(settings, report: dict, per_type: dict) -> None:
    detector = build_offline("pii", settings)
    data = list(rows("pii_spans"))
    tp: dict[str, int] = defaultdict(int)
    fp: dict[str, int] = defaultdict(int)
    fn: dict[str, int] = defaultdict(int)
    started = time.perf_counter()
    for r in data:
        predicted = [(s.start, s.end, s.type) for s in detector.find(r["text"], "prompt")]
        truth = [(s["start"], s["end"], s["entity_type"]) for s in r["spans"]]
        for ps, pe, pt in predicted:
            if any(pt == tt and ps < te and ts < pe for ts, te, tt in truth):
                tp[pt] += 1
            else:
                fp[pt] += 1
        for ts, te, tt in truth:
            if not any(pt == tt and ps < te and ts < pe for ps, pe, pt in predicted):
                fn[tt] += 1
    rate = len(data) / (time.perf_counter() - started)
    for t in sorted(set(tp) | set(fp) | set(fn)):
        per_type[t] = {"precision": tp[t] / max(1, tp[t] + fp[t]), "recall": tp[t] / max(1, tp[t] + fn[t]),
                       "support": tp[t] + fn[t], "predicted": tp[t] + fp[t]}
    pattern = [t for t in PII_PATTERN_TYPES if per_type.get(t, {}).get("support")]
    tp_p = sum(tp[t] for t in pattern)
    report["pii_pattern_recall"] = tp_p / max(1, tp_p + sum(fn[t] for t in pattern))
    report["pii_pattern_precision"] = tp_p / max(1, tp_p + sum(fp[t] for t in pattern))
    clean = [r["prompt"] for r in rows("halueval_general")]
    flagged = sum(bool(detector.find(t, "prompt")) for t in clean)
    report["pii_clean_prompts_flagged_share"] = flagged / len(clean)
    report["pii_texts_per_s"] = rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("toxicity", "hallucination", "prompt_injection", "pii"))
    args = parser.parse_args()
    settings = load_settings()
    report: dict = {}
    per_type: dict = {}
    steps = {"toxicity": toxicity, "hallucination": hallucination, "prompt_injection": injection}
    for name, step in steps.items():
        if args.only in (None, name):
            step(settings, report)
    if args.only in (None, "pii"):
        pii(settings, report, per_type)
    for t, m in sorted(per_type.items()):
        print(f"pii {t:<18} precision {m['precision']:.3f} recall {m['recall']:.3f} "
              f"(labelled {m['support']}, predicted {m['predicted']})")
    for key, value in report.items():
        print(f"{key:<45} {value:.4f}" if isinstance(value, float) else f"{key:<45} {value}")
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
