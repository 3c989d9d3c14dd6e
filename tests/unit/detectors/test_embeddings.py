"""The embedding encoder's variants: torch, ONNX Runtime and OpenVINO give the float32
embeddings of a model built in code; the export is made once; the quality gate refuses a
variant below it; ``auto`` takes the fastest variant the shipped verdict passed."""

from __future__ import annotations

import numpy as np
import pytest

from driftwarden.core.detector_configs import EmbeddingsConfig
from driftwarden.core.errors import DetectorError
from driftwarden.detectors.embeddings import Encoder
from driftwarden.detectors.encoders import variants
from driftwarden.detectors.encoders.variants import Variant, ranked, requested
from driftwarden.tests.tiny_models import build_tiny_sentence_model

TEXTS = ["hello world", "", "the capital of france is paris " * 40, "tell me about berlin", "ünïcode \x00 ☃ 🙂"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_sentence_model(tmp_path_factory.mktemp("st") / "tiny")


def encoder(model, tmp_path, backend, precision="float32", **config):
    return Encoder(EmbeddingsConfig(model_path=model, backend=backend, precision=precision, **config), tmp_path)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_each_cpu_runtime_gives_the_float_embeddings_of_a_model_built_in_code(model, tmp_path, backend):
    expected = encoder(model, tmp_path, "torch").encode(TEXTS)
    got = encoder(model, tmp_path, backend).encode(TEXTS)
    assert got.shape == expected.shape == (len(TEXTS), 32)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(got * expected, axis=1)) > 0.9999


def test_texts_come_back_in_their_order_whatever_the_length_grouping(model, tmp_path):
    enc = encoder(model, tmp_path, "openvino", batch_size=2)
    together = enc.encode(TEXTS)
    alone = np.vstack([enc.encode([t]) for t in TEXTS])
    assert np.allclose(together, alone, atol=1e-5)
    assert enc.encode([]).shape == (0, 32)


def test_the_export_is_made_once_into_the_cache_folder_and_reused(model, tmp_path):
    first = encoder(model, tmp_path, "onnx")
    exported = first.cache_dir / "model.onnx"
    stamp = exported.stat().st_mtime_ns
    encoder(model, tmp_path, "openvino")
    assert exported.stat().st_mtime_ns == stamp
    assert not list(first.cache_dir.glob("*.part"))  # written under a temporary name, then renamed


def test_a_variant_below_the_gate_is_refused_when_named(model, tmp_path):
    with pytest.raises(DetectorError, match="failed the quality gate.*cosine"):
        encoder(model, tmp_path, "onnx", "int8", min_cosine=1.0)


def test_auto_skips_a_variant_below_the_gate_and_takes_the_next(model, tmp_path, monkeypatch):
    verdict = {"variants": {"onnx-int8": {"passed": True, "texts_per_s": 900.0},
                            "openvino-float32": {"passed": True, "texts_per_s": 300.0}}}
    monkeypatch.setattr(variants, "shipped_verdict", lambda: verdict)
    enc = encoder(model, tmp_path, "auto", "auto", min_cosine=1.0)
    assert enc.variant.name == "openvino-float32"


def test_bfloat16_is_refused_on_a_cpu_without_it(model, tmp_path, monkeypatch):
    monkeypatch.setattr(variants, "cpu_has_bfloat16", lambda: False)
    with pytest.raises(DetectorError, match="no native bfloat16"):
        encoder(model, tmp_path, "openvino", "bfloat16")


def test_auto_ranks_the_variants_the_verdict_passed_fastest_first_ending_with_float32():
    verdict = {"variants": {"torch-float32": {"passed": True, "texts_per_s": 200},
                            "openvino-bfloat16": {"passed": True, "texts_per_s": 450},
                            "onnx-int8": {"passed": False, "texts_per_s": 900},
                            "torch-bfloat16": {"passed": True, "texts_per_s": 400},
                            "tpu-float8": {"passed": True, "texts_per_s": 9000}}}
    assert [v.name for v in ranked(verdict)] == ["openvino-bfloat16", "torch-bfloat16", "torch-float32"]


def test_a_named_backend_and_precision_is_tried_alone_and_an_unknown_one_is_an_error():
    assert requested("onnx", "int8") == [Variant("onnx", "int8")]
    assert requested("torch", "auto")[-1] == Variant("torch", "float32")
    with pytest.raises(DetectorError, match="known: torch-float32"):
        requested("openvino", "int8")


def test_auto_falls_back_to_torch_when_the_export_folder_cannot_be_written(model, tmp_path, monkeypatch):
    verdict = {"variants": {"openvino-float32": {"passed": True, "texts_per_s": 300.0}}}
    monkeypatch.setattr(variants, "shipped_verdict", lambda: verdict)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    enc = Encoder(EmbeddingsConfig(model_path=model, export_dir=blocked / "encoders"))
    assert enc.variant.name == "torch-float32" and enc.encode(["hello"]).shape == (1, 32)
    with pytest.raises(DetectorError, match="exporting the embedding model to ONNX failed.*Not a directory"):
        Encoder(EmbeddingsConfig(model_path=model, export_dir=blocked / "x", backend="openvino", precision="float32"))


def test_the_encoder_gives_what_sentence_transformers_itself_gives(model, tmp_path):
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(model), device="cpu").encode(TEXTS, normalize_embeddings=True)
    got = encoder(model, tmp_path, "torch").encode(TEXTS)
    assert np.min(np.sum(got * expected, axis=1)) > 0.9999


def test_the_gate_reference_is_kept_per_token_limit(model, tmp_path, monkeypatch):
    monkeypatch.setattr(variants, "cpu_has_bfloat16", lambda: True)  # emulated where the CPU lacks it: slow, not wrong
    encoder(model, tmp_path, "openvino", "bfloat16", max_length=16)
    enc = encoder(model, tmp_path, "openvino", "bfloat16", max_length=48)
    assert {p.name for p in enc.cache_dir.glob("reference-*.npy")} == {"reference-16.npy", "reference-48.npy"}
