"""Erasure of an app's (or one user's) events everywhere driftwarden keeps them.

The store erases the events and the rows derived from them (:meth:`Store.purge`). Dataset
snapshots are immutable files made for fine-tuning: those holding any of the erased events are
listed with how many of them they hold (training, review and regression rows), not changed;
delete them (and adapters trained on them) by hand, or keep them on purpose. The MLflow registry
keeps a copy of each registered job's manifest and adapter: ``driftwarden models list`` names the
snapshot each version was trained on. ``driftwarden purge`` and the sink's ``/purge/`` page run this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from driftwarden.core.storage.store import PurgeReport, PurgeTarget, Store
from driftwarden.retrain_trigger.retraining.snapshots import REGRESSION, REVIEW, TRAIN, list_snapshots

#: The most event ids looked for in snapshots (a larger purge lists every snapshot of the app).
MAX_IDS = 1_000_000


@dataclass
class Erasure:
    target: PurgeTarget
    dry_run: bool
    store: PurgeReport
    snapshots: list[dict] = field(default_factory=list)
    """Snapshots that hold erased events: path, version, and how many of them it holds."""

    def as_dict(self) -> dict:
        return {"app": self.target.app, "user_id": self.target.user_id,
                "before": self.target.before.isoformat() if self.target.before else None, "dry_run": self.dry_run,
                "deleted": self.store.deleted,
                "kept": {t: {"rows": n, "why": why} for t, (n, why) in self.store.kept.items()},
                "snapshots": self.snapshots}


def erase(store: Store, datasets_dir: Path, target: PurgeTarget, *, dry_run: bool) -> Erasure:
    report = store.purge(target, dry_run=dry_run, ids_limit=MAX_IDS + 1)
    ids = set(report.event_ids)
    report.event_ids = []  # not carried further: the counts say how many
    return Erasure(target, dry_run, report, snapshots_holding(datasets_dir, target.app, ids, len(ids) > MAX_IDS))


def snapshots_holding(root: Path, app: str, event_ids: set[str], every: bool = False) -> list[dict]:
    """Snapshots of ``app`` whose train, review or regression rows hold any of ``event_ids`` (every snapshot
    of the app when ``every``: too many ids to look for)."""
    import pyarrow.parquet as pq

    out = []
    for snap in list_snapshots(root, app=app) if Path(root).is_dir() else []:
        held = 0
        for name in (TRAIN, REVIEW, REGRESSION):
            path = snap.path / name
            if path.exists() and not every:
                held += sum(1 for i in pq.read_table(path, columns=["event_id"]).column(0).to_pylist() if i in event_ids)
        if held or every:
            out.append({"path": str(snap.path), "version": snap.version, "events_held": None if every else held})
    return out


def target_from(body: object) -> PurgeTarget:
    """A :class:`PurgeTarget` from a JSON object ``{"app", "user_id"?, "before"?}``; ValueError
    saying what is wrong otherwise."""
    from datetime import UTC, datetime

    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object with app, and optionally user_id and before")
    app, user, before = body.get("app"), body.get("user_id"), body.get("before")
    if not isinstance(app, str) or not app or len(app) > 1024:
        raise ValueError("app must be a non-empty string (at most 1,024 characters)")
    if user is not None and (not isinstance(user, str) or not user or len(user) > 1024):
        raise ValueError("user_id must be a non-empty string (at most 1,024 characters) when given")
    when = None
    if before is not None:
        try:
            when = datetime.fromisoformat(str(before))
        except ValueError:
            raise ValueError(f"before must be an ISO 8601 time, not {str(before)[:64]!r}") from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return PurgeTarget(app=app, user_id=user, before=when)
