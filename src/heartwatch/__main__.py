"""``python -m heartwatch``: the same as the ``heartwatch`` command."""

from heartwatch.cli import main

main()
