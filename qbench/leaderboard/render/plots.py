"""Plots (matplotlib, Agg): the primary metric against energy per token and against bits per
weight with the Pareto front marked, and the training curves per method; PNG and SVG each.

For a huge store the scatter keeps every Pareto point and an evenly spaced sample of the rest
(``MAX_POINTS``) and the curves are drawn only when there are at most ``MAX_CURVES`` methods:
the tables stay complete, the pictures stay readable. What was left out is returned as notes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from qbench.atomicio import StagedFiles
from qbench.leaderboard.compute.frame import RunsFrame

MAX_POINTS = 200
MAX_ANNOTATED = 25
MAX_CURVES = 30
MARGINS = {"left": 0.11, "right": 0.97, "bottom": 0.11, "top": 0.92}
#: the host's own cost axis; the backends declare theirs (``HardwareBackend.cost_axes``)
HOST_COST_AXES = (("weight_bits", "bits per weight", "bits"),)


def cost_axes(frame: RunsFrame) -> list[tuple[str, str, str]]:
    """(column, axis title, file name part) of every cost axis: the declared ones first."""
    declared = [(column, column, slug(column.split("_")[0])) for column in frame.cost_axes]
    return [*declared, *HOST_COST_AXES]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "dataset"


def curves_stem(label: str) -> str:
    """The file name (no suffix) of dataset ``label``'s training curves plot under ``plots/``; the
    site's configuration pages link it by this name."""
    return f"{slug(label)}-curves"


def plain(text: str) -> str:
    """A label as literal text for matplotlib (``$`` would start mathtext)."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def pareto_mask(cost: np.ndarray, quality: np.ndarray, direction: str) -> np.ndarray:
    """Points no other point beats: lower or equal cost with a strictly better metric, or vice versa."""
    score = quality if direction == "max" else -quality
    order = np.lexsort((-score, cost))
    mask = np.zeros(len(cost), dtype=bool)
    best = -np.inf
    for i in order:
        if score[i] > best:
            mask[i] = True
            best = score[i]
    return mask


def load_pyplot():  # noqa: ANN201 - matplotlib.pyplot, imported here: the leaderboard's heaviest import
    """matplotlib's pyplot on the Agg backend (a third of a second the first time: a large rebuild
    imports it while a child process reads part of the store, see :func:`qbench.leaderboard.rebuild_from_store`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(frame: RunsFrame, table: pd.DataFrame, plot_dir: Path,
                staged: StagedFiles | None = None) -> tuple[list[Path], list[str]]:  # fmt: skip
    """Plots of every dataset into ``plot_dir``; with ``staged``, under temporary names it renames later."""
    import matplotlib

    plt = load_pyplot()

    written: list[Path] = []
    notes: list[str] = []
    plot_dir.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": "qbench", "svg.fonttype": "none", "font.size": 8}):
        for label, info in frame.datasets.items():
            rows = table[(table["dataset_label"] == label) & (table["n_ok"] > 0)]
            y_col = f"{info.primary_metric}_mean"
            for column, axis_title, name in cost_axes(frame):
                if f"{column}_mean" not in rows or y_col not in rows:
                    continue
                points = rows[np.isfinite(rows[f"{column}_mean"]) & np.isfinite(rows[y_col])]
                if points.empty:
                    continue
                fig = _scatter(plt, points, column, axis_title, info.primary_metric, info.direction, label, notes)
                written += _save(fig, plot_dir / f"{slug(label)}-{slug(info.primary_metric)}-vs-{name}", staged)
                plt.close(fig)
            fig = _curves(plt, frame, label, info.primary_metric, rows, notes)
            if fig is not None:
                written += _save(fig, plot_dir / curves_stem(label), staged)
                plt.close(fig)
    return written, notes


def _save(fig, stem: Path, staged: StagedFiles | None = None) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    write = staged.path if staged is not None else (lambda path: path)
    fig.savefig(write(paths[0]), format="png", dpi=110, metadata={"Software": None})
    fig.savefig(write(paths[1]), format="svg", metadata={"Date": None, "Creator": None})
    return paths


