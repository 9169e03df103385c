"""``delayed-copy``: a per-step labelling dataset with its own metrics (qbench's public plugin contract).

Each sequence is a stream of random symbols (one-hot features); the label of step ``t`` is the
symbol seen ``delay`` steps earlier (a ``blank`` class before that): the network must hold the
last ``delay`` symbols in its state, a small cousin of the copy-memory task. Generated from a
seed, so it needs no download and its fingerprint is reproducible.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import qbench
from qbench import Metric, Param


class DelayedCopy(qbench.Dataset):
    """Label every step with the symbol ``delay`` steps back (per-step labelling)."""

    name: ClassVar[str] = "delayed-copy"
    description: ClassVar[str] = "per-step labels: each step's symbol delay steps back (generated, seeded)"
    licence: ClassVar[str] = "CC0-1.0 (generated)"
    task: ClassVar[str] = "sequence-labelling"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("step_accuracy", "accuracy", "max", primary=True, description="fraction of steps labelled right"),
        Metric("step_bits", "bits", "min", splits=("test", "valid", "train"),
               description="cross-entropy per step (bits)"),
    )
    params: ClassVar[dict[str, Param]] = {
        "symbols": Param(int, 4, "distinct input symbols", min=2, max=64),
        "delay": Param(int, 2, "how many steps back the label looks", min=1, max=32),
        "length": Param(int, 24, "time steps per sequence", min=2, max=1000),
        "sequences": Param(int, 480, "sequences in all (70% train, 15% valid, 15% test)", min=20, max=100000),
        "data_seed": Param(int, 0, "seed of the generated data (independent of the case seed)", min=0),
    }

    def validate(self) -> None:
        if self.delay >= self.length:
            self._reject(f"delay ({self.delay}) must be shorter than length ({self.length})")

    def prepare(self, cache_dir: str):  # type: ignore[no-untyped-def]
        import numpy as np

        from qbench.data import SequenceLabellingData, SequenceSplit

        rng = np.random.default_rng(self.data_seed)
        n, t, k = self.sequences, self.length, self.symbols
        symbols = rng.integers(0, k, size=(n, t))
        x = np.eye(k, dtype=np.float32)[symbols]
        # lengths vary (at least delay + 1 steps) so that padding is exercised
        lengths = rng.integers(self.delay + 1, t + 1, size=n).astype(np.int64)
        y = np.full((n, t), k, dtype=np.int64)  # class k = blank (nothing to copy yet)
        y[:, self.delay:] = symbols[:, : t - self.delay]
        x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
        cut_train, cut_valid = int(0.7 * n), int(0.85 * n)
        parts = [slice(0, cut_train), slice(cut_train, cut_valid), slice(cut_valid, n)]
        splits = [SequenceSplit(x[p], lengths[p], y[p]) for p in parts]
        digest = hashlib.sha256(b"".join(a.tobytes() for a in (x, lengths, y))).hexdigest()
        names = tuple(f"s{i}" for i in range(k)) + ("blank",)
        return SequenceLabellingData(*splits, class_names=names, fingerprint=digest)

    def availability(self, cache_dir: str) -> str:
        return "ready (generated)"


@qbench.hookimpl
def qbench_register_datasets() -> list[type]:
    return [DelayedCopy]
