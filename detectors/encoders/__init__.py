"""Backends of the shared embedding encoder: the same sentence-transformers model run by torch,
ONNX Runtime or OpenVINO, in float32 or a reduced precision that passed the quality gate.

- :mod:`.variants`: which variants exist, which run on this machine, and the shipped gate
  verdict (``data/encoder_gate.json``, written by ``bench/encoder_gate.py``) that ranks them;
- :mod:`.export`: the ONNX export of the model into the data directory (no hub, no optimum),
  its graph-optimised and int8 derivatives, and the float32 reference embeddings the gate
  compares against;
- :mod:`.backends`: one class per runtime, each running tokenized, padded batches.

The :class:`~driftwarden.detectors.embeddings.Encoder` puts them together.
"""
