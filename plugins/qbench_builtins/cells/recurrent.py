"""The paper's three recurrent cells: Elman ``rnn`` (tanh), ``gru`` (reset after the product), ``lstm``.

Light module (no torch at import): :meth:`build` imports the fused quantized stack of
:mod:`qbench.training.stack` only when a model is built.

Formulas (Ott et al. 2016, section "Cells" of paper.md; gate order as torch):

* rnn:  h' = tanh(W_x x + W_h h + b)
* gru:  r, z = sigmoid(W_xr x + b_r + W_hr h + b_hr), ...;
  n = tanh(W_xn x + b_n + r * (W_hn h + b_hn)); h' = (1 - z) n + z h (torch's nn.GRU convention,
  ``z = 1 - u`` of the paper's update gate)
* lstm: i, f, o = sigmoid(...), g = tanh(...); c' = f c + i g; h' = o tanh(c') (no peepholes)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import qbench
from qbench import Param

if TYPE_CHECKING:  # pragma: no cover
    import torch


class RecurrentCell(qbench.Cell):
    """Common parameters and build of the three cells; subclasses set ``name`` and ``gate_blocks``."""

    params: ClassVar[dict[str, Param]] = {
        # upper bounds: beyond them the weights alone need tens of GB (refused before allocating)
        "hidden": Param(int, 128, "units per recurrent layer", min=1, max=16384),
        "layers": Param(int, 1, "stacked recurrent layers", min=1, max=64),
        "batch_norm": Param(bool, False, "batch norm over batch and time on each layer's input (gamma 0.1)"),
        "embedding": Param(
            int, 0, "token inputs: 0 = one-hot, >0 = full-precision embedding of that size", min=0, max=16384
        ),
    }

    def build(self, input_size: int, quantizer: qbench.Quantizer, seed: int) -> torch.nn.Module:
        """Return a :class:`qbench.training.stack.QuantizedRecurrentStack` (fused kernel, STE)."""
        from qbench.training.stack import QuantizedRecurrentStack

        return QuantizedRecurrentStack(
            self.name,
            input_size=input_size,
            hidden=self.hidden,
            layers=self.layers,
            batch_norm=self.batch_norm,
            quantizer=quantizer,
            seed=seed,
        )


class RNNCell(RecurrentCell):
    name = "rnn"
    description = "Elman RNN, h' = tanh(W_x x + W_h h + b)"
    gate_blocks = 1


class GRUCell(RecurrentCell):
    name = "gru"
    description = "GRU, reset gate applied after the recurrent product (as the paper's code and torch)"
    gate_blocks = 3


class LSTMCell(RecurrentCell):
    name = "lstm"
    description = "LSTM without peepholes (gates i, f, g, o)"
    gate_blocks = 4


BUILTIN_CELLS: tuple[type[RecurrentCell], ...] = (RNNCell, GRUCell, LSTMCell)
