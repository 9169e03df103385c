"""Prepared dataset arrays: what a :class:`qbench.Dataset` hands to training and to hardware.

numpy only. Token streams are 1-D integer arrays; sequences are zero-padded float32 arrays
with their true lengths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qbench.metrics import CLASSIFICATION, LANGUAGE_MODEL, REGRESSION, SEQUENCE_LABELLING

__all__ = ["CLASSIFICATION", "LANGUAGE_MODEL", "REGRESSION", "SEQUENCE_LABELLING", "ClassificationData",
           "EvalSample", "LanguageModelData", "RegressionData", "SequenceLabellingData", "SequenceSplit"]  # fmt: skip


@dataclass(frozen=True)
class LanguageModelData:
    """Character streams for language modelling (metric: bits per character).

    :param train, valid, test: 1-D integer arrays of symbol ids in ``range(len(vocab))``.
    :param vocab: the symbols, index = id.
    :param fingerprint: hex digest of the prepared splits (recorded in every result row).
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: tuple[str, ...]
    fingerprint: str
    task: str = field(default=LANGUAGE_MODEL, init=False)

    @property
    def input_size(self) -> int:
        return len(self.vocab)

    @property
    def n_outputs(self) -> int:
        return len(self.vocab)


@dataclass(frozen=True)
class SequenceSplit:
    """Padded sequences ``x`` ``[N, T, F]`` float32, ``lengths`` ``[N]`` and labels ``y``: ``[N]`` (one
    per sequence) or ``[N, T]`` (one per time step; the steps beyond a sequence's length are ignored)."""

    x: np.ndarray
    lengths: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: np.ndarray | slice) -> SequenceSplit:
        return SequenceSplit(self.x[index], self.lengths[index], self.y[index])


@dataclass(frozen=True)
class ClassificationData:
    """Sequence classification (metric: accuracy)."""

    train: SequenceSplit
    valid: SequenceSplit
    test: SequenceSplit
    class_names: tuple[str, ...]
    fingerprint: str
    task: str = field(default=CLASSIFICATION, init=False)

    @property
    def input_size(self) -> int:
        return int(self.train.x.shape[2])

    @property
    def n_outputs(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class SequenceLabellingData(ClassificationData):
    """Per-step labelling: sequences whose ``y`` is ``[N, T]``, one class per time step (the same
    splits and class names as classification; the host dispatches on ``task``)."""

    task: str = field(default=SEQUENCE_LABELLING, init=False)


@dataclass(frozen=True)
class RegressionData:
    """Sequence regression: each split's ``y`` is ``[N, D]`` float32, D real targets per sequence,
    predicted from its last true step (the adding problem: D = 1). ``target_names`` names the D
    outputs. Measures: mean squared error (the training loss) and mean absolute error."""

    train: SequenceSplit
    valid: SequenceSplit
    test: SequenceSplit
    target_names: tuple[str, ...]
    fingerprint: str
    task: str = field(default=REGRESSION, init=False)

    @property
    def input_size(self) -> int:
        return int(self.train.x.shape[2])

    @property
    def n_outputs(self) -> int:
        return len(self.target_names)


@dataclass(frozen=True)
class EvalSample:
    """The test data a hardware backend evaluates on (a bounded slice of the test split).

    ``tokens`` for a language model (predict tokens[1:] from tokens[:-1]), ``sequences`` for
    classification and per-step labelling. ``float_metrics`` holds the float model's metrics on
    this same sample, so that a backend can report agreement: the dataset's primary column
    (``test_<name>``) and every measure the task computes (``bits``, ``nats``, ``accuracy``...).
    """

    task: str
    tokens: np.ndarray | None = None
    sequences: SequenceSplit | None = None
    float_metrics: dict[str, float] = field(default_factory=dict)
    float_predictions: np.ndarray | None = None
