"""A configured toxicity checkpoint is loaded as data (weights only): one that would run code is refused."""

from __future__ import annotations

import pytest

from driftwarden.detectors.toxicity import ToxicityConfig
from driftwarden.core.errors import DetectorError
from driftwarden.detectors.toxicity import ToxicityDetector
from driftwarden.tests.tiny_models import build_detoxify_checkpoint


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if unpickled


def test_a_checkpoint_that_would_run_code_when_loaded_is_refused_and_runs_nothing(tmp_path):
    import torch

    checkpoint, hf_dir = build_detoxify_checkpoint(tmp_path / "ok")
    loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    marker = tmp_path / "pwned"
    loaded["config"]["payload"] = _RunsCodeWhenUnpickled(str(marker))
    hostile = tmp_path / "hostile.ckpt"
    torch.save(loaded, hostile)
    with pytest.raises(DetectorError, match="cannot be loaded as weights only"):
        ToxicityDetector(ToxicityConfig(backend="detoxify", model_path=hostile, hf_config_path=hf_dir))
    assert not marker.exists()
