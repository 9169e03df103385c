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

__all__ = ["FILES", "GROUP_KEY", "RunsFrame", "aggregate", "load_runs", "paired", "rebuild_from_store",
           "record_sha256", "write_frame", "write_leaderboards"]  # fmt: skip


def write_leaderboards(records: list[dict[str, Any]], out_dir: Path, title: str, plots: bool = True) -> list[Path]:
    """Write ``leaderboard.{md,csv,json,html}`` and ``plots/*.{png,svg}`` into ``out_dir``.

    Returns the written paths (the JSON last: it holds the sha256 of every other file).
    ``plots=False`` skips the pictures (the tables are complete either way).
    """
    return write_frame(load_runs(records), Path(out_dir), title, plots)


def rebuild_from_store(store_path: Path, out_dir: Path, title: str, matrix: str | None = None,
                       case_ids: set[str] | None = None, plots: bool = True,
                       skip_damaged: bool = False) -> list[Path]:  # fmt: skip
    """:func:`write_leaderboards` for the records of a store, read without a dict per record.

    Same files as ``write_leaderboards(Store(store_path).records(matrix), ...)`` (restricted to
    ``case_ids`` when given), several times faster on a large store. A damaged record raises
    :class:`qbench.store.DamagedRecords` (a usage error naming it), or is left out with ``skip_damaged``.
    """
    from qbench.leaderboard.storeread import read_store

    return write_frame(read_store(Path(store_path), matrix, case_ids, skip_damaged), Path(out_dir), title, plots)


def write_frame(frame: RunsFrame, out_dir: Path, title: str, plots: bool = True) -> list[Path]:
    """Write the leaderboard set of ``frame`` into ``out_dir`` as one consistent set.

    Every file (plots included) is first written under a unique temporary name in its own folder,
    then all are renamed into place together (the JSON, which holds the hash of every other file,
    last), with SIGINT/SIGTERM held back during the renames: an interruption or a second writer
    leaves either the previous set or the new one, never a mixture or a half-written file.
    """
    from qbench.atomicio import StagedFiles
    from qbench.leaderboard.display import Displays
    from qbench.leaderboard.html import render_html
    from qbench.leaderboard.markdown import render_markdown
    from qbench.leaderboard.plots import write_plots
    from qbench.leaderboard.writers import file_sha256, json_head, write_csv, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    table = aggregate(frame)
    pairs = paired(frame)
    with StagedFiles() as staged:
        notes: list[str] = []
        plot_paths: list[Path] = []
        if plots and len(table):
            plot_paths, notes = write_plots(frame, table, out_dir / "plots", staged)
        displays = Displays.build(frame, table, pairs)
        md = out_dir / "leaderboard.md"
        staged.path(md).write_text(render_markdown(frame, table, pairs, title, displays), encoding="utf-8")
        csv = out_dir / "leaderboard.csv"
        write_csv(frame, table, staged.path(csv))
        page = out_dir / "leaderboard.html"
        html = render_html(frame, table, pairs, title, plot_paths, notes, displays, read=staged.source)
        staged.path(page).write_text(html, encoding="utf-8")
        written = [md, csv, page, *plot_paths]
        files = {path.relative_to(out_dir).as_posix(): file_sha256(staged.source(path)) for path in written}
        json_path = out_dir / "leaderboard.json"
        write_json(json_head(frame, table, pairs, title, files, notes), frame, staged.path(json_path))
        staged.commit()
    return [*written, json_path]
