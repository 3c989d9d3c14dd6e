"""Typed configuration shared by the detectors, apart from their computation: the base classes,
the shared encoder's config, the drift windows' config, and the container that finds each
detector's own config class (which lives in the detector's module) through the registry.

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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

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
    sample_rate: float = Field(1.0, gt=0.0, le=1.0)
    """Share of events this detector scores, chosen by a hash of the event id (the same event is
    always in or out, so a replay samples the same events). The others get no result from it
    (absent, not a zero), so its rates divide by what it scored; every event is still stored
    and embedded for drift. ``driftwarden score`` scores every row of a file."""

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
    """On a GPU, run in float16 (on CPU the models run in float32, except the embedding
    encoder's reduced ``precision`` when it passed the gate)."""
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
    batch_size: int = Field(32, ge=1)
    """Most texts in one model batch (texts are grouped by length first)."""
    sample_rate: float = Field(1.0, ge=1.0, le=1.0)
    """Always 1: every event is embedded (drift reads every prompt and response)."""
    backend: Literal["auto", "torch", "onnx", "openvino"] = "auto"
    """Runtime of the model on CPU. ``auto``: the fastest variant that passed the quality gate
    (``data/encoder_gate.json``) and runs on this machine, else torch in float32; on a GPU,
    torch. ``onnx`` and ``openvino`` read an ONNX export made at first start under
    ``<data_dir>/encoders``."""
    precision: Literal["auto", "float32", "bfloat16", "int8"] = "auto"
    """Numeric precision on CPU: ``bfloat16`` (torch, openvino; CPUs with AMX or AVX512-BF16),
    ``int8`` (onnx, dynamic quantization). A reduced precision must pass the gate
    (``min_cosine``) on this machine, or the variant is refused (``auto`` falls back to the next)."""
    min_cosine: float = Field(0.99, ge=0.0, le=1.0)
    """Quality gate: the lowest cosine between a reduced-precision variant's embedding of a
    shipped prompt or response and the float32 one."""
    export_dir: Path | None = None
    """Where the ONNX export goes; None: ``<data_dir>/encoders``."""


DETECTOR_CONFIGS: dict[str, type[DetectorConfig]] = {}
"""Detector name -> its config class, filled by the detector registry (``detectors/registry.py``)
as detectors register: the config lives with its detector, and the settings find it here."""


def register_config(name: str, config: type[DetectorConfig]) -> None:
    if name in ("embeddings",) or (name in DETECTOR_CONFIGS and DETECTOR_CONFIGS[name] is not config):
        raise ValueError(f"a detector config named {name!r} is registered already")
    DETECTOR_CONFIGS[name] = config


def _decoded(raw: dict) -> dict:
    """Values from the environment arrive as text; a JSON list or object among them is decoded (as
    pydantic-settings does for typed fields), so ``...__FIELDS='["prompt"]'`` is a tuple."""
    out = {}
    for key, value in raw.items():
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


class DetectorsSettings(BaseModel):
    """Per-detector configuration (``DRIFTWARDEN_DETECTORS__<NAME>__<FIELD>``): the shared encoder,
    and one entry per registered detector, validated by that detector's own config class (an
    unknown name is an error naming the known ones)."""

    model_config = ConfigDict(frozen=True, extra="allow", use_attribute_docstrings=True)

    embeddings: EmbeddingsConfig = Field(default_factory=EmbeddingsConfig)
    """The shared embedding encoder."""

    @model_validator(mode="after")
    def _detector_configs(self) -> DetectorsSettings:
        from driftwarden.core.plugins import load_detector_plugins

        load_detector_plugins()
        extra = self.__pydantic_extra__ if self.__pydantic_extra__ is not None else {}
        known = ", ".join(sorted(DETECTOR_CONFIGS))
        problems: list = [{"type": PydanticCustomError("unknown_detector", "no detector of this name; configurable "
                                                                         "detectors: {known}", {"known": known}),
                           "loc": (name,), "input": extra[name]} for name in sorted(set(extra) - set(DETECTOR_CONFIGS))]
        for name, config in DETECTOR_CONFIGS.items():
            value = extra.get(name, {})
            if not isinstance(value, config):
                try:
                    value = config.model_validate(_decoded(value) if isinstance(value, dict) else value)
                except ValidationError as exc:  # located under the detector's name, as a typed field would be
                    problems += [{"type": e["type"], "loc": (name, *e["loc"]), "input": e["input"],
                                  **({"ctx": e["ctx"]} if "ctx" in e else {})} for e in exc.errors()]
                    continue
            extra[name] = value
        if problems:
            raise ValidationError.from_exception_data("DetectorsSettings", problems)
        return self

    def config(self, name: str) -> DetectorConfig:
        """The config of detector ``name`` (KeyError when no detector of that name has one)."""
        return (self.__pydantic_extra__ or {})[name]


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
