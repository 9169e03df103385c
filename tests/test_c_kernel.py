"""The c-kernel backend, `qbench export --target c`, and the Cortex-M3 target under QEMU (issue 27)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import qbench
from qbench.cli import main
from qbench.data import CLASSIFICATION
from qbench.testing.hardware import random_exported_model, random_sample

ROOT = Path(__file__).resolve().parents[1]
HARDWARE_RUN = ROOT / "results" / "hardware@cpu-2core"
needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                              reason="no C compiler (Debian: apt-get install gcc)")  # fmt: skip
CORTEX_TOOLS = {"arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi", "qemu-system-arm": "qemu-system-arm"}
MISSING = [f"{tool} (Debian: apt-get install {pkg})" for tool, pkg in CORTEX_TOOLS.items()
           if shutil.which(tool) is None]  # fmt: skip
needs_cortex = pytest.mark.skipif(bool(MISSING), reason="missing " + ", ".join(MISSING))


@needs_cc
def test_c_kernel_is_bit_exact_and_reports_sizes() -> None:
    model = random_exported_model("gru", "ternary", hidden=8, input_size=4, input_kind="features",
                                  task=CLASSIFICATION, batch_norm=True, layers=2)  # fmt: skip
    backend = qbench.create("hardware", "c-kernel", timing=False, cortex_m=False, rounding="stochastic")
    result = backend.measure(model, random_sample(model, length=7, sequences=4))
    assert result["c_exact"] == 1.0 and result["c_outputs_checked"] == result["c_outputs_checked"] > 0
    assert result["c_flash_bytes"] > result["c_weight_bytes"] > 0 and result["c_ram_bytes"] > result["c_stack_bytes"]
    assert result["c_ns_per_token"] is None and result["m3_status"] == "not run (cortex_m = false)"


@needs_cc
def test_c_kernel_times_against_torch_and_the_simulator() -> None:
    model = random_exported_model("rnn", "pow2-ternary", hidden=6, input_size=5)
    result = qbench.create("hardware", "c-kernel", cortex_m=False).measure(model, random_sample(model, length=30))
    assert result["c_exact"] == 1.0
    assert result["c_ns_per_token"] > 0 and result["c_vs_torch"] > 0 and result["c_vs_simulator"] > 0


def test_missing_compiler_is_unsupported_naming_the_package(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    model = random_exported_model("rnn", "ternary", hidden=3, input_size=3)
    with pytest.raises(qbench.Unsupported, match="apt-get install gcc"):
        qbench.create("hardware", "c-kernel").measure(model, random_sample(model, length=4))


def test_c_kernel_refuses_what_the_emitter_cannot_write() -> None:
    model = random_exported_model("rnn", "ternary", hidden=3, input_size=3)
    with pytest.raises(qbench.Unsupported, match="nonlinearity 'exact'"):
        qbench.create("hardware", "c-kernel", nonlinearity="exact").measure(model, random_sample(model, length=4))


@needs_cc
@needs_cortex
def test_cortex_m3_under_qemu_matches_the_simulator() -> None:
    model = random_exported_model("lstm", "exponential", hidden=5, input_size=4, input_kind="embedding")
    result = qbench.create("hardware", "c-kernel", timing=False).measure(model, random_sample(model, length=12))
    assert result["m3_status"] == "ok", result["m3_status"]
    assert result["m3_exact"] == 1.0 and result["m3_flash_bytes"] > 0 and result["m3_ram_bytes"] > 0
    assert result["m3_instructions_per_token"] > 0


# ---- qbench export ----------------------------------------------------------------------------


def test_export_refuses_bad_requests_before_any_work(tmp_path: Path, capsys) -> None:
    store = str(HARDWARE_RUN)
    assert main(["export", store, "--case", "nosuchcase", "--target", "c", "--out", str(tmp_path / "a")]) == 4
    assert "no record matches" in capsys.readouterr().err
    assert main(["export", store, "--method", "gru(hidden=64)/ternary", "--out", str(tmp_path / "b")]) == 4
    assert "--seed" in capsys.readouterr().err
    # a float model has no integer program: the record says so, nothing is retrained
    assert main(["export", store, "--method", "gru(hidden=64)/float", "--seed", "0", "--out", str(tmp_path / "c")]) == 4
    assert "no integer program" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["export", store, "--method", "gru(hidden=64)/ternary", "--seed", "0", "--out", str(busy)]) == 4
    assert "--force" in capsys.readouterr().err and (busy / "notes.txt").read_text() == "mine"
    assert main(["export", str(tmp_path / "nowhere"), "--case", "x", "--out", str(tmp_path / "d")]) == 4


@pytest.mark.slow
@needs_cc
@needs_cortex
def test_the_hardware_matrix_ternary_gru_runs_bit_exact_on_cortex_m3(tmp_path: Path, capsys) -> None:
    """The leaderboard row -> device path of docs/deploy.md, on the committed hardware run."""
    out = tmp_path / "gru-ternary"
    assert main(["export", str(HARDWARE_RUN), "--method", "gru(hidden=64)/ternary", "--seed", "0",
                 "--target", "c", "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "identical to the record" in printed
    readme = (out / "README.md").read_text()
    checked = int(readme.split("this machine: ")[1].split(" of ")[0])
    assert f"this machine: {checked} of {checked} outputs identical" in readme
    assert f"Cortex-M3 under QEMU (`make cortex-m`): qb selftest: {checked} of {checked} outputs identical" in readme
    assert "Cortex-M3 instructions per step" in readme
    assert "-fsanitize=undefined,address`: clean" in readme
    # a second export into the folder it wrote replaces its files without --force
    assert main(["export", str(HARDWARE_RUN), "--method", "gru(hidden=64)/ternary", "--seed", "0",
                 "--out", str(out), "--no-verify", "--vectors", "8"]) == 0  # fmt: skip


def test_export_refuses_a_retrained_model_that_is_not_the_records() -> None:
    from types import SimpleNamespace

    from qbench.commands.export import _check_reproduced, label_params
    from qbench.errors import UsageError

    record = {"case_id": "abc", "primary_metric": "test_bpc", "test_bpc": 3.5, "seed": 0,
              "provenance": {"numerics": "native", "cpu_model": "some CPU"}}  # fmt: skip
    same = SimpleNamespace(status="ok", exported=object(), metrics={"test_bpc": 3.5}, message="")
    other = SimpleNamespace(status="ok", exported=object(), metrics={"test_bpc": 3.5000001}, message="")
    assert "identical to the record" in _check_reproduced(record, same, False)
    with pytest.raises(UsageError, match="not the record's .*native numerics on some CPU"):
        _check_reproduced(record, other, False)
    assert "accepted" in _check_reproduced(record, other, True)
    assert label_params('shift-add(acc_bits=20,rounding="half-even")') == (
        "shift-add", {"acc_bits": 20, "rounding": "half-even"})
    assert label_params("c-kernel") == ("c-kernel", {})
