"""The quantized recurrent stack: float shadow weights, quantized once per step, torch's fused kernel.

Fast path (performance.md, "The one design choice that decides training speed"): at each
``forward`` in training mode every input matrix, recurrent matrix and bias of every layer is
quantized ONCE (one stochastic draw from the stack's own seeded generator, shared by all time
steps of that pass) through :func:`qbench.ste.quantize_ste`, and the quantized tensors are
handed to torch's fused recurrent kernel (``torch._VF.rnn_tanh`` / ``gru`` / ``lstm``: the CPU
fused kernel, cuDNN on a GPU). The straight-through estimator carries the gradient with respect
to the quantized tensors to the float shadow weights unchanged. In ``eval()`` the quantizer is
deterministic (``QuantContext.training`` False) and batch norm uses its running statistics.

``implementation = "loop"`` runs the plain per-time-step cells of :mod:`qbench.training.reference`
on the very same quantized tensors; the tests compare the two.

Parameters of layer ``l`` (``n`` = its input features, ``h`` = hidden, ``G`` = gate blocks):

* ``w_input`` ``[G*h, n]`` and ``w_recurrent`` ``[G*h, h]``, torch's gate order (gru r, z, n;
  lstm i, f, g, o);
* ``b_input`` ``[G*h]``: the paper's single bias b (rnn, lstm); for the gru torch's ``b_ih``;
* ``b_recurrent`` ``[G*h]``: the gru only (``b_hn`` sits inside ``r * (W_hn h + b_hn)``, which a
  single bias cannot express); rnn and lstm hand the kernel a constant zero vector instead.

Scale of each matrix (paper.md, "Scale of each matrix"): every gate block of the input matrix is
an ``n -> h`` map, so its context is ``fan_in = n, fan_out = h`` and W0 = sqrt(6 / (n + h)); every
block of the recurrent matrix is ``h -> h``, W0 = sqrt(6 / 2h) = sqrt(3 / h). All blocks of one
matrix share that context, so the stacked ``[G*h, ...]`` matrix is quantized in one call. A bias
uses its layer's input-matrix context. Weights start Glorot-uniform in [-W0, W0]; biases at zero.
Batch norm (optional) normalises each layer's input over batch and time, gamma 0.1, beta 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from qbench.components import QuantContext, Quantizer
from qbench.export import ExportedLayer, ExportedTensor
from qbench.ste import clip_shadow_

GATE_BLOCKS = {"rnn": 1, "gru": 3, "lstm": 4}
#: shadow tensor name -> role in the quantizer contract
TENSOR_ROLES = {"w_input": "input", "w_recurrent": "recurrent", "b_input": "bias", "b_recurrent": "bias"}
#: offset between the case seed and the seed of the stochastic draws (initialisation uses the seed)
DRAW_SEED_OFFSET = 0x5EED
BN_GAMMA_INIT = 0.1


class RecurrentLayer(nn.Module):
    """Shadow weights (and optional input batch norm) of one recurrent layer."""

    zero_bias: torch.Tensor
    input_size: int
    hidden: int

    def __init__(
        self, cell: str, input_size: int, hidden: int, batch_norm: bool, init: torch.Generator
    ) -> None:
        super().__init__()
        rows = GATE_BLOCKS[cell] * hidden
        self.input_size = input_size
        self.hidden = hidden
        input_bound = math.sqrt(6.0 / (input_size + hidden))
        recurrent_bound = math.sqrt(3.0 / hidden)
        self.w_input = nn.Parameter(_uniform((rows, input_size), input_bound, init))
        self.w_recurrent = nn.Parameter(_uniform((rows, hidden), recurrent_bound, init))
        self.b_input = nn.Parameter(torch.zeros(rows))
        self.b_recurrent = nn.Parameter(torch.zeros(rows)) if cell == "gru" else None
        self.norm: nn.BatchNorm1d | None = None
        if batch_norm:
            self.norm = nn.BatchNorm1d(input_size)
            with torch.no_grad():
                self.norm.weight.fill_(BN_GAMMA_INIT)
        # the kernel wants a recurrent bias: a constant zero for rnn and lstm (not a parameter)
        self.register_buffer("zero_bias", torch.zeros(rows), persistent=False)

    def shadow_tensors(self) -> list[tuple[str, nn.Parameter]]:
        names = ("w_input", "w_recurrent", "b_input", "b_recurrent")
        return [(name, getattr(self, name)) for name in names if getattr(self, name) is not None]


class StraightThrough(torch.autograd.Function):
    """Forward: the quantized tensor; backward: the gradient goes to the shadow tensor unchanged.

    The same estimator as :func:`qbench.ste.quantize_ste` (``shadow + (q - shadow).detach()``)
    without its two elementwise passes: on a GPU every pass is a kernel launch per tensor.
    """

    @staticmethod
    def forward(ctx: object, shadow: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return quantized.view_as(quantized)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ARG004
        return grad, None


def _uniform(shape: tuple[int, int], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0) * bound


class QuantizedRecurrentStack(nn.Module):
    """Layers of one cell family whose weights and biases go through ``quantizer`` (module contract).

    ``forward(x[T, B, n], state=None) -> (y[T, B, h], state)``; ``state`` is ``[layers, B, h]``
    (rnn, gru) or a pair of those (lstm), as torch's modules.
    """

    def __init__(
        self,
        cell: str,
        *,
        input_size: int,
        hidden: int,
        layers: int,
        batch_norm: bool,
        quantizer: Quantizer,
        seed: int,
    ) -> None:
        super().__init__()
        if cell not in GATE_BLOCKS:
            raise ValueError(f"unknown cell family {cell!r}; one of {sorted(GATE_BLOCKS)}")
        self.cell = cell
        self.gate_blocks = GATE_BLOCKS[cell]
        self.input_size = input_size
        self.hidden = hidden
        self.num_layers = layers
        self.quantizer = quantizer
        self.seed = int(seed)
        self.implementation = "fused"
        #: write the quantized values into a flat kernel buffer (None: on CUDA only; see _flat_buffers)
        self.flat_weights: bool | None = None
        self._flat: dict[tuple[int, str, torch.dtype], list[torch.Tensor]] = {}
        init = torch.Generator().manual_seed(self.seed)
        self.layers = nn.ModuleList(
            RecurrentLayer(cell, input_size if index == 0 else hidden, hidden, batch_norm, init)
            for index in range(layers)
        )
        self._draws: torch.Generator | None = None
        self._draw_seed = self.seed + DRAW_SEED_OFFSET
        self._contexts: dict[tuple[int, str, bool], QuantContext] = {}

    def recurrent_layers(self) -> list[RecurrentLayer]:
        """The layers, typed (``nn.ModuleList`` items are plain modules to a type checker)."""
        return list(self.layers)  # type: ignore[arg-type]

    # -- stochastic draws -------------------------------------------------------------------

    @property
    def generator(self) -> torch.Generator:
        """The seeded generator of the stochastic draws, on the device of the weights."""
        device = self.recurrent_layers()[0].w_input.device
        if self._draws is None or self._draws.device != device:
            self._draws = torch.Generator(device=device).manual_seed(self._draw_seed)
            self._contexts.clear()
        return self._draws

    def seed_draws(self, seed: int) -> None:
        """Restart the stochastic draws from ``seed`` (tests replay one draw on two implementations)."""
        self._draw_seed = int(seed)
        self.generator.manual_seed(self._draw_seed)

    def context(self, layer: int, name: str, training: bool) -> QuantContext:
        """The quantizer context of shadow tensor ``name`` of ``layer`` (see the module docstring)."""
        key = (layer, name, training)
        ctx = self._contexts.get(key)
        if ctx is None:
            generator = self.generator
            n = self.recurrent_layers()[layer].input_size
            fan_in = self.hidden if name == "w_recurrent" else n
            ctx = QuantContext(TENSOR_ROLES[name], fan_in, self.hidden, training, generator, layer)
            self._contexts[key] = ctx
        return ctx

    # -- forward ----------------------------------------------------------------------------

    def quantized_weights(self, index: int) -> list[torch.Tensor]:
        """``[w_input, w_recurrent, b_input, b_recurrent]`` of a layer as the kernel sees them (STE)."""
        layer = self.recurrent_layers()[index]
        training = self.training
        self.generator  # noqa: B018 - (re)creates the generator and contexts on the weights' device
        quantizer = self.quantizer
        use_flat = layer.w_input.is_cuda if self.flat_weights is None else self.flat_weights
        flat = self._flat_buffers(index) if use_flat else None
        tensors = []
        for position, (name, shadow) in enumerate(layer.shadow_tensors()):
            with torch.no_grad():
                quantized = quantizer.quantize(shadow.detach(), self.context(index, name, training))
                if flat is not None:
                    quantized = flat[position].copy_(quantized)
            tensors.append(StraightThrough.apply(shadow, quantized))
        if layer.b_recurrent is None:
            tensors.append(layer.zero_bias if flat is None else flat[3])
        return tensors

    def _flat_buffers(self, index: int) -> list[torch.Tensor]:
        """The "dual copy" of performance.md: four tensors that are views of one cuDNN weight buffer.

        The quantized values are copied into them every step, so that cuDNN runs on its own flat
        layout instead of packing scattered weights (and warning) at every call. The forward and
        backward of one step must finish before the next forward (as in training): the next copy
        overwrites the values the previous graph saved. On the CPU they are plain tensors.
        """
        layer = self.recurrent_layers()[index]
        key = (index, str(layer.w_input.device), layer.w_input.dtype)
        buffers = self._flat.get(key)
        if buffers is None:
            like = layer.w_input
            rows = like.shape[0]
            shapes = [(rows, layer.input_size), (rows, self.hidden), (rows,), (rows,)]
            buffers = [torch.zeros(shape, dtype=like.dtype, device=like.device) for shape in shapes]
            if like.is_cuda and torch.backends.cudnn.is_acceptable(like) and torch._use_cudnn_rnn_flatten_weight():
                from torch.backends.cudnn import rnn as cudnn_rnn

                mode = cudnn_rnn.get_cudnn_mode({"rnn": "RNN_TANH", "gru": "GRU", "lstm": "LSTM"}[self.cell])
                with torch.no_grad():
                    torch._cudnn_rnn_flatten_weight(
                        buffers, 4, layer.input_size, mode, self.hidden, 0, 1, False, False
                    )
                    for buffer in buffers:  # the rnn / lstm recurrent bias must read zero
                        buffer.zero_()
            self._flat = {k: v for k, v in self._flat.items() if k[0] != index}
            self._flat[key] = buffers
        return buffers

    def forward(self, x: torch.Tensor, state: object = None) -> tuple[torch.Tensor, object]:
        steps, batch, _ = x.shape
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden)
            state = (zeros, zeros) if self.cell == "lstm" else zeros
        finals: list[object] = []
        for index, layer in enumerate(self.recurrent_layers()):
            if layer.norm is not None:
                x = layer.norm(x.reshape(steps * batch, -1)).reshape(steps, batch, -1)
            weights = self.quantized_weights(index)
            if self.cell == "lstm":
                layer_state: object = (state[0][index : index + 1], state[1][index : index + 1])  # type: ignore[index]
            else:
                layer_state = state[index : index + 1]  # type: ignore[index]
            if self.implementation == "fused":
                x, final = self._fused(x, layer_state, weights)
            else:
                from qbench.training.reference import run_layer

                x, final = run_layer(self.cell, x, layer_state, weights)
            finals.append(final)
        if self.cell == "lstm":
            new_state: object = (
                torch.cat([f[0] for f in finals]),  # type: ignore[index]
                torch.cat([f[1] for f in finals]),  # type: ignore[index]
            )
        else:
            new_state = torch.cat(finals)  # type: ignore[arg-type]
        return x, new_state

    def _fused(self, x: torch.Tensor, state: object, weights: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
        # arguments: input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
        if self.cell == "lstm":
            y, h, c = torch._VF.lstm(x, state, weights, True, 1, 0.0, self.training, False, False)  # type: ignore[call-overload]
            return y, (h, c)
        kernel = torch._VF.gru if self.cell == "gru" else torch._VF.rnn_tanh
        y, h = kernel(x, state, weights, True, 1, 0.0, self.training, False, False)  # type: ignore[call-overload]
        return y, h

    # -- host duties ------------------------------------------------------------------------

    @torch.no_grad()
    def clip_shadow_weights_(self) -> None:
        """Clip every shadow tensor to its quantizer bound (call after each optimizer step)."""
        for index, layer in enumerate(self.recurrent_layers()):
            for name, shadow in layer.shadow_tensors():
                clip_shadow_(shadow, self.quantizer, self.context(index, name, True))

    def quantized_parameter_count(self) -> int:
        """Weights and biases that go through the quantizer (batch norm excluded)."""
        return sum(shadow.numel() for layer in self.recurrent_layers() for _, shadow in layer.shadow_tensors())

    @torch.no_grad()
    def export_layers(self) -> list[ExportedLayer]:
        """Deterministic quantized values of every layer, batch norm folded with running statistics."""
        quantizer = self.quantizer
        exported: list[ExportedLayer] = []
        for index, layer in enumerate(self.recurrent_layers()):
            tensors: dict[str, ExportedTensor] = {}
            for name, shadow in layer.shadow_tensors():
                ctx = self.context(index, name, False)
                values = quantizer.quantize(shadow.detach(), ctx)
                tensors[name] = ExportedTensor(
                    values=values.cpu().double().numpy(),
                    role=ctx.role,
                    scheme=quantizer.scheme,
                    bits=float(quantizer.bits_per_weight()),
                    encoding=dict(quantizer.encoding(ctx)),
                )
            scale = shift = None
            if layer.norm is not None:
                norm = layer.norm
                assert norm.running_var is not None and norm.running_mean is not None
                std = torch.sqrt(norm.running_var.double() + norm.eps)
                scale_t = norm.weight.double() / std
                shift_t = norm.bias.double() - norm.running_mean.double() * scale_t
                scale, shift = scale_t.cpu().numpy(), shift_t.cpu().numpy()
            exported.append(
                ExportedLayer(
                    cell=self.cell,
                    input_size=layer.input_size,
                    hidden_size=self.hidden,
                    w_input=tensors["w_input"],
                    w_recurrent=tensors["w_recurrent"],
                    b_input=tensors["b_input"],
                    b_recurrent=tensors.get("b_recurrent"),
                    input_scale=scale,
                    input_shift=shift,
                )
            )
        return exported


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """float64 copy of a tensor (export helper)."""
    return tensor.detach().cpu().double().numpy()
