"""The host's quantized recurrent stack for declared cells: shadow weights, quantizers, fused kernel.

A cell declares its tensors (:class:`qbench.TensorSpec`), its state size, its element-wise
operations and its :meth:`qbench.Cell.step`; this module provides everything else, the same
way for rnn, gru, lstm and a third party's cell.

Fast path (docs/performance.md, "The one design choice that decides training speed"): at each
``forward`` in training mode every declared tensor of every layer is quantized ONCE (one
stochastic draw from the stack's own seeded generator, shared by all time steps of that pass).
A quantizer without ``owns_gradient`` sees a detached tensor under ``no_grad`` and the
straight-through estimator of :mod:`qbench.ste` (the only one in qbench) carries the gradient
to the float shadow tensor unchanged; a quantizer that owns its gradient is called with autograd
on and its learned state (``ctx.state``). When the cell names a ``fused_kernel`` the quantized
tensors are handed to torch's fused recurrent kernel (``torch._VF.rnn_tanh`` / ``gru`` /
``lstm``: the CPU fused kernel, cuDNN on a GPU); otherwise, with ``implementation = "loop"``,
or when the quantizer also quantizes the hidden state (``applies_to("hidden")``, at every time
step), the per-step reference of :mod:`qbench.training.reference` runs the cell's ``step``; a
hidden-state quantizer on a cell with a fused kernel runs instead as one sequence-level autograd
node (:mod:`qbench.training.sequence`) when its estimator is known (``implementation = "loop"``
forces the reference).
In ``eval()`` the quantizer is deterministic (``QuantContext.training`` False) and batch norm
uses its running statistics.

Tensors of layer ``l`` (``n`` = its input features, ``h`` = hidden, ``G`` = a tensor's gate
blocks): a matrix is ``[G*h, n]`` (reads the input) or ``[G*h, h]`` (reads the hidden state),
a diagonal or a vector ``[G*h]``. The fused kernels take torch's gate order (gru r, z, n; lstm
i, f, g, o) and tensors named ``w_input``, ``w_recurrent``, ``b_input`` and optionally
``b_recurrent`` (the gru's ``b_hn`` sits inside ``r * (W_hn h + b_hn)``; rnn and lstm hand the
kernel a constant zero vector instead).

Scale of each tensor (docs/paper.md, "Scale of each matrix"): a block of a matrix reading the input
is an ``n -> h`` map, context ``fan_in = n, fan_out = h``, W0 = sqrt(6 / (n + h)); reading the
hidden state ``h -> h``, W0 = sqrt(3 / h); a bias uses its layer's input-matrix context; a
diagonal is ``1 -> 1`` unless the cell declares ``fans``. All blocks of one tensor share that
context, so a stacked ``[G*h, ...]`` matrix is quantized in one call. Tensors declared
``"glorot"`` start uniform in [-W0, W0] (``"positive"``: its absolute value, uniform in
[0, W0]), drawn in declaration order, layer by layer, from one generator seeded with the case
seed; ``"zeros"`` tensors start at zero. Batch norm (optional)
normalises each layer's input over batch and time, gamma 0.1, beta 0.

Learned quantizer state (``Quantizer.init_state``) is created from the initial shadow tensor
when the stack is built and lives in ``layers[l].quant_state[name]`` as ``nn.Parameter``s: the
optimizer trains it, ``state_dict`` saves it, the export carries it, and the stack pickles (the
generator and caches are rebuilt on the other side), so a worker process gets the same model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from qbench.components import FUSED_NAMES, HIDDEN_ROLE, Cell, QuantContext, Quantizer, TensorSpec, has_scan
from qbench.errors import PluginError
from qbench.export import ExportedLayer, ExportedTensor
from qbench.ste import clip_shadow_, straight_through

#: offset between the case seed and the seed of the stochastic draws (initialisation uses the seed)
DRAW_SEED_OFFSET = 0x5EED
BN_GAMMA_INIT = 0.1


def check_declaration(cell: Cell) -> None:
    """Raise :class:`qbench.PluginError` naming what is wrong with a cell's declaration (the rules
    live on :class:`qbench.Cell`; the host already refused a class that breaks them at start-up,
    this guards cells built without a host)."""
    where = f"cell {cell.name!r}"
    if not cell.tensors:
        raise PluginError(f"{where}: declares no tensors (set `tensors` to a tuple of qbench.TensorSpec)")
    problems = type(cell)._tensor_problems(cell.tensors)
    if "hidden" not in cell.config and not any("`hidden`" in p for p in problems):
        problems.append("a declared cell needs a `hidden` parameter (units per layer)")
    if problems:
        raise PluginError(f"{where}: " + "; ".join(problems))


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0) * bound


class RecurrentLayer(nn.Module):
    """Shadow tensors (as attributes named as declared), optional input batch norm, learned quantizer state."""

    zero_bias: torch.Tensor
    #: with a learned hidden-state quantizer: whether the first training batch set its state
    hidden_state_ready: torch.Tensor
    input_size: int
    hidden: int
    #: the fused kernels' input matrix (registered dynamically, like every declared tensor)
    w_input: nn.Parameter

    def __init__(self, specs: tuple[TensorSpec, ...], input_size: int, hidden: int, batch_norm: bool,
                 init: torch.Generator, fused: bool) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden = hidden
        self.specs = specs
        for spec in specs:
            shape = spec.shape(input_size, hidden)
            if isinstance(spec.init, tuple):  # a declared range
                low, high = spec.init
                value = torch.rand(shape, generator=init, dtype=torch.float32) * (high - low) + low
            elif spec.init in ("glorot", "positive"):
                fan_in, fan_out = spec.context_fans(input_size, hidden)
                value = _uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), init)
                if spec.init == "positive":
                    value = value.abs()
            else:
                value = torch.zeros(shape)
            self.register_parameter(spec.name, nn.Parameter(value))
        self.norm: nn.BatchNorm1d | None = None
        if batch_norm:
            self.norm = nn.BatchNorm1d(input_size)
            with torch.no_grad():
                self.norm.weight.fill_(BN_GAMMA_INIT)
        if fused and "b_recurrent" not in {spec.name for spec in specs}:
            # the kernel wants a recurrent bias: a constant zero for rnn and lstm (not a parameter)
            rows = specs[0].blocks * hidden
            self.register_buffer("zero_bias", torch.zeros(rows), persistent=False)
        #: learned quantizer state: tensor name (or "hidden") -> its parameters
        self.quant_state = nn.ModuleDict()

    def shadow_tensors(self) -> list[tuple[str, nn.Parameter]]:
        return [(spec.name, getattr(self, spec.name)) for spec in self.specs]


class QuantizedRecurrentStack(nn.Module):
    """Layers of one declared cell whose tensors go through ``quantizer`` (module contract).

    ``forward(x[T, B, n], state=None) -> (y[T, B, h], state)``; ``state`` is ``[layers, B, h]``
    for a cell with one state tensor, a tuple of those otherwise (an LSTM's ``(h, c)``), as
    torch's modules.
    """

    def __init__(self, cell: Cell, *, input_size: int, quantizer: Quantizer, seed: int) -> None:
        super().__init__()
        check_declaration(cell)
        config = cell.config
        self.cell_decl = cell
        self.cell = cell.name
        self.specs = tuple(cell.tensors)
        self.input_size = input_size
        self.hidden = int(config["hidden"])
        self.num_layers = int(config.get("layers", 1))
        self.quantizer = quantizer
        self.seed = int(seed)
        #: "fused" (torch's kernel), "scan" (the cell's parallel path) or "loop" (the per-step reference)
        self.implementation = "fused" if cell.fused_kernel else ("scan" if has_scan(cell) else "loop")
        #: write the quantized values into a flat kernel buffer (None: on CUDA only; see _flat_buffers)
        self.flat_weights: bool | None = None
        self._flat: dict[tuple[int, str, torch.dtype], list[torch.Tensor]] = {}
        self.quantize_hidden = bool(quantizer.applies_to(HIDDEN_ROLE))
        init = torch.Generator().manual_seed(self.seed)
        self.layers = nn.ModuleList(
            RecurrentLayer(
                self.specs, input_size if index == 0 else self.hidden, self.hidden,
                bool(config.get("batch_norm", False)), init, cell.fused_kernel is not None,
            )
            for index in range(self.num_layers)
        )
        self._draws: torch.Generator | None = None
        self._draw_seed = self.seed + DRAW_SEED_OFFSET
        self._contexts: dict[tuple[int, str, bool], QuantContext] = {}
        #: per layer, the buffers of the sequence-level BPTT (qbench.training.sequence.Workspace)
        self._workspaces: dict[int, Any] = {}
        self._init_quantizer_state()

    def __getstate__(self) -> dict[str, Any]:
        # a torch.Generator does not pickle; the draws restart from the seed on the other side
        state = self.__dict__.copy()
        state.update(_draws=None, _contexts={}, _flat={}, _workspaces={})
        return state

    def recurrent_layers(self) -> list[RecurrentLayer]:
        """The layers, typed (``nn.ModuleList`` items are plain modules to a type checker)."""
        return list(self.layers)  # type: ignore[arg-type]

    @property
    def fused(self) -> bool:
        """Whether this forward uses torch's fused kernel."""
        return self.implementation == "fused" and self.cell_decl.fused_kernel is not None and not self.quantize_hidden

    @property
    def scanned(self) -> bool:
        """Whether this forward uses the cell's scan (a quantized hidden state needs the per-step loop)."""
        return self.implementation == "scan" and has_scan(self.cell_decl) and not self.quantize_hidden

    def _scan(self, x: torch.Tensor, state: tuple[torch.Tensor, ...], tensors: dict[str, torch.Tensor]
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:  # fmt: skip
        outputs, final = self.cell_decl.scan(x, tuple(s[0] for s in state), tensors)
        size = int(self.cell_decl.state_size)
        if tuple(outputs.shape) != (*x.shape[:2], self.hidden) or len(final) != size:
            raise PluginError(f"cell {self.cell!r}: scan returned outputs {tuple(outputs.shape)} and {len(final)} "
                              f"state tensor(s); expected {(*x.shape[:2], self.hidden)} and {size}")  # fmt: skip
        return outputs, tuple(s.unsqueeze(0) for s in final)

    # -- learned quantizer state ----------------------------------------------------------------

    def _init_quantizer_state(self) -> None:
        for index, layer in enumerate(self.recurrent_layers()):
            for spec in self.specs:
                shadow = getattr(layer, spec.name)
                ctx = self._bare_context(index, spec.name)
                self._add_state(layer, spec.name, self.quantizer.init_state(shadow.detach(), ctx))
            if self.quantize_hidden:
                # a stand-in until the first training batch gives the real activations
                # (_init_hidden_state); it serves only a stack evaluated before any training
                representative = torch.linspace(-1.0, 1.0, self.hidden)
                ctx = self._bare_context(index, HIDDEN_ROLE)
                self._add_state(layer, HIDDEN_ROLE, self.quantizer.init_state(representative, ctx))
                if HIDDEN_ROLE in layer.quant_state:
                    # persistent: a checkpoint or a pickled copy does not initialise a second time
                    layer.register_buffer("hidden_state_ready", torch.zeros((), dtype=torch.bool))
        for layer in self.recurrent_layers():
            for name in layer.quant_state:
                role = HIDDEN_ROLE if name == HIDDEN_ROLE else next(s.role for s in self.specs if s.name == name)
                check_state_owner(self.quantizer.for_role(role))

    def _add_state(self, layer: RecurrentLayer, name: str, state: Mapping[str, torch.Tensor]) -> None:
        if state:
            layer.quant_state[name] = learned_parameters(state)

    def _bare_context(self, layer: int, name: str) -> QuantContext:
        fan_in, fan_out, role = self._fans(layer, name)
        return QuantContext(role, fan_in, fan_out, False, None, layer)

    def _fans(self, layer: int, name: str) -> tuple[int, int, str]:
        if name == HIDDEN_ROLE:
            return self.hidden, self.hidden, HIDDEN_ROLE
        spec = next(s for s in self.specs if s.name == name)
        n = self.recurrent_layers()[layer].input_size
        fan_in, fan_out = spec.context_fans(n, self.hidden)
        return fan_in, fan_out, spec.role

    # -- stochastic draws -------------------------------------------------------------------

    @property
    def generator(self) -> torch.Generator:
        """The seeded generator of the stochastic draws, on the device of the weights."""
        device = getattr(self.recurrent_layers()[0], self.specs[0].name).device
        if self._draws is None or self._draws.device != device:
            self._draws = torch.Generator(device=device).manual_seed(self._draw_seed)
            self._contexts.clear()
        return self._draws

    def seed_draws(self, seed: int) -> None:
        """Restart the stochastic draws from ``seed`` (tests replay one draw on two implementations)."""
        self._draw_seed = int(seed)
        self.generator.manual_seed(self._draw_seed)

    def context(self, layer: int, name: str, training: bool) -> QuantContext:
        """The quantizer context of tensor ``name`` (or ``"hidden"``) of ``layer`` (module docstring)."""
        key = (layer, name, training)
        ctx = self._contexts.get(key)
        if ctx is None:
            generator = self.generator
            fan_in, fan_out, role = self._fans(layer, name)
            states = self.recurrent_layers()[layer].quant_state
            state = states[name] if name in states else None
            ctx = QuantContext(role, fan_in, fan_out, training, generator, layer, state)  # type: ignore[arg-type]
            self._contexts[key] = ctx
        return ctx

    # -- forward ----------------------------------------------------------------------------

    def quantized_tensors(self, index: int) -> dict[str, torch.Tensor]:
        """Every declared tensor of a layer as the cell sees it (through the STE or the quantizer's own gradient)."""
        layer = self.recurrent_layers()[index]
        training = self.training
        self.generator  # noqa: B018 - (re)creates the generator and contexts on the weights' device
        quantizer = self.quantizer
        flat = None
        if self.fused and not self._any_owns_gradient():
            first = getattr(layer, self.specs[0].name)
            use_flat = first.is_cuda if self.flat_weights is None else self.flat_weights
            flat = self._flat_buffers(index) if use_flat else None
        tensors: dict[str, torch.Tensor] = {}
        for position, (name, shadow) in enumerate(layer.shadow_tensors()):
            ctx = self.context(index, name, training)
            tensors[name] = quantize_shadow(quantizer, shadow, ctx, None if flat is None else flat[position])
        return tensors

    def quantized_weights(self, index: int) -> list[torch.Tensor]:
        """``[w_input, w_recurrent, b_input, b_recurrent]`` of a layer as torch's fused kernel takes them."""
        tensors = self.quantized_tensors(index)
        weights = [tensors[name] for name in FUSED_NAMES[:3]]
        if "b_recurrent" in tensors:
            weights.append(tensors["b_recurrent"])
        else:
            layer = self.recurrent_layers()[index]
            use_flat = self._flat.get((index, str(layer.zero_bias.device), layer.w_input.dtype))
            weights.append(layer.zero_bias if use_flat is None or self._any_owns_gradient() else use_flat[3])
        return weights

    def _any_owns_gradient(self) -> bool:
        """Whether the quantizer of some weight role owns its gradient (no flat kernel buffer then)."""
        return any(self.quantizer.for_role(spec.role).owns_gradient for spec in self.specs)

    def _flat_buffers(self, index: int) -> list[torch.Tensor]:
        """The "dual copy" of docs/performance.md: four tensors that are views of one cuDNN weight buffer.

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

                kernel = self.cell_decl.fused_kernel
                mode = cudnn_rnn.get_cudnn_mode({"rnn_tanh": "RNN_TANH", "gru": "GRU", "lstm": "LSTM"}[str(kernel)])
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
        size = int(self.cell_decl.state_size)
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden)
            states: tuple[torch.Tensor, ...] = (zeros,) * size
        else:
            states = tuple(state) if size > 1 else (state,)  # type: ignore[arg-type,assignment]
        finals: list[tuple[torch.Tensor, ...]] = []
        for index, layer in enumerate(self.recurrent_layers()):
            if layer.norm is not None:
                x = layer.norm(x.reshape(steps * batch, -1)).reshape(steps, batch, -1)
            layer_state = tuple(s[index : index + 1] for s in states)
            if self.fused:
                x, final = self._fused(x, layer_state, self.quantized_weights(index))
            elif self.scanned:
                x, final = self._scan(x, layer_state, self.quantized_tensors(index))
            else:
                from qbench.training.reference import run_layer

                hidden = None
                if self.quantize_hidden:
                    if self.training and not bool(getattr(layer, "hidden_state_ready", True)):
                        self._init_hidden_state(index, x, layer_state)
                    estimator = self._sequence_estimator(index)
                    if estimator is not None:
                        from qbench.training import sequence

                        kernel = str(self.cell_decl.fused_kernel)
                        # (a stack pickled before the workspaces existed has none yet)
                        workspaces = self.__dict__.setdefault("_workspaces", {})
                        workspace = workspaces.setdefault(index, sequence.Workspace())
                        x, final = sequence.run_layer(kernel, x, layer_state, self.quantized_tensors(index), estimator,
                                                      workspace)  # fmt: skip
                        finals.append(final)
                        continue
                    hidden = self._hidden_quantizer(index)
                x, final = run_layer(self.cell_decl.step, x, layer_state, self.quantized_tensors(index), hidden)
            finals.append(final)
        new_states = tuple(torch.cat([f[k] for f in finals]) for k in range(size))
        return x, (new_states if size > 1 else new_states[0])

    @torch.no_grad()
    def _init_hidden_state(self, index: int, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> None:
        """The hidden-state quantizer's learned state from the first training batch's activations.

        LSQ initialises an activation step from the first batch (Esser et al. 2019: s = 2<|v|>/sqrt(Q_P)):
        here ``init_state`` sees the hidden states ``[T, B, h]`` that this layer computes for the
        batch with its deterministic (evaluation) quantized weights and an unquantized recurrence.
        No stochastic draw is taken, so the training draws and every executor's result stay the same.
        """
        from qbench.training.reference import run_layer

        layer = self.recurrent_layers()[index]
        tensors = {
            name: self.quantizer.quantize(shadow.detach(), self.context(index, name, False))
            for name, shadow in layer.shadow_tensors()
        }
        activations, _ = run_layer(self.cell_decl.step, x.detach(), tuple(s.detach() for s in state), tensors)
        state_now: Any = layer.quant_state[HIDDEN_ROLE]  # an nn.ParameterDict (see _add_state)
        for key, value in self.quantizer.init_state(activations, self._bare_context(index, HIDDEN_ROLE)).items():
            state_now[key].copy_(torch.as_tensor(value))
        layer.hidden_state_ready.fill_(True)

    def _sequence_estimator(self, index: int) -> Any:
        """The hidden quantizer's estimator when this layer runs as one sequence-level node
        (:mod:`qbench.training.sequence`: a cell with a fused kernel, ``implementation`` not forced
        to "loop"); None: the per-step reference."""
        from qbench.training import sequence

        if self.implementation != "fused" or not sequence.applies(self.cell_decl.fused_kernel):
            return None
        return sequence.hidden_estimator(self.quantizer, self.context(index, HIDDEN_ROLE, self.training))

    def _hidden_quantizer(self, index: int) -> Any:
        ctx = self.context(index, HIDDEN_ROLE, self.training)
        quantizer = self.quantizer
        if quantizer.for_role(HIDDEN_ROLE).owns_gradient:
            return lambda h: quantizer.quantize(h, ctx)

        def through(h: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                quantized = quantizer.quantize(h.detach(), ctx)
            return straight_through(h, quantized)

        return through

    def _fused(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...], weights: list[torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        # arguments: input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
        kernel = self.cell_decl.fused_kernel
        if kernel == "lstm":
            y, h, c = torch._VF.lstm(x, state, weights, True, 1, 0.0, self.training, False, False)  # type: ignore[call-overload]
            return y, (h, c)
        function = torch._VF.gru if kernel == "gru" else torch._VF.rnn_tanh
        y, h = function(x, state[0], weights, True, 1, 0.0, self.training, False, False)  # type: ignore[call-overload]
        return y, (h,)

    # -- host duties ------------------------------------------------------------------------

    @torch.no_grad()
    def clip_shadow_weights_(self) -> None:
        """Clip every shadow tensor to its quantizer bound (call after each optimizer step)."""
        for index, layer in enumerate(self.recurrent_layers()):
            for name, shadow in layer.shadow_tensors():
                clip_shadow_(shadow, self.quantizer, self.context(index, name, True))

    def quantized_parameter_count(self) -> int:
        """Declared tensor elements that go through the quantizer (batch norm and learned state excluded)."""
        return sum(shadow.numel() for layer in self.recurrent_layers() for _, shadow in layer.shadow_tensors())

    def learned_state(self) -> dict[str, torch.Tensor]:
        """Every learned quantizer parameter by its ``state_dict`` name (empty without learned state)."""
        return {name: p for name, p in self.named_parameters() if ".quant_state." in name}

    def operations_per_step(self) -> list[dict[str, int]]:
        """Per layer, from the declaration: weight products, bias adds, element-wise ops of one step (batch 1)."""
        counts = []
        for layer in self.recurrent_layers():
            n, h = layer.input_size, self.hidden
            row: dict[str, int] = {
                "products": sum(spec.products(n, h) for spec in self.specs),
                "bias_adds": sum(spec.shape(n, h)[0] for spec in self.specs if spec.layout == "vector"),
            }
            for op, per_unit in self.cell_decl.elementwise.items():
                row[op] = int(per_unit) * h
            counts.append(row)
        return counts

    @torch.no_grad()
    def export_layers(self) -> list[ExportedLayer]:
        """Deterministic quantized values of every layer, batch norm folded with running statistics."""
        quantizer = self.quantizer
        exported: list[ExportedLayer] = []
        for index, layer in enumerate(self.recurrent_layers()):
            tensors: dict[str, ExportedTensor] = {}
            for spec in self.specs:
                shadow = getattr(layer, spec.name)
                ctx = self.context(index, spec.name, False)
                values = quantizer.quantize(shadow.detach(), ctx)
                tensors[spec.name] = exported_tensor(quantizer, values, ctx, spec.layout)
            scale = shift = None
            if layer.norm is not None:
                norm = layer.norm
                assert norm.running_var is not None and norm.running_mean is not None
                std = torch.sqrt(norm.running_var.double() + norm.eps)
                scale_t = norm.weight.double() / std
                shift_t = norm.bias.double() - norm.running_mean.double() * scale_t
                scale, shift = scale_t.cpu().numpy(), shift_t.cpu().numpy()
            hidden_facts = None
            if self.quantize_hidden:
                ctx = self.context(index, HIDDEN_ROLE, False)
                owner = quantizer.for_role(HIDDEN_ROLE)
                hidden_facts = {
                    "scheme": owner.scheme,
                    "bits": float(owner.role_bits(HIDDEN_ROLE)),
                    "encoding": dict(owner.encoding(ctx)),
                    "state": _state_arrays(ctx),
                    "state_bits": float(owner.learned_state_bits(HIDDEN_ROLE)),
                    "scale": _optional_float(owner.code_scale(ctx)),
                    "quantizer": owner.label,
                }
            exported.append(
                ExportedLayer.from_tensors(
                    self.cell, layer.input_size, self.hidden, tensors, input_scale=scale, input_shift=shift,
                    elementwise=dict(self.cell_decl.elementwise), state_size=int(self.cell_decl.state_size),
                    hidden_quantizer=hidden_facts,
                )
            )
        return exported


def quantize_shadow(quantizer: Quantizer, shadow: torch.Tensor, ctx: QuantContext,
                    into: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """``shadow`` as the network sees it: through the quantizer's own gradient when the quantizer of
    ``ctx.role`` owns it, else quantized without autograd (copied ``into`` a kernel buffer when
    given) behind the host's straight-through estimator. The one place the host hands a weight to a
    quantizer: every recurrent tensor and a quantized output layer (:mod:`qbench.training.output`)."""
    if quantizer.for_role(ctx.role).owns_gradient:
        return quantizer.quantize(shadow, ctx)
    with torch.no_grad():
        quantized = quantizer.quantize(shadow.detach(), ctx)
        if into is not None:
            quantized = into.copy_(quantized)
    return straight_through(shadow, quantized)


def learned_parameters(state: Mapping[str, torch.Tensor]) -> nn.ParameterDict:
    """A quantizer's learned state (``init_state``) as float32 parameters the optimizer trains."""
    return nn.ParameterDict(
        {key: nn.Parameter(torch.as_tensor(value).detach().clone().float()) for key, value in state.items()}
    )


def check_state_owner(owner: Quantizer) -> None:
    """Refuse learned state that would never receive a gradient (a quantizer that does not own it)."""
    if not owner.owns_gradient:
        raise PluginError(
            f"quantizer {owner.name!r}: init_state returns learned state but owns_gradient is False; "
            "its state would never receive a gradient (set owns_gradient = True and make quantize "
            "differentiable)"
        )


def exported_tensor(quantizer: Quantizer, values: torch.Tensor, ctx: QuantContext, layout: str) -> ExportedTensor:
    """The export of one quantized tensor with the declared format of its role's quantizer."""
    owner = quantizer.for_role(ctx.role)
    return ExportedTensor(
        values=values.cpu().double().numpy(),
        role=ctx.role,
        scheme=owner.scheme,
        bits=float(owner.role_bits(ctx.role)),
        encoding=dict(owner.encoding(ctx)),
        layout=layout,
        state=_state_arrays(ctx),
        state_bits=float(owner.learned_state_bits(ctx.role)),
        scale=_optional_float(owner.code_scale(ctx)),
        quantizer=owner.label,
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _state_arrays(ctx: QuantContext) -> dict[str, np.ndarray]:
    if not ctx.state:
        return {}
    return {key: value.detach().cpu().double().numpy() for key, value in ctx.state.items()}


def build_stack(cell: Any, input_size: int, quantizer: Any, seed: int) -> Any:
    """The recurrent stack of ``cell``: the host's :class:`QuantizedRecurrentStack` for a declared
    cell, the cell's own ``build()`` for a cell that overrides it (an undeclared cell)."""
    if type(cell).build is not Cell.build:
        return cell.build(input_size, quantizer, seed)
    if not getattr(cell, "tensors", ()):
        raise NotImplementedError(f"cell {cell.name!r} declares no tensors and does not override build()")
    return QuantizedRecurrentStack(cell, input_size=input_size, quantizer=quantizer, seed=seed)
