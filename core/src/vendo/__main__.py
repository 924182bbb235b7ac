"""``python -m vendo`` runs the ``vendo`` command line."""

from vendo.cli import main

main()
