"""PII detector quality and cost, with the spaCy model (names and places) and without it.

On the labelled public data shipped in the package:

- ``pii_spans.jsonl`` (synthetic sentences from presidio-research, 844 rows): span precision and
  recall per entity type (a predicted span matches a labelled one of the same type when they
  overlap, as in ``bench/eval_detectors.py``); the share of rows holding a labelled PERSON that
  get a PERSON finding over it (``person_row_recall``), the same for LOCATION, and for the rows
  whose LOCATION is a street or postal address (a labelled LOCATION span with a digit in it:
  ``address_row_recall``); the pattern types' recall and precision together;
- ``halueval_general.jsonl`` prompts (2,737 real user queries, mostly free of personal data but
  full of famous people and places): the share flagged at all, and by PERSON / LOCATION; the
  same for its ChatGPT responses (longer, richer in names; not part of the goal, shown because
  the detector scans responses too);
- texts/s of the detector with the NLP model and without it (patterns and explicit cues only), on
  both files, in this same run: the cost of the model on real prompts is the ratio
  ``nlp_cost_ratio`` (the model runs only on texts where a rule would read its entities, which
  most prompts are not, and on nearly every ``pii_spans`` row).

These two files are also the ones the name and place rules were tuned on (``detectors/pii.py``):
the figures are in-sample. Everything runs through ``driftwarden.detectors.offline`` (what
``driftwarden score`` runs). Last line: ``key=value`` pairs. Run: ``.venv/bin/python bench/eval_pii.py``.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import defaultdict

from driftwarden.core.settings import Settings, load_settings
from driftwarden.detectors.offline import build_offline
from driftwarden.pkg_data import rows

PATTERN_TYPES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS", "IBAN_CODE", "US_SSN", "URL")


def _with_model(settings: Settings, model: str | None) -> Settings:
    pii = settings.detectors.pii.model_copy(update={"nlp_model": model})
    return settings.model_copy(update={"detectors": settings.detectors.model_copy(update={"pii": pii})})


def _overlaps(a: tuple[int, int, str], b: tuple[int, int, str]) -> bool:
    return a[2] == b[2] and a[0] < b[1] and b[0] < a[1]


def _score(detector, texts: list[str]) -> tuple[list[list[tuple[int, int, str]]], float]:
    started = time.perf_counter()
    found = [[(s.start, s.end, s.type) for s in detector.find(t, "prompt")] for t in texts]
    return found, len(texts) / (time.perf_counter() - started)


def evaluate(settings: Settings) -> tuple[dict, dict]:
    """(report: flat ``key -> number``, per_type: ``{type: {precision, recall, support, predicted}}``)
    of the PII detector configured in ``settings``; ``nonlp_*`` keys are the same detector with
    ``nlp_model=None`` (patterns and explicit cues only)."""
    data = list(rows("pii_spans"))
    texts = [r["text"] for r in data]
    truths = [[(s["start"], s["end"], s["entity_type"]) for s in r["spans"]] for r in data]
    clean = [r["prompt"] for r in rows("halueval_general")]
    responses = [r["response"] for r in rows("halueval_general")]
    report: dict = {}
    per_type: dict = {}
    for prefix, model in (("", settings.detectors.pii.nlp_model), ("nonlp_", None)):
        detector = build_offline("pii", _with_model(settings, model))
        if prefix == "":
            report["nlp_model_loaded"] = int(getattr(detector, "nlp_loaded", False))
        detector.find("warm up: My name is Jane Doe.", "prompt")
        predicted, rate_spans = _score(detector, texts)
        flagged_clean, rate_clean = _score(detector, clean)
        flagged_responses, _ = _score(detector, responses)
        tp: dict[str, int] = defaultdict(int)
        fp: dict[str, int] = defaultdict(int)
        fn: dict[str, int] = defaultdict(int)
        for pred, truth in zip(predicted, truths, strict=True):
            for p in pred:
                (tp if any(_overlaps(p, t) for t in truth) else fp)[p[2]] += 1
            for t in truth:
                if not any(_overlaps(p, t) for p in pred):
                    fn[t[2]] += 1
        if prefix == "":
            for t in sorted(set(tp) | set(fp) | set(fn)):
                per_type[t] = {"precision": tp[t] / max(1, tp[t] + fp[t]), "recall": tp[t] / max(1, tp[t] + fn[t]),
                               "support": tp[t] + fn[t], "predicted": tp[t] + fp[t]}
        for kind, key in (("PERSON", "person"), ("LOCATION", "location"), ("ADDRESS", "address")):
            held = [i for i, truth in enumerate(truths)
                    if any(t[2] == kind or (kind == "ADDRESS" and t[2] == "LOCATION"
                                            and re.search(r"\d", texts[i][t[0]:t[1]])) for t in truth)]
            wanted = "LOCATION" if kind == "ADDRESS" else kind
            hit = sum(any(_overlaps(p, t) for p in predicted[i] for t in truths[i] if t[2] == wanted) for i in held)
            report[f"{prefix}{key}_rows"] = len(held)
            report[f"{prefix}{key}_row_recall"] = hit / max(1, len(held))
            report[f"{prefix}{key}_rows_flagged_any"] = sum(bool(predicted[i]) for i in held) / max(1, len(held))
        pattern = [t for t in PATTERN_TYPES if tp[t] + fn[t]]
        tp_p = sum(tp[t] for t in pattern)
        report[f"{prefix}pattern_recall"] = tp_p / max(1, tp_p + sum(fn[t] for t in pattern))
        report[f"{prefix}pattern_precision"] = tp_p / max(1, tp_p + sum(fp[t] for t in pattern))
        report[f"{prefix}clean_prompts_flagged_share"] = sum(bool(f) for f in flagged_clean) / len(clean)
        for kind in ("PERSON", "LOCATION"):
            report[f"{prefix}clean_prompts_{kind.lower()}_share"] = (
                sum(any(p[2] == kind for p in f) for f in flagged_clean) / len(clean))
        report[f"{prefix}clean_responses_flagged_share"] = sum(bool(f) for f in flagged_responses) / len(responses)
        report[f"{prefix}clean_responses_names_places_share"] = (
            sum(any(p[2] in ("PERSON", "LOCATION") for p in f) for f in flagged_responses) / len(responses))
        report[f"{prefix}clean_prompts_per_s"] = rate_clean
        report[f"{prefix}pii_rows_per_s"] = rate_spans
    # What the model costs per event on real traffic (how many times slower with it).
    report["nlp_cost_ratio"] = report["nonlp_clean_prompts_per_s"] / report["clean_prompts_per_s"]
    return report, per_type


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    report, per_type = evaluate(load_settings())
    print(f"{'type':<18} {'precision':>9} {'recall':>7} {'labelled':>8} {'predicted':>9}")
    for t, m in sorted(per_type.items()):
        print(f"{t:<18} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['support']:>8} {m['predicted']:>9}")
    for key, value in report.items():
        print(f"{key:<45} {value:.4f}" if isinstance(value, float) else f"{key:<45} {value}")
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
