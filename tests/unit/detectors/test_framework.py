"""The detector framework: one result per event, failures isolated, token-budget batching."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from driftwarden.core.errors import MissingExtraError
from driftwarden.core.schemas import event_from_mapping, make_result
from driftwarden.core.settings import load_settings
from driftwarden.detectors.base import BaseDetector, BatchContext
from driftwarden.detectors.loading import require, token_budget_batches
from driftwarden.detectors.pipeline import ScoringPipeline
from driftwarden.detectors.registry import build, enabled_names, names
from driftwarden.tests.cases import valid_event


class Fragile(BaseDetector):
    """Fails on any batch that holds the event with prompt 'boom'."""

    name = "fragile"
    version = "0"

    def score_batch(self, events: Sequence, ctx: BatchContext):
        if any(e.prompt == "boom" for e in events):
            raise RuntimeError("cannot score boom")
        return [make_result(self, e, score=0.1, label=False) for e in events]


class Broken(BaseDetector):
    name = "broken"
    version = "0"

    def detect(self, events, ctx=None):
        raise RuntimeError("model fell over")


def events(*prompts: str):
    return [event_from_mapping(valid_event(f"f-{i}", prompt=p)) for i, p in enumerate(prompts)]


def test_a_failure_on_one_event_marks_only_that_result_as_an_error():
    results = Fragile().detect(events("a", "boom", "c"))
    assert [r.error is None for r in results] == [True, False, True]
    assert "cannot score boom" in results[1].error and results[1].score is None


def test_a_detector_that_fails_whole_marks_errors_and_the_others_still_run():
    output = ScoringPipeline([Broken(), Fragile()]).run(events("a", "b"))
    by = {(r.detector, r.event_id): r for r in output.results}
    assert by[("broken", "f-0")].error == "RuntimeError: model fell over"
    assert by[("fragile", "f-1")].error is None


def test_every_detector_name_the_issue_lists_is_registered():
    assert {"toxicity", "hallucination", "pii", "prompt_injection", "operational"} <= set(names())


def test_an_unknown_detector_name_lists_the_known_ones():
    with pytest.raises(Exception, match="known detectors: .*toxicity"):
        build("toxcity", load_settings())


def test_a_detector_can_be_disabled_through_the_settings(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__PII__ENABLED", "false")
    assert "pii" not in enabled_names(load_settings())


def test_token_budget_batches_group_by_length_under_both_limits():
    texts = ["x" * n for n in (5, 100, 7, 90, 6, 95)]
    batches = list(token_budget_batches(texts, len, max_batch=4, max_tokens=200))
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) <= 4 and max(len(texts[i]) for i in b) * len(b) <= 200 or len(b) == 1
    assert batches[0] == [0, 4, 2]


def test_a_missing_optional_package_names_the_extra_to_install():
    with pytest.raises(MissingExtraError, match=r"pip install 'driftwarden\[ml\]'"):
        require("no_such_module_for_driftwarden")


def test_a_sampled_detector_is_not_one_whose_count_says_every_event_is_scored():
    from driftwarden.detectors.registry import unsampled_names

    settings = load_settings(detectors={"hallucination": {"sample_rate": 0.5}, "toxicity": {"enabled": False}})
    assert "hallucination" not in unsampled_names(settings) and "toxicity" not in unsampled_names(settings)
    assert {"operational", "pii", "prompt_injection"} <= set(unsampled_names(settings))
