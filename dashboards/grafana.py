"""Grafana dashboards as code (grafana-foundation-sdk) and their provisioning (grafana-client).

The panels and their SQL live in :mod:`.panels`; this module lays them out with the SDK's
builders on the ClickHouse data source (the ``grafana-clickhouse-datasource`` plugin, picked by
the ``datasource`` variable), with single-valued ``app`` and ``model_version`` variables whose
options are names of the safe set only (filtered in their SQL and by their regex; :mod:`.panels`
says how their values reach SQL safely), and, on the drift dashboard, alert annotations.
:func:`export` writes the JSON for file provisioning or GitOps; :func:`push` provisions through
the HTTP API, idempotently by uid, into a folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from driftwarden.core.errors import DriftwardenError
from driftwarden.dashboards.levels import Levels
from driftwarden.dashboards.panels import (
    ALL,
    ANNOTATION_SQL,
    DASHBOARDS,
    SAFE_NAME_REGEX,
    VARIABLE_SQL,
    DashboardSpec,
    PanelSpec,
    with_levels,
)
from driftwarden.detectors.loading import require

log = logging.getLogger(__name__)

PLUGIN = "grafana-clickhouse-datasource"
FOLDER_UID = "driftwarden"
FOLDER_TITLE = "driftwarden"


class DashboardError(DriftwardenError):
    """Provisioning dashboards failed."""

    def __init__(self, action: str, detail: str):
        super().__init__(f"dashboards: {action}: {detail}")


class _SDK:
    """The SDK's modules, imported on first use (the ``dashboards`` extra)."""

    def __getattr__(self, name: str):
        modules = {
            "dashboard": "grafana_foundation_sdk.builders.dashboard",
            "timeseries": "grafana_foundation_sdk.builders.timeseries",
            "table": "grafana_foundation_sdk.builders.table",
            "stat": "grafana_foundation_sdk.builders.stat",
            "common": "grafana_foundation_sdk.builders.common",
            "models": "grafana_foundation_sdk.models.dashboard",
            "cmodels": "grafana_foundation_sdk.models.common",
            "encoder": "grafana_foundation_sdk.cog.encoder",
        }
        module = require(modules[name], "dashboards")
        setattr(self, name, module)
        return module


sdk = _SDK()


def _datasource():
    models = require("grafana_foundation_sdk.models.dashboard", "dashboards")
    return models.DataSourceRef(type_val=PLUGIN, uid="${datasource}")


def clickhouse_query(sql: str, kind: str, ref_id: str = "A"):
    """A target of the ClickHouse plugin (its query model; the SDK has no builder for it)."""
    variants = require("grafana_foundation_sdk.cog.variants", "dashboards")
    cogbuilder = require("grafana_foundation_sdk.cog.builder", "dashboards")

    class ClickHouseQuery(variants.Dataquery):
        def __init__(self) -> None:
            self.sql, self.kind, self.ref_id = sql, kind, ref_id

        def to_json(self) -> dict[str, Any]:
            table = self.kind != "timeseries"
            return {"refId": self.ref_id, "datasource": _datasource().to_json(), "editorType": "sql",
                    "rawSql": self.sql, "queryType": "table" if table else "timeseries", "format": 1 if table else 0}

    class Builder(cogbuilder.Builder[ClickHouseQuery]):
        def build(self) -> ClickHouseQuery:
            return ClickHouseQuery()

    return Builder()


def _panel(spec: PanelSpec, db: str):
    models = sdk.models
    module = {"timeseries": sdk.timeseries, "table": sdk.table, "stat": sdk.stat}[spec.kind]
    panel = (module.Panel().title(spec.title).datasource(_datasource()).span(spec.width).height(spec.height)
             .with_target(clickhouse_query(spec.sql.replace("{db}", db), spec.kind)))
    if spec.description:
        panel = panel.description(spec.description)
    if spec.unit:
        panel = panel.unit(spec.unit)
    if spec.thresholds:
        steps = [models.Threshold(value=v, color=c) for c, v in spec.thresholds]
        panel = panel.thresholds(sdk.dashboard.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE)
                                 .steps(steps))
    if spec.log_scale and spec.kind == "timeseries":
        panel = panel.scale_distribution(sdk.common.ScaleDistributionConfig().type(sdk.cmodels.ScaleDistribution.LOG)
                                         .log(10))
    return panel


