"""Bracketed tuning: a choice at an edge of an ordered grid is extended on the grid's own spacing,
decided from the store in rounds (resumable, reusing stored cases), and flagged when it stays there.

The planner and the pages are driven with records made from each case (a validation value that is
a function of the method and the learning rate), so the methods' optima are known exactly and no
training is needed: float's optimum lies inside the grid, ternary's beyond its top edge.
"""

from __future__ import annotations

import json
import math

import pytest

from qbench.cli import main
from qbench.expanded import ExpandedMatrix
from qbench.grids import extension_value, ordered_values
from qbench.matrix import load_matrix
from qbench.planning import bracket_lines, next_cases
from qbench.protocol import Observation, Protocol, canonical, select
from qbench.store import Store
from tests.synthetic import make_record

from .matrices import write_matrix_file

GRID = (0.005, 0.01, 0.02)


def test_extension_values_follow_the_grids_own_spacing():
    assert extension_value([0.005, 0.01, 0.02], "top") == 0.04  # geometric: ratio 2
    assert extension_value([0.005, 0.01, 0.02], "bottom") == 0.0025
    assert extension_value([0.001, 0.003, 0.01], "top") == pytest.approx(0.0333333)  # the outermost ratio
    assert extension_value([16, 32, 64], "top") == 128 and isinstance(extension_value([16, 32, 64], "top"), int)
    assert extension_value([-1.0, 0.0, 1.0], "top") == 2.0  # not all positive: arithmetic
    assert extension_value([1, 2], "bottom") == 0  # 1 / 2 rounds to 0 for an integer grid
    assert ordered_values([0.1, 0.2]) and not ordered_values([True, False]) and not ordered_values(["a", "b"])
    assert not ordered_values([0.1])


def _obs(quantizer, lr, valid):
    return Observation(("d", "gru", quantizer), quantizer, canonical({"train.lr": lr}), 0, "ok", valid, math.nan)


def test_selection_extends_only_the_method_at_an_edge_and_stops_after_extend_steps():
    protocol = Protocol(seeds=(0, 1, 2), grid=(("train.lr", GRID),), baseline="float", extend=2)
    rows = [_obs("float", 0.005, 2.0), _obs("float", 0.01, 1.9), _obs("float", 0.02, 1.95),
            _obs("ternary", 0.005, 2.0), _obs("ternary", 0.01, 1.9), _obs("ternary", 0.02, 1.8)]  # fmt: skip
    selections = select(rows, protocol, {"d": "min"})
    assert selections[("d", "gru", "float")].bracket == "bracketed"
    ternary = selections[("d", "gru", "ternary")]
    assert ternary.bracket == "extending" and ternary.pending == [canonical({"train.lr": 0.04})]
    # the point beyond is worse: the edge was the optimum, now bracketed
    done = select([*rows, _obs("ternary", 0.04, 1.85)], protocol, {"d": "min"})[("d", "gru", "ternary")]
    assert (done.bracket, done.chosen) == ("bracketed", canonical({"train.lr": 0.02}))
    assert [p.extension for p in done.points] == [0, 0, 0, 1]
    # still falling after two steps: flagged, no third step
    far = [*rows, _obs("ternary", 0.04, 1.7), _obs("ternary", 0.08, 1.6)]
    flagged = select(far, protocol, {"d": "min"})[("d", "gru", "ternary")]
    assert (flagged.bracket, flagged.chosen, flagged.pending) == ("unbracketed", canonical({"train.lr": 0.08}), [])
    assert flagged.edges == ["train.lr=0.08 (top edge)"]
    # extend = 0: the edge is flagged at once
    plain = select(rows, Protocol(seeds=(0, 1, 2), grid=(("train.lr", GRID),), extend=0), {"d": "min"})
    assert plain[("d", "gru", "ternary")].bracket == "unbracketed"


# -- the planner and the pages, from records made for each case -----------------------------------


def _valid(quantizer: str, lr: float, seed: int) -> float:
    """float's optimum at lr = 0.01 (inside the grid); ternary's at 0.04 (beyond the top edge)."""
    best = 0.01 if quantizer == "float" else 0.04
    return 1.8 + 0.1 * math.log(lr / best) ** 2 + 0.001 * seed


