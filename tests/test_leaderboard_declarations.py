"""A leaderboard is a pure function of its records: what the components declare travels in each record.

The case runner writes the quantizer's baseline declaration and each backend's detail and leading
columns into the record (``declarations``); the leaderboard reads them from there and never
builds a plugin host. Old records (the committed results) carry none: the built-ins' declarations
are taken from a table kept equal to them here, and a component the table does not know is named
on the page with all its columns shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

import qbench
from qbench import record as R
from qbench.case_runner import backend_declarations
from qbench.leaderboard.compute.declarations import LEGACY_BACKENDS, LEGACY_BASELINES, gather, signature
from qbench.testing import registered_plugins

from .matrices import write_matrix_file

ROOT = Path(__file__).resolve().parents[1]


def test_the_legacy_table_is_the_builtins_own_declarations() -> None:
    host = qbench.get_host(load_entry_points=False)
    for name, entry in host.registry("hardware").items():
        declared = backend_declarations(entry.cls(), name, "")
        table = LEGACY_BACKENDS[name]
        assert table["detail_columns"] == declared["detail_columns"], name
        assert table["leading_columns"] == declared["leading_columns"], name
        assert table["cost_axes"] == list(entry.cls.cost_axes), name
    baselines = [n for n, e in host.registry("quantizer").items() if getattr(e.cls, "baseline", False) is True]
    assert list(LEGACY_BASELINES) == baselines


def test_a_backend_declares_its_columns_with_the_records_suffix() -> None:
    backend = types.SimpleNamespace(columns={"a": "min", "b": "", "c": "max"}, headline=("a",), leading_columns=("c",))
    assert backend_declarations(backend, "ops", "@ops(x=1)") == {
        "backend": "ops", "detail_columns": ["b@ops(x=1)", "c@ops(x=1)"], "leading_columns": ["c@ops(x=1)"]}
    backend.headline = None  # no headline: every column is a headline column
    assert backend_declarations(backend, "ops", "")["detail_columns"] == []


def test_old_records_of_unknown_components_are_named_and_their_columns_kept() -> None:
    legacy = [signature(None, "float", ["shift-add"], "ok", None), signature(None, "mystery", ["acme-ops"], "ok", None)]
    declared = gather(set(legacy), [])
    assert declared.baseline == "float"
    assert "sim_exact" in declared.detail_columns and not any("acme" in c for c in declared.detail_columns)
    assert declared.leading_columns[:2] == ("mults", "adds")
    assert declared.unknown_backends == ("acme-ops",) and "acme-ops" in declared.notes[0]
    # a failed case of an unknown backend shows no columns of it: nothing to say
    assert gather({signature(None, "float", ["acme-ops"], "error", None)}, []).notes == []


def test_new_records_declarations_win_and_the_baseline_is_the_first_by_name() -> None:
    def made(quantizer: str, baseline: bool) -> Any:
        return signature({R.QUANTIZER: {"name": quantizer, "baseline": baseline},
                          R.HARDWARE: {"ops": {"backend": "ops", "detail_columns": ["x"], "leading_columns": ["y"]}}},
                         quantizer, ["ops"], "ok", ["y"])  # fmt: skip

    declared = gather({made("zeta-float", True), made("alpha-float", True), made("ternary", False)}, ["y"])
    assert declared.baseline == "alpha-float"
    assert declared.detail_columns == {"x"} and declared.leading_columns == ("y",) and declared.cost_axes == ("y",)
    assert declared.notes == []


# ---- a run folder built and validated where the run's plugins are not installed ---------------------


class Ops(qbench.HardwareBackend):
    """Counts nothing real: two columns, one of them a detail the Markdown leaves out."""

    name: ClassVar[str] = "plugin-ops"
    description: ClassVar[str] = "a test backend that lives in the test process only"
    columns: ClassVar[dict[str, str]] = {"plugin_cost": "min", "plugin_detail": "min"}
    headline: ClassVar[tuple[str, ...] | None] = ("plugin_cost",)
    cost_axes: ClassVar[tuple[str, ...]] = ("plugin_cost",)
    leading_columns: ClassVar[tuple[str, ...]] = ("plugin_cost",)

    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        return {"plugin_cost": float(len(model.layers)), "plugin_detail": 1.0}


def _test_plugin() -> types.SimpleNamespace:
    from qbench_builtins.quantizers.connect import FloatQuantizer

    reference = type("PluginFloat", (FloatQuantizer,), {"name": "plugin-float", "baseline": True})
    plugin = types.SimpleNamespace(__name__="process-only")
    for hook, found in (("quantizers", [reference]), ("hardware", [Ops])):
        setattr(plugin, f"qbench_register_{hook}",
                qbench.hookimpl(specname=f"qbench_register_{hook}")(lambda found=found: list(found)))  # fmt: skip
    return plugin


#: the CLI with no plugin at all: no entry point of the qbench group, the built-ins unimportable
WITHOUT_PLUGINS = """
import sys
from importlib import metadata
sys.modules["qbench_builtins"] = None
real = metadata.entry_points
metadata.entry_points = lambda **params: metadata.EntryPoints(()) if params.get("group") == "qbench" else real(**params)
from qbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli_without_plugins(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", WITHOUT_PLUGINS, *args], capture_output=True, text=True,
                          env=env, timeout=300, check=False)  # fmt: skip


@pytest.mark.slow
def test_a_run_folder_builds_and_validates_without_the_runs_plugins(tmp_path, data_cache, monkeypatch, capsys):
    from qbench.cli import main
    from qbench.driver import RunOptions, run_matrix

    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    matrix = write_matrix_file(tmp_path, "apart", quantizers=("plugin-float", "ternary"),
                               cells=(("rnn", {"hidden": 8}),), datasets=(("pydoc-char", {"max_chars": 20000}),),
                               hardware=("plugin-ops",), seeds=(0, 1), epochs=1, batch=16, bptt=20, max_steps=2,
                               eval_tokens=300)  # fmt: skip
    out = tmp_path / "run"
    with registered_plugins(_test_plugin(), load_entry_points=False) as host:
        assert run_matrix(matrix, RunOptions(out=out, workers=1, progress=False), host=host) == 0
    markdown = (out / "leaderboard.md").read_text()
    assert "Against the plugin-float baseline" in markdown  # the records' baseline declaration
    assert "plugin_cost" in markdown and "plugin_detail" not in markdown  # the backend's headline
    assert "plugin_detail" in (out / "leaderboard.csv").read_text()
    assert (out / "plots").is_dir() and any("plugin" in p.name for p in (out / "plots").iterdir())  # its cost axis

    capsys.readouterr()
    expected_code = main(["validate", str(out)])
    expected = capsys.readouterr().out
    found = _cli_without_plugins("validate", str(out))
    assert (found.returncode, found.stdout) == (expected_code, expected), found.stderr
    assert expected_code == 0

    rebuilt = tmp_path / "rebuilt"
    made = _cli_without_plugins("leaderboard", "--store", str(out / "qbench.sqlite"), "--out", str(rebuilt))
    assert made.returncode == 0, made.stderr
    published = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.name.startswith("leaderboard"))
    published += sorted(p.relative_to(out) for p in (out / "plots").iterdir())
    assert len(published) >= 5
    for relative in published:
        assert (rebuilt / relative).read_bytes() == (out / relative).read_bytes(), relative
    assert json.loads((rebuilt / "leaderboard.json").read_text())["files"] == \
        json.loads((out / "leaderboard.json").read_text())["files"]  # fmt: skip
