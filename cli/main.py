"""``driftwarden`` command line (also ``python -m driftwarden``)."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer

from driftwarden.cli.common import BootstrapOpt, DataDirOpt
from driftwarden.cli.common import cli_settings as _settings
from driftwarden.cli.common import echo_err as _echo_err
from driftwarden.cli.models import models_app
from driftwarden.core.allocator import tune_allocator
from driftwarden.core.errors import DriftwardenError
from driftwarden.core.secrets import mask_url, scrub

app = typer.Typer(
    name="driftwarden",
    help="Monitoring, drift detection and retraining triggers for LLMs in production.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def up(
    workers: Annotated[int, typer.Option(min=1, max=64, help="Score worker processes to start.")] = 1,
    bootstrap: BootstrapOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Start the local stack in the foreground: broker (unless a bootstrap is set), sink, workers.

    Stop it with Ctrl-C. The local broker keeps messages in memory only: what was not yet
    stored in ClickHouse is lost when it stops.
    """
    import signal

    from driftwarden.deploy.local.stack import STOP_GRACE_S, start_stack

    # Ctrl-C and SIGTERM stop the stack cleanly even when this process inherited SIGINT ignored
    # (a shell starts background jobs so, and then Python would install no handler of its own).
    # Only the first signal interrupts: a second one (a process manager that repeats SIGTERM, a
    # shell's Ctrl-C that reaches the whole group) must not cut the stop short and leave the
    # broker or a worker behind.
    stopping = False

    def interrupt(signum, frame):
        nonlocal stopping
        if stopping:
            typer.echo(f"already stopping (signal {signum} ignored); the stack stops within "
                       f"{STOP_GRACE_S * 3:.0f} s at most", err=True)
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    settings = _settings(bootstrap, data_dir)
    try:
        stack = start_stack(settings, workers=workers)
    except KeyboardInterrupt:  # start_stack stopped what it had started
        typer.echo("stopped before the stack was up", err=True)
        raise typer.Exit(130) from None
    try:
        typer.echo(
            f"driftwarden is up: broker {stack.bootstrap}"
            f"{' (local, in-memory)' if stack.broker else ''}, sink + {workers} worker(s)"
            f"{f'; OTLP on http://{settings.otlp.host}:{settings.otlp.port}' if stack.otlp else ''}; "
            f"store {settings.clickhouse_url_masked}; logs in {stack.log_dir}. Ctrl-C stops."
        )
        while True:
            for name in stack.supervise():  # a process that exited (a crashed agent) is restarted
                typer.echo(f"{name} exited and was restarted; its log: {stack.log_dir / (name + '.log')}", err=True)
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo("stopping ...", err=True)  # stderr: line-buffered, shown at once
    finally:
        stopping = True  # a signal now (also after a failure) must not cut the stop short
        stack.stop(STOP_GRACE_S)
    typer.echo("stopped")


@app.command()
def worker(
    bootstrap: BootstrapOpt = None,
    data_dir: DataDirOpt = None,
    web_port: Annotated[Optional[int], typer.Option(min=0, max=65535, help="Port of /metrics, /healthz and "
                                                    "/readyz (default DRIFTWARDEN_WORKER_WEB_PORT; 0: none).")] = None,
) -> None:
    """Run one scoring process (validate, score, produce results). Start more to scale out."""
    from driftwarden.streams.app import create_app, run_worker

    settings = _settings(bootstrap, data_dir)
    tune_allocator(settings.tune_allocator)  # before torch allocates
    run_worker(create_app("score", settings, web_port=web_port), settings.log_level)


@app.command()
def sink(bootstrap: BootstrapOpt = None, data_dir: DataDirOpt = None) -> None:
    """Run the sink: write events, detections and dead letters to ClickHouse in batches."""
    from driftwarden.streams.app import create_app, run_worker

    settings = _settings(bootstrap, data_dir)
    tune_allocator(settings.tune_allocator)  # before torch allocates
    run_worker(create_app("sink", settings), settings.log_level)