def _record(case, matrix_name):
    record = make_record("float", seed=case.seed)
    record.update({
        "case_id": case.case_id, "matrix": matrix_name, "seed": case.seed, "train": dict(case.train),
        "quantizer": case.quantizer.name, "quantizer_params": dict(case.quantizer.params),
        "quantizer_label": case.quantizer.label, "cell": case.cell.name, "cell_params": dict(case.cell.params),
        "cell_label": case.cell.label, "dataset": case.dataset.name, "dataset_params": dict(case.dataset.params),
        "dataset_label": case.dataset.label,
    })  # fmt: skip
    record["provenance"].pop("plugins")  # no versions: never stale against the installed components
    valid = _valid(case.quantizer.name, case.train["lr"], case.seed)
    record["valid_bpc"] = valid
    record["test_bpc"] = valid + 0.05 + (0.01 if case.quantizer.name == "ternary" else 0.0) * (case.seed % 3)
    return record


def _matrix(tmp_path, extend):
    path = write_matrix_file(tmp_path, f"bracket{extend}", quantizers=("float", "ternary"),
                             seeds={"min": 3, "max": 4, "precision": 0.5}, tune={"train.lr": list(GRID)},
                             epochs=1, batch=16, bptt=20)  # fmt: skip
    path.write_text(path.read_text().replace("[tune]", f"[tune]\nextend = {extend}"))
    return path, ExpandedMatrix.of(load_matrix(path))


def _drive(matrix, store: dict, stop_after: int | None = None) -> list[list[str]]:
    """Run the planner's rounds, storing a record for each case; ``stop_after``: store only that
    many cases of the next round and return (a SIGKILL in the middle of it)."""
    rounds = []
    while True:
        the_round = next_cases(matrix, lambda cases: {c.case_id: store[c.case_id] for c in cases
                                                      if c.case_id in store}, lambda cid, rec: True)  # fmt: skip
        if not the_round.cases:
            return rounds
        rounds.append([c.case_id for c in the_round.cases])
        assert not any(c.case_id in store for c in the_round.cases)  # never a stored case again
        for index, case in enumerate(the_round.cases):
            if stop_after is not None and index == stop_after:
                return rounds
            store[case.case_id] = _record(case, matrix.matrix.name)


def test_only_the_method_at_an_edge_is_extended_and_a_killed_round_resumes(tmp_path):
    _, matrix = _matrix(tmp_path, extend=2)
    complete: dict = {}
    _drive(matrix, complete)
    lrs = {(r["quantizer"], r["train"]["lr"]) for r in complete.values()}
    assert {lr for q, lr in lrs if q == "float"} == set(GRID)  # bracketed inside: nothing added
    assert {lr for q, lr in lrs if q == "ternary"} == {*GRID, 0.04, 0.08}  # 0.04 chosen, 0.08 brackets it
    # killed in the middle of the extension round: the resumed planner asks only for the rest
    interrupted: dict = {}
    while True:  # one case stored per start, then killed: every start resumes where the last stopped
        before = dict(interrupted)
        _drive(matrix, interrupted, stop_after=1)
        if interrupted == before:
            break
        assert all(interrupted[k] == v for k, v in before.items())
    assert set(interrupted) == set(complete)
    the_round = next_cases(matrix, lambda cases: {c.case_id: interrupted[c.case_id] for c in cases
                                                  if c.case_id in interrupted}, lambda cid, rec: True)  # fmt: skip
    assert the_round.phase == "done" and not bracket_lines(the_round.decisions)
    chosen = {m[2]: s.chosen for m, s in the_round.decisions.selections.items()}
    assert chosen == {"float": canonical({"train.lr": 0.01}), "ternary": canonical({"train.lr": 0.04})}


def _store_run(tmp_path, extend):
    path, matrix = _matrix(tmp_path, extend)
    records: dict = {}
    _drive(matrix, records)
    out = tmp_path / f"out{extend}"
    out.mkdir()
    with Store.in_dir(out) as store:
        for record in records.values():
            store.put(record)
        store.set_meta("protocol:" + matrix.matrix.name, json.dumps(matrix.protocol.as_dict(), sort_keys=True))
    return path, out, records


def test_with_extension_the_page_flags_nothing_and_counts_the_extra_runs(tmp_path):
    _, out, _ = _store_run(tmp_path, extend=2)
    assert main(["leaderboard", "--store", str(out / "qbench.sqlite"), "--out", str(out)]) == 0
    document = json.loads((out / "leaderboard.json").read_text())
    brackets = {row[2]: row for row in document["bracketing"]["rows"]}
    columns = document["bracketing"]["columns"]
    assert {q: row[columns.index("bracket")] for q, row in brackets.items()} == {"float": "bracketed",
                                                                                 "ternary": "bracketed"}
    budget = {row[2]: dict(zip(document["budget"]["columns"], row, strict=True)) for row in document["budget"]["rows"]}
    assert budget["ternary"]["extension_cases"] == 2 and budget["float"]["extension_cases"] == 0
    page = (out / "leaderboard.md").read_text()
    assert "(unbracketed)" not in page and "Unbracketed:" not in page and "| ternary  " in page
    assert main(["validate", str(out)]) == 0


