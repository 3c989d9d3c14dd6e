"""Dashboards as code: every panel's SQL runs on the real schema (embedded ClickHouse engine,
seeded data) and returns the columns the panel reads; provisioning goes through grafana-client.

A Grafana server cannot be installed on these machines, so provisioning is tested against a
local HTTP server that records the requests and answers as Grafana's HTTP API does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from driftwarden.core.settings import load_settings
from driftwarden.dashboards.grafana import build_all, export, push
from driftwarden.dashboards.panels import ANNOTATION_SQL, DASHBOARDS, VARIABLE_SQL, expand
from driftwarden.tests.recording_http import RecordingServer
from driftwarden.tests.seeded import seed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    settings = load_settings(data_dir=tmp_path_factory.mktemp("dash"))
    client = seed(settings)
    yield settings, client
    client.close()


def run(client, settings, sql: str, **variables):
    now = datetime.now(UTC)
    return client.query(expand(sql, db=settings.clickhouse_database, start=now - timedelta(hours=6), end=now,
                               variables=variables))


def test_every_panel_query_of_the_exported_json_runs_and_returns_its_columns(store, tmp_path):
    settings, client = store
    paths = export(tmp_path, settings.clickhouse_database)
    assert sorted(p.name for p in paths) == sorted(f"{d.uid}.json" for d in DASHBOARDS)
    specs = {p.title: p for d in DASHBOARDS for p in d.panels}
    checked = 0
    for path in paths:
        model = json.loads(path.read_text())
        assert {v["name"] for v in model["templating"]["list"]} == {"datasource", "app", "model_version"}
        for panel in model["panels"]:
            (target,) = panel["targets"]
            assert target["datasource"]["type"] == "grafana-clickhouse-datasource"
            result = run(client, settings, target["rawSql"])
            expected = specs[panel["title"]].columns
            assert set(expected) <= set(result.column_names), (panel["title"], result.column_names)
            assert result.result_rows, f"{panel['title']} returned no rows on the seeded data"
            checked += 1
    assert checked == sum(len(d.panels) for d in DASHBOARDS)


def test_the_segment_variables_filter_and_their_queries_run(store):
    settings, client = store
    apps = run(client, settings, VARIABLE_SQL["app"]).result_rows
    assert apps == [("chat",)]
    versions = run(client, settings, VARIABLE_SQL["model_version"], app="chat").result_rows
    assert versions == [("v1",), ("v2",)]
    sql = next(p.sql for p in DASHBOARDS[1].panels if p.title == "Rates per segment")
    only_v2 = run(client, settings, sql, model_version="v2").result_rows
    assert only_v2 and {r[1] for r in only_v2} == {"v2"}
    assert not run(client, settings, sql, app="other").result_rows


def test_alert_annotations_come_from_the_alerts_table(store):
    settings, client = store
    drift = next(m for m in build_all(settings.clickhouse_database) if m["uid"] == "driftwarden-drift")
    (ann,) = [a for a in drift["annotations"]["list"] if a.get("name") == "driftwarden alerts"]
    assert ann["rawSql"] == ANNOTATION_SQL.replace("{db}", settings.clickhouse_database)
    rows = run(client, settings, ann["rawSql"])
    assert {"time", "title", "text", "tags"} <= set(rows.column_names) and len(rows.result_rows) == 1


def test_push_creates_the_folder_once_and_overwrites_dashboards_by_uid():
    with RecordingServer() as grafana:
        grafana.replies[("GET", "/api/folders/driftwarden")] = [(404, {"message": "folder not found"})]
        push(grafana.url, "glsa_token", "driftwarden")
        push(grafana.url, "glsa_token", "driftwarden")
        requests = list(grafana.requests)
    folder_posts = [r for r in requests if r["method"] == "POST" and r["path"] == "/api/folders"]
    assert len(folder_posts) == 1 and folder_posts[0]["json"] == {"title": "driftwarden", "uid": "driftwarden"}
    dash = [r for r in requests if r["path"] == "/api/dashboards/db"]
    assert len(dash) == 2 * len(DASHBOARDS)
    assert all(r["json"]["overwrite"] is True and r["json"]["folderUid"] == "driftwarden" for r in dash)
    assert [r["json"]["dashboard"]["uid"] for r in dash[:4]] == [r["json"]["dashboard"]["uid"] for r in dash[4:]]
    assert all(r["headers"]["Authorization"] == "Bearer glsa_token" for r in requests)
