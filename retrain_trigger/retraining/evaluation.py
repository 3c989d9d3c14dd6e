"""Evaluation of a fine-tuning job's candidate against the current model, before any promotion.

Two sets (from the job's snapshot): ``drifted``, the snapshot's held-out events (the new
population, never trained on), and ``regression``, the fixed set of the segment's events from
before the drift (``regression.parquet``). On each, for the candidate (base + the new adapter)
and the current model (base + the current champion adapter, or the base alone):

- ``held_out_loss``: mean token loss of the events' own responses (on the drifted set, all its
  held-out events; on the regression set, at most 4 per answered event);
- answers generated greedily (at most ``eval_max_new_tokens``) to the events' prompts, and on them
  ``empty_rate`` (nothing but white space), ``refusal_rate`` (an "I can't help with that" kind of
  answer, :data:`REFUSAL`), ``answer_words`` (mean length), and the product's own detectors:
  ``toxicity_rate`` and ``hallucination_rate`` (the latter against the event's context, on the
  events that had context only; absent when none had).

Lower is better for every metric but ``answer_words`` (reported, never judged). The result is a
:class:`Table`, flattened into the job's metrics as ``eval.<set>.<model>.<metric>`` and judged by
the promotion rules (:mod:`~driftwarden.retrain_trigger.retraining.promotion`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SETS = ("drifted", "regression")
MODELS = ("candidate", "current")
#: Metrics that are better when lower (the promotion rules judge these).
LOWER_IS_BETTER = ("held_out_loss", "hallucination_rate", "toxicity_rate", "refusal_rate", "empty_rate")
METRICS = (*LOWER_IS_BETTER, "answer_words")

#: Openings and phrases of a refusal (matched case-insensitively in the answer's first 200 characters).
REFUSAL = re.compile(
    r"\b(?:i\s+(?:can\s*not|can't|cannot|won't|am\s+(?:not\s+able|unable)|'m\s+(?:not\s+able|unable))\s+"
    r"(?:help|assist|answer|provide|do|comply|share|discuss)|i'?m\s+sorry,?\s+but|i\s+am\s+sorry,?\s+but|"
    r"as\s+an\s+ai\b|i\s+(?:must|have\s+to)\s+decline)", re.IGNORECASE)


#: Characters of an event's context put before its prompt for the model (training and evaluation alike).
MAX_CONTEXT_CHARS = 600


def with_context(prompt: str, context: Sequence[str]) -> str:
    """What the model is given for an event: its prompt, after the passages it was to be grounded in
    (a RAG app's model saw them too), cut to :data:`MAX_CONTEXT_CHARS`."""
    passages = " ".join(p.strip() for p in context if p and p.strip())
    if not passages:
        return prompt
    if len(passages) > MAX_CONTEXT_CHARS:
        passages = passages[:MAX_CONTEXT_CHARS].rsplit(" ", 1)[0] + " …"
    return f"Answer from this context.\nContext: {passages}\n\n{prompt}"


@dataclass
class Example:
    """One event as the job trains and evaluates on it."""

    event_id: str
    prompt: str
    response: str
    context: tuple[str, ...] = ()

    @property
    def model_prompt(self) -> str:
        """The prompt with the event's context before it (what the app's model was given)."""
        return with_context(self.prompt, self.context)


@dataclass
class Table:
    """``figures[set][model][metric]``; ``counts[set]`` events per set; ``notes`` what was left out and why."""

    figures: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def flat(self) -> dict[str, float]:
        """``{"eval.<set>.<model>.<metric>": value, "eval.<set>.events": n}`` (NaN left out)."""
        out: dict[str, float] = {}
        for set_name, models in self.figures.items():
            out[f"eval.{set_name}.events"] = float(self.counts.get(set_name, 0))
            for model, metrics in models.items():
                for metric, value in metrics.items():
                    if value is not None and math.isfinite(value):
                        out[f"eval.{set_name}.{model}.{metric}"] = float(value)
        return out

    def to_json(self) -> dict:
        return {"figures": self.figures, "counts": self.counts, "notes": self.notes, "seconds": self.seconds}

    @classmethod
    def from_flat(cls, metrics: dict[str, float]) -> Table:
        """The table back from a job's flattened metrics (``retrain_jobs.metrics``)."""
        table = cls()
        for key, value in metrics.items():
            parts = key.split(".")
            if parts[0] != "eval" or len(parts) not in (3, 4):
                continue
            if len(parts) == 3 and parts[2] == "events":
                table.counts[parts[1]] = int(value)
            elif len(parts) == 4:
                table.figures.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = float(value)
        return table

    def rows(self) -> list[tuple[str, str, float | None, float | None]]:
        """(set, metric, candidate, current) for display, in a fixed order."""
        out = []
        for set_name in SETS:
            models = self.figures.get(set_name)
            if not models:
                continue
            for metric in METRICS:
                cand = models.get("candidate", {}).get(metric)
                cur = models.get("current", {}).get(metric)
                if cand is not None or cur is not None:
                    out.append((set_name, metric, cand, cur))
        return out

    def render(self) -> str:
        """A plain-text table (the demo's summary, the CLI, alert annotations)."""
        lines = [f"{'set':<11} {'metric':<19} {'candidate':>10} {'current':>10} {'change':>9}"]
        for set_name, metric, cand, cur in self.rows():
            change = f"{cand - cur:+.3f}" if cand is not None and cur is not None else ""
            lines.append(f"{set_name:<11} {metric:<19} {_fmt(cand):>10} {_fmt(cur):>10} {change:>9}")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def answer_figures(answers: Sequence[str]) -> dict[str, float]:
    """Empty-answer and refusal rates and mean length in words of generated answers."""
    if not answers:
        return {}
    n = len(answers)
    return {"empty_rate": sum(1 for a in answers if not a.strip()) / n,
            "refusal_rate": sum(1 for a in answers if REFUSAL.search(a[:200])) / n,
            "answer_words": sum(len(a.split()) for a in answers) / n}


#: The loss of a set is measured on at most this many events per event answered (all when none are).
LOSS_EVENTS_PER_ANSWER = 4


#: A scorer: (detector name, rows of {"prompt", "answer", "context"}) -> flagged share of the rows
#: it could judge, or None when it judged none.
Scorer = Callable[[str, list[dict]], float | None]


class DetectorScorer:
    """The product's detectors, built as for offline scoring (``driftwarden score``), on generated answers."""

    def __init__(self, settings, names: Sequence[str]):
        self.settings = settings
        self.names = tuple(names)
        self._built: dict[str, object] = {}
        self.notes: list[str] = []

    def available(self) -> list[str]:
        out = []
        for name in self.names:
            if self._detector(name) is not None:
                out.append(name)
        return out

    def _detector(self, name: str):
        if name not in self._built:
            from driftwarden.core.errors import DriftwardenError
            from driftwarden.detectors.offline import build_offline

            try:
                self._built[name] = build_offline(name, self.settings)
            except (DriftwardenError, ImportError, OSError) as exc:
                self.notes.append(f"{name} left out of the evaluation: {str(exc)[:300]}")
                log.warning("the evaluation runs without the %s detector (%s); install the ml extra in the job's "
                            "environment to have it", name, str(exc)[:300])
                self._built[name] = None
        return self._built[name]

    def __call__(self, name: str, rows: list[dict]) -> float | None:
        from driftwarden.detectors.offline import score_rows
        from driftwarden.detectors.registry import registration

        detector = self._detector(name)
        if detector is None or not rows:
            return None
        reads_context = registration(name).reads_context
        if reads_context:
            rows = [r for r in rows if r["context"]]
            if not rows:
                return None
        labels = [line["label"] for line in score_rows(detector, list(enumerate(rows)), "answer",
                                                         "context" if reads_context else None, prompt_field="prompt")
                  if line["label"] is not None]
        return sum(1 for x in labels if x) / len(labels) if labels else None


def evaluate(sets: dict[str, list[Example]], models: dict[str, tuple[object, float | None]], generate,
             scorer: Scorer | None, detectors: Sequence[str], max_events: int, losses: Callable | None = None,
             notes: Sequence[str] = ()) -> Table:
    """The table. ``models``: name -> (model, its held-out loss on the drifted set when already
    known); ``generate(model, prompts) -> answers``; ``losses(model, examples) -> loss`` for the
    losses not given; ``scorer`` runs the detectors on the answers."""
    started = time.perf_counter()
    table = Table(notes=list(notes))
    for set_name, examples in sets.items():
        if not examples:
            table.notes.append(f"no {set_name} events: that set is left out")
            continue
        picked = examples[:max_events] if max_events else []
        table.counts[set_name] = len(picked) if max_events else len(examples)
        # The loss reads no generated text, so it takes more events, but not all: a long regression set
        # costs a forward pass per event and model.
        for_loss = examples[:LOSS_EVENTS_PER_ANSWER * max_events] if max_events else examples
        for model_name, (model, known_loss) in models.items():
            figures: dict[str, float] = {}
            loss = known_loss if set_name == "drifted" and known_loss is not None else (
                losses(model, for_loss) if losses is not None else None)
            if loss is not None:
                figures["held_out_loss"] = loss
            if picked:
                log.info("evaluation: the %s model answers %d %s prompts ...", model_name, len(picked), set_name)
                answers = generate(model, [ex.model_prompt for ex in picked])
                figures.update(answer_figures(answers))
                rows = [{"prompt": ex.prompt, "answer": a, "context": list(ex.context)}
                        for ex, a in zip(picked, answers, strict=True)]
                for name in detectors:
                    rate = scorer(name, rows) if scorer is not None else None
                    if rate is not None:
                        figures[f"{name}_rate"] = rate
            table.figures.setdefault(set_name, {})[model_name] = figures
    if max_events == 0:
        table.notes.append("no answers generated (DRIFTWARDEN_RETRAIN__EVAL_MAX_EVENTS=0): losses only")
    table.seconds = time.perf_counter() - started
    return table
