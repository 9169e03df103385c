"""Ternary Weight Networks as a qbench plugin: an example for plugin authors."""
