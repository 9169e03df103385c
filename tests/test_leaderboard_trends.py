"""Trend views: the paired difference against a swept parameter, the validation gap by epoch,
their pages and their recomputation by ``qbench validate``."""

from __future__ import annotations

import json

import pytest

from qbench import record as R
from qbench.leaderboard import load_runs, write_leaderboards
from qbench.leaderboard.audit.validate import validate_directory
from qbench.leaderboard.compute.trends import compute_trends
from qbench.leaderboard.render.writers import table_rows
from tests.synthetic import make_record

HIDDEN = (64, 128, 256)


def consistent(report) -> bool:
    """Every published value agrees with the runs (a folder written without a store is untraced,
    which validate reports as a problem of its own since issue 26)."""
    return report.untraced and [p for p in report.problems if not p.startswith("store: no store file")] == []

#: test_bpc by (quantizer, hidden, seed): ternary's gap to float is 0.1, 0.2, 0.3 plus a per-seed wobble
WOBBLE = {0: 0.0, 1: 0.01, 2: -0.01}


def _record(quantizer: str, hidden: int, seed: int, value: float, curve: list[float]) -> dict:
    record = make_record(quantizer, "gru(hidden=128)", "pydoc-char", seed, metric=value)
    record[R.CELL_PARAMS] = {"hidden": hidden, "batch_norm": True}
    record[R.CELL_LABEL] = f"gru(batch_norm=true,hidden={hidden})"
    record[R.CASE_ID] = f"{quantizer}-h{hidden}-s{seed}"
    record[R.CURVE] = [{"epoch": e + 1, "train_loss": 1.0, "valid_bpc": v} for e, v in enumerate(curve)]
    return record


def swept_records() -> list[dict]:
    records = []
    for hidden in HIDDEN:
        gap = {64: 0.1, 128: 0.2, 256: 0.3}[hidden]
        for seed in range(3):
            base = 2.0 + seed * 0.05
            records.append(_record("float", hidden, seed, base, [3.0, 2.5]))
            records.append(_record("ternary(stochastic=false)", hidden, seed, base + gap + WOBBLE[seed],
                                   [3.0 + gap, 2.5 + 2 * gap]))  # fmt: skip
    return records


