"""``train_and_evaluate``: the training loop the runner calls for every case (contract).

Recipe (docs/paper.md, "Training scheme" and "Recipe"): Adam with the ``[train]`` learning rate and
torch's default betas, gradient-norm clipping (``grad_clip``, 0 disables), shadow weights
clipped to the quantizer bound after every step, truncated BPTT with the state carried for
language modelling, seeded minibatches for classification. After each epoch the validation
metric is measured (deterministic quantizer, batch-norm running statistics); when it does not
improve the learning rate is multiplied by ``lr_decay`` and after ``patience`` such epochs
training stops. The best-validation checkpoint is restored for the test metric, the export and
the hardware sample.

Metrics: the dataset's declared metrics (:class:`qbench.metrics.MetricSet`), each on its
splits: ``test_`` (test split; language modelling: at most ``eval_tokens`` characters),
``valid_`` (best epoch) and ``train_`` (mean training loss of the best epoch, measured while
training, i.e. with the training-mode quantizer). ``train_seconds`` is the wall time of the epochs
including validation; ``tokens_per_second`` counts training tokens (characters predicted, or
sequence time steps) over the time spent in training steps only.

Divergence: a NaN or infinite loss, or a loss above ``diverge_factor`` x the first step's loss,
ends the case with status ``diverged`` (the loss is read back every :data:`CHECK_EVERY` steps
and at the end of each epoch, so the loop does not wait on the device at every step).

Determinism: the stack's initialisation and stochastic draws are seeded from ``seed`` (see
:mod:`qbench.training.stack`); the output layer and embedding from ``torch.manual_seed(seed)`` (a
quantized output layer's weight and draws from the seed: :mod:`qbench.training.output`);
the batch order and BPTT start from ``numpy.random.default_rng(seed)``. With a fixed number of
torch threads on the CPU the same seed gives identical metrics and curve (except ``seconds``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qbench.components import Cell, Quantizer
from qbench.data import (
    LANGUAGE_MODEL,
    REGRESSION,
    SEQUENCE_LABELLING,
    ClassificationData,
    EvalSample,
    LanguageModelData,
    SequenceLabellingData,
)
from qbench.errors import Diverged
from qbench.export import ExportedModel
from qbench.metrics import TASK_METRICS, MetricSet
from qbench.trainconfig import resolve_train
from qbench.training.model import SequenceModel
from qbench.training.tasks import ClassificationTask, LanguageModelTask, RegressionTask, SequenceLabellingTask

#: steps between two read-backs of the loss for the divergence check
CHECK_EVERY = 25


@dataclass
class TrainResult:
    """What one training case produced (the runner copies it into the record)."""

    status: str
    metrics: dict[str, float]
    directions: dict[str, str]
    curve: list[dict[str, Any]]
    train_seconds: float
    tokens_per_second: float
    message: str = ""
    exported: ExportedModel | None = None
    sample: EvalSample | None = None
    weight_count: int = 0
    steps: int = 0  # optimizer steps taken (the budget a fair comparison reports)


class DivergenceGuard:
    """Collects step losses on the device and checks them every ``every`` steps."""

    def __init__(self, factor: float, every: int = CHECK_EVERY):
        self.factor = factor
        self.every = every
        self.reference: float | None = None
        self.pending: list[torch.Tensor] = []
        self.steps = 0

    def observe(self, loss: torch.Tensor) -> None:
        self.steps += 1
        if self.reference is None:
            self.reference = float(loss.item())
            if not math.isfinite(self.reference):
                raise Diverged(f"loss {self.reference} at the first training step")
            return
        self.pending.append(loss)
        if len(self.pending) >= self.every:
            self.check()

    def check(self) -> None:
        if not self.pending:
            return
        worst = float(torch.stack(self.pending).max().item())  # max propagates NaN
        self.pending.clear()
        limit = self.factor * max(self.reference or 0.0, 1e-12)
        if not math.isfinite(worst):
            raise Diverged(f"loss became {worst} by training step {self.steps}")
        if worst > limit:
            raise Diverged(
                f"loss exploded to {worst:.4g} (> {self.factor:g} x the first step's {self.reference:.4g}) "
                f"by training step {self.steps}"
            )


@dataclass
class PlateauSchedule:
    """Learning rate x ``decay`` after each epoch without validation improvement; stop after ``patience``.

    ``patience`` 0 never stops early. :meth:`update` returns whether training should stop.
    """

    lr: float
    decay: float
    patience: int
    bad_epochs: int = 0

    def update(self, improved: bool) -> bool:
        if improved:
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        if self.patience and self.bad_epochs >= self.patience:
            return True
        self.lr *= self.decay
        return False


class Stepper:
    """zero_grad, backward, gradient-norm clipping, Adam step, shadow clipping; and the guard."""

    def __init__(self, model: SequenceModel, lr: float, grad_clip: float, guard: DivergenceGuard):
        self.model = model
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr)
        self.grad_clip = grad_clip
        self.guard = guard

    def __call__(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip, foreach=True)
        self.optimizer.step()
        self.model.clip_shadow_weights_()
        self.guard.observe(loss.detach())

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def train_and_evaluate(
    cell: Cell,
    quantizer: Quantizer,
    data: LanguageModelData | ClassificationData | SequenceLabellingData,
    train: dict[str, Any],
    seed: int,
    device: str = "cpu",
    progress: Callable[[dict[str, Any]], None] | None = None,
    declaration: MetricSet | None = None,
) -> TrainResult:
    """Train ``cell`` with ``quantizer`` on ``data``, evaluate the best checkpoint, export it.

    Never raises for divergence: returns status ``"diverged"`` with the metrics that exist.
    ``declaration``: the dataset's declared metrics (default: the task's default metrics, ``TASK_METRICS``).
    """
    train = resolve_train(dict(train))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    task = task_for(data, train, device, declaration or MetricSet(data.task, TASK_METRICS[data.task]))
    model = SequenceModel(cell, quantizer, data.task, data.input_size, data.n_outputs, seed).to(device)
    guard = DivergenceGuard(float(train["diverge_factor"]))
    stepper = Stepper(model, float(train["lr"]), float(train["grad_clip"]), guard)
    weight_count = int(model.quantized_parameter_count())
    fit = fit_epochs(model, task, stepper, rng, train, progress)
    best = fit.best
    if fit.status != "ok" or best is None:  # diverged (a finished epoch always sets the best, so only then)
        metrics = {task.valid_key: task.validation_value(best.valid)} if best is not None else {}
        return TrainResult(
            fit.status, metrics, dict(task.directions), fit.curve, fit.train_seconds, fit.tokens_per_second,
            message=fit.message, weight_count=weight_count, steps=guard.steps,
        )
    model.load_state_dict(best.state)
    model.eval()
    return TrainResult(
        status="ok",
        metrics=task.final_metrics(model, best.valid, best.train_loss),
        directions=dict(task.directions),
        curve=fit.curve,
        train_seconds=fit.train_seconds,
        tokens_per_second=fit.tokens_per_second,
        exported=model.export(data.task),
        sample=task.sample(model),
        weight_count=weight_count,
        steps=guard.steps,
    )


Task = LanguageModelTask | ClassificationTask


def task_for(data: LanguageModelData | ClassificationData | SequenceLabellingData, train: dict[str, Any],
             device: str, declared: MetricSet) -> Task:  # fmt: skip
    """The task that trains and measures ``data`` (by its declared task)."""
    if data.task == LANGUAGE_MODEL:
        return LanguageModelTask(data, train, device, declared)  # type: ignore[arg-type]
    if data.task == SEQUENCE_LABELLING:
        return SequenceLabellingTask(data, train, device, declared)  # type: ignore[arg-type]
    if data.task == REGRESSION:
        return RegressionTask(data, train, device, declared)  # type: ignore[arg-type]
    return ClassificationTask(data, train, device, declared)  # type: ignore[arg-type]


@dataclass
class Best:
    """The best-validation epoch: its validation measures, its weights and its mean training loss."""

    valid: dict[str, float]
    state: dict[str, torch.Tensor]
    train_loss: float


@dataclass
class Fit:
    """What the epochs produced: the curve, the best-validation checkpoint and the timings."""

    status: str = "ok"
    message: str = ""
    curve: list[dict[str, Any]] = field(default_factory=list)
    best: Best | None = None
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0


def fit_epochs(model: SequenceModel, task: Task, stepper: Stepper, rng: np.random.Generator, train: dict[str, Any],
               progress: Callable[[dict[str, Any]], None] | None) -> Fit:  # fmt: skip
    """Train epoch by epoch, keep the best validation checkpoint, decay the learning rate on a plateau
    and stop after ``patience`` epochs without improvement; a divergence ends it with status ``diverged``."""
    fit = Fit()
    lr = float(train["lr"])
    schedule = PlateauSchedule(lr, float(train["lr_decay"]), int(train["patience"]))
    train_tokens = 0
    step_seconds = 0.0
    started = time.perf_counter()
    try:
        for epoch in range(1, int(train["epochs"]) + 1):
            epoch_start = time.perf_counter()
            model.train()
            loss_sum, count, tokens = task.train_epoch(model, stepper, rng, int(train["max_steps"]))
            stepper.guard.check()
            train_loss = float(loss_sum.item()) / max(count, 1)
            step_seconds += time.perf_counter() - epoch_start
            train_tokens += tokens
            if not math.isfinite(train_loss):
                raise Diverged(f"mean training loss {train_loss} in epoch {epoch}")
            model.eval()
            valid = task.validate(model)
            loss = valid[task.loss_measure]
            if not math.isfinite(loss) or not math.isfinite(task.validation_value(valid)):
                raise Diverged(f"validation loss {loss} after epoch {epoch}")
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                task.valid_key: task.validation_value(valid),
                "lr": lr,
                "seconds": time.perf_counter() - epoch_start,
            }
            fit.curve.append(row)
            if progress is not None:
                progress(dict(row))
            improved = task.better(valid, fit.best.valid if fit.best is not None else None)
            if improved:
                fit.best = Best(valid, {k: v.detach().clone() for k, v in model.state_dict().items()}, train_loss)
            if schedule.update(improved):
                break
            lr = schedule.lr
            stepper.set_lr(lr)
    except Diverged as exc:
        fit.status, fit.message = "diverged", str(exc)
    fit.train_seconds = time.perf_counter() - started
    fit.tokens_per_second = train_tokens / step_seconds if step_seconds > 0 else 0.0
    return fit
