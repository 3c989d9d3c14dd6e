"""Personal data in prompts and responses, with presidio; and redaction with presidio-anonymizer.

presidio-analyzer runs its pattern recognizers (e-mail, phone, credit card, IP, IBAN, URL, ...)
on a blank spaCy pipeline, so no spaCy model is downloaded. tldextract, which the e-mail
recognizer uses, is pointed at the public-suffix snapshot it ships (no network).

A result keeps the types, offsets and scores of what was found, never the values. When
``DRIFTWARDEN_REDACT_PII`` is on, the stored event has every finding replaced by ``<TYPE>``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

from driftwarden.core.detector_configs import PIIConfig
from driftwarden.core.errors import DetectorTimeoutError
from driftwarden.core.schemas import DetectionResult, InferenceEvent, Span, make_error, make_result
from driftwarden.core.settings import Settings
from driftwarden.detectors.base import BaseDetector, BatchContext
from driftwarden.detectors.loading import require
from driftwarden.detectors.registry import register

log = logging.getLogger(__name__)


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


@functools.lru_cache(maxsize=1)
def analyzer_engine() -> Any:
    """presidio's AnalyzerEngine on a blank English spaCy pipeline, pattern recognizers only."""
    _offline_tldextract()
    spacy = require("spacy")
    analyzer = require("presidio_analyzer")
    nlp_engine_module = require("presidio_analyzer.nlp_engine")

    class BlankSpacyNlpEngine(nlp_engine_module.SpacyNlpEngine):
        """No model to load or download: tokenisation only."""

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
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
    # The spaCy NER recognizer needs a trained pipeline; with a blank one it finds nothing.
    registry.remove_recognizer("SpacyRecognizer")
    for recognizer in _context_recognizers(analyzer.EntityRecognizer, analyzer.RecognizerResult):
        registry.add_recognizer(recognizer)
    return analyzer.AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])


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


class PIIDetector(BaseDetector):
    name = "pii"
    config_class = PIIConfig
    config: PIIConfig

    def __init__(self, config: PIIConfig | None = None, encoder=None):
        super().__init__(config)
        self.analyzer = analyzer_engine()
        presidio_version = require("presidio_analyzer").__version__ if hasattr(
            require("presidio_analyzer"), "__version__") else "2"
        self.version = f"presidio-patterns-{presidio_version}"
        self._found: dict[str, list[Span]] = {}
        """Every span of the current batch's events (results keep at most MAX_SPANS; redaction needs all)."""

    def analyze(self, text: str, deadline: float | None = None) -> list[Any]:
        """presidio's findings in ``text``, scanned in overlapping chunks with the deadline checked
        between them (:class:`DetectorTimeoutError` when it passes); one finding per place."""
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
            for r in self.analyzer.analyze(text=text[start:end], language="en", entities=list(self.config.entities),
                                           score_threshold=self.config.threshold):
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
                for r in self.analyze(text, deadline)]

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

    def redact_text(self, text: str, deadline: float) -> str:
        """``text`` with every finding replaced by ``<TYPE>``, or DetectorTimeoutError."""
        if not text:
            return text
        spans = [Span(field="context", start=r.start, end=r.end, type=r.entity_type, score=r.score)
                 for r in self.analyze(text, deadline)]
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
                changes[field] = self._redacted_or_withheld(getattr(event, field), deadline)
        if event.context:
            changes["context"] = [self._redacted_or_withheld(p, deadline) for p in event.context]
        if event.metadata:
            changes["metadata"] = {k: self._redacted_or_withheld(v, deadline) for k, v in event.metadata.items()}
        if event.error:
            changes["error"] = self._redacted_or_withheld(event.error, deadline)
        return event.model_copy(update=changes) if changes else event

    def _redacted_or_withheld(self, text: str, deadline: float) -> str:
        try:
            return self.redact_text(text, deadline)
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
        return self.detector.redact_text(text, self.detector.deadline())


@register("pii")
def _build(settings: Settings, encoder=None) -> PIIDetector:
    return PIIDetector(settings.detectors.pii)
