"""Leaderboards from records: seed statistics, paired comparison, Markdown/CSV/JSON/HTML, plots.

This package imports pandas and matplotlib (Agg backend); ``import qbench`` never imports it.
The entry point is :func:`write_leaderboards`; ``qbench compare`` and ``qbench validate`` use
:mod:`qbench.leaderboard.compare` and :mod:`qbench.leaderboard.validate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qbench.leaderboard.frame import GROUP_KEY, RunsFrame, load_runs, record_sha256
from qbench.leaderboard.tables import aggregate, paired

FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.html")

__all__ = ["FILES", "GROUP_KEY", "RunsFrame", "aggregate", "load_runs", "paired", "record_sha256",
           "write_leaderboards"]  # fmt: skip


def write_leaderboards(records: list[dict[str, Any]], out_dir: Path, title: str, plots: bool = True) -> list[Path]:
    """Write ``leaderboard.{md,csv,json,html}`` and ``plots/*.{png,svg}`` into ``out_dir``.

    Returns the written paths (the JSON last: it holds the sha256 of every other file).
    ``plots=False`` skips the pictures (the tables are complete either way).
    """
    from qbench.leaderboard.html import render_html
    from qbench.leaderboard.markdown import render_markdown
    from qbench.leaderboard.plots import write_plots
    from qbench.leaderboard.writers import file_sha256, json_document, write_csv, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = load_runs(records)
    table = aggregate(frame)
    pairs = paired(frame)
    written: list[Path] = []
    notes: list[str] = []
    plot_paths: list[Path] = []
    if plots and len(table):
        plot_paths, notes = write_plots(frame, table, out_dir / "plots")
    md = out_dir / "leaderboard.md"
    md.write_text(render_markdown(frame, table, pairs, title), encoding="utf-8")
    csv = out_dir / "leaderboard.csv"
    write_csv(frame, table, csv)
    page = out_dir / "leaderboard.html"
    page.write_text(render_html(frame, table, pairs, title, plot_paths, notes), encoding="utf-8")
    written = [md, csv, page, *plot_paths]
    files = {path.relative_to(out_dir).as_posix(): file_sha256(path) for path in written}
    document = json_document(frame, table, pairs, title, files, notes)
    json_path = out_dir / "leaderboard.json"
    write_json(document, json_path)
    return [*written, json_path]
