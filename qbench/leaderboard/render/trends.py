"""Trend views written out: the wide Markdown and HTML tables of each dataset section, the trend
plots and the ``trends`` / ``trend_contrasts`` / ``epoch_gaps`` tables of ``leaderboard.json``.

The rows themselves are computed by :mod:`qbench.leaderboard.compute.trends` (what they mean is
said there); nothing here is written when no dataset has a sweep.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from qbench.leaderboard.compute.formatting import fmt_ci, fmt_value
from qbench.leaderboard.compute.trends import CONTRAST_COLUMNS, EPOCH_COLUMNS, TREND_COLUMNS, Trends

# -- text -----------------------------------------------------------------------------------------


def cell_text(mean: float, ci: float, n: int) -> str:
    """``+0.12 ± 0.03 (n=3)``; without an interval ``+0.12 (n=1)``."""
    text = fmt_value(mean, signed=True)
    if not math.isnan(ci):
        text += f" ± {fmt_ci(ci)}"
    return f"{text} (n={n})"


def wide_tables(trends: Trends, dataset: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) of every trend table of ``dataset``: a method per row, a value per column."""
    out = []
    rows = trends.rows[trends.rows["dataset_label"] == dataset]
    for (parameter, context, metric), part in rows.groupby(["parameter", "context", "metric"], sort=False):
        values = sorted(set(part["value"].tolist()))
        header = ["method", *[f"{parameter.split('.', 1)[1]}={fmt_value(v)}" for v in values]]
        body = []
        for method, lines in part.groupby("method", sort=False):
            by_value = {float(r.value): cell_text(r.diff_mean, r.diff_ci95, r.n) for r in lines.itertuples()}
            body.append([str(method), *[by_value.get(v, "") for v in values]])
        base = str(part["baseline_label"].iloc[0])
        out.append((f"{metric} difference to {base} against {parameter} ({context})", header, body))
    out += contrast_tables(trends, dataset)
    gaps = trends.epochs[trends.epochs["dataset_label"] == dataset]
    for (cell, key), part in gaps.groupby(["cell_label", "metric"], sort=False):
        epochs = sorted(set(int(e) for e in part["epoch"].tolist()))
        header = ["method", *[f"epoch {e}" for e in epochs]]
        body = []
        for method, lines in part.groupby("quantizer_label", sort=False):
            by_epoch = {int(r.epoch): cell_text(r.diff_mean, r.diff_ci95, r.n) for r in lines.itertuples()}
            body.append([str(method), *[by_epoch.get(e, "") for e in epochs]])
        base = str(part["baseline_label"].iloc[0])
        out.append((f"{key} difference to {base} by epoch ({cell})", header, body))
    return out


def _p_text(p: float) -> str:
    return "" if p != p else f"{p:.3g}"


def contrast_tables(trends: Trends, dataset: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) of the contrasts of ``dataset``: one table per parameter and context."""
    out = []
    rows = trends.contrasts[trends.contrasts["dataset_label"] == dataset]
    for (parameter, context, metric), part in rows.groupby(["parameter", "context", "metric"], sort=False):
        name = parameter.split(".", 1)[1]
        body = [[str(r.method), f"{name}={fmt_value(r.from_value)} to {fmt_value(r.to_value)}",
                 cell_text(r.change_mean, r.change_ci95, r.n), r.test or "", _p_text(r.p_holm),
                 f"±{r.margin:g}" if r.margin == r.margin else "none", _p_text(r.p_margin_holm), str(r.verdict)]
                for r in part.itertuples()]  # fmt: skip
        header = ["method", "values", "change of the difference", "test", "p (Holm)", "margin",
                  "margin p (Holm)", "verdict"]  # fmt: skip
        out.append((f"Contrasts: how moving {parameter} changes the {metric} difference ({context})", header, body))
    return out


TREND_SENTENCE = ("Each cell: the method's difference to the baseline of the same cell and seed, mean ± 95% "
                  "interval (Student t) over the paired seeds, and the number of pairs. A parameter is shown when "
                  "the matrix swept it; the epoch tables read the validation value each run recorded after every "
                  "epoch (epochs both runs of a pair reached). A contrast is the change of a method's difference "
                  "between two values of the parameter, paired by seed (the seeds both values have), judged as the "
                  "paired table judges a method (the same test choice; Holm across the contrasts of one method and "
                  "parameter): rises / falls when the change differs from zero, no effect when it lies within the "
                  "dataset's margin, inconclusive otherwise.")  # fmt: skip


def markdown_section(trends: Trends, dataset: str, escape: Any) -> list[str]:
    """The ``### Trends`` lines of one dataset section (none without a sweep)."""
    tables = wide_tables(trends, dataset)
    if not tables:
        return []
    lines = ["### Trends", "", TREND_SENTENCE, ""]
    for heading, header, body in tables:
        lines += [f"**{escape(heading)}**", ""]
        lines.append("| " + " | ".join(escape(h) for h in header) + " |")
        lines.append("|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|")
        lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in body]
        lines.append("")
    return lines