def _scatter(plt, points: pd.DataFrame, column: str, axis_title: str, metric: str, direction: str,
             label: str, notes: list[str]):  # fmt: skip
    x = points[f"{column}_mean"].to_numpy(float)
    y = points[f"{metric}_mean"].to_numpy(float)
    err = np.nan_to_num(points[f"{metric}_ci95"].to_numpy(float), nan=0.0)
    front = pareto_mask(x, y, direction)
    keep = front.copy()
    if len(x) > MAX_POINTS:
        keep[np.linspace(0, len(x) - 1, MAX_POINTS).astype(int)] = True
        notes.append(f"{label}: {metric} vs {column} shows {keep.sum()} of {len(x)} rows (all Pareto points)")
    else:
        keep[:] = True
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    fig.subplots_adjust(**MARGINS)  # fixed margins: constrained layout costs more than the drawing
    ax.errorbar(x[keep], y[keep], yerr=err[keep], fmt="o", ms=4, color="#4c72b0", ecolor="#9bb0d3",
                label="method (mean ± 95% CI)")  # fmt: skip
    order = np.argsort(x[front])
    ax.step(x[front][order], y[front][order], where="post", color="#c44e52", lw=1.2)
    ax.plot(x[front], y[front], "D", ms=7, mfc="none", mec="#c44e52", label="Pareto front")
    if front.sum() <= MAX_ANNOTATED:
        # Only the front is named: the points behind it are in the table, the labels would collide.
        names = (points["quantizer_label"] + " / " + points["cell_label"]).to_numpy()
        for xi, yi, name in zip(x[front], y[front], names[front], strict=True):
            ax.annotate(plain(name), (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=6)
    # a declared cost (energy, operations) may span decades; bits per weight stay linear
    if column not in dict((c, t) for c, t, _ in HOST_COST_AXES) and np.all(x > 0) and x.max() / x.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(axis_title)
    ax.set_ylabel(f"{metric} ({'lower' if direction == 'min' else 'higher'} is better)")
    ax.set_title(plain(f"{label}: {metric} against {axis_title}"))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return fig


def _curve_key(curves: list[list[dict]], metric: str) -> str | None:
    keys: list[str] = []
    for curve in curves:
        for point in curve[:1]:
            keys += [k for k, v in point.items() if k != "epoch" and isinstance(v, (int, float))]
    suffix = metric.split("_", 1)[-1]
    for candidate in (f"valid_{suffix}", metric, "valid_loss", "train_loss"):
        if candidate in keys:
            return candidate
    return keys[0] if keys else None


def _curves(plt, frame: RunsFrame, label: str, metric: str, rows: pd.DataFrame, notes: list[str]):
    if len(rows) > MAX_CURVES:
        notes.append(f"{label}: training curves not drawn ({len(rows)} methods, more than {MAX_CURVES})")
        return None
    runs = frame.runs
    selected = np.flatnonzero(((runs["dataset_label"] == label) & (runs["status"] == "ok")).to_numpy())
    curves = [frame.curves[int(runs.index[i])] for i in selected]  # the index is the run's source position
    key = _curve_key(curves, metric)
    if key is None:
        return None
    series: dict[str, dict[float, list[float]]] = {}
    for i, curve in zip(selected, curves, strict=True):
        name = f"{runs['quantizer_label'].iat[i]} / {runs['cell_label'].iat[i]}"
        for step, point in enumerate(curve):
            value = point.get(key)
            if isinstance(value, (int, float)) and np.isfinite(value):
                series.setdefault(name, {}).setdefault(float(point.get("epoch", step + 1)), []).append(value)
    if not series:
        return None
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    fig.subplots_adjust(**MARGINS)  # fixed margins: constrained layout costs more than the drawing
    for name, by_epoch in sorted(series.items()):
        epochs = sorted(by_epoch)
        ax.plot(epochs, [float(np.mean(by_epoch[e])) for e in epochs], marker=".", label=plain(name))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{key} (mean over seeds)")
    ax.set_title(plain(f"{label}: training curves"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    return fig
