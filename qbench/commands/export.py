"""``qbench export RUN_DIR --case ID --target c --out DIR``: a record's integer model as a C99 library.

Runs store records, not weights: the export retrains the record's case from its recorded
configuration (quantizer, cell, dataset, seed, training recipe; one thread, so the same
numbers), refuses when the reproduced test metric differs from the record's (another model
would be exported under its name), builds the shift-add simulator's integer program with the
record's ``shift-add`` parameters, and writes the library (:mod:`qbench_builtins.hardware.cgen`),
a harness, a self-test with the simulator's outputs on the evaluation sample, a Makefile and a
README. The self-test is then compiled and run here (and with sanitizers, and on the Cortex-M
target under QEMU where its tools are installed); the README states what each showed.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, cast

from qbench import record as R

NAME = "export"
HELP = ("write a record's integer model as a self-contained C99 library (retrained from the record, verified "
        "bit for bit)")
MARKER = ".qbench-export.json"
TARGETS = ("c",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder (or its qbench.sqlite)")
    pick = parser.add_mutually_exclusive_group(required=True)
    pick.add_argument("--case", metavar="ID", help="the record's case id (a unique prefix is enough)")
    pick.add_argument("--method", metavar="LABEL",
                      help="a method: its quantizer label, cell/quantizer or dataset/cell/quantizer labels "
                      "(with --seed)")  # fmt: skip
    parser.add_argument("--seed", type=int, help="with --method: which seed's record")
    parser.add_argument("--target", choices=TARGETS, default="c", help="what to write (c: a C99 library)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into")
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder qbench did not write")
    parser.add_argument("--hardware", metavar="LABEL",
                        help="which shift-add entry of the record gives the formats (default: its first)")
    parser.add_argument("--vectors", type=int, default=256, metavar="N",
                        help="tokens (language models) or sequences of the evaluation sample compiled into the "
                        "self-test (default 256)")  # fmt: skip
    parser.add_argument("--accept-retrained", action="store_true",
                        help="export even when the retrained model's test metric differs from the record's")
    parser.add_argument("--no-verify", action="store_true", help="write the sources only; compile nothing")


def _records(run_dir: Path) -> list[dict[str, Any]]:
    from qbench.errors import UsageError
    from qbench.leaderboard.audit.sources import load_records

    path = run_dir / "qbench.sqlite" if run_dir.is_dir() else run_dir
    if not path.exists():
        raise UsageError(f"{run_dir}: no qbench.sqlite here; give a run folder written by qbench run")
    records, _ = load_records(path)
    return records


def _describe(record: dict[str, Any]) -> str:
    return (f"{record.get(R.CASE_ID)} {record.get(R.DATASET_LABEL)}/{record.get(R.CELL_LABEL)}/"
            f"{record.get(R.QUANTIZER_LABEL)} seed {record.get(R.SEED)}")  # fmt: skip


def select_record(records: list[dict[str, Any]], case: str | None, method: str | None, seed: int | None) -> dict:
    """The one record ``--case`` or ``--method --seed`` names, or a UsageError listing the candidates."""
    from qbench.errors import UsageError

    if case is not None:
        found = [r for r in records if str(r.get(R.CASE_ID, "")).startswith(case)]
        what = f"--case {case}"
    else:
        if seed is None:
            raise UsageError("--method needs --seed N (which seed's trained model to export)")
        found = []
        for r in records:
            labels = {
                str(r.get(R.QUANTIZER_LABEL)),
                f"{r.get(R.CELL_LABEL)}/{r.get(R.QUANTIZER_LABEL)}",
                f"{r.get(R.DATASET_LABEL)}/{r.get(R.CELL_LABEL)}/{r.get(R.QUANTIZER_LABEL)}",
            }
            if method in labels and r.get(R.SEED) == seed:
                found.append(r)
        what = f"--method {method} --seed {seed}"
    if len(found) == 1:
        return found[0]
    shown = "\n  ".join(_describe(r) for r in (found or records)[:20])
    if not found:
        raise UsageError(f"{what}: no record matches; the run holds:\n  {shown}")
    raise UsageError(f"{what}: {len(found)} records match; name one with --case ID or a longer label:\n  {shown}")


def label_params(label: str) -> tuple[str, dict[str, Any]]:
    """``shift-add(rounding="floor",seed=3)`` -> (``shift-add``, its parameters) (Spec.label's form)."""
    match = re.fullmatch(r"([^()]+)(?:\((.*)\))?", label.strip())
    if match is None:
        raise ValueError(f"hardware label {label!r} is not of the form name(key=value,...)")
    name, inner = match.group(1), match.group(2) or ""
    params: dict[str, Any] = {}
    decoder = json.JSONDecoder()
    pos = 0
    while pos < len(inner):
        eq = inner.index("=", pos)
        value, end = decoder.raw_decode(inner, eq + 1)
        params[inner[pos:eq]] = value
        pos = end + 1
    return name, params


def simulator_params(record: dict[str, Any], choice: str | None) -> dict[str, Any]:
    """The record's shift-add parameters (defaults when the case ran no shift-add)."""
    from qbench.errors import UsageError

    labels = [str(label) for label in record.get(R.HARDWARE) or []]
    entries = [(label, *label_params(label)) for label in labels]
    shift_add = [(label, params) for label, name, params in entries if name == "shift-add"]
    if choice is not None:
        chosen = [params for label, params in shift_add if label == choice]
        if not chosen:
            raise UsageError(f"--hardware {choice}: the record's shift-add entries are "
                             f"{', '.join(label for label, _ in shift_add) or 'none'}")  # fmt: skip
        return dict(chosen[0])
    return dict(shift_add[0][1]) if shift_add else {}


def _pin_numerics(record: dict[str, Any]) -> str:
    """Apply the record's numerics mode to this process where still possible; returns a note."""
    import os
    import sys

    from qbench.numerics import PORTABLE, pinned_environment

    provenance = record.get(R.PROVENANCE) or {}
    mode = provenance.get("numerics")
    if mode != PORTABLE:
        return f"the record was computed in {mode or 'unrecorded'} numerics on {provenance.get('cpu_model', '?')}"
    if "torch" not in sys.modules:  # the pins are read once, when torch initialises
        os.environ.update(pinned_environment(PORTABLE))
    return "the record was computed in portable numerics; retraining with the same pins"


def retrain(record: dict[str, Any]) -> Any:
    """Train the record's case again (one thread, the record's numerics mode) and return the result."""
    _pin_numerics(record)
    import torch

    import qbench
    from qbench.components import Cell, Dataset, Quantizer
    from qbench.datacache import cache_dir
    from qbench.metrics import MetricSet
    from qbench.training import train_and_evaluate

    torch.set_num_threads(1)
    host = qbench.get_host()
    quantizer = cast(Quantizer, host.registry("quantizer").get(record[R.QUANTIZER]).cls(
        **record.get(R.QUANTIZER_PARAMS, {})))
    cell = cast(Cell, host.registry("cell").get(record[R.CELL]).cls(**record.get(R.CELL_PARAMS, {})))
    dataset = cast(Dataset, host.registry("dataset").get(record[R.DATASET]).cls(**record.get(R.DATASET_PARAMS, {})))
    data = dataset.prepare(str(cache_dir()))
    return train_and_evaluate(cell, quantizer, data, dict(record[R.TRAIN]), int(record[R.SEED]), "cpu",
                              declaration=MetricSet.of(dataset))  # fmt: skip


def _check_reproduced(record: dict[str, Any], result: Any, accept: bool) -> str:
    """A line saying the retrained model is the record's; UsageError when it is not (unless accepted)."""
    from qbench.errors import UsageError

    column = str(record.get(R.PRIMARY_METRIC) or next((k for k in result.metrics if k.startswith("test_")), ""))
    recorded, reproduced = record.get(column), result.metrics.get(column)
    if result.status != "ok" or result.exported is None:
        raise UsageError(f"retraining {_describe(record)} ended with status {result.status!r}: {result.message}")
    if recorded == reproduced:
        return f"retrained: {column} = {reproduced!r}, identical to the record"
    line = f"retrained: {column} = {reproduced!r}, the record says {recorded!r}"
    if not accept:
        raise UsageError(f"{line}: the retrained model is not the record's ({_pin_numerics(record)}; another "
                         "CPU, torch or plugin version gives other last bits, docs/numerics.md); rerun the case "
                         "here, or pass --accept-retrained to export this model")  # fmt: skip
    return line + " (accepted with --accept-retrained)"


def prepare_folder(out: Path, force: bool) -> None:
    """``out`` empty, missing, or written by an earlier export (its files are replaced); else UsageError."""
    from qbench.errors import UsageError
    from qbench.outdir import prepare_out_dir, shown

    if out.is_dir() and any(out.iterdir()):
        marker = out / MARKER
        if marker.is_file():
            for name in json.loads(marker.read_text()).get("files", []):
                target = out / name
                if target.is_file() and target.parent == out:
                    target.unlink()
        elif not force:
            raise UsageError(f"--out {shown(out)}: the folder holds files qbench export did not write; give an "
                             "empty or new folder, or pass --force to write into it anyway")  # fmt: skip
    prepare_out_dir(out)


def execute(args: argparse.Namespace) -> int:
    import qbench
    from qbench.errors import ExitCode, UsageError

    if args.vectors < 1:
        raise UsageError(f"--vectors {args.vectors}: give at least 1")
    records = _records(args.run_dir)
    record = select_record(records, args.case, args.method, args.seed)
    if record.get(R.STATUS) != "ok":
        raise UsageError(f"{_describe(record)}: status {record.get(R.STATUS)!r}; only a finished case has a model")
    params = simulator_params(record, args.hardware)
    label = args.hardware or next((h for h in record.get(R.HARDWARE) or [] if label_params(h)[0] == "shift-add"), None)
    status = str((record.get(R.HARDWARE_STATUS) or {}).get(label, "")) if label else ""
    if status.startswith("unsupported"):
        # the simulator already said why this model has no integer program: no need to retrain it
        raise UsageError(f"{_describe(record)}: the shift-add simulator could not run this model ({status}); "
                         "there is no integer program to export")  # fmt: skip
    prepare_folder(args.out, args.force)
    print(f"exporting {_describe(record)} (retraining it from the record)")
    result = retrain(record)
    print(_check_reproduced(record, result, args.accept_retrained))
    from qbench_builtins.hardware.deploy import export_library

    try:
        report = export_library(result.exported, result.sample, params, args.out, args.vectors,
                                verify=not args.no_verify, source=_describe(record))  # fmt: skip
    except qbench.Unsupported as exc:
        raise UsageError(f"unsupported: {exc}") from None
    files = sorted(p.name for p in args.out.iterdir() if p.is_file() and p.name != MARKER)
    (args.out / MARKER).write_text(json.dumps({"files": files, "case_id": record[R.CASE_ID]}, indent=1) + "\n")
    print(report.summary)
    print(f"wrote {len(files)} files to {args.out} (see its README.md)")
    if report.mismatch:
        print(f"qbench bug: {report.mismatch}")
        return ExitCode.INTERNAL_ERROR
    return ExitCode.OK
