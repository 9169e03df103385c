"""Task metrics of integer and float logits, and their agreement."""

from __future__ import annotations

import numpy as np


def bits_per_character(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy in bits of ``targets`` under softmax(``logits``) ([N, V], [N])."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    picked = logits[np.arange(len(targets)), np.asarray(targets, dtype=np.int64)]
    return float(np.mean(log_norm - picked) / np.log(2.0))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def task_metric(task: str, logits: np.ndarray, targets: np.ndarray) -> float:
    if task == "language-model":
        return bits_per_character(logits, targets)
    return accuracy(logits, targets)


def agreement(predictions: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of identical predictions."""
    return float(np.mean(np.asarray(predictions) == np.asarray(reference))) if len(predictions) else 1.0


def reported_float_metric(task: str, float_metrics: dict[str, float]) -> float | None:
    """The float model's metric on the sample: the host's measure (``bits`` or ``accuracy``), else
    whichever key an older host used (``test_bpc``, ``bpc``...)."""
    measure = "bits" if task == "language-model" else "accuracy"
    if measure in float_metrics:
        return float(float_metrics[measure])
    wanted = "bpc" if task == "language-model" else "accuracy"
    for key, value in float_metrics.items():
        if wanted in key:
            return float(value)
    return None
