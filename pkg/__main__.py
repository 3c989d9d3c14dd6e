"""``python -m driftwarden`` runs the command-line interface."""

from driftwarden.cli.main import main

if __name__ == "__main__":
    main()
