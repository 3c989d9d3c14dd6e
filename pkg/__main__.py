"""``python -m driftwarden`` runs the command-line interface."""

from driftwarden.cli import main

if __name__ == "__main__":
    main()
