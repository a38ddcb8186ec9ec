"""``python -m graphforge`` runs the CLI."""

from graphforge.cli.main import main

main()
