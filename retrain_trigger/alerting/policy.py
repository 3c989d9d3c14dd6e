"""The policy: turns detection windows and drift windows into alerts and retraining requests.

Pure logic, no Kafka: :class:`DetectionWindows` aggregates each event's detection results per
segment (app, model_version) into windows and reports their metrics as :class:`Observation`\\ s;
:func:`drift_observations` does the same for a closed drift window; :class:`PolicyEngine` keeps
one small state machine per rule and segment (consecutive breaches, firing, cooldown,
hysteresis) and says what to emit. The policy agent (``streams/policy_agent.py``) feeds it.

Hostile values cannot break it: every metric value is finite (inputs that are not finite
numbers are skipped and counted, sums and results are clamped to ``METRIC_CAP``); an alert and
its retraining request are built completely before a rule's state changes, so a failure leaves
the state as it was; ids and dedupe keys are built from escaped parts (``id_part``). State is
bounded per segment (app, model_version): segments idle for ``idle_minutes`` are evicted, and at
``max_segments`` the least recently seen one is. A rule that is firing is never evicted, so its
``resolved`` is never lost: its segment stays until it resolves and counts against the cap; when
every live segment is firing, a new segment's observations are not judged (counted in
``dropped_at_cap``, with a WARNING) until one resolves.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode


from driftwarden.core.schemas import AlertEvent, DatasetSpec, DetectionResult, DriftResult, RetrainRequest
from driftwarden.detectors.drift.windows import Throttled, join_id
from driftwarden.retrain_trigger.alerting.rules import COUNTED_METRICS, Policy, Rule

log = logging.getLogger(__name__)

EXAMPLES = 5
#: Largest magnitude of any metric value (and of a window's cost sum): finite, far above real values.
METRIC_CAP = 1e18
#: Grafana links span [0, end of year 9999] in epoch milliseconds.
_LINK_MS = (0, 253_402_300_799_999)
_LINK_MARGIN_MS = 30 * 60 * 1000


def bounded(value: float) -> float | None:
    """``value`` clamped to ±METRIC_CAP; None when it is not a number (NaN) or not a float at all."""
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if math.isnan(value):
        return None
    return max(-METRIC_CAP, min(METRIC_CAP, value))


def _finite(value: object) -> float | None:
    """A finite float, or None for NaN, infinities and anything that is not a number."""
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None
METRIC_WORDS = {
    "detector_rate": "the share of events flagged by {detector}",
    "detector_mean": "the mean {detector} score",
    "drift_p_value": "the embedding drift p-value",
    "drift_statistic": "the embedding drift statistic (MMD² under the aggregate and mmd methods, mean novelty under novelty)",
    "latency_p95_ms": "the 95th percentile latency (ms)",
    "error_rate": "the share of failed calls",
    "cost_per_hour": "the cost per hour (USD)",
    "feedback_negative_rate": "the share of negative user feedback",
}
DASHBOARDS = {"drift_p_value": "driftwarden-drift", "drift_statistic": "driftwarden-drift",
              "detector_rate": "driftwarden-safety", "detector_mean": "driftwarden-safety"}


@dataclass(frozen=True)
class Observation:
    """One metric of one segment in one closed window."""

    app: str
    model_version: str
    field: str
    metric: str
    value: float
    window_id: str
    window_start: datetime
    window_end: datetime
    n: int
    detector: str | None = None
    subject: str | None = None
    """The user (or other subject) a per-subject metric is about; None for the whole segment."""
    examples: tuple[str, ...] = ()
    detail: str = ""
    """What the alert's summary adds about the window (a drift window: what is new)."""


# ------------------------------------------------------------------------------------------
# Windows of detection results
# ------------------------------------------------------------------------------------------


@dataclass
class _Window:
    opened: float
    ids: list[str] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    scores: dict[str, list[tuple[float, bool, str]]] = field(default_factory=dict)
    latency: list[float] = field(default_factory=list)
    errors: int = 0
    cost: float = 0.0
    feedback: dict[tuple[str, str], float] = field(default_factory=dict)
    """(event_id, source) -> score of late feedback on the segment's events (the last per event and
    source, like the table; at most :data:`MAX_WINDOW_FEEDBACK`)."""
    feedback_times: list[datetime] = field(default_factory=list)
    spend: dict[str, float] = field(default_factory=dict)
    """Cost per subject (user), the top ``max_subjects`` spenders."""
    members: set[str] = field(default_factory=set)
    """``ids`` as a set: an event seen again (a redelivery) is not counted twice."""


#: Feedback records one detection window holds at most (one per event and source).
MAX_WINDOW_FEEDBACK = 10_000
#: The kind of the detection windows' rows in the store's ``segment_state``.
WINDOW_KIND = "detections"


def _dump_window(w: _Window, wall: datetime, mono: float) -> dict:
    """An open window as JSON-able data (its monotonic opening time as a wall-clock time); scores
    name their event by its index in ``ids``."""
    index = {event_id: i for i, event_id in enumerate(w.ids)}
    return {"opened_at": wall.timestamp() - (mono - w.opened), "ids": w.ids,
            "times": [t.isoformat() for t in w.times],
            "scores": {d: [[s, int(flag), index.get(e, e)] for s, flag, e in v] for d, v in w.scores.items()},
            "latency": w.latency, "errors": w.errors, "cost": w.cost,
            "feedback": [[e, src, v] for (e, src), v in w.feedback.items()],
            "feedback_times": [t.isoformat() for t in w.feedback_times], "spend": w.spend}


