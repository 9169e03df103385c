"""Batches, training epochs and evaluation of the four tasks: language modelling, classification,
per-step labelling and regression.

Every task computes *measures* (:data:`qbench.metrics.MEASURES`: bits, nats, perplexity,
accuracy) on a split; the dataset's declared metrics (:class:`qbench.metrics.MetricSet`) name
them: ``<split>_<metric name>`` = that metric's measure on that split. The selecting metric's
validation value chooses the best epoch (ties: the lower validation loss).

Language modelling: each split is cut into ``B`` contiguous columns (``[L, B]``, time-major);
truncated BPTT walks the columns in segments of ``bptt`` characters and carries the hidden state
across segments (detached). Evaluation does the same with wider batches under ``no_grad``;
bits = mean cross-entropy (nats) / ln 2.

Classification: sequences ``[N, T, F]`` in shuffled minibatches (seeded order); the class is read
from the last true step.

Per-step labelling: the same sequences with one label per time step (``y [N, T]``); the loss and
the accuracy are over the true steps of every sequence (padding never counts).

Regression: the same sequences with D real targets each (``y [N, D]``), predicted by the output
layer from the last true step; the loss is the mean squared error over every target value
(measures ``mse``, and ``mae``, the mean absolute error).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from qbench.data import (
    ClassificationData,
    EvalSample,
    LanguageModelData,
    RegressionData,
    SequenceLabellingData,
    SequenceSplit,
)
from qbench.metrics import MetricSet
from qbench.training.model import SequenceModel

#: columns of the evaluation batch (more is faster; each column starts from a zero state)
EVAL_COLUMNS = 64
#: time steps per evaluation segment (state carried between segments)
EVAL_SEGMENT = 256
#: sequences per evaluation batch for classification
EVAL_SEQUENCES = 2048

StepFn = Callable[[torch.Tensor], None]
Measures = dict[str, float]  # measure name -> value, on one split


def loss_measures(nats: float) -> Measures:
    """Every measure of a mean cross-entropy (nats)."""
    return {"nats": nats, "bits": nats / math.log(2), "perplexity": math.exp(min(nats, 700.0))}


class DeclaredMetrics:
    """The dataset's declaration applied: which measure is which column, and how epochs compare."""

    #: the measure of the training loss (the tie-break between epochs, the divergence check)
    loss_measure = "nats"

    def __init__(self, declared: MetricSet):
        self.declared = declared
        self.selecting = declared.selecting
        self.valid_key = declared.selection_column
        self.directions = declared.columns()

    def validation_value(self, measures: Measures) -> float:
        return measures[self.selecting.measure]

    def better(self, new: Measures, best: Measures | None) -> bool:
        """The selecting metric improves (in its direction); at an equal value, the lower loss."""
        if best is None:
            return True
        value, old = self.validation_value(new), self.validation_value(best)
        if value != old:
            return value < old if self.selecting.sense == "min" else value > old
        return new[self.loss_measure] < best[self.loss_measure]

    def train_measures(self, train_loss: float) -> Measures:
        """The measures of the mean training loss (cross-entropy in nats here)."""
        return loss_measures(train_loss)

    def columns(self, test: Measures, valid: Measures, train_nats: float) -> dict[str, float]:
        by_split = {"test": test, "valid": valid, "train": self.train_measures(train_nats)}
        return {f"{split}_{m.name}": by_split[split][m.measure] for m in self.declared.metrics for split in m.splits}

    def sample_metrics(self, measures: Measures) -> dict[str, float]:
        """The float model's metrics on the hardware sample: the primary column and every measure."""
        primary = self.declared.primary
        return {f"test_{primary.name}": measures[primary.measure], **measures}


def detach_state(state: Any) -> Any:
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def columns(tokens: np.ndarray, count: int, device: str | torch.device) -> torch.Tensor:
    """``tokens [N]`` -> ``[N // count, count]`` int64: column j is a contiguous stretch of the stream."""
    length = len(tokens) // count
    cut = np.asarray(tokens[: length * count], dtype=np.int64).reshape(count, length).T
    return torch.from_numpy(np.ascontiguousarray(cut)).to(device)


