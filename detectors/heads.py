"""Linear heads on the shipped embeddings: small logistic models that ship as JSON.

A head is fitted by ``bench/train_heads.py`` on labelled data shipped in the package, with
cross-validated figures written next to the weights (``metrics``). Its version is a hash of
the weights, so a retrained head is visible in the stored results.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from driftwarden.core.errors import DetectorError
from driftwarden.detectors.loading import require


@dataclass(frozen=True)
class LinearHead:
    name: str
    coef: tuple[float, ...]
    intercept: float
    encoder: str
    """The embedding model the head was fitted on (it only makes sense on that model)."""
    metrics: dict[str, Any]
    """How it was fitted and how well it did (cross-validated)."""

    @property
    def version(self) -> str:
        blob = json.dumps([self.coef, self.intercept]).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    def predict_proba(self, X: Any) -> Any:
        """P(positive) for each row of ``X`` (numpy, unit-norm embeddings)."""
        np = require("numpy")
        z = np.asarray(X, dtype=np.float64) @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "coef": list(self.coef), "intercept": self.intercept,
                           "encoder": self.encoder, "metrics": self.metrics}, indent=1)


@functools.lru_cache(maxsize=8)
def load_head(name: str) -> LinearHead:
    """The head ``name`` shipped in ``driftwarden/data/heads/<name>.json``."""
    ref = resources.files("driftwarden").joinpath("data", "heads", f"{name}.json")
    try:
        data = json.loads(ref.read_text())
    except FileNotFoundError as exc:
        raise DetectorError(name, f"no shipped head {name}.json; run bench/train_heads.py") from exc
    return LinearHead(name=data["name"], coef=tuple(data["coef"]), intercept=float(data["intercept"]),
                      encoder=data["encoder"], metrics=data.get("metrics", {}))
