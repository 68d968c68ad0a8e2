"""``python -m perdure.cli``: the same as the ``perdure`` command."""

from perdure.cli import main

main()