def test_the_gap_follows_the_swept_parameter_with_hand_checked_intervals():
    trends = compute_trends(load_runs(swept_records()), "float")
    rows = trends.rows
    assert list(rows["parameter"].unique()) == ["cell.hidden"]
    assert list(rows["context"].unique()) == ["gru(batch_norm=true)"]
    assert rows["value"].tolist() == [64.0, 128.0, 256.0]
    assert rows["diff_mean"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert rows["n"].tolist() == [3, 3, 3]
    # diffs gap + (0, 0.01, -0.01): std 0.01, ci95 = t(0.975, 2) * 0.01 / sqrt(3)
    assert rows["diff_ci95"].tolist() == pytest.approx([4.302653 * 0.01 / 3**0.5] * 3, rel=1e-5)
    epochs = trends.epochs
    at = epochs[(epochs["cell_label"] == "gru(batch_norm=true,hidden=256)")]
    assert at["epoch"].tolist() == [1, 2]
    assert at["diff_mean"].tolist() == pytest.approx([0.3, 0.6])
    assert at["metric"].unique().tolist() == ["valid_bpc"]


def test_a_boolean_or_a_single_value_is_no_sweep():
    records = [r for r in swept_records() if r[R.CELL_PARAMS]["hidden"] == 128]
    assert compute_trends(load_runs(records), "float").empty
    flags = []
    for stochastic in (False, True):
        for seed in range(2):
            record = make_record("ternary(stochastic=true)" if stochastic else "ternary(stochastic=false)",
                                 seed=seed)  # fmt: skip
            flags.append(record)
        flags += [make_record("float", seed=s) for s in range(2)]
    assert compute_trends(load_runs(flags), "float").empty


def test_pages_json_and_validate_carry_the_trends(tmp_path):
    out = tmp_path / "board"
    write_leaderboards(swept_records(), out, "sweep")
    markdown = (out / "leaderboard.md").read_text(encoding="utf-8")
    assert "### Trends" in markdown
    assert "| ternary(stochastic=false) | +0.1 ± 0.025 (n=3) | +0.2 ± 0.025 (n=3) | +0.3 ± 0.025 (n=3) |" in markdown
    assert "valid\\_bpc difference to float by epoch" in markdown
    html = (out / "leaderboard.html").read_text(encoding="utf-8")
    assert "<h3>Trends</h3>" in html and "trend-cell-hidden" in json.dumps(json.loads(
        (out / "leaderboard.json").read_text(encoding="utf-8"))["files"])  # fmt: skip
    assert consistent(validate_directory(out))
    from qbench import schemas

    assert schemas.check(json.loads((out / "leaderboard.json").read_text(encoding="utf-8")),
                         schemas.load("leaderboard", 1)) == []  # fmt: skip
    # a published trend value that the runs do not give is caught
    document = json.loads((out / "leaderboard.json").read_text(encoding="utf-8"))
    rows = table_rows(document["trends"])
    assert rows[0]["case_ids"] == ["ternary(stochastic=false)-h64-s0", "ternary(stochastic=false)-h64-s1",
                                   "ternary(stochastic=false)-h64-s2"]  # fmt: skip
    position = document["trends"]["columns"].index("diff_mean")
    document["trends"]["rows"][0][position] = 0.5
    (out / "leaderboard.json").write_text(json.dumps(document), encoding="utf-8")
    report = validate_directory(out)
    assert any("trends:" in p and "diff_mean" in p for p in report.problems), report.problems


def test_a_leaderboard_without_a_sweep_has_no_trend_anything(tmp_path):
    records = [r for r in swept_records() if r[R.CELL_PARAMS]["hidden"] == 64]
    write_leaderboards(records, tmp_path, "no sweep", plots=False)
    document = json.loads((tmp_path / "leaderboard.json").read_text(encoding="utf-8"))
    assert "trends" not in document and "epoch_gaps" not in document
    assert "Trends" not in (tmp_path / "leaderboard.md").read_text(encoding="utf-8")


def test_a_quantizer_parameter_and_a_dataset_parameter_sweep(tmp_path):
    records = []
    for seed in range(2):
        for bits, gap in ((2, 0.4), (4, 0.1), (8, 0.0)):
            record = make_record("ternary(stochastic=false)", seed=seed, metric=2.0 + gap + 0.01 * seed)
            record[R.QUANTIZER] = "fixed-point"
            record[R.QUANTIZER_PARAMS] = {"bits": bits, "stochastic": False}
            record[R.QUANTIZER_LABEL] = f"fixed-point(bits={bits})"
            record[R.CASE_ID] = f"fp{bits}-s{seed}"
            records.append(record)
        records.append(make_record("float", seed=seed, metric=2.0))
    rows = compute_trends(load_runs(records), "float").rows
    assert rows["parameter"].unique().tolist() == ["quantizer.bits"]
    assert rows["method"].unique().tolist() == ["fixed-point"]  # stochastic was not in the labels
    assert rows["diff_mean"].tolist() == pytest.approx([0.405, 0.105, 0.005])  # seed 1 adds 0.01

    by_size = []
    for seed in range(2):
        for size, gap in ((1000, 0.3), (2000, 0.2)):
            for quantizer, value in (("float", 2.0), ("ternary(stochastic=false)", 2.0 + gap)):
                record = make_record(quantizer, seed=seed, metric=value + 0.01 * seed * (quantizer == "float"))
                record[R.DATASET_PARAMS] = {"max_chars": size}
                record[R.DATASET_LABEL] = f"pydoc-char(max_chars={size})"
                record[R.CASE_ID] = f"{quantizer}-{size}-s{seed}"
                by_size.append(record)
    trends = compute_trends(load_runs(by_size), "float")
    assert trends.rows["dataset_label"].unique().tolist() == ["pydoc-char"]
    assert trends.rows["value"].tolist() == [1000.0, 2000.0]
    write_leaderboards(by_size, tmp_path, "sizes")
    markdown = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    assert "## pydoc-char: trends across its parameter" in markdown
    assert "max\\_chars=1000" in markdown or "max_chars=1000" in markdown
    assert consistent(validate_directory(tmp_path))
    html = (tmp_path / "leaderboard.html").read_text(encoding="utf-8")
    section = html[html.index('id="trends-pydoc-char"'):]
    assert "<figcaption>pydoc char trend dataset max chars" in section  # its plot, in its section


def test_validate_rebuilds_the_epoch_gaps_from_the_stored_curves(tmp_path):
    from qbench.leaderboard import rebuild_from_store
    from qbench.store import Store

    with Store(tmp_path / "qbench.sqlite") as store:
        for record in swept_records():
            store.put(record)
    rebuild_from_store(tmp_path / "qbench.sqlite", tmp_path, "sweep", plots=False)
    assert validate_directory(tmp_path).ok
    document = json.loads((tmp_path / "leaderboard.json").read_text(encoding="utf-8"))
    position = document["epoch_gaps"]["columns"].index("diff_mean")
    document["epoch_gaps"]["rows"][0][position] += 0.1
    (tmp_path / "leaderboard.json").write_text(json.dumps(document), encoding="utf-8")
    problems = validate_directory(tmp_path).problems
    assert any("epoch_gaps" in p and "diff_mean" in p for p in problems), problems
