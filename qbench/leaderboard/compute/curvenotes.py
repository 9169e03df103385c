"""Sentences under the curves for validation points far above what a working model reaches.

Two kinds of point are explained, so that no plotted curve sits above (say) the uniform entropy
of a vocabulary without a sentence:

- **cold start**: evaluation starts every column of the evaluated text from a zero hidden state,
  while training carries its state from batch to batch through the epoch. An early model can fail
  from that cold start although it trains well (reproduced for float with input batch norm at the
  paper's small gamma on brown-char; for other runs the likely cause, not a measured one): its
  epoch-1 validation bits per character then lie far above anything its training loss showed.
  Flagged when a point exceeds twice the highest training loss its run recorded (converted from
  nats to bits). Such a point measures the evaluation from zero, not a learning speed
  (``docs/protocol.md``, "Curve points above training").
- **not learned**: a point far above the baseline's final validation value (2.5 times it) whose run's
  training loss at that epoch was as high (within 10%): the model had not learned (yet), as binary
  weights often do not.

Only bits-per-character validation values are read (``valid_*bpc``; the training loss is the mean
cross entropy in nats); the rule needs no vocabulary, only the records.
"""

from __future__ import annotations

import math
from typing import Any

from qbench.leaderboard.compute.frame import RunsFrame

#: a validation point above this many times its run's highest training loss (in bits) is a cold start
COLD_FACTOR = 2.0
#: points above this many times the baseline's (median) final validation value, with a training loss as
#: high, are a model that has not learned (a slow start below it is ordinary early training)
HIGH_FACTOR = 2.5
#: a point within this ratio of its own epoch's training loss is a model that has not learned
NOT_LEARNED = 1.1


def _bpc_keys(point: dict[str, Any]) -> list[str]:
    return [k for k in point if k.startswith("valid_") and k.endswith("bpc")]


def curve_notes(frame: RunsFrame, baseline: str) -> dict[str, list[str]]:
    """{dataset label: sentences} for the datasets whose curves hold a point of either kind."""
    runs = frame.runs
    if runs.empty or "status" not in runs or "valid_bpc" not in runs:
        return {}
    ok = runs[runs["status"] == "ok"]
    base = ok[ok["quantizer"] == baseline] if baseline else ok.iloc[0:0]
    floor = {str(k): float(v) for k, v in base.groupby("dataset_label")["valid_bpc"].median().items()}
    found: dict[str, dict[str, list[tuple[float, float, str, int, Any, str]]]] = {}
    # the curves are indexed like the runs' index (a filtered frame keeps its labels)
    for index, dataset, label, seed, case in zip(ok.index, ok["dataset_label"], ok["quantizer_label"], ok["seed"],
                                                 ok["case_id"], strict=True):  # fmt: skip
        curve = frame.curves[int(index)] if int(index) < len(frame.curves) else []
        losses = [p["train_loss"] / math.log(2) for p in curve
                  if isinstance(p.get("train_loss"), (int, float)) and math.isfinite(p["train_loss"])]  # fmt: skip
        if not losses:
            continue
        high = HIGH_FACTOR * floor[str(dataset)] if str(dataset) in floor else math.inf
        for point in curve:
            for key in _bpc_keys(point):
                value = point[key]
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                loss = point.get("train_loss")
                own = loss / math.log(2) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.nan
                if value > COLD_FACTOR * max(losses):
                    kind, against = "cold", max(losses)
                elif value > high and own == own and value <= NOT_LEARNED * own:
                    kind, against = "unlearned", own
                else:
                    continue
                found.setdefault(str(dataset), {}).setdefault(kind, []).append(
                    (float(value), against, str(label), int(seed), point.get("epoch"), str(case)))
    notes: dict[str, list[str]] = {}
    for dataset, kinds in found.items():
        for kind, points in kinds.items():
            value, against, label, seed, epoch, _ = max(points)
            count, runs_n = len(points), len({p[5] for p in points})
            if kind == "cold":
                text = (f"{count} validation point(s) of {runs_n} run(s) lie above twice the highest training loss "
                        f"their run recorded (the largest: {label}, seed {seed}, epoch {epoch}: {value:.2f} bits per "
                        f"character against a training loss of at most {against:.2f}). The likely cause, reproduced "
                        "for such points (docs/protocol.md, \"Curve points above training\"), is a cold start: "
                        "evaluation starts every column from a zero hidden state while training carries its state "
                        "through the epoch, and an early model can fail from zero although it trains well. Read "
                        "these points as the evaluation from zero, not as how fast the method learns.")  # fmt: skip
            else:
                text = (f"{count} validation point(s) of {runs_n} run(s) lie above {HIGH_FACTOR:g} times {baseline}'s "
                        f"final validation value with a training loss as high at the same epoch (the largest: {label}, "
                        f"seed {seed}, epoch {epoch}: {value:.2f} bits per character, training {against:.2f}): these "
                        "models had "
                        "not learned (yet), not a fault of the evaluation.")  # fmt: skip
            notes.setdefault(dataset, []).append(text)
    return notes
