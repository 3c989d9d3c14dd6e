"""Erasure: the snapshots that hold erased events are listed, whichever of their files holds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from driftwarden.core.schemas import RetrainRequest
from driftwarden.retrain_trigger.retraining.curation import Curated, Row
from driftwarden.retrain_trigger.retraining.erasure import snapshots_holding
from driftwarden.retrain_trigger.retraining.snapshots import write_snapshot

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_snapshot_holding_an_erased_event_in_any_of_its_files_is_listed_with_the_count(tmp_path):
    request = RetrainRequest(request_id="r", alert_id="a", app="shop", model_version="v1", reason="drift", start=T0,
                             end=T0 + timedelta(hours=1), requested_at=T0)
    row = lambda i: Row(f"e-{i}", T0, f"question {i}", f"answer {i}")  # noqa: E731
    snap = write_snapshot(tmp_path, request, Curated(train=[row(1), row(2)], review=[row(3)], regression=[row(4)]))
    assert snapshots_holding(tmp_path, "shop", {"e-4"}) == [
        {"path": str(snap.path), "version": snap.version, "events_held": 1}], "the regression set counts"
    assert snapshots_holding(tmp_path, "shop", {"e-1", "e-3", "e-4", "other"})[0]["events_held"] == 3
    assert snapshots_holding(tmp_path, "shop", {"other"}) == []
    assert snapshots_holding(tmp_path, "other-app", {"e-1"}) == []
