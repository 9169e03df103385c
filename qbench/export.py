"""The exported, framework-neutral model that hardware backends consume.

numpy arrays plus metadata. Gate blocks follow torch's order: rnn (one block), gru (r, z, n),
lstm (i, f, g, o). The GRU keeps torch's two bias vectors; its candidate is
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` (reset applied after the recurrent product).

A declared cell exports every declared tensor in ``ExportedLayer.tensors`` as what
it is (a diagonal recurrent weight stays a ``[G*h]`` vector with ``layout = "diagonal"``), its
element-wise operations per unit (``elementwise``) and the learned quantizer state of each
tensor (``ExportedTensor.state``). ``w_input`` / ``w_recurrent`` / ``b_input`` /
``b_recurrent`` name the tensors of those names (or the first of each role) for the backends
written for the paper's three cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ExportedTensor:
    """One quantized tensor as used at evaluation (deterministic quantizer on the shadow weights).

    :param values: float64 array of the quantized values.
    :param role: ``"input"``, ``"recurrent"``, ``"bias"`` or ``"output"`` (``ExportedModel.output_tensor``).
    :param scheme: the quantizer's ``scheme`` (``"ternary"``, ``"exponential"``, ...).
    :param bits: storage bits per weight declared by the quantizer.
    :param encoding: the quantizer's ``encoding(ctx)`` facts (scale, exponent window, format).
    :param layout: ``"matrix"``, ``"diagonal"`` (element-wise product with the state) or
        ``"vector"`` (added), as the cell declared it.
    :param state: the quantizer's learned state for this tensor (name -> float64 array), as
        trained; empty for a quantizer without learned state.
    :param state_bits: declared storage bits of one element of ``state`` (``Quantizer.learned_state_bits``).
    :param scale: declared value of one integer code when the values are codes times one scale
        (``Quantizer.code_scale``, LSQ's step); None otherwise.
    :param quantizer: label of the quantizer of this tensor's role (they may differ by role).
    """

    values: np.ndarray
    role: str
    scheme: str
    bits: float
    encoding: dict[str, Any] = field(default_factory=dict)
    layout: str = "matrix"
    state: dict[str, np.ndarray] = field(default_factory=dict)
    state_bits: float = 32.0
    scale: float | None = None
    quantizer: str = ""

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.values))

    @property
    def storage_bits(self) -> float:
        """Declared storage of this tensor: its values at ``bits`` plus its learned state at ``state_bits``."""
        return float(self.values.size) * self.bits + self.state_elements * self.state_bits

    @property
    def state_elements(self) -> int:
        return int(sum(np.asarray(v).size for v in self.state.values()))


@dataclass
class ExportedLayer:
    """One recurrent layer. ``w_input`` is ``[G*h, n]``, ``w_recurrent`` ``[G*h, h]``.

    ``input_scale`` / ``input_shift`` (``[n]``) hold batch norm on the layer's input folded
    with its running statistics: ``x_normalised = x * input_scale + input_shift``; None when the
    layer has no batch norm.
    """

    cell: str
    input_size: int
    hidden_size: int
    w_input: ExportedTensor
    #: None for a cell without a recurrent tensor (an element-wise recurrence such as minGRU)
    w_recurrent: ExportedTensor | None
    b_input: ExportedTensor | None
    b_recurrent: ExportedTensor | None
    input_scale: np.ndarray | None = None
    input_shift: np.ndarray | None = None
    #: every declared tensor by name, in declaration order (empty for an undeclared cell's stack: its own ``build``)
    tensors: dict[str, ExportedTensor] = field(default_factory=dict)
    #: declared element-wise operations per hidden unit and time step (see ``qbench.Cell.elementwise``)
    elementwise: dict[str, int] = field(default_factory=dict)
    #: tensors in the recurrent state (h; h and c for an LSTM)
    state_size: int = 1
    #: the hidden-state quantizer's facts when it quantizes h at every step: ``scheme``, ``bits`` (its
    #: declared ``role_bits("hidden")``), ``encoding``, ``state``, ``state_bits``, ``scale``, ``quantizer``
    hidden_quantizer: dict[str, Any] | None = None

    @classmethod
    def from_tensors(cls, cell: str, input_size: int, hidden_size: int, tensors: dict[str, ExportedTensor],
                     **facts: Any) -> ExportedLayer:  # fmt: skip
        """The layer of a declared cell's tensors (in declaration order): ``w_input`` / ``w_recurrent`` /
        ``b_input`` / ``b_recurrent`` are the tensors of those names, else the first of each role
        (``b_recurrent`` only by name). Real exports and the kit's random models both use this.
        ``facts``: the other fields (``elementwise``, ``state_size``, ``input_scale``, ...)."""

        def named_or_role(name: str, role: str, optional: bool = False) -> ExportedTensor | None:
            if name in tensors:
                return tensors[name]
            found = next((t for t in tensors.values() if t.role == role), None)
            if found is None and not optional:
                raise ValueError(f"a declared cell needs at least one tensor of role {role!r} (found "
                                 f"{[(n, t.role) for n, t in tensors.items()]})")  # fmt: skip
            return found

        # no recurrent tensor: an element-wise recurrence (minGRU) reads the state in its step only
        w_input, w_recurrent = named_or_role("w_input", "input"), named_or_role("w_recurrent", "recurrent", True)
        assert w_input is not None
        return cls(cell=cell, input_size=input_size, hidden_size=hidden_size, w_input=w_input,
                   w_recurrent=w_recurrent, b_input=named_or_role("b_input", "bias", optional=True),
                   b_recurrent=tensors.get("b_recurrent"), tensors=dict(tensors), **facts)  # fmt: skip

    @property
    def hidden_bits(self) -> float | None:
        """Declared width of the quantized hidden state (None: the state is not quantized)."""
        return None if self.hidden_quantizer is None else float(self.hidden_quantizer["bits"])

    def state_storage_bits(self) -> float:
        """Declared storage of the hidden-state quantizer's learned state (a step), in bits."""
        facts = self.hidden_quantizer or {}
        elements = sum(np.asarray(v).size for v in (facts.get("state") or {}).values())
        return float(elements) * float(facts.get("state_bits", 32.0))

    @property
    def gate_blocks(self) -> int:
        return self.w_input.values.shape[0] // self.hidden_size

    def products_per_step(self) -> int:
        """Weight products of one time step (batch 1), from the declared layouts: dense input columns."""
        tensors = self.tensors or {
            name: t
            for name, t in (("w_input", self.w_input), ("w_recurrent", self.w_recurrent))
            if t is not None
        }
        total = 0
        for tensor in tensors.values():
            if tensor.layout == "matrix":
                total += int(tensor.values.size)
            elif tensor.layout == "diagonal":
                total += int(tensor.values.shape[0])
        return total


@dataclass
class ExportedModel:
    """The whole network: input encoding, recurrent layers, output layer.

    :param input_kind: ``"one-hot"`` (characters: the input matrix's columns are selected),
        ``"embedding"`` (``embedding`` ``[V, E]`` in full precision) or ``"features"``.
    :param output_weight: ``[C, h]``: full precision, or the quantized values when the matrix
        assigned the output role (``output_scheme`` says which scheme).
    :param output_bias: ``[C]``, always full precision.
    :param output_tensor: the quantized output weight with its declared format (role
        ``"output"``: ``bits`` from ``role_bits("output")``, ``scale``, learned ``state``,
        ``quantizer``); None for a full-precision output layer. Its values are ``output_weight``.
    """

    cell: str
    task: str
    input_kind: str
    input_size: int
    layers: list[ExportedLayer]
    output_weight: np.ndarray
    output_bias: np.ndarray
    embedding: np.ndarray | None = None
    output_scheme: str = "float"
    quantizer: str = ""
    quantizer_params: dict[str, Any] = field(default_factory=dict)
    output_tensor: ExportedTensor | None = None

    @property
    def hidden_size(self) -> int:
        return self.layers[-1].hidden_size

    @property
    def n_outputs(self) -> int:
        return int(self.output_weight.shape[0])
