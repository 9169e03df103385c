"""Component base classes: what a plugin subclasses to add a quantizer, cell, dataset or backend.

These classes are the plugin authors' contract. They import neither torch nor numpy at module
import time (annotations only), so ``import qbench`` stays instant.

Every component class has

* ``name``: lower case, digits and dashes (``"pow2-ternary"``); its qualified name is
  ``DISTRIBUTION:name`` (``qbench:ternary``), and a bare name must mean one component (see
  :mod:`qbench.registry`);
* ``description``: one line shown by ``qbench list`` and on the leaderboard;
* ``params``: the declared keyword parameters (:class:`qbench.Param`), checked before any case
  runs; an instance's resolved values are in ``self.config`` and also set as attributes.

Subclasses validate cross-parameter rules in :meth:`Component.validate` by raising
:class:`qbench.ParamError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from qbench.errors import ParamError
from qbench.params import Param, resolve_params

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps torch out of `import qbench`
    import torch

    from qbench.data import ClassificationData, EvalSample, LanguageModelData, SequenceLabellingData
    from qbench.export import ExportedModel
    from qbench.metrics import Metric

#: roles of the weight tensors every quantizer handles
ROLES = ("input", "recurrent", "bias")
#: the hidden state, quantized at every time step by quantizers that ask for it (:meth:`Quantizer.applies_to`)
HIDDEN_ROLE = "hidden"
#: the network's output layer ``Linear(h, C)``: quantized only where a matrix assigns it a quantizer
#: (``roles.output``); every weight quantizer takes it by default (:meth:`Quantizer.applies_to`)
OUTPUT_ROLE = "output"
ALL_ROLES = (*ROLES, HIDDEN_ROLE, OUTPUT_ROLE)
#: how a declared cell tensor is stored and multiplied (:class:`TensorSpec`)
LAYOUTS = ("matrix", "diagonal", "vector")
#: attributes of a component that a parameter must not shadow
RESERVED_PARAM_NAMES = frozenset({"name", "description", "params", "config", "kind", "label"})
#: a component name: lower case letters and digits, words joined by dashes
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
#: the values of ``Quantizer.scheme``
SCHEMES = ("float", "binary", "ternary", "pow2-ternary", "exponential", "fixed", "custom")
#: the fused kernels a declared cell may name, with their gate blocks and state tensors
FUSED_KERNELS = {"rnn_tanh": (1, 1), "gru": (3, 1), "lstm": (4, 2)}
#: the tensor names torch's fused kernels take, in their order
FUSED_NAMES = ("w_input", "w_recurrent", "b_input", "b_recurrent")


@dataclass(frozen=True)
class QuantContext:
    """What a quantizer knows about the tensor it quantizes (contract).

    :param role: ``"input"``, ``"recurrent"``, ``"bias"``, ``"hidden"`` (the hidden state at
        each time step, only for quantizers whose :meth:`Quantizer.applies_to` accepts it) or
        ``"output"`` (the output layer's ``[C, h]`` weight, only where the matrix assigns
        ``roles.output``; fans ``(h, C)``).
    :param fan_in: Glorot fan-in of the matrix (for a bias: that of its layer's input matrix).
    :param fan_out: Glorot fan-out of the matrix (for a bias: that of its input matrix).
    :param training: True while training; a stochastic quantizer is deterministic when False.
    :param generator: a seeded ``torch.Generator`` on the tensor's device, for stochastic draws.
    :param layer: index of the recurrent layer (0 for the first), for plugins that care; for the
        output role, the number of recurrent layers (the output layer follows the last).
    :param state: the tensor's learned quantizer state (the trainable tensors that
        :meth:`Quantizer.init_state` created, by name); None for a quantizer without state.
    """

    role: str
    fan_in: int
    fan_out: int
    training: bool
    generator: torch.Generator | None = None
    layer: int = 0
    # not compared: a context is the same context whatever values its state holds right now
    state: Mapping[str, torch.Tensor] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.role not in ALL_ROLES:
            raise ValueError(f"QuantContext.role must be one of {ALL_ROLES}, got {self.role!r}")

    @property
    def glorot_bound(self) -> float:
        """W0 = sqrt(6 / (fan_in + fan_out)), the Glorot-uniform bound of the matrix."""
        return float((6.0 / (self.fan_in + self.fan_out)) ** 0.5)


def component_label(name: str, shown: Mapping[str, Any]) -> str:
    """A component's label: ``name``, then the parameters ``shown`` sorted, their values as JSON
    (``gru(hidden=64)``). The one form of every label: a matrix's cases show the parameters the
    matrix set (:attr:`qbench.matrix.Spec.label`, what records and leaderboards carry), a
    component instance those that differ from their defaults (:attr:`Component.label`)."""
    if not shown:
        return name
    return f"{name}({','.join(f'{k}={json.dumps(v)}' for k, v in sorted(shown.items()))})"


class Component:
    """Base of every component: declared parameters, validation, a stable label."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, **params: Any) -> None:
        self.config: dict[str, Any] = resolve_params(f"{self.kind} {self.name!r}", self.params, params)
        for key, value in self.config.items():
            setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        """Check rules that involve several parameters; raise :class:`qbench.ParamError`."""

    @classmethod
    def declaration_problems(cls) -> list[str]:
        """Every mistake in this class's declaration (its class attributes), one sentence each saying
        what to fix; empty when it may be registered. The host calls it once per class at start-up
        and reports all of a plugin's problems together. Each kind adds its own rules."""
        problems: list[str] = []
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            problems.append(f"class {cls.__name__} has name {name!r}; a name is lower case letters and digits, "
                            "words joined by dashes (e.g. 'pow2-ternary')")  # fmt: skip
        label = f"{cls.kind} {name!r}"
        params = getattr(cls, "params", {})
        if not isinstance(params, dict) or not all(isinstance(p, Param) for p in params.values()):
            problems.append(f"{label} must declare params as a dict of qbench.Param")
            return problems
        clash = RESERVED_PARAM_NAMES & set(params)
        if clash:
            problems.append(f"{label} declares reserved parameter names {sorted(clash)}; rename them")
        for key, spec in params.items():
            if spec.required:
                continue
            try:
                spec.check(label, key, spec.default)
            except ParamError as exc:
                problems.append(f"{label}: the default of parameter {key!r} is invalid: {exc}; fix the default "
                                "in its qbench.Param")  # fmt: skip
        return problems

    @property
    def label(self) -> str:
        """``name`` plus the parameters that differ from their defaults, e.g. ``ternary(stochastic=true)``."""
        return component_label(self.name, {k: v for k, v in self.config.items() if self.params[k].default != v})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"

    def _reject(self, message: str) -> None:
        raise ParamError(f"{self.kind} {self.name!r}: {message}")


