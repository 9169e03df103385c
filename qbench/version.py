"""qbench's version, in a module of its own: low modules (the plugin host) read it without
importing the package root, which imports them (no arrow back up)."""

__version__ = "0.1.0"  # equal to pyproject.toml's [project] version (tests/test_architecture.py)
