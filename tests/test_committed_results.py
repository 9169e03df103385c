"""Every committed result folder can be packed with the matrix its run read.

A matrix edited after its committed run (even a comment) no longer has the run's ``matrix_hash``,
and ``qbench pack`` then leaves it out of the bundle: edit a matrix only together with a re-run
of its folder (``results/README.md`` gives each folder's command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qbench.publish.bundle import find_matrix

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(path for path in (ROOT / "results").glob("*@*") if (path / "run.json").is_file())


@pytest.mark.parametrize("folder", FOLDERS, ids=[path.name for path in FOLDERS])
def test_the_matrix_a_committed_run_read_is_still_there(folder, monkeypatch):
    monkeypatch.chdir(ROOT)
    run_info = json.loads((folder / "run.json").read_text())
    assert find_matrix(folder, run_info) is not None, (
        f"{run_info.get('matrix_path')} no longer has the sha256 {folder.name}'s run read: revert the edit "
        "or re-run the folder")


def test_there_are_committed_results():
    assert len(FOLDERS) >= 5