def test_without_extension_the_edge_is_flagged_in_md_html_json_and_dry_run(tmp_path, capsys):
    path, out, records = _store_run(tmp_path, extend=0)
    assert {r["train"]["lr"] for r in records.values()} == set(GRID)
    assert main(["leaderboard", "--store", str(out / "qbench.sqlite"), "--out", str(out)]) == 0
    document = json.loads((out / "leaderboard.json").read_text())
    columns = document["bracketing"]["columns"]
    brackets = {row[2]: dict(zip(columns, row, strict=True)) for row in document["bracketing"]["rows"]}
    assert brackets["ternary"]["bracket"] == "unbracketed" and brackets["float"]["bracket"] == "bracketed"
    assert brackets["ternary"]["edges"] == "train.lr=0.02 (top edge)"
    page = (out / "leaderboard.md").read_text()
    assert "lr=0.02 (unbracketed)" in page and "Unbracketed: ternary" in page
    html = (out / "leaderboard.html").read_text()
    assert "lr=0.02 (unbracketed)" in html and "Unbracketed: ternary" in html
    capsys.readouterr()
    assert main(["run", "--matrix", str(path), "--out", str(out), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "unbracketed: pydoc-char(max_chars=20000) / rnn(hidden=16) / ternary: chose train.lr=0.02 (top edge)" in err
    assert "float: chose" not in err
    assert main(["validate", str(out)]) == 0


def test_extend_mistakes_are_usage_errors(tmp_path):
    from qbench.errors import MatrixError

    for text, message in (("extend = -1", "[tune] extend must be an integer from 0 to 10"),
                          ("extend = 1.5", "[tune] extend must be an integer")):  # fmt: skip
        path = write_matrix_file(tmp_path, "bad", quantizers=("float",), tune={"train.lr": [0.01, 0.02]})
        path.write_text(path.read_text().replace("[tune]", f"[tune]\n{text}"))
        with pytest.raises(MatrixError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_matrix(path)
    path = write_matrix_file(tmp_path, "bad", quantizers=("float",))
    path.write_text(path.read_text() + "\n[tune]\nextend = 2\n")
    with pytest.raises(MatrixError, match="tunes nothing"):
        load_matrix(path)
    # the default, written down in the protocol the store records
    assert load_matrix(write_matrix_file(tmp_path, "ok", tune={"train.lr": [0.01, 0.02]})).protocol.extend == 2
    assert Protocol.from_dict({"seeds": [0]}).extend == 0  # a store from before: no extension was run


def test_validate_fails_on_an_altered_validation_value_or_verdict(tmp_path, capsys):
    import shutil
    import sqlite3

    _, out, _ = _store_run(tmp_path, extend=2)
    assert main(["leaderboard", "--store", str(out / "qbench.sqlite"), "--out", str(out)]) == 0
    # a published verdict changed
    verdict_copy = tmp_path / "verdict"
    shutil.copytree(out, verdict_copy)
    path = verdict_copy / "leaderboard.json"
    document = json.loads(path.read_text())
    index = document["paired"]["columns"].index("verdict")
    document["paired"]["rows"][0][index] = "equivalent"
    path.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["validate", str(verdict_copy)]) == 1
    assert "verdict 'equivalent', the runs give 'inconclusive'" in capsys.readouterr().out
    # one stored validation value changed: the point beyond the edge now wins
    value_copy = tmp_path / "value"
    shutil.copytree(out, value_copy)
    db = sqlite3.connect(value_copy / "qbench.sqlite")
    for case_id, text in db.execute("SELECT case_id, record FROM records").fetchall():
        record = json.loads(text)
        if record["quantizer"] == "ternary" and record["train"]["lr"] == 0.08:
            record["valid_bpc"] = 0.5
            db.execute("UPDATE records SET record = ? WHERE case_id = ?", (json.dumps(record, sort_keys=True), case_id))
    db.commit()
    db.close()
    assert main(["validate", str(value_copy)]) == 1


def test_a_stored_extension_case_is_checked_for_staleness_like_a_grid_case(tmp_path):
    from qbench.protocol import possible_extensions

    _, matrix = _matrix(tmp_path, extend=2)
    assert sorted(p["train.lr"] for p in possible_extensions(matrix.protocol)) == [0.00125, 0.0025, 0.04, 0.08]
    every = {c.case_id for c in matrix.candidates(every_extension=True)}
    records: dict = {}
    _drive(matrix, records)
    assert set(records) <= every  # whatever a run reaches, the stale check looks at
    assert not set(records) <= {c.case_id for c in matrix.candidates()}
