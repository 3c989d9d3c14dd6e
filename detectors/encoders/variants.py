"""The encoder's variants (a runtime and a precision), what this machine can run, and the gate.

A reduced-precision variant is only used when it passed the quality gate: its embeddings of
the shipped prompts are within ``min_cosine`` of the float32 ones (checked on this machine at
start) and every detector's cross-validated AUC with it is within 0.005 of the float32 one
(measured by ``bench/encoder_gate.py``, whose verdict ships as ``data/encoder_gate.json``).
``backend=auto`` takes the fastest variant the shipped verdict passed that runs here.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from driftwarden.core.errors import DetectorError

BACKENDS = ("torch", "onnx", "openvino")
PRECISIONS = {"torch": ("float32", "bfloat16"), "onnx": ("float32", "int8"), "openvino": ("float32", "bfloat16")}
"""Precisions each runtime can run on CPU (on a GPU, torch runs float16 by ``half_precision``)."""
PACKAGES = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}
FLOAT = "torch-float32"
"""The reference variant: always available, never gated."""


@dataclass(frozen=True)
class Variant:
    backend: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}"

    @property
    def reduced(self) -> bool:
        """Whether its numbers differ from float32 by more than rounding (the gate applies)."""
        return self.precision != "float32"

    @classmethod
    def parse(cls, name: str) -> Variant:
        backend, _, precision = name.partition("-")
        if backend not in PRECISIONS or precision not in PRECISIONS[backend]:
            known = ", ".join(f"{b}-{p}" for b in BACKENDS for p in PRECISIONS[b])
            raise DetectorError("embeddings", f"unknown encoder variant {name!r}; known: {known}")
        return cls(backend, precision)


@functools.lru_cache(maxsize=1)
def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): without it bfloat16 is
    emulated and slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def installed(backend: str) -> bool:
    return importlib.util.find_spec(PACKAGES[backend]) is not None


def runs_here(variant: Variant) -> str | None:
    """Why ``variant`` cannot run on this machine, or None when it can."""
    if not installed(variant.backend):
        return f"{PACKAGES[variant.backend]} is not installed (pip install 'driftwarden[ml]')"
    if variant.precision == "bfloat16" and not cpu_has_bfloat16():
        return "this CPU has no native bfloat16 (AVX512-BF16 or AMX); it would be slower than float32"
    return None


@functools.lru_cache(maxsize=1)
def shipped_verdict() -> dict[str, Any]:
    """``data/encoder_gate.json``: per variant, whether it passed the gate and how fast it ran."""
    ref = resources.files("driftwarden").joinpath("data", "encoder_gate.json")
    try:
        return json.loads(ref.read_text())
    except FileNotFoundError:
        return {"variants": {}}


def ranked(verdict: dict[str, Any] | None = None) -> list[Variant]:
    """Variants the verdict passed, fastest first, ending with the float32 reference."""
    verdict = shipped_verdict() if verdict is None else verdict
    rows = verdict.get("variants", {})
    passed = [name for name, row in rows.items() if row.get("passed") and name != FLOAT]
    ordered = sorted(passed, key=lambda name: -float(rows[name].get("texts_per_s", 0.0)))
    out = []
    for name in ordered:
        try:
            out.append(Variant.parse(name))
        except DetectorError:
            continue  # a verdict from a newer release naming a variant this one lacks
    return [*out, Variant.parse(FLOAT)]


def requested(backend: str, precision: str) -> list[Variant]:
    """The variants to try, in order, for the configured ``backend`` and ``precision`` (``auto``
    in either picks from the gate's ranking)."""
    candidates = ranked()
    if backend != "auto":
        if precision != "auto":
            return [Variant.parse(f"{backend}-{precision}")]
        candidates = [v for v in candidates if v.backend == backend] + [Variant(backend, "float32")]
    elif precision != "auto":
        candidates = [v for v in candidates if v.precision == precision]
        if precision == "float32":
            candidates = candidates or [Variant.parse(FLOAT)]
        if not candidates:
            raise DetectorError("embeddings", f"no encoder variant in precision {precision} passed the quality "
                                              f"gate; name a backend as well to use one anyway")
    return list(dict.fromkeys(candidates))
