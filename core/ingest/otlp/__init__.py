"""OpenTelemetry in: OTLP request bodies into inference events (``driftwarden otlp`` serves them).

- ``decode.py``: protobuf or OTLP/JSON bodies, gzip, into plain spans and log records; the
  export responses and error statuses.
- ``genai.py``, ``openinference.py``: one module per semantic convention, each mapping an LLM
  span (with its joined log records and its trace's documents) to an event mapping.
- ``common.py``: what the conventions share (span fields, names, messages, metadata).
- ``mapper.py``: which convention a span belongs to, the join of a span with its log records
  within a bounded wait, validation into events, dead letters for what cannot become one.
- ``config.py``: ``DRIFTWARDEN_OTLP__*``.
"""
