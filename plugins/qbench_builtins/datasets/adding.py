"""``adding-problem``: the adding problem, a regression task (Hochreiter & Schmidhuber 1997).

Each sequence has two features per step: a value drawn uniformly from [0, 1] and a marker that is
1 at exactly two steps (one in the first half, one in the second) and 0 elsewhere; the target is
the sum of the two marked values (the version of Le, Jaitly & Hinton 2015, arXiv 1504.00941).
Predicting the constant 1 scores a mean squared error of 1/6 (the variance of the sum of two
uniform values), the bar a model must pass to have learned anything; the gap between the markers
grows with ``length``. Generated from a seed (no download), so the fingerprint is reproducible.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import qbench
from qbench import Metric, Param

#: the mean squared error of always predicting 1 (Var[U + U'] = 2 / 12)
CONSTANT_PREDICTOR_MSE = 1.0 / 6.0


class AddingProblem(qbench.Dataset):
    """Sum the two marked values of a sequence (regression, mean squared error)."""

    name: ClassVar[str] = "adding-problem"
    description: ClassVar[str] = ("the adding problem: sum of the two marked values "
                                  "(regression; constant guess: mse 1/6)")
    licence: ClassVar[str] = "CC0-1.0 (generated)"
    task: ClassVar[str] = "regression"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("mse", "mse", primary=True, splits=("test", "valid", "train"), description="mean squared error"),
        Metric("mae", "mae", description="mean absolute error"),
    )
    params: ClassVar[dict[str, Param]] = {
        "length": Param(int, 50, "time steps per sequence (the markers are about length / 2 apart)", min=4,
                        max=100000),
        "sequences": Param(int, 3000, "sequences in all (70% train, 15% valid, 15% test)", min=20, max=10_000_000),
        "data_seed": Param(int, 0, "seed of the generated data (independent of the case seed)", min=0),
    }

    def prepare(self, cache_dir: str):  # type: ignore[no-untyped-def]
        import numpy as np

        from qbench.data import RegressionData, SequenceSplit

        rng = np.random.default_rng(self.data_seed)
        n, t = self.sequences, self.length
        values = rng.random((n, t), dtype=np.float64).astype(np.float32)
        first = rng.integers(0, t // 2, size=n)
        second = rng.integers(t // 2, t, size=n)
        markers = np.zeros((n, t), dtype=np.float32)
        rows = np.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        x = np.stack([values, markers], axis=2)
        y = (values[rows, first].astype(np.float64) + values[rows, second]).astype(np.float32)[:, None]
        lengths = np.full(n, t, dtype=np.int64)
        cut_train, cut_valid = int(0.7 * n), int(0.85 * n)
        parts = [slice(0, cut_train), slice(cut_train, cut_valid), slice(cut_valid, n)]
        splits = [SequenceSplit(x[p], lengths[p], y[p]) for p in parts]
        digest = hashlib.sha256(b"".join(a.tobytes() for a in (x, lengths, y))).hexdigest()
        return RegressionData(*splits, target_names=("sum",), fingerprint=digest)

    def availability(self, cache_dir: str) -> str:
        return "ready (generated)"
