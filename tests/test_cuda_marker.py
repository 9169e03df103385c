"""The ``cuda`` marker: CUDA variants are deselected (one summary line), never skipped, without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, gpu: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(f"""
        import tests.conftest as shared

        shared._cuda_available = lambda: {gpu}
        pytest_collection_modifyitems = shared.pytest_collection_modifyitems
        pytest_terminal_summary = shared.pytest_terminal_summary
        """)
    )
    (tmp_path / "test_demo.py").write_text(
        textwrap.dedent("""
        import pytest

        def test_cpu():
            pass

        @pytest.mark.cuda
        def test_gpu_function():
            pass

        @pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
        def test_device(device):
            pass
        """)
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    cuda: needs a GPU\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )


@pytest.mark.slow
def test_cuda_variants_are_deselected_with_one_line_without_a_gpu(tmp_path: Path) -> None:
    done = _run(tmp_path, gpu=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed, 2 deselected" in done.stdout
    assert "skipped" not in done.stdout
    lines = [line for line in done.stdout.splitlines() if line.startswith("cuda: ")]
    assert lines == ["cuda: 2 CUDA variants deselected (torch sees no GPU here; they run where one is)"]


@pytest.mark.slow
def test_cuda_variants_run_where_there_is_a_gpu(tmp_path: Path) -> None:
    done = _run(tmp_path, gpu=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout and "deselected" not in done.stdout and "cuda: " not in done.stdout
