"""The scoring pipeline: per-detector sampling (absent, not zero), and every text a batch needs
encoded in one call before the detectors run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from driftwarden.core.detector_configs import DetectorConfig
from driftwarden.core.errors import DetectorError
from driftwarden.core.schemas import event_from_mapping, make_result
from driftwarden.detectors.base import BaseDetector, BatchContext, sampled
from driftwarden.detectors.pipeline import ScoringPipeline, descriptors
from driftwarden.tests.cases import valid_event


class Counting:
    """An encoder that records each call (unit tests of the pipeline's logic, no model)."""

    version = "counting-8d"
    dimensions = 8

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]):
        self.calls.append(list(texts))
        rng = np.random.default_rng(len(texts))
        v = rng.normal(size=(len(texts), self.dimensions)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


class Embeds(BaseDetector):
    """Says it will embed each prompt and a word of it, then asks for both when it scores."""

    name = "embeds"
    version = "0"

    def texts_to_embed(self, events, ctx):
        return [e.prompt for e in events] + [e.prompt.split()[0] for e in events]

    def score_batch(self, events: Sequence, ctx: BatchContext):
        ctx.embeddings("prompt")
        ctx.texts([e.prompt.split()[0] for e in events])
        return [make_result(self, e, score=0.2, label=False) for e in events]


class Half(BaseDetector):
    name = "half"
    version = "0"

    def __init__(self, rate: float = 0.5):
        super().__init__(DetectorConfig(sample_rate=rate))

    def score_batch(self, events: Sequence, ctx: BatchContext):
        return [make_result(self, e, score=0.9, label=True) for e in events]


def batch(n: int, prefix: str = "p"):
    return [event_from_mapping(valid_event(f"{prefix}-{i}", prompt=f"question {i} about things",
                                           response=f"answer {i}")) for i in range(n)]


def test_every_text_the_detectors_need_is_encoded_in_one_call_per_batch():
    encoder = Counting()
    pipeline = ScoringPipeline([Embeds()], encoder, store_embeddings=True)
    output = pipeline.run(batch(40))
    assert len(encoder.calls) == 1
    wanted = {f"question {i} about things" for i in range(40)} | {f"answer {i}" for i in range(40)} | {"question"}
    assert set(encoder.calls[0]) == wanted and len(encoder.calls[0]) == len(wanted)  # each text once
    assert len(output.embeddings) == 80 and "embeddings" in output.seconds


def test_a_detector_samples_a_stable_share_and_the_rest_get_no_result_from_it():
    events = batch(400)
    output = ScoringPipeline([Half(), Embeds()], Counting()).run(events)
    half = [r for r in output.results if r.detector == "half"]
    assert 140 < len(half) < 260  # absent, not a zero: no result at all for the others
    assert {r.event_id for r in half} == {e.event_id for e in events if sampled(e.event_id, 0.5)}
    assert len([r for r in output.results if r.detector == "embeds"]) == 400  # the others score every event
    again = ScoringPipeline([Half()], Counting()).run(batch(400))
    assert {r.event_id for r in again.results} == {r.event_id for r in half}  # a replay samples the same events


def test_descriptors_leave_out_the_score_of_a_detector_that_did_not_sample_the_event():
    events = batch(2)
    scored = make_result(Half(), events[0], score=0.9, label=True)
    described = descriptors(events, {"half": [scored, None]})
    assert described[0]["half_score"] == 0.9 and "half_score" not in described[1]


def test_redaction_refuses_a_sampled_pii_detector_since_every_event_must_be_scanned():
    class SampledPII(Half):
        name = "pii"

    with pytest.raises(DetectorError, match="SAMPLE_RATE=1"):
        ScoringPipeline([SampledPII(0.5)], redact=True)


def test_a_detector_that_cannot_say_what_it_embeds_still_gets_its_embeddings():
    class Unsure(Embeds):
        def texts_to_embed(self, events, ctx):
            raise RuntimeError("cannot plan")

    encoder = Counting()
    output = ScoringPipeline([Unsure()], encoder).run(batch(3))
    assert all(r.error is None for r in output.results) and len(encoder.calls) == 2  # asked for when scoring
