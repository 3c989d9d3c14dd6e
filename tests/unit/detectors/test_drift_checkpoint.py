"""Durable drift windows: a run cut short and resumed from its checkpoint (a restart, or a
partition that moved to another sink) closes the same windows, with the same members and
results, as a run that was never cut."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from driftwarden.core.detector_configs import DriftConfig
from driftwarden.core.schemas import EmbeddingRecord
from driftwarden.core.storage.memory import MemoryStore
from driftwarden.detectors.drift.checkpoint import store_loader, store_probe
from driftwarden.detectors.drift.windows import NOTHING_STORED, DriftWindows

T0 = datetime(2026, 3, 1, tzinfo=UTC)
N = 130


def records(seed: int = 0) -> list[EmbeddingRecord]:
    rng = np.random.default_rng(seed)
    return [EmbeddingRecord(event_id=f"e{i}", field="prompt", app="a", model_version="v1",
                            event_ts=T0 + timedelta(seconds=i), encoder="enc", computed_at=T0,
                            vector=(rng.standard_normal(8) + (3.0 if i >= 80 else 0)).tolist(),
                            descriptors={"prompt_chars": float(i % 13)}) for i in range(N)]


def windows(store: MemoryStore, reference: str, probe: bool = False) -> DriftWindows:
    """With ``probe``, new segments are first probed for stored state, as the drift agent does."""
    config = DriftConfig(window_size=20, baseline_size=30, permutations=100, min_window=5, reference=reference)
    return DriftWindows(config, load_reference=store.reference_embeddings,
                        load_last_sequence=store.last_window_sequence, load_saved=store_loader(store),
                        probe_stored=store_probe(store) if probe else None)


def run(w: DriftWindows, store: MemoryStore, recs, start: int, stop: int, *, lag: int = 0, batch: int = 10,
        checkpoint_upto: int | None = None) -> list:
    """Feed records ``start..stop`` in batches as the agent does. The sink stores embeddings
    ``lag`` records behind; each batch ends with a checkpoint (those ending by ``checkpoint_upto``)."""
    out = []
    for b in range(start, stop, batch):
        store.insert_embeddings(recs[:max(0, b - lag)])
        new = {w.key_of(r): r for r in recs[b:min(b + batch, stop)] if w.needs_store(r)}
        stored = dict.fromkeys(w.nothing_stored(list(new.values())), NOTHING_STORED)  # empty without a probe
        for i in range(b, min(b + batch, stop)):
            key = w.key_of(recs[i])
            closed = w.add(recs[i], stored.get(key), position=(0, i))
            if key in w.segments:
                stored.pop(key, None)  # as the agent: used once
            out += [(c.window_id, list(c.current.ids), w.test(c).p_value) for c in closed]
        if checkpoint_upto is None or b + batch <= checkpoint_upto:
            heads, rows = w.checkpoint()
            store.save_segment_states({"drift": heads})
            store.insert_drift_members(rows)
    return out


@pytest.mark.parametrize("probe", [False, True], ids=["read-each", "probed"])
@pytest.mark.parametrize("reference", ["baseline", "previous"])
@pytest.mark.parametrize("cut", [17, 47, 95])
def test_a_run_resumed_from_its_checkpoint_closes_the_same_windows_as_one_never_cut(reference, cut, probe):
    recs = records()
    clean_store = MemoryStore()
    clean = run(windows(clean_store, reference), clean_store, recs, 0, N)
    assert [c[0] for c in clean] == [f"a/v1/prompt/{k}" for k in range(1, len(clean) + 1)] and len(clean) >= 4
    assert min(c[2] for c in clean) < 0.05  # the shift at record 80 is found

    store = MemoryStore()
    # The first sink took records up to the cut and checkpointed the batches before it; its
    # embeddings writer was 15 records behind, so the committed offset (what both agents had
    # acknowledged) is behind the checkpoint. Then it was killed.
    checkpointed = (cut // 10) * 10
    committed = max(0, ((cut - 15) // 10) * 10)
    first = run(windows(store, reference, probe), store, recs, 0, cut, lag=15, checkpoint_upto=checkpointed)
    # The next sink (restarted, or the one the partition moved to) gets everything from the
    # committed offset again: records it checkpointed come twice, and members whose vector was
    # not stored get it now.
    store.insert_embeddings(recs[:committed])
    second = run(windows(store, reference, probe), store, recs, committed, N, lag=15)
    kept = [c for c in first if max(int(i[1:]) for i in c[1]) < checkpointed]
    assert kept + second == clean


def test_an_evicted_segment_starts_again_and_numbers_on():
    recs = records()
    store = MemoryStore()
    w = windows(store, "baseline")
    run(w, store, recs, 0, 60)
    w.evict_idle(now=w.clock() + 10 ** 9)
    heads, rows = w.checkpoint()
    store.save_segment_states({"drift": heads})
    again = windows(store, "baseline")
    out = run(again, store, recs, 60, N)
    assert out and int(out[0][0].rsplit("/", 1)[1]) > 1  # no stored window number is used twice
    assert not any(set(ids) & {f"e{i}" for i in range(60)} for _, ids, _ in out)  # nothing taken twice


def test_segments_of_revoked_partitions_are_forgotten_and_resume_on_the_sink_that_gets_them():
    recs = records()
    store = MemoryStore()
    here = windows(store, "baseline")
    run(here, store, recs, 0, 45)  # checkpointed after every batch
    assert here.forget({1}) == 0 and here.live_segments == 1  # another partition: kept
    assert here.forget({0}) == 1 and here.live_segments == 0
    there = windows(store, "baseline")  # the sink the partition moved to
    out = run(there, store, recs, 45, N)
    clean_store = MemoryStore()
    clean = run(windows(clean_store, "baseline"), clean_store, recs, 0, N)
    assert out == clean


def save(w: DriftWindows, store: MemoryStore) -> None:
    heads, rows = w.checkpoint()
    store.save_segment_states({"drift": heads})
    store.insert_drift_members(rows)


def test_a_segment_back_after_its_eviction_never_reads_the_members_of_its_earlier_life():
    recs = records()
    store = MemoryStore()
    w = windows(store, "baseline")
    run(w, store, recs, 0, 45)  # baseline (30) and 15 members of window 1
    w.evict_idle(now=w.clock() + 10 ** 9)
    save(w, store)
    back = windows(store, "baseline")  # it comes back: a new life, reference from the store
    run(back, store, recs, 45, 50)
    restarted = windows(store, "baseline")
    restarted.add(recs[50], position=(0, 50))
    (seg,) = restarted.segments.values()
    assert seg.current.ids == [f"e{i}" for i in range(45, 51)]  # none of the first life's 15


def test_a_checkpoint_whose_reference_events_expired_starts_the_segment_again():
    recs = records()
    store = MemoryStore()
    run(windows(store, "baseline"), store, recs, 0, 45)
    old_epoch = json.loads(store.segment_states("drift")["a/v1/prompt"])["epoch"]
    store.embeddings.clear()  # retention took the vectors
    store.members = {k: v for k, v in store.members.items() if v[0] != 0}  # and the baseline's members
    again = windows(store, "baseline")
    closed = []
    for i in range(45, N):
        store.insert_embeddings(recs[i:i + 1])
        closed += again.add(recs[i], position=(0, i))
    (seg,) = again.segments.values()
    assert seg.epoch != old_epoch and seg.sequence >= 1  # a new life, numbering on
    assert seg.reference is not None and len(seg.reference) == 30 and seg.reference.ids[0] == "e45"
    assert closed and all(len(c.current) == 20 and again.test(c).n_reference == 30 for c in closed)
