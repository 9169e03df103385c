"""``python -m qbench`` is the ``qbench`` command."""

from qbench.cli import console_main

console_main()
