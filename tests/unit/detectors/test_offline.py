"""Offline scoring of a file (what `driftwarden score` and the evaluation run)."""

from __future__ import annotations

import json

import pytest

from driftwarden.core.errors import DetectorError, ReplayError
from driftwarden.core.settings import load_settings
from driftwarden.detectors.offline import score_file


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_row_gets_its_id_score_label_detector_and_version(tmp_path):
    src = write(tmp_path / "qa.jsonl", [
        {"id": "a", "answer": "Paris", "context": "Paris is the capital of France."},
        {"id": "b", "answer": "Lyon", "context": "Paris is the capital of France."},
        {"id": "c", "answer": "Rome"},
    ])
    counts = score_file("hallucination", load_settings(), src, "answer", tmp_path / "out.jsonl", "context")
    out = read(tmp_path / "out.jsonl")
    assert [o["id"] for o in out] == ["a", "b", "c"]
    assert out[0]["score"] < 0.1 and out[0]["label"] is False
    assert out[1]["score"] > 0.8 and out[1]["label"] is True
    assert out[1]["spans"] == [{"field": "response", "start": 0, "end": 4, "type": "unsupported",
                                "score": round(out[1]["score"], 4)}]
    assert out[2]["score"] is None and "not assessable" in out[2]["note"]
    assert {o["detector"] for o in out} == {"hallucination"} and all(o["version"] for o in out)
    assert counts == {"rows": 3, "flagged": 1, "errors": 0, "not_assessable": 1}


def test_pii_scoring_reads_only_the_given_field(tmp_path):
    src = write(tmp_path / "t.jsonl", [{"id": 1, "text": "mail me: ann@example.org"}, {"id": 2, "text": "hello"}])
    score_file("pii", load_settings(), src, "text", tmp_path / "o.jsonl")
    assert [o["label"] for o in read(tmp_path / "o.jsonl")] == [True, False]


def test_a_row_without_the_field_names_its_line(tmp_path):
    src = write(tmp_path / "t.jsonl", [{"id": 1, "text": "ok"}, {"id": 2, "body": "?"}])
    with pytest.raises(ReplayError, match="input:2: field 'text' is missing"):
        score_file("pii", load_settings(), src, "text", tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()  # no half-written output


def test_the_operational_detector_cannot_score_files(tmp_path):
    src = write(tmp_path / "t.jsonl", [{"text": "x"}])
    with pytest.raises(DetectorError, match="choose one of hallucination, pii, prompt_injection, toxicity"):
        score_file("operational", load_settings(), src, "text", tmp_path / "o.jsonl")


def test_a_file_is_scored_whole_whatever_the_detectors_sample_rate():
    from driftwarden.detectors.offline import build_offline

    settings = load_settings(detectors={"pii": {"sample_rate": 0.1}, "hallucination": {"sample_rate": 0.2}})
    assert build_offline("pii", settings).config.sample_rate == 1.0
    assert build_offline("hallucination", settings).config.sample_rate == 1.0
