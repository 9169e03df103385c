"""Subcommands of the ``qbench`` command line (one module each)."""
