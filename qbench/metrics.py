"""Tasks and the metrics a dataset declares: what the host computes, records, ranks and compares.

A dataset names its task (:data:`TASKS`) and declares its metrics (:class:`Metric`): a name, the
*measure* the host computes for it, a direction, the splits it is reported on, which one is
primary (ranks the leaderboard) and which one selects (early stopping and the protocol's
configuration choice, on the validation split). The host knows measures, never metric names: a
record's columns are ``<split>_<name>`` and the record carries the declaration (``metrics``), from
which :func:`qbench.protocol.primary_metric` and ``selection_metric`` read.

No numpy, no torch: imported by the registry while plugins register.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LANGUAGE_MODEL = "language-model"
CLASSIFICATION = "classification"
#: one label per time step (frame-wise labels, sequence tagging, the copy-memory task)
SEQUENCE_LABELLING = "sequence-labelling"
#: real-valued targets, one vector per sequence read at its last true step (the adding problem)
REGRESSION = "regression"
TASKS = (LANGUAGE_MODEL, CLASSIFICATION, SEQUENCE_LABELLING, REGRESSION)

#: measure -> its natural direction. ``bits``: mean cross-entropy in bits per predicted symbol
#: (or step); ``nats``: the same in nats; ``perplexity``: exp(nats); ``accuracy``: fraction of
#: predictions (symbols, sequences or steps) that are right; ``mse``: mean squared error over
#: every target value (the regression loss); ``mae``: mean absolute error.
MEASURES = {"bits": "min", "nats": "min", "perplexity": "min", "accuracy": "max", "mse": "min", "mae": "min"}
#: what each task can compute (``train`` split: only measures of the training loss)
TASK_MEASURES = {
    LANGUAGE_MODEL: ("bits", "nats", "perplexity"),
    CLASSIFICATION: ("accuracy", "bits", "nats", "perplexity"),
    SEQUENCE_LABELLING: ("accuracy", "bits", "nats", "perplexity"),
    REGRESSION: ("mse", "mae"),
}
LOSS_MEASURES = ("bits", "nats", "perplexity")
#: the measures of the training loss each task reports on the train split
TASK_LOSS_MEASURES = {task: ("mse",) if task == REGRESSION else LOSS_MEASURES for task in TASKS}
SPLITS = ("test", "valid", "train")


@dataclass(frozen=True)
class Metric:
    """One declared metric of a dataset (contract).

    :param name: the column suffix, e.g. ``"bpc"`` gives ``test_bpc``, ``valid_bpc``;
        lower case letters, digits and underscores.
    :param measure: what the host computes (:data:`MEASURES`).
    :param direction: ``"min"`` or ``"max"``; ``""`` takes the measure's own direction.
    :param primary: ranks the leaderboard (its ``test_`` column); exactly one metric is primary.
    :param selects: its ``valid_`` column picks the best epoch and the tuned configuration;
        at most one; by default the primary one.
    :param splits: where it is reported; ``train`` only for loss measures (bits, nats, perplexity).
    :param description: one line for the leaderboard.
    :param margin: the default equivalence margin of its ``test_`` column, in the metric's unit
        (a difference smaller than this is negligible for this dataset); ``None``: no default,
        equivalence is tested only where a matrix sets ``[compare] margin``.
    """

    name: str
    measure: str
    direction: str = ""
    primary: bool = False
    selects: bool = False
    splits: tuple[str, ...] = ("test", "valid")
    description: str = ""
    margin: float | None = None

    @property
    def sense(self) -> str:
        return self.direction or MEASURES.get(self.measure, "min")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "measure": self.measure, "direction": self.sense, "primary": self.primary,
                "selects": self.selects, "splits": list(self.splits), "description": self.description}  # fmt: skip


#: The metrics of a dataset that declares none, per task: the columns such datasets always had
#: (stored records keep their column names). New datasets declare their own.
TASK_METRICS: dict[str, tuple[Metric, ...]] = {
    LANGUAGE_MODEL: (Metric("bpc", "bits", primary=True, splits=("test", "valid", "train"),
                            description="bits per character"),),  # fmt: skip
    CLASSIFICATION: (Metric("accuracy", "accuracy", primary=True, description="fraction of sequences right"),
                     Metric("loss", "nats", splits=("test",), description="cross-entropy (nats)")),  # fmt: skip
    SEQUENCE_LABELLING: (Metric("accuracy", "accuracy", primary=True, description="fraction of steps right"),
                         Metric("loss", "nats", splits=("test",), description="cross-entropy (nats)")),  # fmt: skip
    REGRESSION: (Metric("mse", "mse", primary=True, splits=("test", "valid", "train"),
                        description="mean squared error"),),  # fmt: skip
}


class MetricError(ValueError):
    """A declaration that cannot be used (the registry turns it into a plugin error)."""


@dataclass(frozen=True)
class MetricSet:
    """A dataset's checked declaration: its columns, the primary and the selecting metric."""

    task: str
    metrics: tuple[Metric, ...]

    @classmethod
    def of(cls, dataset: Any) -> MetricSet:
        """The checked declaration of a dataset class or instance (raises :class:`MetricError`)."""
        task = getattr(dataset, "task", LANGUAGE_MODEL)
        if task not in TASKS:
            raise MetricError(f"task {task!r} is not one of {', '.join(TASKS)}")
        declared = getattr(dataset, "metrics", None)
        metrics = TASK_METRICS[task] if declared is None else declared
        return cls(task, check_metrics(task, metrics))

    @property
    def primary(self) -> Metric:
        return next(m for m in self.metrics if m.primary)

    @property
    def selecting(self) -> Metric:
        return next((m for m in self.metrics if m.selects), self.primary)

    def columns(self) -> dict[str, str]:
        """``{split_name: direction}`` of every reported column."""
        return {f"{split}_{m.name}": m.sense for m in self.metrics for split in m.splits}

    def margins(self) -> dict[str, float]:
        """``{test column: default margin}`` of the metrics that declare one."""
        return {f"test_{m.name}": float(m.margin) for m in self.metrics if m.margin is not None and "test" in m.splits}

    @property
    def primary_column(self) -> str:
        return f"test_{self.primary.name}"

    @property
    def selection_column(self) -> str:
        return f"valid_{self.selecting.name}"

    def as_record(self) -> dict[str, Any]:
        """What a record carries as ``metrics`` (read back by :func:`declared_primary` and co.)."""
        return {"task": self.task, "primary": self.primary_column, "selection": self.selection_column,
                "declared": [m.as_dict() for m in self.metrics]}  # fmt: skip


