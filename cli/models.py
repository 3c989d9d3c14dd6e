"""``driftwarden models``: the registered adapters, and the human step of promotion.

``list`` and ``show`` read the MLflow registry; ``promote VERSION`` points the ``champion`` alias
at a version (the next job of that app starts from it) and ``reject VERSION`` marks it rejected
(taking the alias away if it had it); both write who and why on the version. The decision also
goes on ``llm.retrain.status`` (so ``retrain_jobs``, the report and the retraining dashboard show
it) and to the alert receivers as the resolution of the "held for a person" alert, when the broker
is reachable; the registry holds it whatever happens to that.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Annotated, Optional

import typer

from driftwarden.cli.common import BootstrapOpt, DataDirOpt, cli_settings, echo_err

models_app = typer.Typer(help="Registered adapters (MLflow) and their promotion.", no_args_is_help=True)

AppOpt = Annotated[Optional[str], typer.Option("--app", help="The app whose adapters (default: every app).")]
VersionArg = Annotated[str, typer.Argument(help="VERSION (with --app, or when one app has versions) or NAME/VERSION.")]


@models_app.command("list")
def models_list(app: AppOpt = None, as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
                data_dir: DataDirOpt = None) -> None:
    """Registered adapters, newest first, with their decision and the champion marked."""
    from driftwarden.retrain_trigger.retraining.registry import ModelRegistry

    registry = ModelRegistry(cli_settings(None, data_dir))
    versions = registry.versions(app)
    if as_json:
        typer.echo(json.dumps([_plain(v) for v in versions], indent=2))
        return
    if not versions:
        typer.echo(f"no registered adapters{f' of app {app!r}' if app else ''} in {registry.describe()}")
    for v in versions:
        mark = "*" if v.champion else " "
        created = f"{v.created_at:%Y-%m-%d %H:%M}" if v.created_at else ""
        typer.echo(f"{mark} {v.name}/{v.version}  {v.tags.get('decision', '-'):<8} by "
                   f"{v.tags.get('decided_by', '-'):<10}  job {v.tags.get('job_id', '?')}  snapshot "
                   f"{v.tags.get('snapshot', '?')}  {created}")
    if versions:
        typer.echo("(* champion: what the next job of its app starts from)")


@models_app.command("show")
def models_show(version: VersionArg, app: AppOpt = None, data_dir: DataDirOpt = None) -> None:
    """One version: its tags, its decision, and its evaluation against the model it was compared with."""
    from driftwarden.retrain_trigger.retraining.evaluation import Table
    from driftwarden.retrain_trigger.retraining.registry import ModelRegistry

    info = ModelRegistry(cli_settings(None, data_dir)).version(version, app)
    typer.echo(json.dumps(_plain(info), indent=2))
    table = Table.from_flat(info.metrics)
    if table.figures:
        typer.echo("\ncandidate (this version) against the model it was compared with:\n" + table.render())


def _decide(decision: str, version: str, app: str | None, by: str | None, reason: str, bootstrap: str | None,
            data_dir) -> None:
    from driftwarden.retrain_trigger.retraining.registry import ModelRegistry

    settings = cli_settings(bootstrap, data_dir)
    registry = ModelRegistry(settings)
    who = by or getpass.getuser()
    info = registry.version(version, app)
    done = registry.set_decision(info.name, info.version, decision, who, reason)
    done.metrics = info.metrics
    typer.echo(f"{done.name} version {done.version}: {decision} by {who} ({reason})"
               + ("; it is the champion now" if done.champion else ""))
    _announce(settings, done, decision, who, reason)


def _announce(settings, info, decision: str, who: str, reason: str) -> None:
    """The decision on the status topic and to the alert receivers (best effort: the registry has it)."""
    from driftwarden.core.schemas import RetrainStatus
    from driftwarden.retrain_trigger.retraining.evaluation import Table
    from driftwarden.retrain_trigger.retraining.notice import decision_alert
    from driftwarden.streams.publisher import Publisher
    from driftwarden.streams.topics import TopicNames

    tags = info.tags
    if not tags.get("job_id") or not tags.get("request_id"):
        echo_err(f"{info.name}/{info.version} carries no job tags: the decision is in the registry only")
        return
    status = RetrainStatus(
        job_id=tags["job_id"], request_id=tags["request_id"], app=tags.get("app", ""),
        model_version=tags.get("model_version", ""), status="succeeded", launcher=tags.get("launcher", ""),
        dataset_version=tags.get("snapshot", ""), dataset_rows=int(tags.get("dataset_rows", "0") or 0),
        metrics={k: v for k, v in info.metrics.items()}, output_dir=tags.get("output_dir", ""),
        message=f"{decision} by {who}: {reason}"[:2000], updated_at=datetime.now(UTC), decision=decision,
        decision_reasons=[f"{who}: {reason}"[:1000]], registered_model=info.name, registered_version=info.version)
    alert = decision_alert(status, Table.from_flat(info.metrics).render(), settings.grafana_url, who=who)
    topics = TopicNames.from_settings(settings)
    publisher = Publisher(settings=settings)
    try:
        publisher.publish_record(topics.retrain_status, status.job_id.encode(), status.to_json_bytes())
        publisher.publish_record(topics.alerts, alert.dedupe_key.encode(), alert.to_json_bytes())
        delivered = publisher.flush(15)
    finally:
        publisher.close(5)
    if delivered:
        typer.echo(f"recorded on {topics.retrain_status} and sent to the alert receivers")
    else:
        echo_err(f"the broker at {settings.kafka_bootstrap} did not take the decision within 15 s: it is in the "
                 f"registry, but retrain_jobs and the receivers do not have it (run the command again when the "
                 f"broker is up)")


@models_app.command("promote")
def models_promote(version: VersionArg,
                   reason: Annotated[str, typer.Option("--reason", help="Why (kept on the version).")],
                   by: Annotated[Optional[str], typer.Option("--by", help="Who decides (default: the OS user).")] = None,
                   app: AppOpt = None, bootstrap: BootstrapOpt = None, data_dir: DataDirOpt = None) -> None:
    """Make VERSION the champion: the next retraining job of its app starts from it."""
    _decide("promote", version, app, by, reason, bootstrap, data_dir)


@models_app.command("reject")
def models_reject(version: VersionArg,
                  reason: Annotated[str, typer.Option("--reason", help="Why (kept on the version).")],
                  by: Annotated[Optional[str], typer.Option("--by", help="Who decides (default: the OS user).")] = None,
                  app: AppOpt = None, bootstrap: BootstrapOpt = None, data_dir: DataDirOpt = None) -> None:
    """Mark VERSION rejected (and no longer the champion, if it was)."""
    _decide("reject", version, app, by, reason, bootstrap, data_dir)


def _plain(info) -> dict:
    return {"name": info.name, "version": info.version, "champion": info.champion, "aliases": info.aliases,
            "run_id": info.run_id, "source": info.source, "tags": info.tags,
            "created_at": info.created_at.isoformat() if info.created_at else None,
            **({"metrics": info.metrics} if info.metrics else {})}