@app.command()
def otlp(
    port: Annotated[Optional[int], typer.Option(min=0, max=65535, help="HTTP port (default DRIFTWARDEN_OTLP__PORT, 4318).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default DRIFTWARDEN_OTLP__HOST).")] = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Receive OpenTelemetry traces and logs (OTLP/HTTP) and publish their LLM calls as events."""
    from driftwarden.streams.otlp_receiver import run_receiver

    settings = _settings(bootstrap)
    update = {k: v for k, v in (("port", port), ("host", host)) if v is not None}
    if update:
        settings = settings.model_copy(update={"otlp": settings.otlp.model_copy(update=update)})
    run_receiver(settings, bootstrap)


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="JSONL: InferenceEvents, or rows with prompt/response (or question/answer/context).")],
    rate: Annotated[float, typer.Option(min=0, help="Events per second; 0 publishes as fast as possible.")] = 0.0,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Publish at most this many rows.")] = None,
    app_name: Annotated[str, typer.Option("--app", help="app of synthesised events.")] = "demo-chat",
    model: Annotated[str, typer.Option(help="model of synthesised events (priced by the price table).")] = "gpt-4o-mini",
    model_version: Annotated[str, typer.Option(help="model_version of synthesised events.")] = "v1",
    id_prefix: Annotated[str, typer.Option(help="Event ids are <prefix>-<row id>; same prefix, same ids.")] = "replay",
    span_minutes: Annotated[float, typer.Option(min=0, help="Spread timestamps over this many minutes ending now.")] = 60.0,
    shuffle: Annotated[bool, typer.Option(help="Publish rows in a random (seeded) order, like live traffic.")] = False,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Publish a JSONL file as inference events, with a progress bar."""
    from rich.progress import Progress

    from driftwarden.streams.publisher import Publisher
    from driftwarden.streams.replay import ReplayOptions, count_rows, replay_file

    settings = _settings(bootstrap)
    if not file.is_file():
        raise typer.BadParameter(f"{file} is not a file", param_hint="FILE")
    options = ReplayOptions(app=app_name, model=model, model_version=model_version, id_prefix=id_prefix,
                            span=timedelta(minutes=span_minutes), shuffle=shuffle)
    total = count_rows(file) if limit is None else min(limit, count_rows(file))
    interval = 1.0 / rate if rate > 0 else 0.0
    with Publisher(settings=settings) as publisher, Progress(transient=False) as progress:
        task = progress.add_task(f"replaying {file.name}", total=total)
        next_at = time.monotonic()

        def publish(event: dict) -> bool:
            nonlocal next_at
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            return publisher.publish(event)

        counts = replay_file(file, publish, options, limit=limit, on_progress=lambda n: progress.advance(task, n))
        progress.update(task, description=f"flushing {file.name}")
        publisher.flush()
    s = publisher.stats
    typer.echo(
        f"published {counts['published']} of {counts['rows']} rows to {settings.topic_inference}: "
        f"{s.sent} acknowledged, {s.refused} refused (invalid {s.refused_invalid}, "
        f"queue full {s.refused_queue_full}, too large {s.refused_too_large})"
    )
    if s.refused:
        raise typer.Exit(1)


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Counts of stored events, detections and dead letters (works while `up` runs)."""
    from driftwarden.streams.sink_pages import read_stats
    from driftwarden.streams.web import live_processes

    settings = _settings(None, data_dir)
    counts = read_stats(settings)
    if as_json:
        typer.echo(json.dumps({**counts, "processes": live_processes(settings)}, sort_keys=True))
        return
    typer.echo(f"events stored:  {counts['events']}")
    typer.echo(f"detections:     {counts['detections']}")
    for name, d in counts["detections_by_detector"].items():
        typer.echo(f"  {name:<14} {d['results']} results, {d['flagged']} flagged, {d['errors']} errors")
    typer.echo(f"embeddings:     {counts.get('embeddings', 0)}")
    typer.echo(f"dead letters:   {counts['dead_letters']}")
    for stage, n in counts["dead_letters_by_stage"].items():
        typer.echo(f"  {stage:<14} {n}")
    processes = live_processes(settings)
    if processes:
        typer.echo("processes (metrics at http://<host>:<port>/metrics):")
        for p in processes:
            typer.echo(f"  {p['role']:<6} pid {p['pid']:<8} http://{p['bind']}:{p['port']}/metrics")


@app.command()
def purge(
    app_name: Annotated[str, typer.Option("--app", help="Erase this app's events ...")],
    user_id: Annotated[Optional[str], typer.Option("--user-id", help="... only this user's ...")] = None,
    before: Annotated[Optional[str], typer.Option(help="... only those before this ISO 8601 time (UTC if no zone).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be erased; erase nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Erase without asking (scripts).")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Erase events and everything derived from them (detections, embeddings, feedback; for a whole
    app also its drift windows, alerts and retraining records). Lists what is kept, and the dataset
    snapshots that hold copies. Works while `up` runs."""
    from driftwarden.streams.sink_pages import purge as run_purge

    settings = _settings(None, data_dir)
    body: dict = {"app": app_name, "user_id": user_id, "before": before, "dry_run": True}
    try:
        planned = run_purge(settings, body)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _print_erasure(planned, "would erase")
    if dry_run:
        return
    if not sum(planned["deleted"].values()):
        typer.echo("nothing to erase")
        return
    if not yes:
        typer.confirm("Erase these rows? This cannot be undone", abort=True)
    _print_erasure(run_purge(settings, {**body, "dry_run": False}), "erased")


def _print_erasure(report: dict, verb: str) -> None:
    who = f"app {report['app']!r}" + (f", user {report['user_id']!r}" if report["user_id"] else "") + \
        (f", before {report['before']}" if report["before"] else "")
    typer.echo(f"{verb} ({who}):")
    for table, n in report["deleted"].items():
        typer.echo(f"  {table:<18} {n} rows")
    kept = {t: k for t, k in report["kept"].items() if k["rows"]}
    if kept:
        typer.echo("kept:")
        for table, k in kept.items():
            typer.echo(f"  {table:<18} {k['rows']} rows: {k['why']}")
    for snap in report["snapshots"]:
        held = "some of" if snap["events_held"] is None else f"{snap['events_held']} of"
        typer.echo(f"snapshot {snap['version']} holds {held} these events (not changed): {snap['path']}")


@app.command()
def score(
    detector: Annotated[str, typer.Option(help="toxicity, hallucination, pii, prompt_injection, or one a plug-in "
                                               "registers (driftwarden.detectors entry points).")],
    input_file: Annotated[Path, typer.Option("--input", help="JSONL file to score.")],
    field: Annotated[str, typer.Option(help="Field of each row holding the text (the response, for hallucination).")],
    output: Annotated[Path, typer.Option(help="JSONL written: id, score, label, detector, version (and spans) per row.")],
    context_field: Annotated[Optional[str], typer.Option(
        help="Field holding the context: required by hallucination; prompt_injection scans it too.")] = None,
    prompt_field: Annotated[Optional[str], typer.Option(
        help="hallucination: field holding the question the answer replies to (words it echoes are not unsupported).")] = None,
) -> None:
    """Score a JSONL file offline with one detector, with a progress bar."""
    from rich.progress import Progress

    from driftwarden.detectors.offline import score_file

    settings = _settings()
    if not input_file.is_file():
        raise typer.BadParameter(f"{input_file} is not a file", param_hint="--input")
    from driftwarden.detectors.registry import registration

    if registration(detector).needs_context and context_field is None:
        raise typer.BadParameter(f"the {detector} detector needs --context-field", param_hint="--context-field")
    with Progress() as progress:
        task = progress.add_task(f"{detector} on {input_file.name}", total=None)
        counts = score_file(detector, settings, input_file, field, output, context_field,
                            on_start=lambda n: progress.update(task, total=n),
                            on_progress=lambda n: progress.advance(task, n), prompt_field=prompt_field)
    typer.echo(f"scored {counts['rows']} rows with {detector}: {counts['flagged']} flagged, "
               f"{counts['not_assessable']} not assessable, {counts['errors']} errors -> {output}")


@app.command("drift-test")
def drift_test(
    reference: Annotated[Path, typer.Option(help="JSONL of the reference population.")],
    current: Annotated[Path, typer.Option(help="JSONL of the current population.")],
    field: Annotated[str, typer.Option(help="prompt or response (or any text field of the rows).")] = "prompt",
    permutations: Annotated[int, typer.Option(min=1, max=100_000, help="Permutations for the p-value.")] = 1000,
    limit: Annotated[Optional[int], typer.Option(min=2, help="Use at most this many rows of each file.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the permutations.")] = 0,
    method: Annotated[Optional[str], typer.Option(
        help="aggregate, novelty or mmd (default: DRIFTWARDEN_DRIFT__METHOD, aggregate).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Test offline whether two JSONL files' texts come from one population (permutation p-value),
    and show what is new in the current one."""
    from driftwarden.cli.drift_test import drift_test_files

    settings = _settings()
    for path, name in ((reference, "--reference"), (current, "--current")):
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint=name)
    from driftwarden.detectors.drift.methods import METHODS

    if method is not None and method not in METHODS:
        raise typer.BadParameter(f"{method!r} is not one of {', '.join(METHODS)}", param_hint="--method")
    result = drift_test_files(settings, reference, current, field, permutations=permutations, limit=limit, seed=seed,
                              method=method)
    if as_json:
        typer.echo(json.dumps(result))
        return
    alpha = settings.drift.alpha
    verdict = "DRIFT" if result["p_value"] < alpha else "no drift detected"
    typer.echo(f"{verdict}: {result['method']} on {field}, statistic {result['statistic']:.4g}, "
               f"p = {result['p_value']:.4f} ({result['n_reference']} reference vs {result['n_current']} current, "
               f"{result['permutations']} permutations, level {alpha:g})")
    typer.echo(f"{result['novel_share']:.0%} of the current rows are further from the reference than all but "
               f"{alpha:.0%} of its own rows")
    for c in result["clusters"]:
        typer.echo(f"- a group of {c['size']} rows ({c['share']:.0%}), for example:")
        for i, text in zip(c["example_ids"], c["examples"], strict=True):
            typer.echo(f"    {i}: {scrub(' '.join(text.split()))}")
    typer.echo(f"most changed current rows: {', '.join(map(str, result['most_changed_current_ids']))}")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("driftwarden-report.html"),
    data_dir: DataDirOpt = None,
) -> None:
    """Write the self-contained HTML report (works while `up` runs: the sink renders it)."""
    from driftwarden.streams.sink_pages import read_report

    settings = _settings(None, data_dir)
    text = read_report(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out} ({len(text) / 1e6:.1f} MB, self-contained)")


@app.command()
def demo(
    limit: Annotated[Optional[int], typer.Option(min=2, help="Replay this many events in all (default 1,600: "
                                                             "1,000 before the switch, 600 after).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Score worker processes.")] = 1,
    data_dir: DataDirOpt = None,
    timeout_s: Annotated[float, typer.Option(min=10, help="Give up after this long (the whole demo took 4 minutes on "
                                                          "two cores with AMX, 15 with AVX2 only).")] = 1800.0,
    retrain: Annotated[bool, typer.Option(help="Run the retraining job the drift alert requests.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Also print the summary as JSON.")] = False,
) -> None:
    """The main job: the local stack, real traffic with a population switch, drift, an alert,
    retraining, the report and the dashboards."""
    from driftwarden.deploy.local.demo import run_demo

    settings = _settings(None, data_dir)
    summary = run_demo(settings, limit=limit, workers=workers, timeout_s=timeout_s, retrain=retrain, echo=typer.echo)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True, default=str))


datasets_app = typer.Typer(help="Versioned dataset snapshots for fine-tuning.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
policy_app = typer.Typer(help="The policy's rules (alerts and retraining requests).", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(models_app, name="models")


dashboards_app = typer.Typer(help="Grafana dashboards as code.", no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")


@dashboards_app.command("export")
def dashboards_export(
    directory: Annotated[Path, typer.Argument(help="Directory for the JSON files (file provisioning, GitOps).")],
) -> None:
    """Write the dashboards (overview, safety, drift, retraining) as Grafana JSON."""
    from driftwarden.dashboards.grafana import export
    from driftwarden.dashboards.levels import levels

    settings = _settings()
    for path in export(directory, settings.clickhouse_database, levels(settings)):
        typer.echo(f"wrote {path}")


@dashboards_app.command("push")
def dashboards_push() -> None:
    """Provision the dashboards through Grafana's HTTP API (DRIFTWARDEN_GRAFANA_URL and _TOKEN), by uid."""
    from driftwarden.dashboards.grafana import push
    from driftwarden.dashboards.levels import levels

    settings = _settings()
    token = settings.grafana_token.get_secret_value() if settings.grafana_token else None
    results = push(settings.grafana_url, token, settings.clickhouse_database, folder_uid=settings.grafana_folder,
                   folder_title=settings.grafana_folder, levels=levels(settings))
    typer.echo(f"provisioned {len(results)} dashboards into folder {settings.grafana_folder!r} at "
               f"{mask_url(settings.grafana_url)}")


@datasets_app.command("list")
def datasets_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Snapshots under the datasets location, oldest first."""
    from driftwarden.retrain_trigger.retraining.snapshots import list_snapshots

    settings = _settings(None, data_dir)
    snaps = list_snapshots(settings.datasets_dir)
    if as_json:
        typer.echo(json.dumps([{"version": s.version, "app": s.manifest["app"], "model_version":
                                s.manifest["model_version"], "rows": s.manifest["rows"], "path": str(s.path)}
                               for s in snaps]))
        return
    if not snaps:
        typer.echo(f"no snapshots under {settings.datasets_dir}")
    for s in snaps:
        m = s.manifest
        typer.echo(f"{s.version}  {m['app']}/{m['model_version']}  {m['rows']['train']} train, "
                   f"{m['rows']['review']} review  {s.path}")


@datasets_app.command("show")
def datasets_show(
    version: Annotated[str, typer.Argument(help="Snapshot version (or a unique prefix of it).")],
    data_dir: DataDirOpt = None,
) -> None:
    """A snapshot's manifest (without the list of source event ids, which is counted)."""
    from driftwarden.retrain_trigger.retraining.snapshots import find_snapshot

    settings = _settings(None, data_dir)
    snap = find_snapshot(settings.datasets_dir, version)
    shown = {k: v for k, v in snap.manifest.items()
             if k not in ("source_event_ids", "review_event_ids", "regression_event_ids")}
    shown["source_event_ids"] = f"{len(snap.manifest['source_event_ids'])} ids (in {snap.path / 'manifest.json'})"
    shown["path"] = str(snap.path)
    typer.echo(json.dumps(shown, indent=2, default=str))


@policy_app.command("check")
def policy_check(
    file: Annotated[Optional[Path], typer.Argument(help="Policy YAML file; default: the shipped rules.")] = None,
) -> None:
    """Validate a policy file and print its rules (errors name the rule and the field)."""
    from driftwarden.retrain_trigger.alerting.rules import load_policy

    _settings()
    policy = load_policy(file)
    typer.echo(f"policy {policy.fingerprint()}: {len(policy.rules)} rules, detection windows of "
               f"{policy.window_size} events or {policy.window_minutes:g} minutes")
    for r in policy.rules:
        target = f"{r.metric}" + (f"({r.detector})" if r.detector else "")
        seg = f"{r.segment.app}/{r.segment.model_version}/{r.segment.field}"
        typer.echo(f"  {r.name:<24} {target:<30} {r.worse_when} {r.threshold:g} (clear {r.clear:g}) x{r.consecutive} "
                   f"cooldown {r.cooldown_minutes:g} min  {r.severity}{'  retrain' if r.retrain else ''}  [{seg}]")


@app.command()
def finetune(
    snapshot: Annotated[Path, typer.Option(help="Snapshot directory (driftwarden datasets list).")],
    out: Annotated[Path, typer.Option(help="Output directory: adapter/, metrics.json, progress.jsonl.")],
    job_id: Annotated[str, typer.Option(help="Job id (for the log).")] = "manual",
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Overrides DRIFTWARDEN_RETRAIN__MAX_STEPS.")] = None,
    base_model: Annotated[Optional[Path], typer.Option(help="Local causal LM directory (overrides the setting).")] = None,
    current_adapter: Annotated[Optional[Path], typer.Option(
        help="The current (champion) adapter: training starts from it, and the evaluation compares with it "
             "(default: the base model alone).")] = None,
) -> None:
    """The fine-tuning job: LoRA on the base model, held-out loss before and after, and the
    candidate evaluated against the current model on the drifted held-out and the regression set."""
    from driftwarden.retrain_trigger.retraining.evaluation import DetectorScorer
    from driftwarden.retrain_trigger.retraining.finetune import run

    settings = _settings()
    config = settings.retrain
    updates: dict[str, object] = {}
    if max_steps is not None:
        updates["max_steps"] = max_steps
    if base_model is not None:
        updates["base_model"], updates["base_model_gguf"] = base_model, None
    if updates:
        config = config.model_copy(update=updates)
    typer.echo(f"job {job_id}: fine-tuning on {snapshot}")
    scorer = DetectorScorer(settings, config.eval_detectors) if config.eval_max_events else None
    metrics = run(snapshot, out, config, current_adapter=current_adapter, scorer=scorer)
    typer.echo(json.dumps(metrics, indent=2))


def main() -> None:
    try:
        app()
    except DriftwardenError as exc:
        _echo_err(f"error: {scrub(str(exc))}")  # URLs in messages may carry secrets (a DSN, a webhook)
        sys.exit(2)


if __name__ == "__main__":
    main()
