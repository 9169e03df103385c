"""Every mistake a user can make on the command line: exit code 4, one message, no traceback."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qbench.cli import main

MATRIX = """
name = "errors"
[[quantizer]]
name = "ternary"
[[cell]]
name = "gru"
hidden = 8
[[dataset]]
name = "pydoc-char"
[train]
epochs = 1
"""


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, text):
    path = tmp_path / "matrix.toml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    "text, fragments",
    [
        (MATRIX.replace("[train]", "[train"), ["malformed TOML"]),
        (MATRIX.replace('"ternary"', '"ternay"'), ["unknown quantizer 'ternay'", "Did you mean 'ternary'?"]),
        (MATRIX.replace("hidden = 8", "hiden = 8"), ["unknown parameter 'hiden'", "did you mean 'hidden'?"]),
        (MATRIX.replace("hidden = 8", "hidden = 'big'"), ["parameter 'hidden' must be int, got 'big'"]),
        (MATRIX.replace('[[quantizer]]\nname = "ternary"', "quantizer = []"), ["axis [[quantizer]] is empty"]),
        (MATRIX.replace("epochs = 1", "epochs = -1"), ["'epochs' must be >= 1"]),
    ],
)
def test_bad_matrix_exits_4_with_one_message(tmp_path, capsys, fresh_host, text, fragments):
    path = write(tmp_path, text)
    code, out, err = run_cli(capsys, "run", "--matrix", str(path), "--out", str(tmp_path / "out"))
    assert code == 4
    assert "Traceback" not in err
    assert err.startswith("qbench: error: ") and str(path) in err
    for fragment in fragments:
        assert fragment in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_missing_matrix_and_bad_flags(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--matrix", str(tmp_path / "nope.toml"))
    assert code == 4 and "matrix file not found" in err
    code, _, err = run_cli(capsys, "run")
    assert code == 4 and "--matrix" in err
    code, _, err = run_cli(capsys, "list", "widgets")
    assert code == 4 and "invalid choice" in err
    code, _, err = run_cli(capsys, "leaderboard", "--store", str(tmp_path / "none.sqlite"))
    assert code == 4 and "no qbench store here" in err


def test_a_broken_plugin_is_reported_and_left_out_while_the_command_works(tmp_path, capsys, fake_distribution):
    fake_distribution("shiny-quant", {"shiny": "shiny_plugin"}, {"shiny_plugin": "raise RuntimeError('boom')\n"})
    code, out, err = run_cli(capsys, "list", "quantizers")
    assert code == 0 and "ternary" in out
    assert err.count("plugin left out: error importing plugin 'shiny'") == 1
    assert "shiny-quant 1.0" in err and "boom" in err and "-p no:shiny" in err
    assert "Traceback" not in err


def test_plugins_lists_a_broken_plugin_as_broken_and_the_others_as_working(capsys, fake_distribution):
    fake_distribution("shiny-quant", {"shiny": "shiny_plugin"}, {"shiny_plugin": "raise RuntimeError('boom')\n"})
    code, out, err = run_cli(capsys, "plugins")
    assert code == 4 and "Traceback" not in out + err
    shiny = next(line for line in out.splitlines() if line.startswith("shiny "))
    assert "BROKEN (left out): error importing plugin 'shiny'" in shiny and "boom" in shiny
    assert "quantizer: " in next(line for line in out.splitlines() if line.startswith("qbench_builtins.quantizers"))
    assert "1 broken plugin(s): shiny" in out
    code, out, err = run_cli(capsys, "-p", "no:shiny", "plugins")
    assert code == 0 and "1 disabled plugin(s): shiny" in out and "boom" not in out + err


def test_plugin_with_wrong_hook_signature_exits_4(tmp_path, capsys, fake_distribution):
    source = "import qbench\n@qbench.hookimpl\ndef qbench_register_hardware(node):\n    return []\n"
    fake_distribution("sig-hw", {"sighw": "sighw_plugin"}, {"sighw_plugin": source})
    code, _, err = run_cli(capsys, "list", "hardware")
    assert code == 0 and "plugin 'sighw'" in err and "node" in err


def test_a_name_two_plugins_register_is_ambiguous_until_qualified(tmp_path, capsys, fake_distribution):
    source = textwrap.dedent(
        """
        import qbench
        class Float(qbench.Quantizer):
            name = "float"
            def quantize(self, w, ctx):
                return w
            def bits_per_weight(self):
                return 32
        @qbench.hookimpl
        def qbench_register_quantizers():
            return [Float]
        """
    )
    fake_distribution("float-clone", {"clone": "clone_plugin"}, {"clone_plugin": source})
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0 and "quantizer: float" in next(line for line in out.splitlines() if line.startswith("clone "))
    code, out, err = run_cli(capsys, "list", "quantizers")
    assert code == 0 and "float-clone:float" in out and "qbench:float" in out
    path = write(tmp_path, MATRIX.replace('"ternary"', '"float"'))
    code, _, err = run_cli(capsys, "run", "--matrix", str(path), "--out", str(tmp_path / "out"), "--dry-run")
    assert code == 4 and "quantizer name 'float' is ambiguous" in err
    assert "'float-clone:float' (plugin 'clone' (distribution float-clone 1.0))" in err and "'qbench:float'" in err
    path = write(tmp_path, MATRIX.replace('"ternary"', '"qbench:float"'))
    code, out, err = run_cli(capsys, "run", "--matrix", str(path), "--out", str(tmp_path / "out"), "--dry-run")
    assert code == 0, err
    assert "qbench:float" in out


def test_console_script_usage_error_has_no_traceback(tmp_path):
    path = write(tmp_path, MATRIX.replace('"gru"', '"gur"'))
    proc = subprocess.run(
        [sys.executable, "-c", "from qbench.cli import console_main; console_main()", "run", "--matrix", str(path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 4
    assert "Traceback" not in proc.stderr and "unknown cell 'gur'" in proc.stderr


def test_help_of_every_command(capsys):
    for command in ("run", "plugins", "list", "leaderboard"):
        code, out, _ = run_cli(capsys, command, "--help")
        assert code == 0 and "usage: qbench " + command in out
    code, out, _ = run_cli(capsys)
    assert code == 4 and "COMMAND" in out


def test_plugins_check_passes_builtins_and_flags_a_broken_quantizer(capsys, fake_distribution):
    code, out, _ = run_cli(capsys, "plugins", "--check")
    assert code == 0 and "all ok" in out
    source = textwrap.dedent(
        """
        import qbench
        class Leaky(qbench.Quantizer):
            name = "leaky"
            def quantize(self, w, ctx):
                return w * 0.3  # not in the declared set
            def bits_per_weight(self):
                return 1
            def value_set(self, ctx):
                return (-1.0, 1.0)
        @qbench.hookimpl
        def qbench_register_quantizers():
            return [Leaky]
        """
    )
    fake_distribution("leaky-dist", {"leaky": "leaky_plugin"}, {"leaky_plugin": source})
    code, out, _ = run_cli(capsys, "plugins", "--check")
    assert code == 1
    assert "FAIL quantizer leaky (leaky): quantize returned values outside value_set" in out


# ---- plugin code that raises SystemExit or KeyboardInterrupt (issue 26): never a silent exit 0, never a fake Ctrl-C

_EXITING_QUANTIZER = """
import sys
import qbench
class Quits(qbench.Quantizer):
    name = "quits"
    def quantize(self, w, ctx):
        if {when}:  # a layer of the case (hidden 16), not the matrix's probe of 6 x 6 tensors
            {action}
        return w
    def bits_per_weight(self):
        return 32
