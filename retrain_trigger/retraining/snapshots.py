"""Versioned, immutable dataset snapshots for fine-tuning.

A snapshot is a directory ``<datasets_dir>/<app>/<model_version>/<version>/`` holding
``train.parquet`` (prompt/response pairs, with the context they were grounded in),
``review.parquet`` (rows set aside, with the reason), ``regression.parquet`` (the fixed regression
set: events of the segment from before the drifted range, which the job's evaluation compares the
candidate and the current model on) and ``manifest.json`` (content hash, row counts, filters,
detector versions, the source event ids, the request it answers). The version is ``<UTC
time>-<first 12 hex of the content hash>``; the directory is written under a temporary name,
renamed into place, and made read-only for its owner and closed to everyone else (it holds
prompts and responses). The same content for the
same segment is not written twice (a redelivered request reuses it).

The ``<app>`` and ``<model_version>`` parts are the names themselves when they are safe path
parts (letters, digits, ``.``, ``_``, ``-``, not starting with a dot), else a sanitized name with
a hash of the original; the path is checked to resolve under ``datasets_dir`` in any case.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from driftwarden.core.errors import RetrainError
from driftwarden.core.schemas import RetrainRequest
from driftwarden.retrain_trigger.retraining.curation import Curated, Row

MANIFEST = "manifest.json"
TRAIN = "train.parquet"
REVIEW = "review.parquet"
REGRESSION = "regression.parquet"
FORMAT = 2


@dataclass(frozen=True)
class Snapshot:
    path: Path
    manifest: dict

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def train_file(self) -> Path:
        return self.path / TRAIN

    @property
    def regression_file(self) -> Path | None:
        """The regression set, when the snapshot has one (format 2 on)."""
        path = self.path / REGRESSION
        return path if path.is_file() else None


def content_hash(train: list[Row], review: list[Row], regression: list[Row] = ()) -> str:
    digest = hashlib.sha256()
    for part, rows in (("train", train), ("review", review), ("regression", regression)):
        for r in rows:
            digest.update(json.dumps([part, r.event_id, r.prompt, r.response, r.reason, list(r.context)]).encode())
            digest.update(b"\n")
    return digest.hexdigest()


_SAFE_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")

#: Modes: directories and files of snapshots and job outputs are the owner's only.
DIR_MODE, FILE_MODE = 0o700, 0o600
READ_ONLY_DIR, READ_ONLY_FILE = 0o500, 0o400


def _safe(name: str) -> str:
    """A path part for ``name``: itself when safe, else a sanitized form plus a hash of the name
    (so ``a/b`` and ``a_b`` never share a directory, and ``..`` never climbs)."""
    if _SAFE_PART.match(name) and ".." not in name:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:60]
    return f"{cleaned or '_'}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def under(root: Path, path: Path) -> Path:
    """``path`` resolved, or RetrainError when it does not lie under ``root`` (resolved)."""
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if not path_r.is_relative_to(root_r) or path_r == root_r:
        raise RetrainError("snapshot", f"refused to write {path}: it does not resolve under {root_r}")
    return path_r


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it the owner's only (0o700)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    path.chmod(DIR_MODE)
    return path


def owner_only(tree: Path, *, read_only: bool = False) -> None:
    """Make every directory and file under ``tree`` (and ``tree``) the owner's only; read-only too when asked."""
    dir_mode, file_mode = (READ_ONLY_DIR, READ_ONLY_FILE) if read_only else (DIR_MODE, FILE_MODE)
    tree = Path(tree)
    for parent, dirs, files in os.walk(tree, topdown=False):
        for f in files:
            p = Path(parent) / f
            if not p.is_symlink():
                p.chmod(file_mode)
        for d in dirs:
            p = Path(parent) / d
            if not p.is_symlink():
                p.chmod(dir_mode)
    tree.chmod(dir_mode)


