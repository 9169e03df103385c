"""What the built-in quantizers share: the ``stochastic`` switch and its use at evaluation.

Light on purpose: this module and the quantizer modules import no torch; the arithmetic lives
in :mod:`qbench_builtins.quantizers.kernels`, imported the first time a tensor is quantized.
"""

from __future__ import annotations

from typing import ClassVar

import qbench

#: above this many values ``value_set`` returns None: the set is finite but too long to list
MAX_LISTED_VALUES = 1 << 16
STOCHASTIC_HELP = "sample during training (unbiased form); evaluation always uses the deterministic form"


def stochastic_param(available: bool = True) -> qbench.Param:
    """The ``stochastic`` parameter; where a method has no stochastic form it exists only to say so."""
    if available:
        return qbench.Param(bool, False, STOCHASTIC_HELP)
    return qbench.Param(bool, False, "not available: this method has only a deterministic form")


class BuiltinQuantizer(qbench.Quantizer):
    """Base of the built-in quantizers.

    ``no_stochastic_form``: for a method without a stochastic form, the message given when a
    matrix asks for ``stochastic = true`` (rejected at construction, before any case runs).
    """

    no_stochastic_form: ClassVar[str] = ""

    def validate(self) -> None:
        if self.no_stochastic_form and self.config.get("stochastic"):
            self._reject(self.no_stochastic_form)

    def sampling(self, ctx: qbench.QuantContext) -> bool:
        """True when this call draws at random: a stochastic quantizer while training."""
        return bool(self.stochastic and ctx.training)