def html_section(trends: Trends, dataset: str) -> str:
    """The trend tables of one dataset section as HTML ("" without a sweep)."""
    from html import escape

    tables = wide_tables(trends, dataset)
    if not tables:
        return ""
    parts = [f"<h3>Trends</h3><p>{escape(TREND_SENTENCE)}</p>"]
    for heading, header, body in tables:
        head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
        text = ' class="text"'
        rows = "".join("<tr>" + "".join(f"<td{text if i == 0 else ''}>{escape(c)}</td>" for i, c in enumerate(row))
                       + "</tr>" for row in body)  # fmt: skip
        parts.append(f'<p><strong>{escape(heading)}</strong></p><div class="scroll"><table class="trend">'
                     f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>")
    return "".join(parts)


# -- plots ----------------------------------------------------------------------------------------


def save_figure(fig: Any, stem: Path, staged: Any = None) -> list[Path]:
    """PNG and SVG of ``fig`` at ``stem`` (through ``staged`` when given), as the other plots are saved."""
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    write = staged.path if staged is not None else (lambda path: path)
    fig.savefig(write(paths[0]), format="png", dpi=110, metadata={"Software": None})
    fig.savefig(write(paths[1]), format="svg", metadata={"Date": None, "Creator": None})
    return paths


def write_trend_plots(trends: Trends, plot_dir: Path, staged: Any = None) -> list[Path]:
    """One plot per swept parameter and context, one per cell of the epoch gaps; PNG and SVG each.

    Named ``<dataset>-trend-...`` so that the HTML shows them in their dataset's section.
    """
    if trends.empty:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qbench.leaderboard.render.plots import MARGINS, plain, slug

    written: list[Path] = []
    plot_dir.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": "qbench", "svg.fonttype": "none", "font.size": 8}):
        for (dataset, parameter, context, metric), part in trends.rows.groupby(
                ["dataset_label", "parameter", "context", "metric"], sort=False):  # fmt: skip
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            fig.subplots_adjust(**{**MARGINS, "top": 0.87})  # a two-line title
            for method, lines in part.groupby("method", sort=False):
                x = lines["value"].to_numpy(float)
                y = lines["diff_mean"].to_numpy(float)
                err = np.nan_to_num(lines["diff_ci95"].to_numpy(float), nan=0.0)
                ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, label=plain(method))
            values = part["value"].to_numpy(float)
            if np.all(values > 0) and values.max() / values.min() >= 8:
                ax.set_xscale("log", base=2)
            ax.axhline(0.0, color="#444", lw=0.8)
            ax.set_xlabel(plain(parameter))
            ax.set_ylabel(plain(f"{metric}: method - {part['baseline_label'].iloc[0]} (mean ± 95% CI)"))
            ax.set_title(plain(f"{dataset}: difference to the baseline against {parameter}\n{context}"))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, loc="best")
            name = f"{slug(dataset)}-trend-{slug(parameter)}-{slug(context)}"
            written += save_figure(fig, plot_dir / name, staged)
            plt.close(fig)
        for (dataset, cell, key), part in trends.epochs.groupby(["dataset_label", "cell_label", "metric"], sort=False):
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            fig.subplots_adjust(**{**MARGINS, "top": 0.87})  # a two-line title
            for method, lines in part.groupby("quantizer_label", sort=False):
                err = np.nan_to_num(lines["diff_ci95"].to_numpy(float), nan=0.0)
                ax.errorbar(lines["epoch"].to_numpy(float), lines["diff_mean"].to_numpy(float), yerr=err,
                            marker="o", ms=4, capsize=3, label=plain(method))  # fmt: skip
            ax.axhline(0.0, color="#444", lw=0.8)
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(plain(f"{key}: method - {part['baseline_label'].iloc[0]} (mean ± 95% CI)"))
            ax.set_title(plain(f"{dataset}: validation gap by epoch\n{cell}"))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, loc="best")
            written += save_figure(fig, plot_dir / f"{slug(dataset)}-trend-epochs-{slug(cell)}", staged)
            plt.close(fig)
    return written


# -- JSON -----------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def json_tables(trends: Trends) -> dict[str, Any]:
    """``trends``, ``trend_contrasts`` and ``epoch_gaps`` as split tables for ``leaderboard.json``; {} without
    a sweep."""
    if trends.empty:
        return {}
    out = {}
    for name, table, columns in (("trends", trends.rows, TREND_COLUMNS),
                                 ("trend_contrasts", trends.contrasts, CONTRAST_COLUMNS),
                                 ("epoch_gaps", trends.epochs, EPOCH_COLUMNS)):  # fmt: skip
        rows = [[_json_value(v) for v in row] for row in table[columns].itertuples(index=False, name=None)]
        out[name] = {"columns": columns, "rows": rows}
    return out
