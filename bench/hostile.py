"""Per-message handling time of the hostile-input catalogue (``tests/hostile.py``), in process.

For each hostile message sent to ``llm.inference``: the time the score worker's unit of work
(validate, score with every default detector, redact, build the records it sends) takes on that
message alone, and the verdict (stored, or dead-lettered with its stage). A message that
crashes the worker's code is reported as ``CRASH``: in the running stack that stopped the agent.
The end-to-end bound through broker and store is asserted by the integration suite; this
script gives the numbers to compare before and after a change, in one run each.

Run: ``.venv/bin/python bench/hostile.py`` (limits as in the suite: 40,000-character texts).
Last line: ``key=value`` pairs.
"""

from __future__ import annotations

import logging
import time

from driftwarden.core.settings import load_settings
from driftwarden.detectors.pipeline import ScoringPipeline
from driftwarden.tests.hostile import HOSTILE, HOSTILE_MAX_CHARS


def verdict_of(pipeline, raw: bytes | None, limits) -> str:
    try:
        from driftwarden.streams.score_agent import score_batch
        from driftwarden.streams.validation import RawMessage
    except ImportError:  # the code before the hostile-input work: validate, then run the pipeline
        return _verdict_before(pipeline, raw, limits)
    verdicts = score_batch(pipeline, [RawMessage("llm.inference", 0, 0, b"", raw)], limits)
    if verdicts.dead:
        return f"dead letter ({verdicts.dead[0].stage})"
    return "stored"


def _verdict_before(pipeline, raw, limits) -> str:
    from driftwarden.streams.validation import RawMessage, split_valid

    valid, dead = split_valid([RawMessage("llm.inference", 0, 0, b"", raw)], limits)
    if dead:
        return f"dead letter ({dead[0].stage})"
    output = pipeline.run(valid)
    for event in output.events:
        event.to_json_bytes()
    return "stored"


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    from driftwarden.core.schemas import EventLimits

    settings = load_settings(max_prompt_chars=HOSTILE_MAX_CHARS, max_response_chars=HOSTILE_MAX_CHARS,
                             redact_pii=True)
    limits = EventLimits.from_settings(settings)
    pipeline = ScoringPipeline.from_settings(settings)
    verdict_of(pipeline, HOSTILE[0].raw, limits)  # warm up the models
    worst = ("", 0.0)
    crashes = 0
    print(f"{'ms':>9}  verdict                kind")
    for case in HOSTILE:
        if case.topic != "inference":
            continue
        started = time.perf_counter()
        try:
            verdict = verdict_of(pipeline, case.raw, limits)
        except Exception as exc:  # noqa: BLE001 - what the agent would have died of
            verdict = f"CRASH {type(exc).__name__}"
            crashes += 1
        ms = (time.perf_counter() - started) * 1000
        worst = max(worst, (case.kind, ms), key=lambda w: w[1])
        print(f"{ms:9.1f}  {verdict:22.22} {case.kind}")
    print(f"worst: {worst[1]:.0f} ms ({worst[0]}); crashes: {crashes}")
    print(f"worst_ms={worst[1]:.0f} crashes={crashes} cases={sum(c.topic == 'inference' for c in HOSTILE)}")


if __name__ == "__main__":
    main()
