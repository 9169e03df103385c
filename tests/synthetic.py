"""Synthetic records in the store's format, for the leaderboard's tests and benchmarks.

The numbers are drawn from a seeded generator around plausible values (bits per character of a
character model, energy of the shift-add hardware); they are *not* results and are never
written anywhere a user would read them as such. Every field of the record contract is present,
including failures: a ``diverged`` or ``error`` record has no metrics, as the runner writes it.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

from qbench import record as R
from qbench.record import new_record

QUANTIZERS = {
    # label: (name, params, bits per weight, mean bpc offset to float, full precision parts)
    "float": ("float", {}, 32, 0.0, []),
    "binary(stochastic=false)": ("binary", {"stochastic": False}, 1, 0.45, ["input", "output"]),
    "ternary(stochastic=false)": ("ternary", {"stochastic": False}, 2, 0.05, ["input", "output"]),
    "ternary(stochastic=true)": ("ternary", {"stochastic": True}, 2, 0.02, ["input", "output"]),
    "exponential(stochastic=false)": ("exponential", {"stochastic": False}, 4, 0.01, ["input", "output"]),
}
CELLS = {"gru(hidden=128)": ("gru", {"hidden": 128}), "lstm(hidden=128)": ("lstm", {"hidden": 128})}
#: the backends of every synthetic case and the directions their columns declare (shift-add, energy)
HARDWARE = ("shift-add", "energy")
HARDWARE_DIRECTIONS = {"sim_exact": "", "sim_max_abs_error": "min", "adds": "min", "shifts": "min", "mults": "min",
                       "energy_pj_per_token": "min"}
DATASETS = {
    "pydoc-char": ("pydoc-char", "test_bpc", "min", 2.10, "PSF-2.0"),
    "digits": ("digits", "test_accuracy", "max", 0.95, "BSD-3-Clause"),
}


def make_record(
    quantizer: str = "float",
    cell: str = "gru(hidden=128)",
    dataset: str = "pydoc-char",
    seed: int = 0,
    status: str = "ok",
    metric: float | None = None,
    matrix: str = "synthetic",
    rng: random.Random | None = None,
    epochs: int = 3,
) -> dict[str, Any]:
    """One record; ``metric`` overrides the drawn value of the dataset's primary metric."""
    rng = rng or random.Random(zlib.crc32(f"{quantizer}|{cell}|{dataset}|{seed}".encode()))
    q_name, q_params, bits, offset, full_precision = QUANTIZERS[quantizer]
    c_name, c_params = CELLS[cell]
    d_name, primary, direction, base, licence = DATASETS[dataset]
    hidden = c_params["hidden"]
    n_weights = 3 * hidden * (hidden + 64) if c_name == "gru" else 4 * hidden * (hidden + 64)
    mults = 0 if q_name in ("binary", "ternary", "exponential") else n_weights
    energy = n_weights * (0.03 if mults == 0 else 3.7) + n_weights * bits * 0.0025
    if metric is None:
        noise = rng.gauss(0.0, 0.01)
        metric = base + offset + noise if direction == "min" else base - offset / 4 + noise / 2
    other = "valid_bpc" if primary == "test_bpc" else "valid_accuracy"
    # The fixed fields through the runner's own constructor (qbench.record), so that they cannot drift.
    record = new_record(
        case_id=f"{matrix}-{d_name}-{cell}-{quantizer}-s{seed}", matrix=matrix, seed=seed, hardware=list(HARDWARE),
        axes={R.QUANTIZER: (q_name, q_params, quantizer), R.CELL: (c_name, c_params, cell),
              R.DATASET: (d_name, {}, dataset)},
        train={"epochs": epochs, "batch": 32, "bptt": 100, "lr": 0.002},
    )  # fmt: skip
    record.update({
        R.STATUS: status,
        R.DATASET_LICENCE: licence,
        R.COST_AXES: ["energy_pj_per_token"],  # what the energy backend declares
        # the directions the dataset's metrics and the backends' columns declare (sim_exact: neither)
        R.DIRECTIONS: {primary: direction, other: direction, **HARDWARE_DIRECTIONS},
        R.CURVE: [
            {"epoch": e + 1, "train_loss": 3.0 / (e + 1) + offset, other: metric + 0.3 / (e + 1)} for e in range(epochs)
        ],
        R.TRAIN_SECONDS: 10.0 + rng.random(),
        R.TOKENS_PER_SECOND: 5000.0 + 100 * rng.random(),
        R.WEIGHT_BITS: bits,
        R.WEIGHT_BYTES: n_weights * bits / 8,
        R.FULL_PRECISION: full_precision,
        "sim_exact": q_name != "float",
        "sim_max_abs_error": 0.0 if q_name != "float" else 1e-6,
        "adds": n_weights,
        "shifts": n_weights if q_name == "exponential" else 0,
        "mults": mults,
        "energy_pj_per_token": energy,
        R.HARDWARE_STATUS: {"shift-add": "ok" if q_name != "float" else "unsupported", "energy": "ok"},
        R.DESCRIPTIONS: {
            quantizer: f"{q_name} weights, {bits} bit(s) per weight",
            cell: f"{c_name.upper()} cell",
            dataset: f"{d_name} ({licence})",
        },
        # the shape qbench.provenance writes: base_provenance's facts, the driver's, the components'
        R.PROVENANCE: {
            "qbench_version": "0.1.0",
            "plugins": {kind: {"plugin": f"qbench_builtins.{kind}", "distribution": "qbench", "version": "0.1.0"}
                        for kind in ("quantizer", "cell", "dataset")},
            "torch_version": "2.13.0",
            "python": "3.11.2",
            "device": "cpu",
            "matrix_hash": "0" * 64,
            "dataset_fingerprint": "f" * 16,
            "git_commit": None,
            "host": "synthetic",
            "executor": "local",
        },
        R.STARTED: f"2026-01-01T00:00:{seed % 60:02d}+00:00",
        R.FINISHED: f"2026-01-01T00:01:{seed % 60:02d}+00:00",
    })  # fmt: skip
    record[primary] = metric
    record[other] = metric + 0.02 if direction == "min" else metric - 0.01
    if status != "ok":
        for column in (primary, other, "sim_exact", "sim_max_abs_error", "adds", "shifts", "mults",
                       "energy_pj_per_token", "tokens_per_second"):  # fmt: skip
            record.pop(column, None)
        record[R.ERROR] = "loss became nan at epoch 2" if status == "diverged" else "RuntimeError: out of memory"
        record[R.CURVE] = record[R.CURVE][:1]
        record[R.HARDWARE_STATUS] = {}
    return record


