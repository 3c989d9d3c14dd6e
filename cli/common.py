"""What every command of the CLI shares: its options and how it reads the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from driftwarden.core.logging import setup_logging
from driftwarden.core.settings import Settings, load_settings

BootstrapOpt = Annotated[
    Optional[str],
    typer.Option("--bootstrap", help="Kafka bootstrap host:port (overrides DRIFTWARDEN_KAFKA_BOOTSTRAP)."),
]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Local state directory (overrides DRIFTWARDEN_DATA_DIR)."),
]


def cli_settings(bootstrap: str | None = None, data_dir: Path | None = None) -> Settings:
    overrides: dict[str, object] = {}
    if bootstrap is not None:
        overrides["kafka_bootstrap"] = bootstrap
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = load_settings(**overrides)
    setup_logging(settings.log_level)
    return settings


def echo_err(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
