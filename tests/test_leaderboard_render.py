"""What write_leaderboards publishes: the Markdown snapshot, CSV, JSON, HTML and plots.

Set ``QBENCH_UPDATE_SNAPSHOTS=1`` to rewrite ``tests/snapshots/leaderboard.md`` after an
intended change of the rendering (and review the diff).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from qbench.leaderboard import load_runs, write_leaderboards
from qbench.leaderboard.compute.tables import aggregate, paired
from qbench.leaderboard.render.markdown import render_markdown
from qbench.leaderboard.render.writers import table_rows
from tests.synthetic import make_record, make_records

SNAPSHOTS = Path(__file__).parent / "snapshots"
MARKUP = '<img src=x onerror="alert(1)"><b>bold</b> & <script>document.title="owned"</script>'


def snapshot_records() -> list[dict]:
    records = make_records(seeds=3, datasets=("pydoc-char", "digits"), rng_seed=7)
    # A method whose every seed failed: shown, unranked, with its errors.
    for seed in range(2):
        record = make_record("binary(stochastic=false)", "lstm(hidden=128)", "pydoc-char", seed, "error")
        record.update(cell_label="lstm(hidden=512)", cell_params={"hidden": 512}, case_id=f"big-lstm-{seed}")
        records.append(record)
    return records


def hostile_records() -> list[dict]:
    records = make_records(seeds=2)
    for record in records:
        if record["quantizer"] == "ternary":
            record["quantizer_label"] = record["quantizer_label"].replace("ternary", "tern|ary$x$")
            record["descriptions"] = {record["quantizer_label"]: MARKUP}
    return records


def test_markdown_snapshot():
    records = snapshot_records()
    frame = load_runs(records)
    text = render_markdown(frame, aggregate(frame), paired(frame), "Synthetic | leaderboard")
    path = SNAPSHOTS / "leaderboard.md"
    if os.environ.get("QBENCH_UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), "rendering changed; QBENCH_UPDATE_SNAPSHOTS=1 to accept"


def test_markdown_shows_failures_licence_and_full_precision():
    frame = load_runs(snapshot_records())
    text = render_markdown(frame, aggregate(frame), paired(frame), "t")
    assert "2 ok, 1 diverged" in text  # the binary GRU's diverged seed stays visible
    assert "0 ok, 2 error" in text
    assert "Dataset licence: PSF-2.0." in text and "Dataset licence: BSD-3-Clause." in text
    assert "input, output" in text
    failures = [line for line in text.splitlines() if "| diverged |" in line]
    assert len(failures) == 2 and all("loss became nan at epoch 2" in line for line in failures)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    out = tmp_path_factory.mktemp("published")
    paths = write_leaderboards(hostile_records(), out, 'Quick <b>"run"</b>')
    return out, paths


def test_every_file_is_written_and_hashed(published):
    out, paths = published
    names = {p.relative_to(out).as_posix() for p in paths}
    assert {"leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.html"} <= names
    for stem in ("pydoc-char-test-bpc-vs-energy", "pydoc-char-test-bpc-vs-bits", "pydoc-char-curves"):
        assert {f"plots/{stem}.png", f"plots/{stem}.svg"} <= names
    assert (out / "plots" / "pydoc-char-curves.png").read_bytes().startswith(b"\x89PNG")
    document = json.loads((out / "leaderboard.json").read_text())
    assert set(document["files"]) == names - {"leaderboard.json"}
    for name, digest in document["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest


def test_csv_has_one_row_per_group_with_statistics(published):
    out, _ = published
    with open(out / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10  # 5 quantizers x 2 cells x 1 dataset
    for column in ("test_bpc", "energy_pj_per_token", "weight_bits"):
        assert {f"{column}_mean", f"{column}_std", f"{column}_ci95", f"{column}_n"} <= set(rows[0])
    assert rows[0]["rank"] == "1"
    means = [float(r["test_bpc_mean"]) for r in rows if r["rank"]]
    assert means == sorted(means)
    diverged = [r for r in rows if r["n_diverged"] != "0"]
    assert len(diverged) == 1 and diverged[0]["quantizer"] == "binary" and diverged[0]["test_bpc_n"] == "1"


def test_json_keeps_single_seed_rows_and_provenance(published):
    out, _ = published
    document = json.loads((out / "leaderboard.json").read_text())
    assert document["schema"] == "qbench-leaderboard/1"
    runs = table_rows(document["runs"])
    assert len(runs) == 20 and all(len(r["record_sha256"]) == 64 for r in runs)
    diverged = [r for r in runs if r["status"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["test_bpc"] is None and diverged[0]["weight_bits"] == 1
    assert document["provenance"]["torch_version"] == ["2.13.0"]
    assert document["datasets"]["pydoc-char"]["primary_metric"] == "test_bpc"
    assert document["datasets"]["pydoc-char"]["licence"] == "PSF-2.0"
    aggregates = table_rows(document["aggregates"])
    assert sorted(i for row in aggregates for i in row["case_ids"]) == sorted(r["case_id"] for r in runs)
    assert {"test_bpc_mean", "test_bpc_ci95", "n_diverged"} <= set(aggregates[0])
    verdicts = {p["verdict"] for p in table_rows(document["paired"])}
    assert verdicts <= {"better", "worse", "equivalent", "non-inferior", "inconclusive", "single seed"} and verdicts


def test_html_escapes_everything_from_plugins_and_needs_no_network(published):
    out, _ = published
    page = (out / "leaderboard.html").read_text()
    assert "<b>bold</b>" not in page and "<script>document" not in page and '<b>"run"</b>' not in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "tern|ary$x$" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "Content-Security-Policy" in page
    assert page.count("data:image/svg+xml;base64,") == 3


def test_markdown_escapes_plugin_strings(published):
    out, _ = published
    text = (out / "leaderboard.md").read_text()
    assert "<b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    row = next(line for line in text.splitlines() if "tern" in line and line.startswith("|"))
    header = next(line for line in text.splitlines() if line.startswith("| rank"))
    unescaped = re.compile(r"(?<!\\)\|")
    assert len(unescaped.findall(row)) == len(unescaped.findall(header))


def test_a_hardware_column_with_markup_in_its_name_cannot_break_the_table():
    records = make_records(seeds=2)
    for record in records:
        record["a|<b>"] = 1.0
        record["directions"] = {**record["directions"], "a|<b>": "min"}
    frame = load_runs(records)
    text = render_markdown(frame, aggregate(frame), paired(frame), "t")
    header = next(line for line in text.splitlines() if line.startswith("| rank"))
    assert "a\\|&lt;b&gt;" in header and "<b>" not in text


def test_only_failures_and_an_empty_store_still_render(tmp_path):
    failed = [make_record("float", seed=s, status="error") for s in range(2)]
    paths = write_leaderboards(failed, tmp_path / "failed", "all failed")
    text = (tmp_path / "failed" / "leaderboard.md").read_text()
    assert "0 ok, 2 error" in text and "RuntimeError: out of memory" in text
    assert any(p.name == "leaderboard.html" for p in paths)
    write_leaderboards([], tmp_path / "empty", "empty")
    assert json.loads((tmp_path / "empty" / "leaderboard.json").read_text())["runs"]["rows"] == []
