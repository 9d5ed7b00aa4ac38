"""`python -m syncline` runs the CLI."""

from syncline.cli import main

main()
