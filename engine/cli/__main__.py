"""`python -m engine.cli` runs the `nurture` command."""

from engine.cli.main import main

main()