def build(spec: DashboardSpec, db: str) -> dict[str, Any]:
    """One dashboard as Grafana's JSON model."""
    models, builders = sdk.models, sdk.dashboard
    dash = (builders.Dashboard(spec.title).uid(spec.uid).description(spec.description)
            .tags(list(spec.tags)).time("now-6h", "now").refresh("30s").timezone("utc").editable()
            .with_variable(builders.DatasourceVariable("datasource").label("ClickHouse").type(PLUGIN)))
    for name in ("app", "model_version"):
        dash = dash.with_variable(
            builders.QueryVariable(name).label(name).datasource(_datasource())
            .query(VARIABLE_SQL[name].replace("{db}", db)).regex(SAFE_NAME_REGEX).multi(False)
            .include_all(True).all_value(ALL)
            .current(models.VariableOption(text="All", value=ALL, selected=True))
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED))
    if spec.alert_annotations:
        dash = dash.annotation(
            builders.AnnotationQuery().name("driftwarden alerts").datasource(_datasource()).enable(True)
            .icon_color("red"))
    for panel in spec.panels:
        dash = dash.with_panel(_panel(panel, db))
    model = json.loads(sdk.encoder.JSONEncoder(sort_keys=True).encode(dash.build()))
    for panel in model["panels"]:
        if panel.get("options") is None:
            panel.pop("options", None)  # let Grafana fill each panel type's defaults
    if spec.alert_annotations:
        # The plugin reads an annotation's SQL from the annotation itself (the SDK has no model for it).
        for ann in model["annotations"]["list"]:
            if ann.get("name") == "driftwarden alerts":
                ann.update({"editorType": "sql", "rawSql": ANNOTATION_SQL.replace("{db}", db), "format": 1,
                            "queryType": "table"})
    return model


def build_all(db: str, levels: Levels | None = None) -> list[dict[str, Any]]:
    """Every dashboard, its drift panels stepped at ``levels`` (the settings' and the policy's:
    :func:`driftwarden.dashboards.levels.levels`; defaults when None)."""
    levels = levels or Levels()
    return [build(with_levels(spec, levels.alpha, levels.drift_threshold), db) for spec in DASHBOARDS]


def export(directory: Path, db: str, levels: Levels | None = None) -> list[Path]:
    """Write each dashboard as ``<uid>.json`` (file provisioning, GitOps)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for model in build_all(db, levels):
        path = directory / f"{model['uid']}.json"
        path.write_text(json.dumps(model, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def push(url: str, token: str | None, db: str, *, folder_uid: str = FOLDER_UID, folder_title: str = FOLDER_TITLE,
         timeout_s: float = 10.0, levels: Levels | None = None) -> list[dict]:
    """Create or update every dashboard by uid in the folder (created when missing)."""
    client_mod = require("grafana_client", "dashboards")
    errors = require("grafana_client.client", "dashboards")
    api = client_mod.GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    try:
        try:
            api.folder.get_folder(folder_uid)
        except errors.GrafanaClientError as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            api.folder.create_folder(folder_title, uid=folder_uid)
            log.info("created Grafana folder %s", folder_uid)
        results = []
        for model in build_all(db, levels):
            body = {"dashboard": {**model, "id": None}, "folderUid": folder_uid, "overwrite": True,
                    "message": "provisioned by driftwarden"}
            results.append(api.dashboard.update_dashboard(body))
            log.info("dashboard %s provisioned", model["uid"])
        return results
    except errors.GrafanaException as exc:
        raise DashboardError(f"push to {url}", f"{type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise DashboardError(f"push to {url}", str(exc)) from exc
