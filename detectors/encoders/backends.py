"""One class per runtime of the embedding model. Each takes a padded batch of token ids (numpy
arrays named as the tokenizer names them) and returns its unit-norm embeddings (float32 numpy);
tokenization, batching and the quality gate are the :class:`~driftwarden.detectors.embeddings.Encoder`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Protocol

from driftwarden.detectors.loading import require

log = logging.getLogger(__name__)


class Backend(Protocol):
    name: ClassVar[str]

    def run(self, arrays: dict[str, Any]) -> Any:
        """Embeddings of one padded batch."""


class TorchBackend:
    """The sentence-transformers model itself; float16 on a GPU when asked, bfloat16 on CPU by autocast."""

    name = "torch"

    def __init__(self, model: Any, device: str, precision: str):
        self.torch = require("torch")
        self.model = model
        self.device = device
        self.precision = precision

    def run(self, arrays: dict[str, Any]) -> Any:
        torch = self.torch
        features = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=self.precision == "bfloat16"):
            out = self.model(features)["sentence_embedding"]
        return out.float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime on CPU: the graph-optimised float32 export, or its int8 quantization."""

    name = "onnx"

    def __init__(self, model_file: Path, threads: int):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def run(self, arrays: dict[str, Any]) -> Any:
        return self.session.run(["sentence_embedding"], {k: v for k, v in arrays.items() if k in self.inputs})[0]


class OpenVINOBackend:
    """OpenVINO on CPU, reading the ONNX export; ``bfloat16`` runs the matrix products in
    bfloat16 on CPUs that have it (AMX, AVX512-BF16), ``float32`` keeps every operation in float32."""

    name = "openvino"

    def __init__(self, model_file: Path, threads: int, precision: str, cache_dir: Path):
        ov = require("openvino")
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(cache_dir)})  # compiled blobs: later starts skip compiling
        self.compiled = core.compile_model(str(model_file), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32",
        })
        self.inputs = {p.get_any_name() for p in self.compiled.inputs}
        self.request = self.compiled.create_infer_request()

    def run(self, arrays: dict[str, Any]) -> Any:
        result = self.request.infer({k: v for k, v in arrays.items() if k in self.inputs})
        return next(iter(result.values())).copy()