def make_records(seeds: int = 3, datasets: tuple[str, ...] = ("pydoc-char",), rng_seed: int = 0) -> list[dict]:
    """Every quantizer x cell x dataset x seed, with the binary GRU diverging on seed 1."""
    rng = random.Random(rng_seed)
    records = []
    for dataset in datasets:
        for cell in CELLS:
            for quantizer in QUANTIZERS:
                for seed in range(seeds):
                    status = "diverged" if (quantizer.startswith("binary") and cell.startswith("gru")
                                            and seed == 1) else "ok"  # fmt: skip
                    records.append(make_record(quantizer, cell, dataset, seed, status, rng=rng))
    return records


def make_many(count: int, rng_seed: int = 0) -> list[dict]:
    """``count`` records over as many distinct matrices as it takes (the scale benchmark)."""
    rng = random.Random(rng_seed)
    combos = [(d, c, q) for d in DATASETS for c in CELLS for q in QUANTIZERS]
    records = []
    for i in range(count):
        dataset, cell, quantizer = combos[i % len(combos)]
        block, seed = divmod(i // len(combos), 5)
        record = make_record(quantizer, cell, dataset, seed, "ok" if i % 97 else "diverged",
                             matrix=f"synthetic{block}", rng=rng)  # fmt: skip
        # Distinct groups per block so that the tables grow with the store, as a real sweep does.
        record[R.CELL_LABEL] = f"{cell}#{block}"
        record[R.CASE_ID] = f"c{i:07d}"
        records.append(record)
    return records