class LanguageModelTask(DeclaredMetrics):
    """Truncated BPTT over contiguous character streams; measures of the next-symbol loss."""

    def __init__(self, data: LanguageModelData, train: dict[str, Any], device: str | torch.device,
                 declared: MetricSet) -> None:  # fmt: skip
        super().__init__(declared)
        self.data = data
        self.device = device
        self.bptt = int(train["bptt"])
        batch = max(1, min(int(train["batch"]), (len(data.train) - 1) // 2))
        self.stream = columns(data.train, batch, device)
        self.eval_tokens = int(train["eval_tokens"])
        self.hardware_tokens = int(train["hardware_tokens"])

    def segments(self) -> int:
        return max(1, math.ceil((self.stream.shape[0] - 1) / self.bptt))

    def train_epoch(
        self, model: SequenceModel, step: StepFn, rng: np.random.Generator, max_steps: int
    ) -> tuple[torch.Tensor, int, int]:
        """One pass (or ``max_steps`` segments from a seeded start): (sum of losses, their count, tokens)."""
        total = self.segments()
        order = list(range(total))
        if max_steps and max_steps < total:
            first = int(rng.integers(total))
            order = [(first + i) % total for i in range(max_steps)]
        stream, bptt, vocab = self.stream, self.bptt, model.vocab
        loss_sum = torch.zeros((), device=stream.device)
        tokens = 0
        state = None
        previous = -2
        for segment in order:
            if segment != previous + 1:
                state = None  # wrapped around: the carried state belongs to another stretch
            previous = segment
            start = segment * bptt
            steps = min(bptt, stream.shape[0] - 1 - start)
            inputs, targets = stream[start : start + steps], stream[start + 1 : start + 1 + steps]
            logits, state = model.forward_tokens(inputs, state)
            state = detach_state(state)
            loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
            step(loss)
            count = targets.numel()
            loss_sum += loss.detach() * count
            tokens += count
        return loss_sum, tokens, tokens

    @torch.no_grad()
    def stream_loss(self, model: SequenceModel, tokens: np.ndarray, width: int = EVAL_COLUMNS) -> float:
        """Mean cross-entropy (nats) of predicting each next token, columns of at least a segment."""
        width = max(1, min(width, (len(tokens) - 1) // EVAL_SEGMENT))
        stream = columns(tokens, width, self.device)
        total = torch.zeros((), dtype=torch.float64, device=stream.device)
        state = None
        for start in range(0, stream.shape[0] - 1, EVAL_SEGMENT):
            steps = min(EVAL_SEGMENT, stream.shape[0] - 1 - start)
            logits, state = model.forward_tokens(stream[start : start + steps], state)
            targets = stream[start + 1 : start + 1 + steps]
            total += F.cross_entropy(logits.reshape(-1, model.vocab), targets.reshape(-1), reduction="sum")
        count = (stream.shape[0] - 1) * stream.shape[1]
        return float(total.item()) / max(count, 1)

    def _limit(self, tokens: np.ndarray) -> np.ndarray:
        return tokens[: self.eval_tokens + 1] if self.eval_tokens else tokens

    def validate(self, model: SequenceModel) -> Measures:
        return loss_measures(self.stream_loss(model, self._limit(self.data.valid)))

    def final_metrics(self, model: SequenceModel, best_valid: Measures, train_loss: float) -> dict[str, float]:
        return self.columns(loss_measures(self.stream_loss(model, self._limit(self.data.test))), best_valid,
                            train_loss)  # fmt: skip

    @torch.no_grad()
    def sample(self, model: SequenceModel) -> EvalSample:
        """The first ``hardware_tokens`` test characters, one stream, and the model's own predictions."""
        tokens = np.asarray(self.data.test[: max(2, self.hardware_tokens)], dtype=np.int64)
        stream = torch.from_numpy(tokens).to(self.device).unsqueeze(1)
        state = None
        predictions, total = [], 0.0
        for start in range(0, len(tokens) - 1, EVAL_SEGMENT):
            steps = min(EVAL_SEGMENT, len(tokens) - 1 - start)
            logits, state = model.forward_tokens(stream[start : start + steps], state)
            targets = stream[start + 1 : start + 1 + steps].reshape(-1)
            flat = logits.reshape(-1, model.vocab)
            total += float(F.cross_entropy(flat, targets, reduction="sum").item())
            predictions.append(flat.argmax(dim=1))
        return EvalSample(
            task=self.data.task,
            tokens=tokens,
            float_metrics=self.sample_metrics(loss_measures(total / (len(tokens) - 1))),
            float_predictions=torch.cat(predictions).cpu().numpy(),
        )


class ClassificationTask(DeclaredMetrics):
    """Seeded minibatches of whole sequences; one label per sequence, read at its last true step."""

    def __init__(self, data: ClassificationData | SequenceLabellingData, train: dict[str, Any],
                 device: str | torch.device, declared: MetricSet) -> None:  # fmt: skip
        super().__init__(declared)
        self.data = data
        self.device = device
        self.batch = int(train["batch"])
        self.hardware_tokens = int(train["hardware_tokens"])
        self.train_split = self._tensors(data.train)
        self.train_lengths = np.maximum(np.asarray(data.train.lengths, dtype=np.int64), 1)

    def _tensors(self, split: SequenceSplit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.asarray(split.x, dtype=np.float32)).to(self.device)
        # not in place: the tensor shares memory with the dataset's arrays, which the driver prepares
        # once and every in-process case reads
        lengths = torch.from_numpy(np.asarray(split.lengths, dtype=np.int64)).clamp(min=1).to(self.device)
        y = torch.from_numpy(np.asarray(split.y, dtype=np.int64)).to(self.device)
        return x, lengths, y

    def shuffled_batches(self, count: int, rng: np.random.Generator, max_steps: int) -> list[np.ndarray]:
        """Indices of one shuffled pass in batches (the first ``max_steps`` when it is set)."""
        order = rng.permutation(count)
        batches = [order[i : i + self.batch] for i in range(0, len(order), self.batch)]
        return batches[:max_steps] if max_steps else batches

    def train_epoch(
        self, model: SequenceModel, step: StepFn, rng: np.random.Generator, max_steps: int
    ) -> tuple[torch.Tensor, int, int]:
        """One shuffled pass (or ``max_steps`` batches): (sum of losses, each times what it averages
        over, the count of those, true time steps)."""
        x, lengths, y = self.train_split
        batches = self.shuffled_batches(len(y), rng, max_steps)
        loss_sum = torch.zeros((), device=x.device)
        tokens = count = 0
        for chosen in batches:
            index = torch.from_numpy(chosen).to(self.device)
            loss = self.batch_loss(model, x[index], lengths[index], y[index])
            step(loss)
            steps = int(self.train_lengths[chosen].sum())
            weight = self.loss_weight(len(chosen), steps)
            loss_sum += loss.detach() * weight
            tokens += steps
            count += weight
        return loss_sum, count, tokens

    def batch_loss(self, model: SequenceModel, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss of one batch: one label per sequence."""
        return F.cross_entropy(model.forward_sequences(x, lengths), y)

    @staticmethod
    def loss_weight(sequences: int, steps: int) -> int:
        """What :meth:`batch_loss` averages over: the sequences."""
        return sequences

    @torch.no_grad()
    def evaluate(self, model: SequenceModel, split: SequenceSplit) -> tuple[float, float, np.ndarray]:
        """(accuracy, mean loss in nats, argmax predictions)."""
        x, lengths, y = self._tensors(split)
        loss, predictions = 0.0, []
        for i in range(0, len(y), EVAL_SEQUENCES):
            logits = model.forward_sequences(x[i : i + EVAL_SEQUENCES], lengths[i : i + EVAL_SEQUENCES])
            loss += float(F.cross_entropy(logits, y[i : i + EVAL_SEQUENCES], reduction="sum").item())
            predictions.append(logits.argmax(dim=1))
        predicted = torch.cat(predictions)
        accuracy = float((predicted == y).double().mean().item())
        return accuracy, loss / max(len(y), 1), predicted.cpu().numpy()

    def measures(self, model: SequenceModel, split: SequenceSplit) -> tuple[Measures, np.ndarray]:
        accuracy, loss, predicted = self.evaluate(model, split)
        return {"accuracy": accuracy, **loss_measures(loss)}, predicted

    def validate(self, model: SequenceModel) -> Measures:
        return self.measures(model, self.data.valid)[0]

    def final_metrics(self, model: SequenceModel, best_valid: Measures, train_loss: float) -> dict[str, float]:
        return self.columns(self.measures(model, self.data.test)[0], best_valid, train_loss)

    def sample(self, model: SequenceModel) -> EvalSample:
        """The first max(20, hardware_tokens / 10) test sequences and the model's own predictions."""
        count = min(len(self.data.test), max(20, self.hardware_tokens // 10))
        sequences = self.data.test.subset(slice(0, count))
        measures, predicted = self.measures(model, sequences)
        return EvalSample(
            task=self.data.task,
            sequences=sequences,
            float_metrics=self.sample_metrics(measures),
            float_predictions=predicted,
        )


class SequenceLabellingTask(ClassificationTask):
    """One label per time step: the loss and the accuracy over every true step of every sequence."""

    def __init__(self, data: SequenceLabellingData, train: dict[str, Any], device: str | torch.device,
                 declared: MetricSet) -> None:  # fmt: skip
        super().__init__(data, train, device, declared)

    @staticmethod
    def _mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
        return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]

    def batch_loss(self, model: SequenceModel, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss over every true step of the batch's sequences."""
        logits = model.forward_steps(x, lengths)
        mask = self._mask(lengths, logits.shape[1])
        return F.cross_entropy(logits[mask], y[:, : logits.shape[1]][mask])

    @staticmethod
    def loss_weight(sequences: int, steps: int) -> int:
        """What :meth:`batch_loss` averages over: the true steps."""
        return steps

    @torch.no_grad()
    def evaluate(self, model: SequenceModel, split: SequenceSplit) -> tuple[float, float, np.ndarray]:
        """(step accuracy, mean step loss in nats, argmax predictions of the true steps, concatenated)."""
        x, lengths, y = self._tensors(split)
        loss, right, steps, predictions = 0.0, 0, 0, []
        for i in range(0, len(y), EVAL_SEQUENCES):
            chunk = lengths[i : i + EVAL_SEQUENCES]
            logits = model.forward_steps(x[i : i + EVAL_SEQUENCES], chunk)
            mask = self._mask(chunk, logits.shape[1])
            picked, labels = logits[mask], y[i : i + EVAL_SEQUENCES][:, : logits.shape[1]][mask]
            loss += float(F.cross_entropy(picked, labels, reduction="sum").item())
            predicted = picked.argmax(dim=1)
            right += int((predicted == labels).sum().item())
            steps += int(labels.numel())
            predictions.append(predicted)
        return right / max(steps, 1), loss / max(steps, 1), torch.cat(predictions).cpu().numpy()


class RegressionTask(ClassificationTask):
    """Real targets per sequence, read at its last true step: mean squared error (the loss) and mean absolute error."""

    loss_measure = "mse"

    def __init__(self, data: RegressionData, train: dict[str, Any], device: str | torch.device,
                 declared: MetricSet) -> None:  # fmt: skip
        super().__init__(data, train, device, declared)  # type: ignore[arg-type]

    def _tensors(self, split: SequenceSplit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, lengths, _ = super()._tensors(SequenceSplit(split.x, split.lengths, np.zeros(len(split), np.int64)))
        y = torch.from_numpy(np.asarray(split.y, dtype=np.float32).reshape(len(split), -1)).to(self.device)
        return x, lengths, y

    def batch_loss(self, model: SequenceModel, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(model.forward_sequences(x, lengths), y)

    def train_measures(self, train_loss: float) -> Measures:
        return {"mse": train_loss}

    @torch.no_grad()
    def evaluate(self, model: SequenceModel, split: SequenceSplit) -> tuple[float, float, np.ndarray]:
        """(mean squared error, mean absolute error, predictions ``[N, D]``)."""
        x, lengths, y = self._tensors(split)
        squared, absolute, predictions = 0.0, 0.0, []
        for i in range(0, len(y), EVAL_SEQUENCES):
            predicted = model.forward_sequences(x[i : i + EVAL_SEQUENCES], lengths[i : i + EVAL_SEQUENCES])
            error = (predicted - y[i : i + EVAL_SEQUENCES]).double()
            squared += float(error.square().sum().item())
            absolute += float(error.abs().sum().item())
            predictions.append(predicted)
        values = max(int(y.numel()), 1)
        return squared / values, absolute / values, torch.cat(predictions).cpu().numpy()

    def measures(self, model: SequenceModel, split: SequenceSplit) -> tuple[Measures, np.ndarray]:
        mse, mae, predicted = self.evaluate(model, split)
        return {"mse": mse, "mae": mae}, predicted
