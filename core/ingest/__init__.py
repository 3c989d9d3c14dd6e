"""Ingestion: every way outside data becomes an :class:`~driftwarden.core.schemas.InferenceEvent`.

One mapping layer with one error path: a source that cannot be read, or a row that cannot become
an event, raises :class:`~driftwarden.core.errors.ReplayError` naming the source, the row and the
reason; the caller refuses the row and counts it (replay, ``score``, ``drift-test``) or sends it to
the dead-letter topic (the stream's validation). The mapped dicts are validated into events by
:func:`~driftwarden.core.schemas.event_from_mapping` (the bounded contract) wherever they enter.

- ``jsonl.py``: JSONL files, a row per line, with line numbers.
- ``datasets.py``: rows of labelled data sets and recorded traffic (``prompt``/``question``,
  ``response``/``answer``, ``context``) as realistic traffic (replay), as the one text a detector
  scores (``score``), or as the texts of a field (``drift-test``).

Adding a format is one module here (and its test) whose functions yield event mappings.
"""