def _load_window(data: dict, wall: datetime, mono: float) -> _Window:
    ids = [str(e) for e in data["ids"]]
    scores = {str(d): [(float(s), bool(flag), ids[e] if isinstance(e, int) else str(e)) for s, flag, e in v]
              for d, v in data["scores"].items()}
    return _Window(opened=mono - (wall.timestamp() - float(data["opened_at"])), ids=ids,
                   times=[datetime.fromisoformat(t) for t in data["times"]], scores=scores,
                   latency=[float(x) for x in data["latency"]], errors=int(data["errors"]), cost=float(data["cost"]),
                   feedback={(str(e), str(src)): float(v) for e, src, v in data["feedback"]},
                   feedback_times=[datetime.fromisoformat(t) for t in data["feedback_times"]],
                   spend={str(k): float(v) for k, v in data["spend"].items()}, members=set(ids))


class DetectionWindows:
    """Per (app, model_version): windows of ``size`` events or ``minutes``, whichever first.

    At most ``max_segments`` segments are kept (the least recently seen is evicted, its open
    window closed), and a segment not seen for ``idle_minutes`` is forgotten. Counters:
    :attr:`live_segments`, :attr:`evicted_idle`, :attr:`evicted_cap`, :attr:`nonfinite_values`,
    :attr:`duplicates`.

    An event already in its segment's open or last closed window is not counted again, so a
    redelivery (a restart, a rebalance upstream) leaves the windows as they were. The windows are
    durable through :meth:`checkpoint` and :meth:`restore`: a process killed between two
    checkpoints, started again, closes the same windows with the same events.
    """

    def __init__(self, size: int, minutes: float, clock: Callable[[], float] = time.monotonic, *,
                 idle_minutes: float = 1440.0, max_segments: int = 2_000, max_subjects: int = 0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        if max_segments < 1 or not idle_minutes > 0:
            raise ValueError("max_segments must be at least 1 and idle_minutes above 0")
        self.size = size
        self.seconds = minutes * 60
        self.clock = clock
        self.idle_seconds = idle_minutes * 60
        self.max_segments = max_segments
        self._open: dict[tuple[str, str], _Window] = {}
        self._sequence: dict[tuple[str, str], int] = {}
        #: Last time each segment was seen, least recently seen first.
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.evicted_idle = 0
        """Segments forgotten after ``idle_minutes`` without an event."""
        self.evicted_cap = 0
        """Segments evicted because ``max_segments`` were live (each one is a hit of the cap)."""
        self.nonfinite_values = 0
        """Scores, latencies and costs skipped because they were not finite numbers."""
        self.max_subjects = max_subjects
        """Spenders tracked per window (0: none; the policy has no per-subject rule)."""
        self.subjects_dropped = 0
        """Spenders dropped from a window to keep its top ``max_subjects``."""
        self._last_subjects: dict[tuple[str, str], set[str]] = {}
        self.feedback_dropped = 0
        """Feedback records past :data:`MAX_WINDOW_FEEDBACK` in one window (not judged)."""
        self._cap_warning = Throttled(clock)
        self.now = now
        self._previous_ids: dict[tuple[str, str], set[str]] = {}
        """The events of each segment's last closed window: one delivered again is not counted."""
        self._dirty: set[tuple[str, str]] = set()
        """Segments changed since the last :meth:`checkpoint`."""
        self.duplicates = 0
        """Events skipped because their window (or the segment's last one) already holds them."""

    @property
    def live_segments(self) -> int:
        return len(self._seen)

    def counters(self) -> dict[str, int]:
        return {"detection_segments_live": self.live_segments, "detection_segments_evicted_idle": self.evicted_idle,
                "detection_segments_evicted_cap": self.evicted_cap,
                "detection_values_not_finite": self.nonfinite_values,
                "detection_subjects_dropped": self.subjects_dropped,
                "detection_feedback_dropped": self.feedback_dropped, "detection_duplicates": self.duplicates}

    def add(self, results: Iterable[DetectionResult]) -> list[Observation]:
        """The results of one event; the observations of the window this closes, if any (and of
        a segment's window evicted to make room for this one)."""
        results = list(results)
        if not results:
            return []
        first = results[0]
        key = (first.app, first.model_version)
        current = self._open.get(key)
        if (current is not None and first.event_id in current.members) or first.event_id in self._previous_ids.get(
                key, ()):
            self.duplicates += 1  # delivered again (a restart or a rebalance upstream): counted once
            return []
        out: list[Observation] = []
        window = self._touch(key, out)
        self._dirty.add(key)
        window.ids.append(first.event_id)
        window.members.add(first.event_id)
        window.times.append(first.event_ts)
        for r in results:
            if r.detector == "operational":
                latency = _finite(r.scores.get("latency_ms", 0.0))
                cost = _finite(r.scores.get("cost_usd", 0.0))
                if latency is None or cost is None:
                    self.nonfinite_values += 1
                window.latency.append(0.0 if latency is None else max(-METRIC_CAP, min(METRIC_CAP, latency)))
                window.errors += int((_finite(r.scores.get("is_error", 0.0)) or 0.0) > 0)
                if cost is not None:
                    window.cost = max(-METRIC_CAP, min(METRIC_CAP, window.cost + cost))
                    if self.max_subjects and r.subject:
                        self._spend(window, str(r.subject)[:128], cost)
            elif r.score is not None and r.label is not None:
                score = _finite(r.score)
                if score is None:
                    self.nonfinite_values += 1
                    continue
                window.scores.setdefault(r.detector, []).append(
                    (max(-METRIC_CAP, min(METRIC_CAP, score)), r.label, r.event_id))
        if len(window.ids) >= self.size:
            out += self._close(key)
        return out

    def _touch(self, key: tuple[str, str], out: list[Observation]) -> _Window:
        """The segment's open window (opened now if none), the segment marked as seen; a segment
        evicted to make room adds its window's observations to ``out``."""
        now = self.clock()
        if key in self._seen:
            self._seen.move_to_end(key)
        elif len(self._seen) >= self.max_segments:
            out += self._evict_least_recent(key)
        self._seen[key] = now
        return self._open.setdefault(key, _Window(opened=now))

    def _spend(self, window: _Window, subject: str, cost: float) -> None:
        """Add to a subject's spend, keeping the top ``max_subjects`` (Space-Saving; drops counted)."""
        spend = window.spend
        if subject in spend or len(spend) < self.max_subjects:
            spend[subject] = max(-METRIC_CAP, min(METRIC_CAP, spend.get(subject, 0.0) + cost))
            return
        # Space-Saving: the newcomer takes the smallest spender's place and count, so a user of
        # many cheap calls climbs in; a tracked spend overstates by at most the evicted count.
        self.subjects_dropped += 1
        smallest = min(spend, key=spend.__getitem__)
        floor = spend.pop(smallest)
        spend[subject] = max(-METRIC_CAP, min(METRIC_CAP, floor + cost))

    def add_feedback(self, app: str, model_version: str, score: float, event_id: str, given_at: datetime,
                     source: str = "user") -> list[Observation]:
        """Late feedback on an event of the segment: it joins the segment's open window (it does not
        count toward the window's size); the observations of a window evicted for it, if any."""
        key = (app, model_version)
        out: list[Observation] = []
        value = _finite(score)
        if value is None:
            self.nonfinite_values += 1
            return out
        window = self._touch(key, out)
        self._dirty.add(key)
        if (event_id, source) in window.feedback or len(window.feedback) < MAX_WINDOW_FEEDBACK:
            window.feedback[(event_id, source)] = max(-1.0, min(1.0, value))
            window.feedback_times = [min([given_at, *window.feedback_times]), max([given_at, *window.feedback_times])]
        else:
            self.feedback_dropped += 1
        return out

    def due(self) -> list[Observation]:
        """Observations of windows open longer than ``minutes`` (called by a timer); segments
        idle for ``idle_minutes`` are then forgotten."""
        now = self.clock()
        out: list[Observation] = []
        for key in [k for k, w in self._open.items() if now - w.opened >= self.seconds and (w.ids or w.feedback)]:
            out.extend(self._close(key))
        while self._seen:
            key, seen = next(iter(self._seen.items()))
            if now - seen < self.idle_seconds:
                break
            out += self._forget(key)
            self.evicted_idle += 1
        return out

    def _forget(self, key: tuple[str, str]) -> list[Observation]:
        self._seen.pop(key, None)
        window = self._open.get(key)
        out = self._close(key) if window is not None and (window.ids or window.feedback) else []
        self._drop(key)
        return out

    def _drop(self, key: tuple[str, str]) -> None:
        for table in (self._seen, self._open, self._sequence, self._last_subjects, self._previous_ids):
            table.pop(key, None)
        self._dirty.add(key)

    def forget_app(self, app: str) -> None:
        """Drop an app's open windows unjudged (its events and stored windows were erased)."""
        for key in [k for k in {*self._seen, *self._open} if k[0] == app]:
            self._drop(key)
            self._dirty.discard(key)  # nothing to write: the purge erased the stored state

    def forget(self, owned: Callable[[tuple[str, str]], bool]) -> int:
        """Drop, unjudged, the segments ``owned`` says this process no longer holds (their partition
        moved to another sink, which reads their checkpoints back); returns how many."""
        gone = [k for k in {*self._seen, *self._open} if not owned(k)]
        for key in gone:
            self._drop(key)
            self._dirty.discard(key)  # the new owner's state, not a deletion
        return len(gone)

    def checkpoint(self) -> dict[str, tuple[str, str]]:
        """The segments changed since the last call, ``{key: (app, JSON)}`` (``"null"`` for one
        forgotten), for the store's ``segment_state`` (kind :data:`WINDOW_KIND`): the open window,
        the window count, the last window's events and spenders. The agent writes them before it
        acknowledges the records that changed them."""
        wall, mono = self.now(), self.clock()
        out = {}
        for key in self._dirty:
            if key not in self._seen:
                state = "null"
            else:
                window = self._open.get(key)
                state = json.dumps({
                    "window": None if window is None else _dump_window(window, wall, mono),
                    "sequence": self._sequence.get(key, 0),
                    "previous_ids": sorted(self._previous_ids.get(key, ())),
                    "last_subjects": sorted(self._last_subjects.get(key, ()))})
            out[json.dumps(list(key))] = (key[0], state)
        self._dirty = set()
        return out

    def restore(self, saved: dict[str, str], owned: Callable[[tuple[str, str]], bool] = lambda key: True, *,
                replace: bool = False) -> int:
        """Take the windows read back from the store (at start; after a rebalance with ``replace``:
        the store then holds every sink's latest), those of segments ``owned`` says are this
        process's; returns how many."""
        wall, mono = self.now(), self.clock()
        if replace:
            for key in list({*self._seen, *self._open}):
                self._drop(key)
            self._dirty = set()
        n = 0
        for raw_key, raw in saved.items():
            try:
                key = tuple(json.loads(raw_key))
                data = json.loads(raw)
                if data is None or len(key) != 2 or not owned(key):  # type: ignore[arg-type]
                    continue
                window = None if data["window"] is None else _load_window(data["window"], wall, mono)
                sequence = int(data["sequence"])
                previous = {str(e) for e in data["previous_ids"]}
                subjects = {str(e) for e in data["last_subjects"]}
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                log.warning("a stored detection window could not be read (%r); that segment's windows start again",
                            raw_key[:200])
                continue
            if window is not None:
                self._open[key] = window  # type: ignore[index]
            self._sequence[key] = sequence  # type: ignore[index]
            self._previous_ids[key] = previous  # type: ignore[index]
            if subjects:
                self._last_subjects[key] = subjects  # type: ignore[index]
            self._seen[key] = mono  # type: ignore[index]
            n += 1
        return n

    def _evict_least_recent(self, incoming: tuple[str, str]) -> list[Observation]:
        victim = next(iter(self._seen))
        n = len(self._open[victim].ids) if victim in self._open else 0
        out = self._forget(victim)
        self.evicted_cap += 1
        self._cap_warning.warning(
            log, "detection windows are at their cap of %d live segments: segment %s, the least recently seen, "
            "was evicted to make room for %s, and its open window (%d events) was closed early. If it comes back, "
            "its windows start again. Raise DRIFTWARDEN_MAX_SEGMENTS if this many segments are real, or look for "
            "an app that publishes random app or model_version names (%d evicted for the cap so far)",
            self.max_segments, join_id(*victim), join_id(*incoming), n, self.evicted_cap)
        return out

    def _close(self, key: tuple[str, str]) -> list[Observation]:
        window = self._open.pop(key)
        self._dirty.add(key)
        self._previous_ids[key] = window.members
        seq = self._sequence[key] = self._sequence.get(key, 0) + 1
        app, mv = key
        times = window.times or window.feedback_times
        start, end = min(times), max(times)
        n = len(window.ids)
        common = {"app": app, "model_version": mv, "field": "*", "window_id": join_id(app, mv, "detections", seq),
                  "window_start": start, "window_end": end}
        out = []
        for detector, values in sorted(window.scores.items()):
            flagged = sorted((v for v in values if v[1]), key=lambda v: -v[0])
            examples = tuple(v[2] for v in flagged[:EXAMPLES]) or tuple(
                v[2] for v in sorted(values, key=lambda v: -v[0])[:EXAMPLES])
            out.append(Observation(metric="detector_rate", value=len(flagged) / len(values), n=len(values),
                                   detector=detector, examples=examples, **common))
            mean = math.fsum(v[0] for v in values) / len(values)
            out.append(Observation(metric="detector_mean", value=_clamp(mean), n=len(values), detector=detector,
                                   examples=examples, **common))
        if window.latency:
            slowest = tuple(window.ids[i] for i in heapq.nlargest(EXAMPLES, range(len(window.latency)),
                                                                  key=window.latency.__getitem__))
            out.append(Observation(metric="latency_p95_ms", value=_clamp(_percentile(window.latency, 95)),
                                   n=n, examples=slowest, **common))
            out.append(Observation(metric="error_rate", value=window.errors / len(window.latency), n=n, **common))
            hours = max((end - start).total_seconds(), 60.0) / 3600
            out.append(Observation(metric="cost_per_hour", value=_clamp(window.cost / hours), n=n, **common))
            for subject, spent in sorted(window.spend.items()):
                out.append(Observation(metric="cost_per_hour", value=_clamp(spent / hours), n=n, subject=subject,
                                       **common))
        # A subject of the last window that spent nothing in this one is judged at 0, so its rule
        # resolves (and its state is forgotten) instead of waiting for a spend that never comes.
        for subject in sorted(self._last_subjects.get(key, set()) - set(window.spend)):
            out.append(Observation(metric="cost_per_hour", value=0.0, n=n, subject=subject, **common))
        if self.max_subjects:
            self._last_subjects[key] = set(window.spend)
        if window.feedback:
            negative = [event_id for (event_id, _), score in window.feedback.items() if score < 0]
            out.append(Observation(metric="feedback_negative_rate", value=len(negative) / len(window.feedback),
                                   n=len(window.feedback), examples=tuple(negative[:EXAMPLES]), **common))
        return out


class RecentSegments:
    """The (app, model_version) of the last ``size`` events seen, for feedback that names only its
    event (least recently seen forgotten first)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._segments: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def remember(self, event_id: str, app: str, model_version: str) -> None:
        """Remember an event's segment (an id ``<trace id>:<span id>`` under its trace id too)."""
        keys = [event_id]
        if ":" in event_id:
            keys.append(event_id.split(":", 1)[0])
        for key in keys:
            self._segments[key] = (app, model_version)
            self._segments.move_to_end(key)
        while len(self._segments) > self.size:
            self._segments.popitem(last=False)

    def get(self, event_id: str) -> tuple[str, str] | None:
        return self._segments.get(event_id)


def _percentile(values: list[float], q: float) -> float:
    """numpy's default (linear) percentile, without numpy's overhead on small windows."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _clamp(value: float) -> float:
    """A metric value within ±METRIC_CAP (0.0 for NaN, which finite inputs cannot produce)."""
    v = bounded(value)
    return 0.0 if v is None else v


def drift_detail(result: DriftResult, texts: bool = True) -> str:
    """What is new in a drift window, in words: its largest groups of events unlike the reference,
    with the first group's example texts (as stored: redacted when PII redaction is on) unless
    ``texts`` is off, then with their event ids."""
    if not result.clusters:
        return ""
    first, *rest = result.clusters
    share = first.size / max(1, result.n_current)
    quoted = [f'"{t[:120]}"' for t in first.examples if t] if texts else []
    shown = quoted or first.example_event_ids
    text = (f"What is new: a group of {first.size} events ({share:.0%} of the window) unlike the reference, "
            f"for example {'; '.join(shown)}")
    if rest:
        text += f"; {len(rest)} smaller group(s) of {', '.join(str(c.size) for c in rest)}"
    return text + f" ({result.novel_share:.0%} of the window is further from the reference than its own outliers)."


def drift_observations(result: DriftResult, texts: bool = True) -> list[Observation]:
    """The p-value and statistic of a closed drift window (``texts``: see :func:`drift_detail`)."""
    common = {"app": result.app, "model_version": result.model_version, "field": result.field,
              "window_id": result.window_id, "window_start": result.window_start, "window_end": result.window_end,
              "n": result.n_current, "detail": drift_detail(result, texts),
              "examples": tuple((result.clusters[0].example_event_ids if result.clusters
                                 else result.top_event_ids)[:EXAMPLES])}
    return [Observation(metric="drift_p_value", value=result.p_value, **common),
            Observation(metric="drift_statistic", value=result.statistic, **common)]


# ------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------


@dataclass
class RuleState:
    streak: int = 0
    streak_start: datetime | None = None
    firing: bool = False
    alert_id: str | None = None
    started_at: datetime | None = None
    last_fired: float | None = None
    baseline: float | None = None
    suppressed: int = 0


#: The kind of the rule states' rows in the store's ``segment_state``.
RULE_KIND = "rule"


def dump_rule_state(st: RuleState, wall: datetime, mono: float) -> dict:
    """A RuleState as JSON-able data; the monotonic ``last_fired`` becomes a wall-clock time."""
    fired_at = None if st.last_fired is None else (wall.timestamp() - (mono - st.last_fired))
    return {"streak": st.streak, "streak_start": st.streak_start.isoformat() if st.streak_start else None,
            "firing": st.firing, "alert_id": st.alert_id,
            "started_at": st.started_at.isoformat() if st.started_at else None, "fired_at": fired_at,
            "baseline": st.baseline, "suppressed": st.suppressed}


def load_rule_state(data: dict, wall: datetime, mono: float) -> RuleState:
    fired_at = data.get("fired_at")
    return RuleState(
        streak=int(data["streak"]),
        streak_start=datetime.fromisoformat(data["streak_start"]) if data.get("streak_start") else None,
        firing=bool(data["firing"]), alert_id=data.get("alert_id"),
        started_at=datetime.fromisoformat(data["started_at"]) if data.get("started_at") else None,
        last_fired=None if fired_at is None else mono - (wall.timestamp() - float(fired_at)),
        baseline=None if data.get("baseline") is None else float(data["baseline"]),
        suppressed=int(data.get("suppressed", 0)))


@dataclass
class Decision:
    alerts: list[AlertEvent] = field(default_factory=list)
    requests: list[RetrainRequest] = field(default_factory=list)


@dataclass
class _Segment:
    last_seen: float
    states: set[tuple[str, str, str, str, str]] = field(default_factory=set)


class PolicyEngine:
    """One state machine per (rule, app, model_version, field).

    State is kept per segment (app, model_version): at most ``max_segments`` of them, the least
    recently seen evicted first, and none idle for ``idle_minutes`` (:meth:`evict_idle`); a
    segment with a firing rule is never evicted (see the module's notes). Counters:
    :attr:`live_segments`, :attr:`evicted_idle`, :attr:`evicted_cap`, :attr:`cap_hits`,
    :attr:`dropped_at_cap`, :attr:`nonfinite_values`, :attr:`failures`.
    """

    def __init__(self, policy: Policy, *, grafana_url: str = "http://localhost:3000",
                 dataset: DatasetSpec | None = None, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), idle_minutes: float = 1440.0,
                 max_segments: int = 2_000, durable: bool = False):
        if max_segments < 1 or not idle_minutes > 0:
            raise ValueError("max_segments must be at least 1 and idle_minutes above 0")
        self.policy = policy
        self.fingerprint = policy.fingerprint()
        self.grafana_url = grafana_url.rstrip("/")
        self.dataset = dataset or DatasetSpec()
        self.clock = clock
        self.now = now
        self.idle_seconds = idle_minutes * 60
        self.max_segments = max_segments
        self.states: dict[tuple[str, str, str, str, str], RuleState] = {}
        self._changed: set[tuple[str, str, str, str, str]] = set()
        """State keys changed (or dropped) since the last :meth:`checkpoint`."""
        self.durable = durable
        """Track changed states for :meth:`checkpoint` (the policy agent with a store)."""
        self._touched: set[tuple[str, str, str, str, str]] = set()
        """State keys this process judged: only those are written as dropped (a state read back
        that another sink owns is forgotten here without erasing it there)."""
        #: Segments (app, model_version) with their rule states, least recently seen first.
        self._segments: OrderedDict[tuple[str, str], _Segment] = OrderedDict()
        self.evicted_idle = 0
        """Segments whose rule states were dropped after ``idle_minutes`` without a window."""
        self.evicted_cap = 0
        """Segments evicted because ``max_segments`` were live."""
        self.cap_hits = 0
        """New segments that found ``max_segments`` live (evicted one, or were not judged)."""
        self.dropped_at_cap = 0
        """Observations not judged because every live segment had a firing rule."""
        self.nonfinite_values = 0
        """Observations skipped (NaN) or clamped (infinite) because their value was not finite."""
        self.failures = 0
        """Rule steps that failed (logged; the rule's state was left as it was)."""
        self._cap_warning = Throttled(clock)
        self._value_warning = Throttled(clock)

    @property
    def live_segments(self) -> int:
        return len(self._segments)

    def counters(self) -> dict[str, int]:
        return {"policy_segments_live": self.live_segments, "policy_segments_evicted_idle": self.evicted_idle,
                "policy_segments_evicted_cap": self.evicted_cap, "policy_cap_hits": self.cap_hits,
                "policy_observations_dropped_at_cap": self.dropped_at_cap,
                "policy_values_not_finite": self.nonfinite_values, "policy_step_failures": self.failures}

    def rules_for(self, obs: Observation) -> list[Rule]:
        return [r for r in self.policy.rules
                if r.metric == obs.metric and (r.detector is None or r.detector == obs.detector)
                and r.segment.matches(obs.app, obs.model_version, obs.field)
                and (r.per == "subject") == (obs.subject is not None)
                and not (r.metric in COUNTED_METRICS and obs.n < r.min_events)]

    def observe(self, observations: Iterable[Observation]) -> Decision:
        """Judge each observation; one that fails is logged and skipped (its rule's state unchanged)."""
        decision = Decision()
        for obs in observations:
            try:
                obs = self._sane(obs)
                rules = self.rules_for(obs) if obs is not None else []
                if not rules or not self._admit(obs.app, obs.model_version):
                    continue
            except Exception:  # noqa: BLE001 - one observation must not stop the others
                self.failures += 1
                log.error("the policy could not judge an observation; it is skipped and the others go on. If this "
                          "repeats, look at the error below", exc_info=True)
                continue
            for rule in rules:
                try:
                    self._step(rule, obs, decision)
                    if obs.subject is not None:
                        self._forget_quiet_subject(rule, obs)
                except Exception:  # noqa: BLE001 - the rule's state is as it was before this window
                    self.failures += 1
                    log.error("rule %s could not judge window %r of %s; the window is skipped for this rule and its "
                              "state is unchanged, the next window is judged as usual. If this repeats, look at the "
                              "error below", rule.name, obs.window_id, join_id(obs.app, obs.model_version),
                              exc_info=True)
        return decision

    # --- durable state ----------------------------------------------------------------------

    def forget_app(self, app: str) -> None:
        """Drop an app's rule states from memory (its stored ones were erased with its events)."""
        for key in [k for k in self._segments if k[0] == app]:
            for state_key in self._segments.pop(key).states:
                self.states.pop(state_key, None)
                self._changed.discard(state_key)
                self._touched.discard(state_key)

    def checkpoint(self) -> dict[str, str]:
        """The rule states changed since the last call, ``{key: JSON}`` (``"null"`` for a dropped one),
        for the store's ``segment_state`` (kind ``rule``); the agent writes them before it
        acknowledges what changed them. Cooldowns travel as wall-clock times."""
        out = {}
        wall, mono = self.now(), self.clock()
        for key in self._changed:
            st = self.states.get(key)
            out[json.dumps(list(key))] = "null" if st is None else json.dumps(dump_rule_state(st, wall, mono))
        self._changed = set()
        return out

    def restore(self, saved: dict[str, str], *, replace: bool = False) -> int:
        """Take rule states read back from the store (at start, and after a rebalance with
        ``replace``: the store then holds every sink's latest states); returns how many."""
        wall, mono = self.now(), self.clock()
        if replace:
            self.states, self._segments, self._changed = {}, OrderedDict(), set()
        n = 0
        for raw_key, raw in saved.items():
            try:
                key = tuple(json.loads(raw_key))
                data = json.loads(raw)
                if data is None or len(key) != 5:
                    continue
                self.states[key] = load_rule_state(data, wall, mono)  # type: ignore[index]
            except (ValueError, TypeError, KeyError):
                log.warning("a stored rule state could not be read (%r); that rule starts again for its segment",
                            raw_key[:200])
                continue
            segment = self._segments.setdefault((key[1], key[2]), _Segment(last_seen=mono))
            segment.states.add(key)  # type: ignore[arg-type]
            n += 1
        return n

    def _sane(self, obs: Observation) -> Observation | None:
        """The observation with a finite value: NaN skipped, infinities clamped to ±METRIC_CAP."""
        if isinstance(obs.value, float | int) and math.isfinite(obs.value) and abs(obs.value) <= METRIC_CAP:
            return obs
        value = bounded(obs.value)
        self.nonfinite_values += 1
        self._value_warning.warning(
            log, "window %r of %s reported %s = %r, which is not a finite number within ±%g: it is %s. Check the "
            "producer of these results", obs.window_id, join_id(obs.app, obs.model_version, obs.field), obs.metric,
            obs.value, METRIC_CAP, "skipped" if value is None else f"judged as {value:g}")
        return None if value is None else dataclasses.replace(obs, value=value)

    def _admit(self, app: str, model_version: str) -> bool:
        """Track the segment; False when the cap is full of firing segments (not judged)."""
        key = (app, model_version)
        now = self.clock()
        entry = self._segments.get(key)
        if entry is not None:
            entry.last_seen = now
            self._segments.move_to_end(key)
            return True
        if len(self._segments) >= self.max_segments:
            self.cap_hits += 1
            victim = next((k for k, e in self._segments.items() if not self._firing(e)), None)
            if victim is None:
                self.dropped_at_cap += 1
                self._cap_warning.warning(
                    log, "the policy is at its cap of %d live segments and every one has a firing rule: windows of "
                    "the new segment %s are not judged until one resolves (%d not judged so far). Raise "
                    "DRIFTWARDEN_MAX_SEGMENTS, and look at the firing alerts", self.max_segments,
                    join_id(app, model_version), self.dropped_at_cap)
                return False
            self._drop(victim)
            self.evicted_cap += 1
            self._cap_warning.warning(
                log, "the policy is at its cap of %d live segments: the rule states of %s, the least recently seen "
                "segment without a firing rule, were dropped to make room for %s (their consecutive-window counts "
                "and cooldowns start again if it comes back). Raise DRIFTWARDEN_MAX_SEGMENTS if this many segments "
                "are real, or look for an app that publishes random app or model_version names (%d evicted for the "
                "cap so far)", self.max_segments, join_id(*victim), join_id(app, model_version), self.evicted_cap)
        self._segments[key] = _Segment(last_seen=now)
        return True

    def _firing(self, entry: _Segment) -> bool:
        return any(self.states[k].firing for k in entry.states if k in self.states)

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._segments.pop(key)
        for state_key in entry.states:
            self.states.pop(state_key, None)
            if state_key in self._touched:
                self._changed.add(state_key)
                self._touched.discard(state_key)

    def evict_idle(self) -> int:
        """Drop the rule states of segments idle for ``idle_minutes`` (never those with a firing
        rule); called by the policy agent's timer. Returns how many segments were dropped."""
        now = self.clock()
        idle = []
        for key, entry in self._segments.items():
            if now - entry.last_seen < self.idle_seconds:
                break  # least recently seen first: the rest are more recent
            if not self._firing(entry):
                idle.append(key)
        for key in idle:
            self._drop(key)
        self.evicted_idle += len(idle)
        if idle:
            log.info("the policy dropped the rule states of %d segment(s) idle for %.0f minutes; %d live",
                     len(idle), self.idle_seconds / 60, len(self._segments))
        return len(idle)

    def _step(self, rule: Rule, obs: Observation, decision: Decision) -> None:
        key = (rule.name, obs.app, obs.model_version, obs.field, obs.subject or "")
        if self.durable:
            self._changed.add(key)
            self._touched.add(key)
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = RuleState()
            segment = self._segments.get((obs.app, obs.model_version))
            if segment is not None:
                segment.states.add(key)
        if st.baseline is None:
            st.baseline = obs.value
        if st.firing:
            if rule.cleared(obs.value):
                decision.alerts.append(self._alert(rule, obs, st, "resolved"))
                log.info("rule %s resolved for %s: %s = %.4g", rule.name, join_id(obs.app, obs.model_version,
                                                                                   obs.field), obs.metric, obs.value)
                st.firing, st.streak, st.streak_start = False, 0, None
            return
        if not rule.breached(obs.value):
            st.streak, st.streak_start = 0, None
            return
        st.streak += 1
        st.streak_start = st.streak_start or obs.window_start
        if st.streak < rule.consecutive:
            return
        if st.last_fired is not None and self.clock() - st.last_fired < rule.cooldown_minutes * 60:
            st.suppressed += 1
            log.info("rule %s breached again for %s within its %.0f-minute cooldown: no new alert",
                     rule.name, join_id(obs.app, obs.model_version, obs.field), rule.cooldown_minutes)
            return
        # Everything that can fail is computed first; the state changes only once the alert (and
        # the retraining request) exist, so a failure cannot leave a rule firing without its alert.
        started_at = self.now()
        # The id comes from the window, not the clock: a window judged again after a restart (its
        # record redelivered before the state was written) gives the same alert and request ids,
        # which the tables, Alertmanager and PagerDuty keep once.
        firing = dataclasses.replace(st, firing=True, last_fired=self.clock(), started_at=started_at,
                                     alert_id=f"{self._dedupe(rule, obs)}@{obs.window_end:%Y%m%dT%H%M%S%fZ}/"
                                              f"{obs.window_id}")
        alert = self._alert(rule, obs, firing, "firing")
        request = None
        if rule.retrain:
            request = RetrainRequest(
                request_id=firing.alert_id, alert_id=firing.alert_id, app=obs.app, model_version=obs.model_version,
                reason=f"{rule.name}: {alert.summary}", start=firing.streak_start, end=obs.window_end,
                dataset=self.dataset, requested_at=self.now(),
            )
        st.firing, st.last_fired, st.started_at, st.alert_id = True, firing.last_fired, started_at, firing.alert_id
        decision.alerts.append(alert)
        if request is not None:
            decision.requests.append(request)
        log.warning("rule %s fired for %s: %r", rule.name, join_id(obs.app, obs.model_version, obs.field),
                    alert.summary)

    def _forget_quiet_subject(self, rule: Rule, obs: Observation) -> None:
        """A per-subject state with nothing to remember (not firing, no streak, out of cooldown) is
        dropped, so the states stay bounded by the subjects that are breaching or recently fired."""
        key = (rule.name, obs.app, obs.model_version, obs.field, obs.subject or "")
        st = self.states.get(key)
        if st is None or st.firing or st.streak or (
                st.last_fired is not None and self.clock() - st.last_fired < rule.cooldown_minutes * 60):
            return
        del self.states[key]
        if key in self._touched:
            self._changed.add(key)
            self._touched.discard(key)
        segment = self._segments.get((obs.app, obs.model_version))
        if segment is not None:
            segment.states.discard(key)

    @staticmethod
    def _dedupe(rule: Rule, obs: Observation) -> str:
        parts = (rule.name, obs.app, obs.model_version, obs.field) + ((obs.subject,) if obs.subject else ())
        return join_id(*parts, sep=":")

    def _alert(self, rule: Rule, obs: Observation, st: RuleState, status: str) -> AlertEvent:
        labels = {"alertname": rule.name, "severity": rule.severity, "app": obs.app,
                  "model_version": obs.model_version, "field": obs.field, "metric": obs.metric,
                  "service": "driftwarden"}
        if obs.detector:
            labels["detector"] = obs.detector
        if obs.subject:
            labels["subject"] = obs.subject
        return AlertEvent(
            alert_id=st.alert_id or "", dedupe_key=self._dedupe(rule, obs), status=status, rule=rule.name,
            severity=rule.severity, app=obs.app, model_version=obs.model_version, field=obs.field,
            metric=obs.metric, detector=obs.detector, value=obs.value, threshold=rule.threshold,
            baseline=st.baseline, summary=self._summary(rule, obs, st, status),
            example_event_ids=list(obs.examples), window_id=obs.window_id, window_start=obs.window_start,
            window_end=obs.window_end, labels=labels, dashboard_url=self._link(obs),
            retrain_requested=rule.retrain and status == "firing", starts_at=st.started_at or self.now(),
            ends_at=self.now() if status == "resolved" else None, policy_fingerprint=self.fingerprint,
        )

    def _summary(self, rule: Rule, obs: Observation, st: RuleState, status: str) -> str:
        what = METRIC_WORDS[obs.metric].format(detector=obs.detector or "")
        segment = f"{obs.app} {obs.model_version}" + (f" ({obs.field})" if obs.field != "*" else "")
        if obs.subject:
            segment += f" for {obs.subject!r}"
        window = (f"window {obs.window_id} ({obs.n} events, {obs.window_start:%Y-%m-%d %H:%M:%S}–"
                  f"{obs.window_end:%H:%M:%S} UTC)")
        moved = f"; it was {st.baseline:.4g} in the first window seen" if st.baseline is not None else ""
        head = f"{rule.description[:1].upper()}{rule.description[1:]}. " if rule.description else ""
        if status == "resolved":
            return (f"{head}Resolved: {what} of {segment} is back at {obs.value:.4g} in {window}, past the clear "
                    f"threshold {rule.clear:.4g}.")
        follow = (" A retraining request for this segment follows, on its events since the first breaching window."
                  if rule.retrain else "")
        detail = f" {obs.detail}" if obs.detail else ""
        return (f"{head}{what[:1].upper()}{what[1:]} of {segment} is {obs.value:.4g} in {window}, "
                f"{rule.worse_when} the threshold {rule.threshold:.4g} for {st.streak} window(s) in a row{moved}."
                f"{follow}{detail}")

    def _link(self, obs: Observation) -> str:
        """The dashboard of the metric, on the segment, from 30 minutes before the window to 30
        after (clamped to what Grafana can show: no datetime arithmetic that could overflow)."""
        uid = DASHBOARDS.get(obs.metric, "driftwarden-overview")
        lo, hi = _LINK_MS

        def ms(ts: datetime, shift: int) -> int:
            try:
                value = int(ts.timestamp() * 1000) + shift
            except (OverflowError, OSError, ValueError):
                value = lo if shift < 0 else hi
            return max(lo, min(hi, value))

        query = urlencode({"var-app": obs.app, "var-model_version": obs.model_version,
                           "from": ms(obs.window_start, -_LINK_MARGIN_MS), "to": ms(obs.window_end, _LINK_MARGIN_MS)})
        return f"{self.grafana_url}/d/{uid}?{query}"
