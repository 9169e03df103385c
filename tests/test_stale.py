"""Provenance and staleness: every component's distribution and version (hardware included) is in
every record, and a record made with another version of a plugin is shown ``stale`` by
``--dry-run`` and run again by ``run`` (case ids unchanged)."""

from __future__ import annotations

import importlib
import json
import sqlite3

import pytest

from qbench.cli import main

from .matrices import write_matrix_file

pytestmark = pytest.mark.slow

PLUGIN = """
import qbench

class Halve(qbench.Quantizer):
    name = "halve"
    description = "multiplies by one half"
    def quantize(self, w, ctx):
        return w * 0.5
    def bits_per_weight(self):
        return 32

@qbench.hookimpl
def qbench_register_quantizers():
    return [Halve]
"""


def records(out):
    with sqlite3.connect(out / "qbench.sqlite") as db:
        return {case_id: json.loads(text) for case_id, text in db.execute("SELECT case_id, record FROM records")}


def reversion(site, dist: str, old: str, new: str) -> None:
    """What ``pip install`` of a new version does to the metadata qbench reads."""
    info = site / f"{dist.replace('-', '_')}-{old}.dist-info"
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {new}\n")
    info.rename(site / f"{dist.replace('-', '_')}-{new}.dist-info")
    importlib.invalidate_caches()


def test_a_reversioned_plugin_marks_its_records_stale_and_run_reruns_them(tmp_path, capsys, fake_distribution):
    site = fake_distribution("halve-quant", {"halve": "halve_plugin"}, {"halve_plugin": PLUGIN}, version="1.0")
    matrix = write_matrix_file(tmp_path, "stale", quantizers=("float", "halve"), hardware=("energy",),
                               epochs=1, batch=16, bptt=20, max_steps=3, eval_tokens=500, hardware_tokens=100)
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    first = records(out)
    for record in first.values():
        plugins = record["provenance"]["plugins"]
        assert plugins["hardware:energy"]["distribution"] == "qbench"  # hardware is in the provenance
    halve_id = next(cid for cid, r in first.items() if r["quantizer"] == "halve")
    assert first[halve_id]["provenance"]["plugins"]["quantizer"]["version"] == "1.0"
    capsys.readouterr()

    reversion(site, "halve-quant", "1.0", "2.0")
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--dry-run"]) == 0
    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if line.startswith(halve_id))
    assert row.split()[-1] == "stale"
    assert "1 stored record(s) are stale" in captured.err

    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "made with another version of a component (quantizer 'halve': halve-quant 1.0 -> halve-quant 2.0)" in err
    assert "1 already stored, 1 to run" in err
    second = records(out)
    assert set(second) == set(first)  # case ids do not change
    assert second[halve_id]["provenance"]["plugins"]["quantizer"]["version"] == "2.0"
    other = next(cid for cid in first if cid != halve_id)
    assert second[other] == first[other]  # the unchanged component's record is resumed, not re-run


def test_a_name_that_now_means_another_distributions_component_is_refused_and_the_records_kept(
        tmp_path, capsys, fake_distribution):  # fmt: skip
    """The plugin a run used is gone and another distribution registers the same name: another model,
    so neither resumed nor replaced; --dry-run says so too."""
    site = fake_distribution("halve-quant", {"halve": "halve_plugin"}, {"halve_plugin": PLUGIN}, version="1.0")
    matrix = write_matrix_file(tmp_path, "moved", quantizers=("halve",), epochs=1, batch=16, bptt=20, max_steps=3,
                               eval_tokens=500, hardware_tokens=100)  # fmt: skip
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    first = records(out)
    capsys.readouterr()

    info = site / "halve_quant-1.0.dist-info"  # what uninstalling it and installing a fork does
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: halve-fork\nVersion: 1.0\n")
    info.rename(site / "halve_fork-1.0.dist-info")
    importlib.invalidate_caches()
    for options in (["--dry-run"], ["--no-progress"]):
        assert main(["run", "--matrix", str(matrix), "--out", str(out), *options]) == 4
        err = capsys.readouterr().err
        assert "quantizer 'halve' of 1 stored case(s) came from halve-quant, and 'halve' now names halve-fork's" in err
        assert "kept and not replaced" in err
    assert records(out) == first
