"""Read-side queries shared by the CLI, the sink's HTTP page and the tests."""

from __future__ import annotations


def stats(client, database: str) -> dict:
    """Counts of what is stored (exact: read with FINAL), and the latest alerts and retraining jobs."""

    def scalar(sql: str) -> int:
        return int(client.command(sql) or 0)

    db = database
    by_detector = client.query(
        f"SELECT detector, count(), countIf(label = 1), countIf(error IS NOT NULL) "
        f"FROM {db}.detections FINAL GROUP BY detector ORDER BY detector"
    ).result_rows
    by_stage = client.query(
        f"SELECT stage, count() FROM {db}.dead_letters FINAL GROUP BY stage ORDER BY stage"
    ).result_rows
    by_app = client.query(
        f"SELECT app, model_version, count() FROM {db}.inference_events FINAL "
        f"GROUP BY app, model_version ORDER BY app, model_version"
    ).result_rows
    return {
        "events": scalar(f"SELECT count() FROM {db}.inference_events FINAL"),
        "events_distinct_ids": scalar(f"SELECT uniqExact(event_id) FROM {db}.inference_events"),
        "detections": scalar(f"SELECT count() FROM {db}.detections FINAL"),
        "dead_letters": scalar(f"SELECT count() FROM {db}.dead_letters FINAL"),
        "embeddings": scalar(f"SELECT count() FROM {db}.embeddings FINAL"),
        "drift_windows": scalar(f"SELECT count() FROM {db}.drift_windows FINAL"),
        "drift_alarms": scalar(f"SELECT countIf(p_value < 0.05) FROM {db}.drift_windows FINAL"),
        "alerts_firing": scalar(f"SELECT countIf(status = 'firing') FROM {db}.alerts FINAL"),
        "alerts_resolved": scalar(f"SELECT countIf(status = 'resolved') FROM {db}.alerts FINAL"),
        "retrain_requests": scalar(f"SELECT count() FROM {db}.retrain_requests FINAL"),
        "retrain_jobs_by_status": {s: n for s, n in client.query(
            f"SELECT status, count() FROM {db}.retrain_jobs FINAL GROUP BY status ORDER BY status").result_rows},
        "detections_by_detector": {
            d: {"results": n, "flagged": f, "errors": e} for d, n, f, e in by_detector
        },
        "dead_letters_by_stage": {s: n for s, n in by_stage},
        "events_by_segment": [
            {"app": a, "model_version": v, "events": n} for a, v, n in by_app
        ],
        "alerts": [
            {"alert_id": r[0], "status": r[1], "rule": r[2], "severity": r[3], "app": r[4], "model_version": r[5],
             "field": r[6], "value": r[7], "threshold": r[8], "window_id": r[9], "starts_at": r[10].isoformat()}
            for r in client.query(
                f"SELECT alert_id, status, rule, severity, app, model_version, field, value, threshold, window_id, "
                f"starts_at FROM {db}.alerts FINAL ORDER BY starts_at DESC, status LIMIT 20").result_rows
        ],
        "drift_windows_latest": [
            {"window_id": r[0], "window_start": r[1].isoformat(), "p_value": r[2]}
            for r in client.query(
                f"SELECT window_id, window_start, p_value FROM {db}.drift_windows FINAL "
                f"ORDER BY computed_at DESC LIMIT 50").result_rows
        ],
        "retrain_jobs": [
            {"job_id": r[0], "request_id": r[1], "status": r[2], "dataset_version": r[3], "dataset_rows": r[4],
             "metrics": dict(r[5]), "output_dir": r[6], "message": r[7], "updated_at": r[8].isoformat()}
            for r in client.query(
                f"SELECT job_id, request_id, status, dataset_version, dataset_rows, metrics, output_dir, message, "
                f"updated_at FROM {db}.retrain_jobs FINAL ORDER BY updated_at DESC LIMIT 20").result_rows
        ],
    }


def read_stats(settings, *, require_owner: bool = False, timeout_s: float = 10.0) -> dict:
    """Counts from wherever they can be read right now.

    While a sink process owns the embedded store, it answers on its ``/stats/`` page (another
    process may not open the store); otherwise the store is opened directly. With
    ``require_owner`` only the sink's page is asked (used to wait for the sink to be ready).
    """
    from driftwarden.core.errors import StorageError
    from driftwarden.core.storage.client import open_client, read_owner

    owner = read_owner(settings)
    if owner.get("port"):
        return _sink_page(owner["port"], "stats", timeout_s)
    if require_owner:
        raise StorageError("read counts from the sink", RuntimeError("no sink owns the store yet"))
    client = open_client(settings)
    try:
        return stats(client, settings.clickhouse_database)
    finally:
        client.close()


def read_progress(settings, *, timeout_s: float = 10.0) -> dict:
    """The running sink's counters: rows ClickHouse acknowledged since it started, per table and
    per detector (``rows_written``). No query runs, so this can be polled often; the counts
    include rows that a later merge deduplicates (use :func:`read_stats` for exact counts)."""
    from driftwarden.core.errors import StorageError
    from driftwarden.core.storage.client import read_owner

    port = read_owner(settings).get("port")
    if not port:
        raise StorageError("read progress from the sink", RuntimeError("no sink with a web page is running"))
    return _sink_page(port, "progress", timeout_s)


def read_report(settings, *, timeout_s: float = 300.0) -> str:
    """The HTML report: from the running sink's ``/report/`` page while it owns the embedded
    store, otherwise rendered here from the store."""
    from driftwarden.core.storage.client import open_client, read_owner

    owner = read_owner(settings)
    if owner.get("port"):
        return _sink_page(owner["port"], "report", timeout_s, as_json=False)
    from driftwarden.dashboards.report import build_report

    client = open_client(settings)
    try:
        return build_report(client, settings.clickhouse_database, settings)
    finally:
        client.close()


def _sink_page(port: int, page: str, timeout_s: float, *, as_json: bool = True):
    import json
    import urllib.error
    import urllib.request

    from driftwarden.core.errors import StorageError

    url = f"http://127.0.0.1:{port}/{page}/"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = resp.read()
            return json.loads(body) if as_json else body.decode("utf-8")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise StorageError(f"read {page} from the sink at {url}", exc) from exc
