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


# -- contrasts: how moving the parameter changes the difference, paired by seed ----------------------


def test_contrasts_pair_every_two_values_by_seed_with_hand_checked_changes():
    contrasts = compute_trends(load_runs(swept_records()), "float").contrasts
    pairs = list(zip(contrasts["from_value"], contrasts["to_value"], strict=True))
    assert pairs == [(64.0, 128.0), (64.0, 256.0), (128.0, 256.0)]
    # the wobble is the same seed by seed at every size, so each change is exact and has no spread
    assert contrasts["change_mean"].tolist() == pytest.approx([0.1, 0.2, 0.1])
    assert contrasts["n"].tolist() == [3, 3, 3]
    assert set(contrasts["test"]) == {"sign-flip"}
    # three seeds: the sign-flip test's smallest p-value is 0.25, so nothing is decided
    assert set(contrasts["verdict"]) == {"inconclusive"}


def _many_seed_records(gaps: dict[int, float], seeds: int = 8) -> list[dict]:
    records = []
    for hidden, gap in gaps.items():
        for seed in range(seeds):
            base = 2.0 + seed * 0.05
            wobble = 0.002 * ((seed * 7) % 5 - 2)  # differs seed by seed, and between sizes below
            records.append(_record("float", hidden, seed, base, [3.0]))
            records.append(_record("ternary(stochastic=false)", hidden, seed,
                                   base + gap + wobble * (1 if hidden == 64 else -1), [3.0 + gap]))  # fmt: skip
    return records


def test_a_change_beyond_the_margin_rises_and_one_within_it_has_no_effect():
    from qbench.protocol import Protocol

    protocol = Protocol(seeds=tuple(range(8)), baseline="float",
                        margins=(("pydoc-char", "test_bpc", 0.05),))  # fmt: skip
    rises = compute_trends(load_runs(_many_seed_records({64: 0.1, 128: 0.4})), "float", protocol).contrasts
    assert rises["verdict"].tolist() == ["rises"]
    assert rises["margin"].tolist() == [0.05]
    flat = compute_trends(load_runs(_many_seed_records({64: 0.1, 128: 0.1})), "float", protocol).contrasts
    assert flat["verdict"].tolist() == ["no effect"]
    falls = compute_trends(load_runs(_many_seed_records({64: 0.4, 128: 0.1})), "float", protocol).contrasts
    assert falls["verdict"].tolist() == ["falls"]
    # without a margin, no change found is never "no effect"
    unmargined = compute_trends(load_runs(_many_seed_records({64: 0.1, 128: 0.1})), "float").contrasts
    assert unmargined["verdict"].tolist() == ["inconclusive"]


def test_pages_and_validate_carry_the_contrasts(tmp_path):
    out = tmp_path / "board"
    write_leaderboards(_many_seed_records({64: 0.1, 128: 0.4}), out, "sweep", plots=False)
    markdown = (out / "leaderboard.md").read_text(encoding="utf-8")
    assert "Contrasts: how moving cell.hidden changes the test\\_bpc difference" in markdown
    assert "| ternary(stochastic=false) | hidden=64 to 128 | +0.3" in markdown
    assert "Contrasts: how moving" in (out / "leaderboard.html").read_text(encoding="utf-8")
    assert consistent(validate_directory(out))
    # a published contrast the trend rows do not give is caught: the verdict, then the change
    for column, value in (("verdict", "no effect"), ("change_mean", 0.01)):
        document = json.loads((out / "leaderboard.json").read_text(encoding="utf-8"))
        kept = json.dumps(document)
        position = document["trend_contrasts"]["columns"].index(column)
        document["trend_contrasts"]["rows"][0][position] = value
        (out / "leaderboard.json").write_text(json.dumps(document), encoding="utf-8")
        report = validate_directory(out)
        assert any("trend_contrasts:" in p and column in p for p in report.problems), report.problems
        (out / "leaderboard.json").write_text(kept, encoding="utf-8")


# -- curve points far above what a working model reaches get a sentence ------------------------------


def _curve_record(quantizer: str, seed: int, final: float, curve: list[tuple[float, float]]) -> dict:
    record = make_record(quantizer, "gru(hidden=128)", "pydoc-char", seed, metric=final)
    record[R.CASE_ID] = f"{quantizer}-curve-{seed}"
    record["valid_bpc"] = final
    record[R.CURVE] = [{"epoch": e + 1, "train_loss": loss, "valid_bpc": valid}
                       for e, (loss, valid) in enumerate(curve)]  # fmt: skip
    return record


def test_cold_start_and_unlearned_points_get_a_sentence_and_normal_curves_none(tmp_path):
    from qbench.leaderboard.compute.curvenotes import curve_notes

    normal = [_curve_record("float", s, 2.1, [(1.9, 2.9), (1.5, 2.1)]) for s in range(2)]
    assert curve_notes(load_runs(normal), "float") == {}
    # epoch 1 at 10.2 bits against a training loss of at most 1.9 nats (2.74 bits): a cold start
    cold = _curve_record("ternary(stochastic=false)", 0, 2.3, [(1.9, 10.2), (1.6, 2.3)])
    # a binary model whose training loss (3.95 nats = 5.70 bits) is as high as its validation: not learned
    flat = _curve_record("binary(stochastic=false)", 0, 5.6, [(3.95, 5.65), (3.9, 5.6)])
    notes = curve_notes(load_runs([*normal, cold, flat]), "float")["pydoc-char"]
    assert len(notes) == 2
    assert any("cold start" in n and "10.20" in n and "1 run(s)" in n for n in notes)
    assert any("had not learned" in n and "binary(stochastic=false)" in n and "2 validation point(s)" in n
               for n in notes)  # fmt: skip
    write_leaderboards([*normal, cold, flat], tmp_path, "curves", plots=False)
    assert "cold start" in (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    assert "cold start" in (tmp_path / "leaderboard.html").read_text(encoding="utf-8")
    assert any("cold start" in n for n in json.loads((tmp_path / "leaderboard.json").read_text())["notes"])
