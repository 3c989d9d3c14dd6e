"""The ``driftwarden`` command (the ``server`` extra: ``pip install 'driftwarden[server]'``)."""

from __future__ import annotations

import importlib.util
import sys

SERVER_MODULES = ("typer", "rich", "yaml")
"""Modules of the server extra that every command needs (looked up, not imported: each call stays
fast); a command's own heavier imports (faust, the store, models) name their extra when missing,
so ``driftwarden finetune`` runs in a job image with the finetune extra and the command's three."""


def main() -> None:
    """Run the command line; without the server extra, say which extra to install instead of a traceback."""
    from driftwarden.core.errors import MissingExtraError

    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(f"error: the driftwarden command needs the server: {MissingExtraError(missing[0], 'server')}",
              file=sys.stderr)
        sys.exit(2)
    from driftwarden.cli.main import main as run

    run()
