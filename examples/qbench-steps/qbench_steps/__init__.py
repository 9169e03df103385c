"""qbench-steps: an example per-step labelling dataset (see plugin.py)."""
