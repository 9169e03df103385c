"""Component base classes: what a plugin subclasses to add a quantizer, cell, dataset or backend.

These classes are the plugin authors' contract. They import neither torch nor numpy at module
import time (annotations only), so ``import qbench`` stays instant.

Every component class has

* ``name``: lower case, digits and dashes (``"pow2-ternary"``); global across all plugins;
* ``description``: one line shown by ``qbench list`` and on the leaderboard;
* ``params``: the declared keyword parameters (:class:`qbench.Param`), checked before any case
  runs; an instance's resolved values are in ``self.config`` and also set as attributes.

Subclasses validate cross-parameter rules in :meth:`Component.validate` by raising
:class:`qbench.ParamError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from qbench.errors import ParamError
from qbench.params import Param, resolve_params

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps torch out of `import qbench`
    import torch

    from qbench.data import ClassificationData, EvalSample, LanguageModelData
    from qbench.export import ExportedModel

ROLES = ("input", "recurrent", "bias")
#: attributes of a component that a parameter must not shadow
RESERVED_PARAM_NAMES = frozenset({"name", "description", "params", "config", "kind", "label"})


@dataclass(frozen=True)
class QuantContext:
    """What a quantizer knows about the tensor it quantizes (contract).

    :param role: ``"input"``, ``"recurrent"`` or ``"bias"``.
    :param fan_in: Glorot fan-in of the matrix (for a bias: that of its layer's input matrix).
    :param fan_out: Glorot fan-out of the matrix (for a bias: that of its input matrix).
    :param training: True while training; a stochastic quantizer is deterministic when False.
    :param generator: a seeded ``torch.Generator`` on the tensor's device, for stochastic draws.
    :param layer: index of the recurrent layer (0 for the first), for plugins that care.
    """

    role: str
    fan_in: int
    fan_out: int
    training: bool
    generator: torch.Generator | None = None
    layer: int = 0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"QuantContext.role must be one of {ROLES}, got {self.role!r}")

    @property
    def glorot_bound(self) -> float:
        """W0 = sqrt(6 / (fan_in + fan_out)), the Glorot-uniform bound of the matrix."""
        return float((6.0 / (self.fan_in + self.fan_out)) ** 0.5)


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

    @property
    def label(self) -> str:
        """``name`` plus the parameters that differ from their defaults, e.g. ``ternary(stochastic=true)``."""
        changed = {k: v for k, v in self.config.items() if self.params[k].default != v}
        if not changed:
            return self.name
        inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(changed.items()))
        return f"{self.name}({inner})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"

    def _reject(self, message: str) -> None:
        raise ParamError(f"{self.kind} {self.name!r}: {message}")


class Quantizer(Component):
    """Maps float "shadow" weights to their low-precision forward values (contract).

    The host, not the quantizer, applies the straight-through estimator, samples stochastic
    quantizers once per training step, calls the deterministic form at evaluation
    (``ctx.training`` False) and clips shadow weights to :meth:`shadow_bound` after each update.

    Class attributes:

    * ``scheme``: the hardware family of the values, one of ``"float"``, ``"binary"``,
      ``"ternary"``, ``"pow2-ternary"``, ``"exponential"``, ``"fixed"`` or ``"custom"``; hardware
      backends use it as a hint and verify it against the values.
    * ``stochastic``: whether training draws random values (usually a parameter).
    """

    kind: ClassVar[str] = "quantizer"
    scheme: ClassVar[str] = "custom"
    stochastic: bool = False

    def quantize(self, w: torch.Tensor, ctx: QuantContext) -> torch.Tensor:
        """Return the forward values of ``w``: same shape, dtype and device; no autograd tricks."""
        raise NotImplementedError

    def bits_per_weight(self) -> float:
        """Storage bits of one quantized weight (memory columns of the leaderboard)."""
        raise NotImplementedError

    def shadow_bound(self, ctx: QuantContext) -> float | None:
        """Bound B such that the host clips shadow weights to [-B, B] after each update; None: no clip."""
        return None

    def value_set(self, ctx: QuantContext) -> tuple[float, ...] | None:
        """The finite set of values :meth:`quantize` can return for ``ctx``, or None if not finite."""
        return None

    def encoding(self, ctx: QuantContext) -> dict[str, Any]:
        """Format facts for hardware backends (e.g. ``{"scale": W0}``, ``{"e_min": -22, "e_max": 9}``)."""
        return {}


class Cell(Component):
    """A recurrent cell family; :meth:`build` returns the trainable stack (contract).

    ``gate_blocks`` is G in the operation counts: rnn 1, gru 3, lstm 4.
    """

    kind: ClassVar[str] = "cell"
    gate_blocks: ClassVar[int] = 1

    def build(self, input_size: int, quantizer: Quantizer, seed: int) -> torch.nn.Module:
        """Return a module mapping time-major inputs ``[T, B, input_size]`` to ``([T, B, hidden], state)``.

        The module quantizes every input matrix, recurrent matrix and bias through ``quantizer``
        (with the straight-through estimator of the host), and offers ``export_layers()`` and
        ``clip_shadow_weights_()``; see :mod:`qbench.training`.
        """
        raise NotImplementedError


class Dataset(Component):
    """A real dataset: finds, obtains, verifies and prepares it, then serves prepared arrays.

    ``task`` is ``"language-model"`` (metric bits per character, lower is better) or
    ``"classification"`` (accuracy, higher is better). ``licence`` is shown on the leaderboard.
    """

    kind: ClassVar[str] = "dataset"
    task: ClassVar[str] = "language-model"
    licence: ClassVar[str] = ""

    def prepare(self, cache_dir: str) -> LanguageModelData | ClassificationData:
        """Return the prepared splits, preparing and caching them under ``cache_dir`` if needed.

        Raises :class:`qbench.DatasetError` (a usage error) when the data is missing, altered,
        truncated or at a wrong path, saying what was expected and how to get it.
        """
        raise NotImplementedError

    def availability(self, cache_dir: str) -> str:
        """One word or short phrase for ``qbench list datasets``: ``ready``, ``obtainable``, ``missing``."""
        return "unknown"


class HardwareBackend(Component):
    """Prices or simulates an exported model; its columns join the record (contract).

    ``columns`` maps each column the backend reports to its direction (``"min"``, ``"max"`` or
    ``""`` for neither). :meth:`measure` may raise :class:`qbench.Unsupported`, which the host
    records as status ``unsupported`` instead of failing the case.
    """

    kind: ClassVar[str] = "hardware"
    columns: ClassVar[dict[str, str]] = {}
    #: the columns the Markdown leaderboard shows (None: all of them); the CSV, JSON and HTML
    #: always have every column
    headline: ClassVar[tuple[str, ...] | None] = None

    def measure(self, model: ExportedModel, sample: EvalSample) -> dict[str, Any]:
        """Return ``{column: value}`` (JSON-able scalars) for the exported model on ``sample``."""
        raise NotImplementedError


COMPONENT_KINDS: dict[str, type[Component]] = {
    "quantizer": Quantizer,
    "cell": Cell,
    "dataset": Dataset,
    "hardware": HardwareBackend,
}
