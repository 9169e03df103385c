"""The whole network: full-precision input encoding, the quantized stack, full-precision output layer.

Inputs (kept in full precision, as the paper and the leaderboard say):

* characters with ``cell.embedding == 0``: one-hot vectors (the input matrix's columns are
  selected), ``input_kind = "one-hot"``;
* characters with ``cell.embedding = E > 0``: a float embedding ``[V, E]`` (``"embedding"``);
* classification and per-step labelling sequences: their float features (``"features"``);
  ``embedding`` is ignored.

The output layer ``Linear(h, C)`` stays float unless the matrix assigns the output role
(``roles.output``: :mod:`qbench.training.output`, its weight quantized, its bias float). A classifier
reads the last layer's output at each sequence's last true step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qbench.components import Cell, Quantizer
from qbench.export import ExportedModel
from qbench.metrics import LANGUAGE_MODEL
from qbench.roles import output_quantizer
from qbench.training.output import QuantizedOutput, build_output
from qbench.training.stack import build_stack


class SequenceModel(nn.Module):
    """Input encoding + ``cell.build(...)`` stack + output layer, for one task."""

    def __init__(self, cell: Cell, quantizer: Quantizer, task: str, input_size: int, n_outputs: int, seed: int):
        super().__init__()
        self.task = task
        self.vocab = input_size
        self.cell_name = cell.name
        self.quantizer = quantizer
        embedding = int(getattr(cell, "embedding", 0) or 0)
        self.embedding: nn.Embedding | None = None
        if task == LANGUAGE_MODEL:
            self.input_kind = "embedding" if embedding > 0 else "one-hot"
            if embedding > 0:
                self.embedding = nn.Embedding(input_size, embedding)
            stack_input = embedding if embedding > 0 else input_size
        else:
            self.input_kind = "features"
            stack_input = input_size
        # the stack contract (forward, export_layers, clip_shadow_weights_, ...) is duck-typed
        stack: Any = build_stack(cell, stack_input, quantizer, seed)
        self.stack = stack
        layers = int(cell.config.get("layers", 1) or 1)
        hidden = int(cell.config["hidden"])
        self.output: nn.Linear | QuantizedOutput = build_output(hidden, n_outputs, output_quantizer(quantizer), seed,
                                                                layers)  # fmt: skip

    @property
    def quantized_output(self) -> QuantizedOutput | None:
        """The output layer when the matrix assigned it a quantizer (None: full precision)."""
        return self.output if isinstance(self.output, QuantizedOutput) else None

    def clip_shadow_weights_(self) -> None:
        """Clip every shadow weight to its quantizer's bound (after each optimizer step)."""
        self.stack.clip_shadow_weights_()
        if self.quantized_output is not None:
            self.quantized_output.clip_shadow_weights_()

    def quantized_parameter_count(self) -> int:
        """Weights that go through a quantizer: the stack's, and the output layer's when it is quantized."""
        count = int(self.stack.quantized_parameter_count())
        if self.quantized_output is not None:
            count += int(self.quantized_output.weight.numel())
        return count

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding(tokens)
        return F.one_hot(tokens, self.vocab).to(torch.float32)

    def forward_tokens(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``tokens [T, B]`` -> logits ``[T, B, V]`` of the next token, and the carried state."""
        y, state = self.stack(self.encode(tokens), state)
        return self.output(y), state

    def forward_sequences(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, T, F]`` with true ``lengths [B]`` -> class logits ``[B, C]``."""
        y, _ = self.stack(x.transpose(0, 1).contiguous(), None)
        last = y[lengths - 1, torch.arange(y.shape[1], device=y.device)]
        return self.output(last)

    def forward_steps(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, T, F]`` -> logits ``[B, T', C]`` of every step up to the longest true length ``T'``."""
        steps = int(lengths.max().item()) if len(lengths) else 0
        y, _ = self.stack(x[:, :steps].transpose(0, 1).contiguous(), None)
        return self.output(y).transpose(0, 1)

    @torch.no_grad()
    def export(self, task: str) -> ExportedModel:
        """The framework-neutral model (deterministic quantized weights, folded batch norm)."""
        quantized = self.quantized_output
        output_tensor = None if quantized is None else quantized.export_tensor()
        if output_tensor is None:
            output_weight = self.output.weight.detach().cpu().double().numpy()
        else:
            output_weight = output_tensor.values
        return ExportedModel(
            cell=self.cell_name,
            task=task,
            input_kind=self.input_kind,
            input_size=self.vocab,
            layers=self.stack.export_layers(),
            output_weight=output_weight,
            output_bias=self.output.bias.detach().cpu().double().numpy(),
            embedding=None
            if self.embedding is None
            else self.embedding.weight.detach().cpu().double().numpy(),
            output_scheme="float" if output_tensor is None else output_tensor.scheme,
            quantizer=self.quantizer.name,
            quantizer_params=dict(self.quantizer.config),
            output_tensor=output_tensor,
        )
