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


@dataclass(frozen=True, eq=False)
class LinearHead:
    name: str
    coef: tuple[float, ...]
    intercept: float
    encoder: str
    """The embedding model the head was fitted on (it only makes sense on that model)."""
    metrics: dict[str, Any]
    """How it was fitted and how well it did (cross-validated)."""
    features: tuple[str, ...] = ()
    """Names of the inputs, in order, when they are named features rather than an embedding."""
    text: dict[str, Any] | None = None
    """A word part beside the embedding part: scikit-learn TF-IDF settings (``vocabulary``,
    ``idf``, ``ngram_range``, ``sublinear_tf``) and ``coef``, one weight per vocabulary entry.
    Scoring then takes the texts as well as their embeddings."""
    domains: dict[str, dict[str, Any]] | None = None
    """Other kinds of input the head scores with weights of their own (for example ``context``:
    retrieved text beside the prompts the main weights score), fitted jointly with shared weights
    and stored summed: name -> ``coef``, ``intercept`` and, with a word part, ``text_coef``.
    :meth:`domain` gives the head for one of them."""

    @functools.cached_property
    def _vectorizer(self) -> Any:
        text = require("sklearn.feature_extraction.text")
        np = require("numpy")
        spec = self.text or {}
        vectorizer = text.TfidfVectorizer(vocabulary=spec["vocabulary"], ngram_range=tuple(spec["ngram_range"]),
                                          sublinear_tf=bool(spec["sublinear_tf"]), lowercase=True)
        vectorizer.idf_ = np.asarray(spec["idf"], dtype=np.float64)
        return vectorizer

    @property
    def version(self) -> str:
        blob = [self.coef, self.intercept, self.text and self.text["coef"]]
        if self.domains:
            blob.append(self.domains)
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:8]

    def domain(self, name: str) -> LinearHead:
        """The head with the weights of domain ``name`` (the same vocabulary and encoder)."""
        if not self.domains or name not in self.domains:
            raise DetectorError(self.name, f"the head has no weights for {name!r} (it has "
                                           f"{sorted(self.domains or {}) or 'none'}); run bench/train_heads.py")
        weights = self.domains[name]
        text = None
        if self.text is not None:
            if "text_coef" not in weights:
                raise DetectorError(self.name, f"its {name!r} weights have no word part (text_coef) but the head "
                                               f"scores words; run bench/train_heads.py")
            text = {**self.text, "coef": weights["text_coef"]}
        head = LinearHead(name=f"{self.name}:{name}", coef=tuple(weights["coef"]), intercept=float(weights["intercept"]),
                          encoder=self.encoder, metrics=self.metrics, features=self.features, text=text)
        if text is not None:
            head.__dict__["_vectorizer"] = self._vectorizer  # one vocabulary: one vectorizer
        return head

    def predict_proba(self, X: Any, texts: list[str] | None = None, words: Any = None) -> Any:
        """P(positive) for each row of ``X`` (numpy: unit-norm embeddings or named features);
        a head with a word part also needs the ``texts`` the rows embed (or their :meth:`words`)."""
        np = require("numpy")
        z = np.asarray(X, dtype=np.float64) @ np.asarray(self.coef) + self.intercept
        if self.text is not None:
            if words is None and (texts is None or len(texts) != len(z)):
                raise DetectorError(self.name, "this head scores words as well as embeddings: pass the texts")
            if words is not None and words.shape[0] != len(z):
                raise DetectorError(self.name, f"{words.shape[0]} rows of words for {len(z)} rows of embeddings")
            z = z + self.word_logits(texts or [], words)
        return 1.0 / (1.0 + np.exp(-z))

    def words(self, texts: list[str]) -> Any:
        """The texts' TF-IDF rows, for :meth:`word_logits` and :meth:`predict_proba` of this head
        and of its :meth:`domain` heads (one vocabulary): computed once for all of them."""
        return self._vectorizer.transform(texts)

    def word_logits(self, texts: list[str], words: Any = None) -> Any:
        """The word part's contribution to each text's logit (cheap: no embedding needed);
        ``words``: the texts' :meth:`words`, when already computed."""
        np = require("numpy")
        if self.text is None:
            return np.zeros(len(texts) if words is None else words.shape[0])
        matrix = words if words is not None else self._vectorizer.transform(texts)
        return matrix @ np.asarray(self.text["coef"], dtype=np.float64)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "coef": list(self.coef), "intercept": self.intercept,
                           "encoder": self.encoder, "features": list(self.features), "text": self.text,
                           "domains": self.domains, "metrics": self.metrics}, indent=None if self.text else 1)


@functools.lru_cache(maxsize=8)
def load_head(name: str) -> LinearHead:
    """The head ``name`` shipped in ``driftwarden/data/heads/<name>.json``."""
    ref = resources.files("driftwarden").joinpath("data", "heads", f"{name}.json")
    try:
        data = json.loads(ref.read_text())
    except FileNotFoundError as exc:
        raise DetectorError(name, f"no shipped head {name}.json; run bench/train_heads.py") from exc
    return LinearHead(name=data["name"], coef=tuple(data["coef"]), intercept=float(data["intercept"]),
                      encoder=data["encoder"], metrics=data.get("metrics", {}),
                      features=tuple(data.get("features", ())), text=data.get("text"),
                      domains=data.get("domains"))


def encoder_for(head: LinearHead, encoder: Any, detector: str) -> Any:
    """The embedding encoder ``head`` reads: ``encoder`` (the shared one) or the shipped default,
    refused when it is another model than the head was fitted on (its scores would be noise)."""
    if encoder is None:
        from driftwarden.detectors.embeddings import Encoder

        encoder = Encoder()
    if encoder.version.rsplit("-", 1)[0] != head.encoder.rsplit("-", 1)[0]:
        raise DetectorError(detector, f"its head was fitted on embeddings of {head.encoder} but the configured "
                                      f"encoder is {encoder.version}; use the shipped embedding model "
                                      f"(unset DRIFTWARDEN_DETECTORS__EMBEDDINGS__MODEL_PATH) or choose another "
                                      f"backend for this detector")
    return encoder
