"""Training, evaluation and export of quantized recurrent models (imports torch; not part of ``import qbench``).

* :mod:`qbench.training.stack`: the quantized recurrent stack (fused kernel, straight-through);
* :mod:`qbench.training.reference`: per-time-step cells, the tests' reference;
* :mod:`qbench.training.model`: input encoding + stack + output layer (full precision unless the
  matrix assigns ``roles.output``: :mod:`qbench.training.output`), export;
* :mod:`qbench.training.tasks`: language modelling and classification batches and metrics;
* :mod:`qbench.training.loop`: :func:`train_and_evaluate` and :class:`TrainResult`.
"""

from __future__ import annotations

from qbench.training.loop import TrainResult, train_and_evaluate
from qbench.training.stack import build_stack

__all__ = ["TrainResult", "build_stack", "train_and_evaluate"]