class Quantizer(Component):
    """Maps float "shadow" weights to their low-precision forward values (contract).

    The host, not the quantizer, applies the straight-through estimator, samples stochastic
    quantizers once per training step, calls the deterministic form at evaluation
    (``ctx.training`` False) and clips shadow weights to :meth:`shadow_bound` after each update.

    Learned quantizers: :meth:`init_state` declares per-tensor trainable state
    (for example LSQ's step size), created from the tensor and its context when the model is
    built; the host makes each entry an ``nn.Parameter`` trained by the same optimizer, saved
    with the model, exported and restored with it, and hands it back as ``ctx.state``. A
    quantizer with ``owns_gradient = True`` is called with autograd on and the shadow tensor
    attached: its forward must be differentiable (a custom ``torch.autograd.Function`` for
    LSQ's scaled gradient, TTQ's scale gradients, ...) and the host adds no straight-through
    estimator. A quantizer with state must own its gradient (its state gets none otherwise).

    Class attributes:

    * ``scheme``: the hardware family of the values, one of ``"float"``, ``"binary"``,
      ``"ternary"``, ``"pow2-ternary"``, ``"exponential"``, ``"fixed"`` or ``"custom"``; hardware
      backends use it as a hint and verify it against the values.
    * ``stochastic``: whether training draws random values (usually a parameter).
    """

    kind: ClassVar[str] = "quantizer"
    scheme: ClassVar[str] = "custom"
    stochastic: bool = False
    #: True: :meth:`quantize` is differentiable and defines the gradient (no host STE)
    owns_gradient: ClassVar[bool] = False
    #: True: the full-precision reference every method is compared with when a matrix names no
    #: ``baseline`` (at most one installed quantizer should say so; the first by name wins)
    baseline: ClassVar[bool] = False

    @classmethod
    def declaration_problems(cls) -> list[str]:
        problems = super().declaration_problems()
        if getattr(cls, "scheme", None) not in SCHEMES:
            problems.append(f"quantizer {cls.name!r}: scheme must be one of {SCHEMES}, got {cls.scheme!r}")
        for flag in ("owns_gradient", "baseline"):
            if not isinstance(getattr(cls, flag, False), bool):
                problems.append(f"quantizer {cls.name!r}: {flag} must be True or False, got {getattr(cls, flag)!r}")
        return problems

    def quantize(self, w: torch.Tensor, ctx: QuantContext) -> torch.Tensor:
        """Return the forward values of ``w``: same shape, dtype and device.

        Without ``owns_gradient`` no autograd tricks (the host's straight-through estimator
        carries the gradient); with it, a differentiable function of ``w`` and ``ctx.state``.
        """
        raise NotImplementedError

    def init_state(self, w: torch.Tensor, ctx: QuantContext) -> dict[str, torch.Tensor]:
        """Initial learned state for the tensor ``w`` (name -> tensor); empty: no learned state.

        Called once per quantized tensor when the model is built, with the initial shadow values
        (for the ``hidden`` role: a stand-in, ``linspace(-1, 1, hidden)``, then again with the
        first training batch's hidden states ``[T, B, hidden]``, whose result replaces it). Must be
        a deterministic function of ``w`` and ``ctx`` (no random draws): every worker rebuilds it.
        """
        return {}

    def applies_to(self, role: str) -> bool:
        """Whether the host quantizes tensors of ``role``; the weight roles by default.

        Returning True for ``"hidden"`` quantizes each layer's hidden state at every time step
        (training and evaluation): that leaves torch's fused kernel for the per-step loop.
        ``"output"`` (a weight matrix like the others, True by default) says that the quantizer
        may be assigned to the output layer (``roles.output`` in a matrix); the output layer stays
        full precision unless a matrix assigns it, whatever this returns. Return False for it if
        ``quantize`` cannot take a ``[C, h]`` output matrix.
        """
        return role in ROLES or role == OUTPUT_ROLE

    def bits_per_weight(self) -> float:
        """Storage bits of one quantized weight (memory columns of the leaderboard)."""
        raise NotImplementedError

    def hidden_estimator(self, ctx: QuantContext) -> Any:
        """Optional, for a quantizer that owns its gradient and quantizes the hidden state: its
        forward and estimator step by step, so the host can run a fused cell's whole sequence as
        one hand-written backward instead of a per-step autograd graph (``qbench.training.sequence``).

        Return None (the default) and the host keeps the per-step reference loop, with the same
        numbers. Otherwise return an object with ``state`` (``ctx.state``'s tensors by name, the
        learned state the gradients go to) and three methods, all called without autograd:
        ``forward(h [B, h]) -> (q, saved)`` the values :meth:`quantize` returns, ``saved`` anything
        the backward needs; ``backward(grad, saved) -> grad_h`` the estimator's gradient with
        respect to ``h`` at one step; ``state_gradients(grads [T, B, h], saved_list) -> {name:
        gradient}`` the learned state's gradient summed over all steps (``grads``: the gradient
        with respect to each step's ``q``). A quantizer without ``owns_gradient`` needs none of
        this (the host's straight-through estimator passes the gradient unchanged).
        """
        return None

    def for_role(self, role: str) -> Quantizer:
        """The quantizer of ``role``: this one, unless the matrix composed a quantizer per role
        (:class:`qbench.roles.RoleQuantizers`); read ``owns_gradient`` and ``scheme`` from it."""
        return self

    def role_bits(self, role: str) -> float:
        """Declared cost: bits of each value this quantizer produces for ``role``.

        A weight's storage bits, and for ``"hidden"`` the width of the quantized state that the
        next step reads (an activation quantizer's ``act_bits``). The export carries it
        (``ExportedTensor.bits``, ``ExportedLayer.hidden_quantizer["bits"]``) and the host's
        ``weight_bytes``, ``energy`` and the simulator price it. Default: :meth:`bits_per_weight`.
        """
        return float(self.bits_per_weight())

    def learned_state_bits(self, role: str) -> float:
        """Declared cost: storage bits of one element of the learned state of a ``role`` tensor
        (what :meth:`init_state` returns: a step, a scale). Default 32: float32, as trained.
        ``weight_bytes`` counts it beside the weights."""
        return 32.0

    def code_scale(self, ctx: QuantContext) -> float | None:
        """Declared format: the value of one integer code when :meth:`quantize` returns integer
        codes times one scale per tensor (LSQ's learned step); None otherwise (default).
        Backends read it from ``ExportedTensor.scale`` instead of a quantizer's own encoding keys."""
        return None

    def shadow_bound(self, ctx: QuantContext) -> float | None:
        """Bound B such that the host clips shadow weights to [-B, B] after each update; None: no clip."""
        return None

    def value_set(self, ctx: QuantContext) -> tuple[float, ...] | None:
        """The finite set of values :meth:`quantize` can return for ``ctx``, or None if not finite."""
        return None

    def encoding(self, ctx: QuantContext) -> dict[str, Any]:
        """Format facts for hardware backends (e.g. ``{"scale": W0}``, ``{"e_min": -22, "e_max": 9}``)."""
        return {}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a declared cell layer (``torch.nn.RNNBase._flat_weights_names`` style).

    :param name: attribute name, e.g. ``"w_input"``; unique within the cell.
    :param role: ``"input"``, ``"recurrent"`` or ``"bias"`` (the quantizer context's role).
    :param layout: ``"matrix"`` ``[blocks*h, cols]``, ``"diagonal"`` ``[blocks*h]`` (an
        element-wise product with the hidden state: an IndRNN's recurrent weight) or ``"vector"``
        ``[blocks*h]`` (added: a bias).
    :param blocks: gate blocks G stacked along the rows (rows = G * hidden).
    :param reads: for a matrix, what it multiplies: ``"input"`` (n columns) or ``"hidden"`` (h).
    :param fans: the quantizer context's (fan_in, fan_out), hence W0 and the initialisation
        bound; None: Glorot of the map (matrix reading input: (n, h); reading hidden: (h, h); a
        vector: its layer's input-matrix fans, as a bias; a diagonal: (1, 1)).
    :param init: ``"glorot"`` (uniform on [-W0, W0], drawn from the cell's seeded generator in
        declaration order), ``"positive"`` (uniform on [0, W0], same generator), ``"zeros"``, or a
        range ``(low, high)``: uniform on [low, high] from the same generator (``(1.0, 1.0)``: ones;
        a forget-gate bias, a decay in (0, 1)), whatever the fans.
    """

    name: str
    role: str
    layout: str = "matrix"
    blocks: int = 1
    reads: str = "input"
    fans: tuple[int, int] | None = None
    init: str | tuple[float, float] = "glorot"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"TensorSpec {self.name!r}: role must be one of {ROLES}, got {self.role!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"TensorSpec {self.name!r}: layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.reads not in ("input", "hidden"):
            raise ValueError(f"TensorSpec {self.name!r}: reads must be 'input' or 'hidden', got {self.reads!r}")
        if isinstance(self.init, (tuple, list)):
            import math

            ok = len(self.init) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in self.init
            )
            if not ok or self.init[0] > self.init[1]:
                raise ValueError(f"TensorSpec {self.name!r}: an init range is (low, high) with finite numbers "
                                 f"low <= high, got {self.init!r}")  # fmt: skip
            object.__setattr__(self, "init", (float(self.init[0]), float(self.init[1])))
        elif self.init not in ("glorot", "positive", "zeros"):
            raise ValueError(
                f"TensorSpec {self.name!r}: init must be 'glorot', 'positive', 'zeros' or a range (low, high), "
                f"got {self.init!r}"
            )
        if self.blocks < 1:
            raise ValueError(f"TensorSpec {self.name!r}: blocks must be >= 1, got {self.blocks}")

    def shape(self, input_size: int, hidden: int) -> tuple[int, ...]:
        """The tensor's shape in a layer reading ``input_size`` features with ``hidden`` units."""
        rows = self.blocks * hidden
        if self.layout != "matrix":
            return (rows,)
        return (rows, input_size if self.reads == "input" else hidden)

    def context_fans(self, input_size: int, hidden: int) -> tuple[int, int]:
        """(fan_in, fan_out) of the quantizer context (see ``fans``)."""
        if self.fans is not None:
            return self.fans
        if self.layout == "diagonal":
            return (1, 1)
        if self.layout == "matrix" and self.reads == "hidden":
            return (hidden, hidden)
        return (input_size, hidden)

    def products(self, input_size: int, hidden: int) -> int:
        """Weight products per time step (batch 1): a matrix rows x cols, a diagonal rows, a vector none."""
        shape = self.shape(input_size, hidden)
        if self.layout == "matrix":
            return shape[0] * shape[1]
        return shape[0] if self.layout == "diagonal" else 0


#: element-wise operations a declared cell may list per hidden unit (``Cell.elementwise``)
ELEMENTWISE_OPS = ("mults", "adds", "sigmoids", "tanhs", "relus")

def has_scan(cell: type[Cell] | Cell) -> bool:
    """Whether a declared cell offers a parallel training path (overrides :meth:`Cell.scan`)."""
    cls = cell if isinstance(cell, type) else type(cell)
    return getattr(cls, "scan", Cell.scan) is not Cell.scan


class Cell(Component):
    """A recurrent cell family (contract).

    A declared cell sets ``tensors`` (a tuple of :class:`TensorSpec`),
    ``state_size`` (1 for h, 2 for an LSTM's h and c), ``elementwise`` (operations per hidden
    unit and time step besides the weight products and bias adds, keys in ``ELEMENTWISE_OPS``)
    and write :meth:`step`; optionally ``fused_kernel`` (``"rnn_tanh"``, ``"gru"`` or
    ``"lstm"``: torch's fused kernel computes exactly this cell from tensors named
    ``w_input``, ``w_recurrent``, ``b_input`` and optionally ``b_recurrent``). The host's
    :meth:`build` then provides the seeded initialisation and draws, quantization (learned
    state included), shadow clipping, the fused fast path, the per-step reference, the export
    (diagonals and vectors exported as such) and operation counts. The cell declares ``hidden``
    (and optionally ``layers``, ``batch_norm``) parameters.

    An undeclared cell overrides :meth:`build` instead and returns a whole stack (see :mod:`qbench.training`).

    ``gate_blocks`` is G in the operation counts: rnn 1, gru 3, lstm 4.
    """

    kind: ClassVar[str] = "cell"
    gate_blocks: ClassVar[int] = 1
    tensors: ClassVar[tuple[TensorSpec, ...]] = ()
    state_size: ClassVar[int] = 1
    elementwise: ClassVar[dict[str, int]] = {}
    fused_kernel: ClassVar[str | None] = None

    @classmethod
    def declaration_problems(cls) -> list[str]:
        problems = super().declaration_problems()
        specs = getattr(cls, "tensors", ())
        if specs:
            problems += [f"cell {cls.name!r}: {problem}" for problem in cls._tensor_problems(specs)]
        return problems

    @classmethod
    def _tensor_problems(cls, specs: Any) -> list[str]:
        """The rules of a declared cell (``tensors`` set); an undeclared cell (its own ``build``) has none."""
        if not isinstance(specs, tuple) or not all(isinstance(spec, TensorSpec) for spec in specs):
            return ["`tensors` must be a tuple of qbench.TensorSpec"]
        problems = []
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            problems.append(f"tensor names repeat: {names}; give each tensor its own name")
        # a recurrent tensor is optional: an element-wise recurrence (minGRU) reads the state in step only
        if not any(spec.role == "input" for spec in specs):
            problems.append(f"a declared cell needs at least one tensor of role 'input' (found "
                            f"{[(spec.name, spec.role) for spec in specs]}); declare one")  # fmt: skip
        if "hidden" not in getattr(cls, "params", {}):
            problems.append("a declared cell needs a `hidden` parameter (units per layer); add "
                            "params = {'hidden': qbench.Param(int, ...)}")  # fmt: skip
        state_size = getattr(cls, "state_size", 1)
        if not isinstance(state_size, int) or isinstance(state_size, bool) or state_size < 1:
            problems.append(f"state_size must be an integer >= 1, got {state_size!r}")
        elementwise = getattr(cls, "elementwise", {})
        unknown = sorted(set(elementwise) - set(ELEMENTWISE_OPS)) if isinstance(elementwise, dict) else None
        if unknown is None or unknown:
            problems.append(f"elementwise must map operations among {ELEMENTWISE_OPS} to counts per hidden "
                            f"unit, got {elementwise!r}")  # fmt: skip
        kernel = getattr(cls, "fused_kernel", None)
        if kernel is not None:
            problems += cls._fused_problems(kernel, specs, state_size)
            if has_scan(cls):
                problems.append("declares both a fused_kernel and a scan (the host would use the kernel); keep one")
        return problems

    @staticmethod
    def _fused_problems(kernel: Any, specs: tuple[TensorSpec, ...], state_size: Any) -> list[str]:
        if kernel not in FUSED_KERNELS:
            return [f"fused_kernel must be one of {tuple(FUSED_KERNELS)} or None, got {kernel!r}"]
        blocks, expected_state = FUSED_KERNELS[kernel]
        by_name = {spec.name: spec for spec in specs}
        problems = []
        for name, layout, reads in (("w_input", "matrix", "input"), ("w_recurrent", "matrix", "hidden"),
                                    ("b_input", "vector", None)):  # fmt: skip
            spec = by_name.get(name)
            if spec is None or spec.layout != layout or (reads and spec.reads != reads) or spec.blocks != blocks:
                problems.append(f"fused_kernel {kernel!r} needs a {layout} {name!r} of {blocks} gate block(s)"
                                f"{' reading the ' + reads if reads else ''}; declare it or set fused_kernel = None")
        extra = set(by_name) - set(FUSED_NAMES)
        if extra:
            problems.append(f"fused_kernel {kernel!r} cannot use tensors {sorted(extra)}; set fused_kernel = None")
        if state_size != expected_state:
            problems.append(f"fused_kernel {kernel!r} carries {expected_state} state tensor(s), but state_size "
                            f"is {state_size!r}")  # fmt: skip
        return problems

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...], w: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        """One time step: input ``x [B, n]``, ``state`` (``state_size`` tensors ``[B, h]``, h
        first), the layer's quantized tensors ``w`` by name -> the new state (h first)."""
        raise NotImplementedError(f"cell {self.name!r} declares tensors but does not define step()")

    def scan(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...], w: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Optional parallel path: the whole sequence at once, the same numbers as :meth:`step` looped.

        ``x [T, B, n]``, ``state`` (``state_size`` tensors ``[B, h]``), the quantized tensors ``w``
        -> (h at every step ``[T, B, h]``, the final state tuple). A cell whose recurrence is
        element-wise and linear in the state (``h' = a(x) * h + b(x)``: minGRU, minLSTM, diagonal
        linear RNNs) computes it with a scan (cumulative products, in log space for stability)
        instead of T sequential steps. The host uses it for training and evaluation whenever the
        cell defines it and the hidden state is not quantized per step (that needs the per-step
        loop); the cell kit checks it against the per-step reference (outputs and gradients).
        Not defined by default.
        """
        raise NotImplementedError(f"cell {self.name!r} offers no scan")

    def build(self, input_size: int, quantizer: Quantizer, seed: int) -> torch.nn.Module:
        """Return a module mapping time-major inputs ``[T, B, input_size]`` to ``([T, B, hidden], state)``.

        Only an undeclared cell overrides this: it returns a module that quantizes every input
        matrix, recurrent matrix and bias through ``quantizer`` and offers ``export_layers()``,
        ``clip_shadow_weights_()`` and ``quantized_parameter_count()``. A declared cell (``tensors``
        set) does not: the host builds it (:func:`qbench.training.build_stack`, the fused kernel and
        the straight-through estimator), which keeps this contract free of the training code.
        """
        if self.tensors:
            raise NotImplementedError(f"cell {self.name!r} is a declared cell: build it with "
                                      "qbench.training.build_stack(cell, input_size, quantizer, seed)")  # fmt: skip
        raise NotImplementedError(f"cell {self.name!r} declares no tensors and does not override build()")


class Dataset(Component):
    """A real dataset: finds, obtains, verifies and prepares it, then serves prepared arrays.

    ``task`` is ``"language-model"`` (next symbol), ``"classification"`` (one label per sequence)
    or ``"sequence-labelling"`` (one label per time step). ``metrics`` declares what is reported
    (:class:`qbench.Metric`: name, measure, direction, primary, selects, splits); None keeps the
    default metrics of the task (:data:`qbench.metrics.TASK_METRICS`). Both are checked
    when the plugin registers. ``licence`` is shown on the leaderboard.
    """

    kind: ClassVar[str] = "dataset"
    task: ClassVar[str] = "language-model"
    metrics: ClassVar[tuple[Metric, ...] | None] = None
    licence: ClassVar[str] = ""

    @classmethod
    def declaration_problems(cls) -> list[str]:
        from qbench.metrics import MetricError, MetricSet

        problems = super().declaration_problems()
        try:
            MetricSet.of(cls)
        except MetricError as exc:
            problems.append(f"dataset {cls.name!r}: {exc}")
        return problems

    def prepare(self, cache_dir: str) -> LanguageModelData | ClassificationData | SequenceLabellingData:
        """Return the prepared splits, preparing and caching them under ``cache_dir`` if needed.

        Raises :class:`qbench.DatasetError` (a usage error) when the data is missing, altered,
        truncated or at a wrong path, saying what was expected and how to get it.
        """
        raise NotImplementedError

    def availability(self, cache_dir: str) -> str:
        """One word or short phrase for ``qbench list datasets``: ``ready``, ``obtainable``, ``missing``."""
        return "unknown"

    def check_train(self, train: Mapping[str, Any]) -> None:
        """Rules between this dataset's parameters and a matrix's training recipe (``[train]``, and
        each tuned value of it), checked when the matrix is read, before anything runs; raise
        :class:`qbench.ParamError` naming what to change. None by default."""


class HardwareBackend(Component):
    """Prices or simulates an exported model; its columns join the record (contract).

    ``columns`` maps each column the backend reports to its direction (``"min"``, ``"max"`` or
    ``""`` for neither); the backend owns them: a name the host, a dataset's metrics
    (``test_``/``valid_``/``train_``) or another backend uses is refused at registration. Every
    column reaches the CSV, JSON and HTML leaderboards. :meth:`measure` may raise
    :class:`qbench.Unsupported`, which the host records as status ``unsupported`` instead of failing the case.
    """

    kind: ClassVar[str] = "hardware"
    columns: ClassVar[dict[str, str]] = {}
    #: the columns the Markdown leaderboard shows (None: all of them); the CSV, JSON and HTML
    #: always have every column
    headline: ClassVar[tuple[str, ...] | None] = None
    #: the columns the leaderboard plots the primary metric against (each needs a direction)
    cost_axes: ClassVar[tuple[str, ...]] = ()
    #: the columns the leaderboard tables put first among the costs, in this order (after the
    #: host's weight columns and the cost axes; the other columns follow alphabetically)
    leading_columns: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def declaration_problems(cls) -> list[str]:
        problems = super().declaration_problems()
        label = f"hardware {cls.name!r}"
        columns = getattr(cls, "columns", {})
        if not isinstance(columns, dict) or not all(isinstance(c, str) and d in ("min", "max", "")
                                                    for c, d in columns.items()):  # fmt: skip
            return [*problems, f"{label}: columns must map each column name to 'min', 'max' or '', got {columns!r}"]
        for attribute in ("headline", "cost_axes", "leading_columns"):
            chosen = getattr(cls, attribute, None) or ()
            if isinstance(chosen, str) or not isinstance(chosen, (tuple, list)):
                problems.append(f"{label}: {attribute} must be a tuple of column names, got {chosen!r}")
                continue
            unknown = [c for c in chosen if c not in columns]
            if unknown:
                problems.append(f"{label}: {attribute} names {unknown}, which it does not declare in columns")
        undirected = [c for c in getattr(cls, "cost_axes", ()) or () if c in columns and not columns[c]]
        if undirected:
            problems.append(f"{label}: cost axes {undirected} need a direction ('min' or 'max') in columns")
        return problems

    def measurement_problems(self, result: Any) -> list[str]:
        """What is wrong with what :meth:`measure` returned (empty: it may be stored): a column it
        does not declare, or a value that is not a JSON scalar, each named with the fix."""
        if not isinstance(result, dict):
            return [f"hardware {self.name!r}: measure returned {type(result).__name__}; return a dict "
                    "{column: value}"]  # fmt: skip
        problems = []
        undeclared = sorted(str(column) for column in result if column not in self.columns)
        if undeclared:
            problems.append(f"hardware {self.name!r}: measure returned column(s) {undeclared} that it does not "
                            "declare in columns; declare them (with a direction) or stop returning them")  # fmt: skip
        for column, value in result.items():
            if value is not None and type(value) not in (bool, int, float, str):
                problems.append(f"hardware {self.name!r}: column {column!r} is {value!r} of type "
                                f"{type(value).__module__}.{type(value).__name__}, not a JSON scalar; convert it "
                                "(float(...), int(...), str(...)) or return None")  # fmt: skip
        return problems

    def measure(self, model: ExportedModel, sample: EvalSample) -> dict[str, Any]:
        """Return ``{column: value}`` for the exported model on ``sample``: every column declared in
        ``columns`` and no other, each a JSON number, string, bool or None (numpy scalars are refused,
        convert with ``float()``/``int()``)."""
        raise NotImplementedError


COMPONENT_KINDS: dict[str, type[Component]] = {
    "quantizer": Quantizer,
    "cell": Cell,
    "dataset": Dataset,
    "hardware": HardwareBackend,
}

#: the registration hook of each kind (contract: :mod:`qbench.hookspecs` defines exactly these)
REGISTRATION_HOOKS: dict[str, str] = {
    "quantizer": "qbench_register_quantizers",
    "cell": "qbench_register_cells",
    "dataset": "qbench_register_datasets",
    "hardware": "qbench_register_hardware",
}
