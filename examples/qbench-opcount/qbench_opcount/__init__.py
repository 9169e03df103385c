"""qbench-opcount: an example hardware backend with its own columns (see plugin.py)."""