def check_metrics(task: str, metrics: Any) -> tuple[Metric, ...]:
    """Validate a declaration for ``task``; every problem is one :class:`MetricError` saying what to fix."""
    import math
    import re

    if not isinstance(metrics, (list, tuple)) or not metrics or not all(isinstance(m, Metric) for m in metrics):
        raise MetricError(f"metrics must be a non-empty tuple of qbench.Metric, got {metrics!r}")
    names = [m.name for m in metrics]
    for metric in metrics:
        if not isinstance(metric.name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", metric.name):
            raise MetricError(f"metric name {metric.name!r} must be lower case letters, digits and underscores")
        if metric.measure not in TASK_MEASURES[task]:
            raise MetricError(f"metric {metric.name!r}: measure {metric.measure!r} is not one the {task} task "
                              f"computes ({', '.join(TASK_MEASURES[task])})")  # fmt: skip
        if metric.direction not in ("", "min", "max"):
            raise MetricError(f"metric {metric.name!r}: direction must be 'min', 'max' or '', got {metric.direction!r}")
        splits = tuple(metric.splits) if isinstance(metric.splits, (list, tuple)) else ()
        if not splits or any(s not in SPLITS for s in splits) or len(set(splits)) != len(splits):
            raise MetricError(f"metric {metric.name!r}: splits must be distinct names among {', '.join(SPLITS)}, "
                              f"got {metric.splits!r}")  # fmt: skip
        margin = metric.margin
        if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))
                                   or not math.isfinite(margin) or margin <= 0):  # fmt: skip
            raise MetricError(f"metric {metric.name!r}: margin must be a positive finite number (an equivalence "
                              f"margin in the metric's unit) or None, got {margin!r}")  # fmt: skip
        if "train" in splits and metric.measure not in TASK_LOSS_MEASURES[task]:
            raise MetricError(f"metric {metric.name!r}: the train split reports only the training loss "
                              f"({', '.join(TASK_LOSS_MEASURES[task])}), not {metric.measure!r}")  # fmt: skip
    if len(set(names)) != len(names):
        raise MetricError(f"metric names must be distinct, got {names}")
    primaries = [m.name for m in metrics if m.primary]
    if len(primaries) != 1:
        raise MetricError(f"exactly one metric must be primary=True, got {primaries or 'none'}")
    chosen = [m for m in metrics if m.selects] or [m for m in metrics if m.primary]
    if len(chosen) != 1:
        raise MetricError(f"at most one metric selects=True, got {[m.name for m in chosen]}")
    for metric in metrics:
        if metric.primary and "test" not in metric.splits:
            raise MetricError(f"the primary metric {metric.name!r} must be reported on the test split")
    if "valid" not in chosen[0].splits:
        raise MetricError(f"the selecting metric {chosen[0].name!r} must be reported on the valid split")
    return tuple(metrics)


def declared_primary(declaration: Any) -> str:
    """The primary column a record's ``metrics`` declaration names ("" when it names none)."""
    value = declaration.get("primary") if isinstance(declaration, Mapping) else None
    return value if isinstance(value, str) else ""


def declared_selection(declaration: Any) -> str:
    value = declaration.get("selection") if isinstance(declaration, Mapping) else None
    return value if isinstance(value, str) else ""


def first_test_column(columns: Sequence[str]) -> str:
    """A record made before metrics were declared: its first ``test_`` column, alphabetically."""
    tests = sorted(c for c in columns if c.startswith("test_"))
    return tests[0] if tests else ""
