"""The output layer ``Linear(h, C)`` when a matrix assigns it a quantizer (``roles.output``).

Without ``roles.output`` the model keeps torch's ``nn.Linear`` in full precision, as every record
before the output role was made (same initialisation, same numbers). With it, the weight is a
float shadow tensor quantized exactly as the stack quantizes a declared tensor: the same
:func:`qbench.training.stack.quantize_shadow` (the host's straight-through estimator, or the
quantizer's own gradient), learned state (``init_state``) as parameters the optimizer trains,
shadow clipping to the quantizer's bound after each step, one stochastic draw per forward in
training from this layer's own seeded generator, the deterministic form in ``eval()``. Its
context: role ``"output"``, fans ``(h, C)`` (W0 = sqrt(6 / (h + C))), ``layer`` = the number of
recurrent layers.

Initialisation: Glorot uniform on [-W0, W0] (docs/paper.md, "Scale of each matrix"), as every
quantized matrix of the stack, drawn from a generator seeded with the case seed; torch's default
(uniform on 1/sqrt(h)) sits under a ternary threshold W0 / 2 for most h and would start the layer
at zero. The ``nn.Linear`` is still built first, so that the global RNG (and hence everything
drawn after it) advances as in a float-output model.

The bias stays float: it is C numbers added once per output (at the accumulator's width on
integer hardware, priced at the energy backend's ``output_bits``), its storage is negligible
beside ``C x h`` weights, and quantizing it to the weights' values (ternary +-W0, say) would pin
the class priors to three values. Records list it in ``full_precision`` ("output bias").
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qbench.components import OUTPUT_ROLE, QuantContext, Quantizer
from qbench.export import ExportedTensor
from qbench.ste import clip_shadow_
from qbench.training.stack import check_state_owner, exported_tensor, learned_parameters, quantize_shadow

#: offset between the case seed and the seeds of the output layer's initialisation and draws
OUTPUT_SEED_OFFSET = 0x0C7


class QuantizedOutput(nn.Module):
    """``y -> y @ q(W).T + b`` with ``q`` the output role's quantizer (module docstring).

    ``weight`` and ``bias`` are named as ``nn.Linear``'s, so ``state_dict`` keys stay
    ``output.weight`` / ``output.bias`` (plus ``output.quant_state.*`` for learned state).
    """

    def __init__(self, hidden: int, n_outputs: int, quantizer: Quantizer, seed: int, layer: int) -> None:
        super().__init__()
        linear = nn.Linear(hidden, n_outputs)  # the global RNG advances as for a float output layer
        self.weight = linear.weight
        self.bias = linear.bias
        self.quantizer = quantizer
        self.layer = int(layer)
        self.seed = int(seed) + OUTPUT_SEED_OFFSET
        bound = math.sqrt(6.0 / (hidden + n_outputs))
        init = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            self.weight.copy_((torch.rand(self.weight.shape, generator=init) * 2.0 - 1.0) * bound)
        self._draws: torch.Generator | None = None
        self._contexts: dict[bool, QuantContext] = {}
        self.quant_state = nn.ModuleDict()
        state = quantizer.init_state(self.weight.detach(), self._context(False, None))
        if state:
            check_state_owner(quantizer.for_role(OUTPUT_ROLE))
            self.quant_state["weight"] = learned_parameters(state)

    def __getstate__(self) -> dict[str, Any]:
        # a torch.Generator does not pickle; the draws restart from the seed on the other side
        state = self.__dict__.copy()
        state.update(_draws=None, _contexts={})
        return state

    def _context(self, training: bool, generator: torch.Generator | None) -> QuantContext:
        n_outputs, hidden = self.weight.shape
        states = self.quant_state
        learned = states["weight"] if "weight" in states else None
        return QuantContext(OUTPUT_ROLE, int(hidden), int(n_outputs), training, generator, self.layer,
                            learned)  # type: ignore[arg-type]  # fmt: skip

    def context(self, training: bool) -> QuantContext:
        """The quantizer context of the weight (its generator on the weight's device)."""
        device = self.weight.device
        if self._draws is None or self._draws.device != device:
            self._draws = torch.Generator(device=device).manual_seed(self.seed + 1)
            self._contexts.clear()
        ctx = self._contexts.get(training)
        if ctx is None:
            ctx = self._contexts[training] = self._context(training, self._draws)
        return ctx

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        weight = quantize_shadow(self.quantizer, self.weight, self.context(self.training))
        return F.linear(y, weight, self.bias)

    @torch.no_grad()
    def clip_shadow_weights_(self) -> None:
        clip_shadow_(self.weight, self.quantizer, self.context(True))

    @torch.no_grad()
    def export_tensor(self) -> ExportedTensor:
        """The deterministic quantized weight with its declared format (bits, scale, learned state)."""
        ctx = self.context(False)
        return exported_tensor(self.quantizer, self.quantizer.quantize(self.weight.detach(), ctx), ctx, "matrix")


def build_output(hidden: int, n_outputs: int, quantizer: Quantizer | None, seed: int,
                 layer: int) -> nn.Linear | QuantizedOutput:  # fmt: skip
    """The output layer: ``nn.Linear`` in full precision without an output quantizer (as always)."""
    if quantizer is None:
        return nn.Linear(hidden, n_outputs)
    return QuantizedOutput(hidden, n_outputs, quantizer, seed, layer)
