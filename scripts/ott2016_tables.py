"""Print the tables of results/ott2016.md from the committed leaderboards (nothing else is read).

Usage: python scripts/ott2016_tables.py results/ott2016-digits@cpu-2core [RUN_DIR ...]

For each run folder: per cell, every method's tuned row (chosen learning rate, flagged when it
sits at an edge of the grid that extension did not bracket; primary metric mean ± 95% interval,
n) and its paired comparison with float (difference ± 95% interval, effect size, the test that
decided, Holm-adjusted p, verdict), then the hardware ratios against float (weight memory, energy
per token) and the integer simulator's agreement. Every number is copied from the folder's
leaderboard.json, so each line of results/ott2016.md traces to a row of a committed leaderboard.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def rows(section: dict) -> list[dict]:
    return [dict(zip(section["columns"], row, strict=True)) for row in section["rows"]]


def fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def p_text(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.2g}"


def report(folder: Path) -> str:
    document = json.loads((folder / "leaderboard.json").read_text())
    lines = [f"### {folder.name}", ""]
    aggregates = rows(document["aggregates"])
    paired = rows(document["paired"])
    brackets = {(r["dataset_label"], r["cell_label"], r["quantizer_label"]): r for r in
                rows(document.get("bracketing", {"columns": [], "rows": []}))}  # fmt: skip
    for label, info in document["datasets"].items():
        metric = info["primary_metric"]
        digits = 4 if "accuracy" in metric else 3
        for cell in sorted({r["cell_label"] for r in aggregates if r["dataset_label"] == label}):
            lines += [f"**{label}, {cell}** ({metric}, {'lower' if info['direction'] == 'min' else 'higher'} "
                      "is better)", ""]  # fmt: skip
            lines += ["| method | chosen | " + metric + " (mean ± 95%) | ok / diverged | vs float (± 95%) | d_z "
                      "| test | p (Holm) | verdict |", "|:--|:--|--:|--:|--:|--:|:--|--:|:--|"]  # fmt: skip
            float_row = None
            for row in sorted((r for r in aggregates if r["dataset_label"] == label and r["cell_label"] == cell),
                              key=lambda r: (r["rank"] is None, r["rank"] or 0)):  # fmt: skip
                if row["quantizer"] == "float":
                    float_row = row
                key = (label, cell, row["quantizer_label"], metric)
                pair = next((p for p in paired
                             if (p["dataset_label"], p["cell_label"], p["quantizer_label"], p["metric"]) == key), None)
                mean, ci = row.get(f"{metric}_mean"), row.get(f"{metric}_ci95")
                value = f"{fmt(mean, digits)} ± {fmt(ci, digits)}" if ci is not None else fmt(mean, digits)
                versus = "baseline" if row["quantizer"] == "float" else "-"
                d_z = p = verdict = test = "-"
                if pair is not None:
                    versus = f"{fmt(pair['diff_mean'], digits, True)} ± {fmt(pair['diff_ci95'], digits)}"
                    d_z, p, verdict = fmt(pair["effect_size"], 2, True), p_text(pair["p_holm"]), pair["verdict"]
                    test = pair.get("test") or "-"
                chosen = row["configuration"]
                bracket = brackets.get((label, cell, row["quantizer_label"]))
                if bracket is not None and bracket["bracket"] == "unbracketed":
                    chosen += " (grid edge: unbracketed)"
                lines.append(f"| {row['quantizer_label']} | {chosen} | {value} | {row['n_ok']} / "
                             f"{row['n_diverged']} | {versus} | {d_z} | {test} | {p} | {verdict} |")  # fmt: skip
            lines.append("")
            if float_row is not None:
                lines += hardware(aggregates, label, cell, float_row)
    return "\n".join(lines)


def hardware(aggregates: list[dict], label: str, cell: str, float_row: dict) -> list[str]:
    """Weight memory like for like (recurrent weights only, then with the output layer), energy, simulator.

    The float model's energy is priced on a float32 datapath, the quantized models' on an int16 one
    (the energy backend's datapath follows the weights): that column's ratio is not like for like.
    """
    lines = ["| method | recurrent weight bytes | x smaller | + output layer bytes | x smaller | energy / token (nJ) "
             "| x less (fp32 float vs int16) | integer simulator agrees with the model |",
             "|:--|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    base_bytes, base_energy = float_row.get("weight_bytes_mean"), float_row.get("energy_pj_per_token_mean")
    base_out = float_row.get("output_weight_bytes_mean")
    base_whole = base_bytes + base_out if base_bytes is not None and base_out is not None else None
    for row in (r for r in aggregates if r["dataset_label"] == label and r["cell_label"] == cell):
        size, energy = row.get("weight_bytes_mean"), row.get("energy_pj_per_token_mean")
        out = row.get("output_weight_bytes_mean")
        whole = size + out if size is not None and out is not None else None
        agreement = row.get("sim_agreement_mean")
        lines.append(
            f"| {row['quantizer_label']} | {fmt(size, 0)} | {fmt(base_bytes / size if size else None, 1)} | "
            f"{fmt(whole, 0)} | {fmt(base_whole / whole if whole and base_whole else None, 1)} | "
            f"{fmt(energy / 1000 if energy else None, 1)} | {fmt(base_energy / energy if energy else None, 1)} | "
            f"{'-' if agreement is None else f'{agreement:.4f}'} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    print("\n".join(report(Path(arg)) for arg in sys.argv[1:]))
