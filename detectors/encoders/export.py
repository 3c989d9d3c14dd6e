"""The ONNX export of the embedding model, made locally into the data directory.

``model.onnx`` is the sentence-transformers model whole (transformer, pooling, normalisation)
traced by ``torch.onnx`` from the local model files: nothing is fetched, and optimum (which
sentence-transformers' own ``backend=`` needs) is not used because it pins transformers below
the release the rest of driftwarden runs on. ONNX Runtime reads it graph-optimised
(``model.opt.onnx``) or dynamically quantized to int8 (``model.int8.onnx``); OpenVINO reads it
as it is. Every file is written to a temporary name and renamed, so two processes starting at
once never read half a file. The float32 reference embeddings of the gate's texts are kept
beside it (``reference-<max_length>.npy``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from driftwarden.core.errors import DetectorError
from driftwarden.detectors.loading import require

log = logging.getLogger(__name__)

GATE_TEXTS = 128
"""Rows of the shipped ``halueval_general`` set whose prompts and responses the gate encodes."""
OPSET = 17


def model_digest(model_dir: Path) -> str:
    """A short hash of where the model is and of its files (names, sizes, modification times): a
    model changed in place, or another one in a folder of the same name, gets a new export."""
    files = sorted(p for p in model_dir.rglob("*") if p.is_file()) if model_dir.is_dir() else [model_dir]
    blob = json.dumps([str(model_dir.resolve())] + [
        (str(p.relative_to(model_dir)) if model_dir.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in files]).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def export_dir(cache_root: Path, model_dir: Path) -> Path:
    return cache_root / f"{model_dir.name}-{model_digest(model_dir)}"


def gate_texts() -> list[str]:
    """Real prompts and responses shipped with driftwarden, the texts the gate compares on."""
    from driftwarden.pkg_data import rows

    out: list[str] = []
    for n, row in enumerate(rows("halueval_general")):
        if n >= GATE_TEXTS:
            break
        out += [row["prompt"], row["response"]]
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's tools log every fusion they make (INFO) and generic advice (WARNING):
    silenced while they run, once per model at first start."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _atomic(target: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` and rename ``tmp`` to ``target`` (same folder, so the rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def onnx_model(folder: Path, sentence_model: Callable[[], Any]) -> Path:
    """``folder/model.onnx``, exported from ``sentence_model()`` (a SentenceTransformer on CPU,
    float32) when it is not there yet."""
    target = folder / "model.onnx"
    if target.exists():
        return target
    torch = require("torch")
    model = sentence_model()
    names = list(model.tokenizer.model_input_names)

    class Whole(torch.nn.Module):
        """Token ids in, unit-norm sentence embeddings out: the model's own modules, in order."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *arrays):
            return self.model(dict(zip(names, arrays, strict=True)))["sentence_embedding"]

    sample = model.tokenizer(["an example", "a longer example sentence"], padding=True, return_tensors="pt")
    log.info("exporting the embedding model to ONNX under %s (once per model; a few seconds)", folder)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on Python control flow
            torch.onnx.export(Whole().eval(), tuple(sample[n] for n in names), str(tmp), input_names=names,
                              output_names=["sentence_embedding"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names},
                                            "sentence_embedding": {0: "batch"}})

    try:
        return _atomic(target, write)
    except Exception as exc:
        raise DetectorError("embeddings", f"exporting the embedding model to ONNX failed ({type(exc).__name__}: "
                                          f"{str(exc)[:300]}); set DRIFTWARDEN_DETECTORS__EMBEDDINGS__BACKEND=torch"
                            ) from exc


def optimized_model(onnx_path: Path, model_type: str) -> Path:
    """ONNX Runtime's transformer graph optimisation of ``onnx_path`` (attention and layer-norm
    fusion) for ``model_type`` (``bert``, ``roberta``, ...); the plain model when that fails."""
    target = onnx_path.with_name("model.opt.onnx")
    if target.exists():
        return target
    optimizer = require("onnxruntime.transformers.optimizer")
    try:
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            graph = optimizer.optimize_model(str(onnx_path), model_type=model_type, num_heads=0, hidden_size=0)
        return _atomic(target, lambda tmp: graph.save_model_to_file(str(tmp)))
    except Exception as exc:  # noqa: BLE001 - the plain graph still runs
        log.warning("ONNX Runtime's graph optimisation of %s (model type %s) failed (%s: %s); running the plain "
                    "graph, which is correct but slower", onnx_path, model_type, type(exc).__name__, exc)
        return onnx_path


def int8_model(onnx_path: Path) -> Path:
    """``onnx_path`` with its weights dynamically quantized to int8, per channel (ONNX Runtime)."""
    target = onnx_path.with_name("model.int8.onnx")
    if target.exists():
        return target
    quantization = require("onnxruntime.quantization")
    with _quiet():  # its advice to pre-process the model, logged every time
        return _atomic(target, lambda tmp: quantization.quantize_dynamic(
            str(onnx_path), str(tmp), weight_type=quantization.QuantType.QInt8, per_channel=True))


def reference(folder: Path, texts: list[str], max_length: int, encode_float: Callable[[list[str]], Any]) -> Any:
    """The float32 embeddings of ``texts`` cut at ``max_length`` tokens (``folder/reference-<max_length>.npy``,
    computed once)."""
    np = require("numpy")
    target = folder / f"reference-{max_length}.npy"
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    stamp = folder / f"reference-{max_length}.sha"
    if target.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return np.load(target)
    vectors = np.asarray(encode_float(texts), dtype=np.float32)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, vectors)

    _atomic(target, write)
    _atomic(stamp, lambda tmp: tmp.write_text(digest))
    return vectors
