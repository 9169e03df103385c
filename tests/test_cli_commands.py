"""Every command module listed by the CLI is part of qbench: one that fails to import is a bug (exit 3)."""

from __future__ import annotations

import pytest

from qbench import cli


def test_every_command_module_imports_and_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for module_name in cli.COMMAND_MODULES:
        name = module_name.rsplit(".", 1)[1]
        assert name in out, f"{module_name} is not offered by qbench --help"


def test_a_missing_command_module_fails_loudly(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "qbench.commands.qbench_no_such"))
    assert cli.main(["list"]) == 3
    err = capsys.readouterr().err
    assert "qbench.commands.qbench_no_such" in err and "internal error" in err


def test_a_command_module_that_raises_at_import_fails_loudly(monkeypatch, capsys, tmp_path) -> None:
    (tmp_path / "qbench_broken_command.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("qbench_broken_command", *cli.COMMAND_MODULES))
    assert cli.main(["--version"]) == 3
    err = capsys.readouterr().err
    assert "command module qbench_broken_command cannot be imported" in err
    assert "RuntimeError: broken on purpose" in err