@qbench.hookimpl
def qbench_register_quantizers():
    {hook}
    return [Quits]
"""


def _exiting_plugin(fake_distribution, at_import: str = "", hook: str = "pass", action: str = "return w",
                    when: str = "w.numel() > 36") -> Path:  # fmt: skip
    source = at_import + "\n" + _EXITING_QUANTIZER.format(hook=hook, action=action, when=when)
    return fake_distribution("quits-dist", {"quits": "quits_plugin"}, {"quits_plugin": source}) / "quits_plugin.py"


@pytest.mark.parametrize(("at_import", "hook", "raised"), [
    ("import sys; sys.exit(0)", "pass", "SystemExit(0)"),
    ("raise KeyboardInterrupt", "pass", "KeyboardInterrupt raised by plugin code"),
    ("", "sys.exit(0)", "SystemExit(0)"),
    ("", "raise KeyboardInterrupt", "KeyboardInterrupt raised by plugin code"),
], ids=["sys-exit-at-import", "ctrl-c-at-import", "sys-exit-in-hook", "ctrl-c-in-hook"])
def test_a_plugin_exiting_at_load_is_reported_like_any_broken_plugin(tmp_path, capsys, fake_distribution, at_import,
                                                                     hook, raised):  # fmt: skip
    """Never a silent exit 0, never a fake Ctrl-C (exit 2): the same exit and report as a plugin that
    raises RuntimeError at the same place, naming the plugin and what it raised."""
    matrix = write(tmp_path, MATRIX)
    commands = (["list", "quantizers"], ["plugins", "--check"], ["plugins"],
                ["run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "--dry-run"])  # fmt: skip
    module = _exiting_plugin(fake_distribution, at_import, hook)
    exiting = module.read_text()
    module.write_text(exiting.replace("import sys; sys.exit(0)", "raise RuntimeError('boom')")
                      .replace("sys.exit(0)", "raise RuntimeError('boom')")
                      .replace("raise KeyboardInterrupt", "raise RuntimeError('boom')"))  # fmt: skip
    expected = [run_cli(capsys, *argv)[0] for argv in commands]
    sys.modules.pop("quits_plugin", None)
    shutil.rmtree(module.parent / "__pycache__", ignore_errors=True)
    module.write_text(exiting)
    importlib.invalidate_caches()
    for argv, code_of_a_broken_plugin in zip(commands, expected, strict=True):
        code, out, err = run_cli(capsys, *argv)
        assert code == code_of_a_broken_plugin, (argv, out, err)
        assert code not in (2, 3), (argv, out, err)
        assert "plugin 'quits'" in out + err and raised in out + err, (argv, out, err)
        assert "Traceback" not in out + err and "interrupted" not in err


@pytest.mark.parametrize("action", ["sys.exit(0)", "raise KeyboardInterrupt('fake')", "raise SystemExit(3)"])
def test_a_plugin_exiting_inside_a_case_is_that_case_s_error(tmp_path, capsys, fake_distribution, data_cache,
                                                             monkeypatch, action):  # fmt: skip
    from qbench.store import Store
    from tests.matrices import matrix_toml

    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    _exiting_plugin(fake_distribution, action=action)
    matrix = tmp_path / "m.toml"
    matrix.write_text(matrix_toml("quits", quantizers=("float", "quits"), epochs=1, batch=8, bptt=10, max_steps=2,
                                  eval_tokens=100, hardware_tokens=50))  # fmt: skip
    code, out, err = run_cli(capsys, "run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "--no-progress",
                             "--workers", "1")  # fmt: skip
    assert code == 1, err  # a case failed; the other one is stored ok: not 0, not 2 (interrupted)
    assert "interrupted" not in err and "Traceback" not in err
    with Store.read_only(tmp_path / "out" / "qbench.sqlite") as store:
        records = {r["quantizer"]: r for r in store.records()}
    assert records["float"]["status"] == "ok"
    assert records["quits"]["status"] == "error"
    assert ("SystemExit" in records["quits"]["error"]) or ("not by a Ctrl-C" in records["quits"]["error"])


def test_plugins_check_reports_a_quantizer_that_exits_as_its_finding(capsys, fake_distribution):
    _exiting_plugin(fake_distribution, action="sys.exit(0)", when="True")
    code, out, err = run_cli(capsys, "plugins", "--check")
    assert code == 1, out + err
    assert "quantizer quits (quits)" in out and "SystemExit(0)" in out and "Traceback" not in out + err
