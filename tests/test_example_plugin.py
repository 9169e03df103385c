"""The installable example plugin (examples/qbench-twn) is found through its entry point."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from qbench.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("qbench_twn") is None,
    reason="the example plugin is not installed: pip install ./examples/qbench-twn (the README's test command does)",
)


def test_plugins_lists_the_installed_example_with_its_version(capsys, fresh_host):
    assert main(["plugins"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("twn "))
    assert "qbench-twn" in line and "0.2.0" in line and "external" in line and "quantizer: twn" in line


def test_a_matrix_can_name_the_plugin_quantizer(tmp_path, capsys, fresh_host):
    matrix = tmp_path / "twn.toml"
    matrix.write_text(textwrap.dedent(
        """
        name = "twn"
        [[quantizer]]
        name = "twn"
        threshold = [0.5, 0.7]
        [[cell]]
        name = "rnn"
        [[dataset]]
        name = "pydoc-char"
        """
    ))
    assert main(["run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    table = capsys.readouterr().out
    assert "twn(threshold=0.5)" in table and "twn(threshold=0.7)" in table
