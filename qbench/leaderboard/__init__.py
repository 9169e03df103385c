"""Leaderboards from records: seed statistics, paired comparison, Markdown/CSV/JSON/HTML, plots.

This package imports pandas and matplotlib (Agg backend); ``import qbench`` never imports it.
The entry point is :func:`write_leaderboards`; ``qbench compare`` and ``qbench validate`` use
:mod:`qbench.leaderboard.audit.compare` and :mod:`qbench.leaderboard.audit.validate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qbench.leaderboard.compute.declarations import no_baseline_note
from qbench.leaderboard.compute.fairness import FairView, apply_protocol
from qbench.leaderboard.compute.frame import GROUP_KEY, RunsFrame, load_runs, record_sha256
from qbench.leaderboard.compute.tables import aggregate, paired
from qbench.protocol import Protocol

if TYPE_CHECKING:
    from qbench.leaderboard.render.runrows import RunRows

FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.html")

__all__ = ["FILES", "GROUP_KEY", "RunsFrame", "aggregate", "load_runs", "paired", "rebuild_from_store",
           "record_sha256", "write_frame", "write_leaderboards"]  # fmt: skip


def write_leaderboards(records: list[dict[str, Any]], out_dir: Path, title: str, plots: bool = True,
                       protocol: Protocol | None = None) -> list[Path]:  # fmt: skip
    """Write ``leaderboard.{md,csv,json,html}`` and ``plots/*.{png,svg}`` into ``out_dir``.

    Returns the written paths (the JSON last: it holds the sha256 of every other file).
    ``plots=False`` skips the pictures (the tables are complete either way). ``protocol``: how
    the cases were chosen (:mod:`qbench.protocol`); without one, every seed of every method counts.
    """
    return write_frame(load_runs(records), Path(out_dir), title, plots, protocol)


def rebuild_from_store(store_path: Path, out_dir: Path, title: str, matrix: str | None = None,
                       case_ids: set[str] | None = None, plots: bool = True,
                       protocol: Protocol | None = None, skip_damaged: bool = False) -> list[Path]:  # fmt: skip
    """:func:`write_leaderboards` for the records of a store, read without a dict per record.

    Same files as ``write_leaderboards(Store(store_path).records(matrix), ...)`` (restricted to
    ``case_ids`` when given), several times faster on a large store. Without ``protocol``, the
    protocol the store recorded for ``matrix`` (or for its only matrix) is used. A damaged record
    raises :class:`qbench.store.DamagedRecords` (a usage error naming it), or is left out with
    ``skip_damaged``.
    """
    from qbench.leaderboard.compute.storeread import read_store, stored_protocol

    if protocol is None:
        protocol = stored_protocol(Path(store_path), matrix)
    # the heavy imports are done while a child reads part of a large store (this process would wait for it)
    frame = read_store(Path(store_path), matrix, case_ids, skip_damaged, meanwhile=lambda: _import_ahead(plots))
    return write_frame(frame, Path(out_dir), title, plots, protocol)


def _import_ahead(plots: bool) -> None:
    """What the rebuild imports on first use, a few tenths of a second: scipy's t distribution
    (the paired tests) and, with plots, matplotlib."""
    from scipy.special import stdtr  # noqa: F401 - qbench.stats imports it where it is used

    if plots:
        from qbench.leaderboard.render.plots import load_pyplot

        load_pyplot()


def write_frame(frame: RunsFrame, out_dir: Path, title: str, plots: bool = True,
                protocol: Protocol | None = None) -> list[Path]:  # fmt: skip
    """Write the leaderboard set of ``frame`` into ``out_dir`` as one consistent set.

    Every file (plots included) is first written under a unique temporary name in its own folder,
    then all are renamed into place together (the JSON, which holds the hash of every other file,
    last), with SIGINT/SIGTERM held back during the renames: an interruption or a second writer
    leaves either the previous set or the new one, never a mixture or a half-written file.
    """
    from qbench.atomicio import remove_stale_temps
    from qbench.leaderboard.render.runrows import RunRows

    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in (out_dir, out_dir / "plots"):  # what a killed writer left: it would fail validate for good
        remove_stale_temps(folder)
    fair = apply_protocol(frame, protocol)
    # the runs table, most of the JSON, is encoded beside the rest (by a child process on Linux, for
    # a large table: see qbench.leaderboard.render.runrows)
    with RunRows.start(fair.all_runs, out_dir) as rows:
        return _write_set(frame, fair, out_dir, title, plots, rows)


def _write_set(frame: RunsFrame, fair: FairView, out_dir: Path, title: str, plots: bool,
               rows: RunRows) -> list[Path]:  # fmt: skip
    from qbench.atomicio import StagedFiles, file_sha256
    from qbench.leaderboard.compute.trends import compute_trends
    from qbench.leaderboard.render.display import Displays
    from qbench.leaderboard.render.html import render_html
    from qbench.leaderboard.render.markdown import render_markdown
    from qbench.leaderboard.render.plots import write_plots
    from qbench.leaderboard.render.trends import json_tables, write_trend_plots
    from qbench.leaderboard.render.writers import fairness_head, json_head, write_csv, write_json

    table = tuned_rows(fair)
    pairs = paired(fair.used, fair.protocol.baseline, fair.protocol.alpha, fair.protocol)
    used = fair.used
    trends = compute_trends(used, fair.protocol.baseline, fair.protocol)
    with StagedFiles() as staged:
        # what the records could not say (old records of components qbench does not know) is said on the page
        missing = frame.declared.notes + ([] if fair.protocol.baseline else no_baseline_note(frame.declared))
        notes: list[str] = [*fair.notes, *missing]
        plot_paths: list[Path] = []
        if plots and len(table):
            plot_paths, plot_notes = write_plots(used, table, out_dir / "plots", staged)
            notes += plot_notes
            plot_paths += write_trend_plots(trends, out_dir / "plots", staged)
        displays = Displays.build(used, table, pairs, fair)
        md = out_dir / "leaderboard.md"
        staged.path(md).write_text(render_markdown(used, table, pairs, title, displays, fair, trends), encoding="utf-8")
        csv = out_dir / "leaderboard.csv"
        write_csv(used, table, staged.path(csv))
        page = out_dir / "leaderboard.html"
        html = render_html(used, table, pairs, title, plot_paths, notes, displays, fair, read=staged.source,
                           trends=trends)
        staged.path(page).write_text(html, encoding="utf-8")
        written = [md, csv, page, *plot_paths]
        files = {path.relative_to(out_dir).as_posix(): file_sha256(staged.source(path)) for path in written}
        json_path = out_dir / "leaderboard.json"
        # the curves' sentences are shown in their dataset sections; the JSON keeps them with the notes
        cold = [f"{label}: {text}" for label, texts in displays.curves.items() for text in texts]
        head = json_head(used, table, pairs, title, files, [*notes, *cold])
        head.update(fairness_head(fair))
        head.update(json_tables(trends))
        write_json(head, fair.all_runs, staged.path(json_path), rows)
        staged.commit()
    return [*written, json_path]


def tuned_rows(fair: FairView) -> Any:
    """One row per method: the aggregates of its chosen configuration, with that configuration."""
    table = aggregate(fair.used).copy()  # one block per dtype: inserting into a wide, fragmented frame warns
    keys = zip(*(table[k].tolist() for k in GROUP_KEY), strict=True)
    table.insert(4, "configuration", [fair.configuration.get(tuple(k), "") for k in keys])  # type: ignore[arg-type]
    return table
