"""``qbench compare A B --gaps``: how a method's gap to the baseline moves between two arms of a
study, paired by seed and judged as the leaderboard judges a method."""

from __future__ import annotations

import pytest

from qbench import record as R
from qbench.cli import main
from qbench.leaderboard import write_leaderboards
from qbench.leaderboard.audit.compare import gap_changes
from qbench.protocol import Protocol
from tests.synthetic import make_record


def arm(gap: float, cell: str = "gru(hidden=128)", seeds: int = 8, tilt: float = 1.0) -> list[dict]:
    records = []
    for seed in range(seeds):
        base = 2.0 + 0.05 * seed
        wobble = tilt * 0.002 * ((seed * 7) % 5 - 2)
        for quantizer, value in (("float", base), ("ternary(stochastic=false)", base + gap + wobble)):
            record = make_record(quantizer, cell, "pydoc-char", seed, metric=value)
            record[R.CASE_ID] = f"{quantizer}-{cell}-{seed}"
            records.append(record)
    return records


MARGIN = Protocol(seeds=tuple(range(8)), baseline="float", margins=(("pydoc-char", "test_bpc", 0.05),))


def test_the_gap_change_is_paired_by_seed_and_judged_against_the_margin():
    rises = gap_changes(arm(0.1), arm(0.4, tilt=-1.0), protocols=(MARGIN, MARGIN))
    assert rises["quantizer_label"].tolist() == ["ternary(stochastic=false)"]
    assert rises["change_mean"].tolist() == pytest.approx([0.3])
    assert rises["n"].tolist() == [8] and rises["verdict"].tolist() == ["rises"]
    flat = gap_changes(arm(0.1), arm(0.1, tilt=-1.0), protocols=(MARGIN, MARGIN))
    assert flat["verdict"].tolist() == ["no effect"]
    # no margin declared: no change found is inconclusive, never "no effect"
    assert gap_changes(arm(0.1), arm(0.1, tilt=-1.0))["verdict"].tolist() == ["inconclusive"]
    # three seeds: the sign-flip test decides, and cannot reach 0.05
    few = gap_changes(arm(0.1, seeds=3), arm(0.4, seeds=3, tilt=-1.0), protocols=(MARGIN, MARGIN))
    assert few["test"].tolist() == ["sign-flip"] and few["verdict"].tolist() == ["inconclusive"]


def test_arms_that_differ_in_the_cell_pair_by_quantizer_only():
    a, b = arm(0.1), arm(0.4, cell="lstm(hidden=128)", tilt=-1.0)
    assert gap_changes(a, b).empty  # the labels differ
    table = gap_changes(a, b, match="quantizer")
    assert table["a_cell"].tolist() == ["gru(hidden=128)"]
    assert table["b_cell"].tolist() == ["lstm(hidden=128)"]
    assert table["change_mean"].tolist() == pytest.approx([0.3])


def test_the_command_prints_the_gap_table(tmp_path, capsys):
    write_leaderboards(arm(0.1), tmp_path / "a", "a", plots=False)
    write_leaderboards(arm(0.4, tilt=-1.0), tmp_path / "b", "b", plots=False)
    code = main(["compare", str(tmp_path / "a" / "leaderboard.json"), str(tmp_path / "b" / "leaderboard.json"),
                 "--gaps", "--threshold", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "change of the gap (B - A, paired by seed)" in out
    assert "+0.3 ± " in out and "rises" in out