def _table(rows: list[Row], with_reason: bool):
    import pyarrow as pa

    cols = {
        "event_id": [r.event_id for r in rows],
        "ts": [r.ts for r in rows],
        "prompt": [r.prompt for r in rows],
        "response": [r.response for r in rows],
        "feedback": [r.feedback for r in rows],
        "context": [list(r.context) for r in rows],
    }
    if with_reason:
        cols["reason"] = [r.reason for r in rows]
    schema = [("event_id", pa.string()), ("ts", pa.timestamp("ms", tz="UTC")), ("prompt", pa.string()),
              ("response", pa.string()), ("feedback", pa.float32()), ("context", pa.list_(pa.string()))]
    schema += [("reason", pa.string())] if with_reason else []
    return pa.table(cols, schema=pa.schema(schema))


def write_snapshot(root: Path, request: RetrainRequest, curated: Curated) -> Snapshot:
    """Write (or find, when the same content exists) the snapshot of a curated segment."""
    import pyarrow.parquet as pq

    digest = content_hash(curated.train, curated.review, curated.regression)
    segment_dir = under(root, Path(root) / _safe(request.app) / _safe(request.model_version))
    for existing in list_snapshots(root, app=request.app, model_version=request.model_version):
        if existing.manifest["content_sha256"] == digest:
            return existing
    version = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{digest[:12]}"
    final = segment_dir / version
    tmp = segment_dir / f".{version}.tmp"
    manifest = {
        "format": FORMAT, "version": version, "app": request.app, "model_version": request.model_version,
        "created_at": datetime.now(UTC).isoformat(), "content_sha256": digest,
        "rows": {"train": len(curated.train), "review": len(curated.review),
                 "regression": len(curated.regression)},
        "counts": dict(curated.counts), "filters": request.dataset.model_dump(mode="json"),
        "time_range": {"start": request.start.isoformat(), "end": request.end.isoformat()},
        "detector_versions": curated.detector_versions, "request_id": request.request_id,
        "reason": request.reason, "source_event_ids": [r.event_id for r in curated.train],
        "review_event_ids": [r.event_id for r in curated.review],
        "regression_event_ids": [r.event_id for r in curated.regression],
        "files": {"train": TRAIN, "review": REVIEW, "regression": REGRESSION},
    }
    try:
        private_dir(root)
        private_dir(segment_dir.parent)
        private_dir(segment_dir)
        tmp.mkdir(mode=DIR_MODE, exist_ok=False)
        tmp.chmod(DIR_MODE)
        pq.write_table(_table(curated.train, False), tmp / TRAIN)
        pq.write_table(_table(curated.review, True), tmp / REVIEW)
        pq.write_table(_table(curated.regression, False), tmp / REGRESSION)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, final)
        owner_only(final, read_only=True)
    except OSError as exc:
        if tmp.exists():
            tmp.chmod(DIR_MODE)
        shutil.rmtree(tmp, ignore_errors=True)
        raise RetrainError("snapshot", f"cannot write {final}: {exc}") from exc
    return Snapshot(final, manifest)


def load_snapshot(path: Path) -> Snapshot:
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RetrainError("snapshot", f"{path} is not a dataset snapshot (no readable {MANIFEST}): {exc}") from exc
    return Snapshot(Path(path), manifest)


def list_snapshots(root: Path, *, app: str | None = None, model_version: str | None = None) -> list[Snapshot]:
    """Snapshots under ``root``, oldest first."""
    out = []
    for manifest in sorted(Path(root).glob(f"*/*/*/{MANIFEST}")):
        snap = load_snapshot(manifest.parent)
        if manifest.parent.name.startswith("."):
            continue
        if app is not None and snap.manifest["app"] != app:
            continue
        if model_version is not None and snap.manifest["model_version"] != model_version:
            continue
        out.append(snap)
    return sorted(out, key=lambda s: s.manifest["created_at"])


def find_snapshot(root: Path, version: str) -> Snapshot:
    for snap in list_snapshots(root):
        if snap.version == version or snap.version.startswith(version):
            return snap
    raise RetrainError("snapshot", f"no snapshot {version!r} under {root} (see: driftwarden datasets list)")
