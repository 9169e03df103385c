"""Built-in quantizers: the methods of Ott et al. 2016 (arXiv 1608.06902) plus k-bit fixed point.

float, binary, ternary, pow2-ternary, exponential and fixed; beyond the paper the learned
``lsq`` (Esser et al. 2019) and ``ttq`` (Zhu et al. 2016). The classes live in light modules
(no torch at import); their arithmetic is in :mod:`qbench_builtins.quantizers.kernels`.
"""

from __future__ import annotations

import qbench
from qbench_builtins.quantizers.connect import BinaryQuantizer, FloatQuantizer, TernaryQuantizer
from qbench_builtins.quantizers.exponential import ExponentialQuantizer
from qbench_builtins.quantizers.fixed_point import FixedPointQuantizer, Pow2TernaryQuantizer
from qbench_builtins.quantizers.learned import LSQQuantizer, TTQQuantizer

BUILTIN_QUANTIZERS = (
    FloatQuantizer,
    BinaryQuantizer,
    TernaryQuantizer,
    Pow2TernaryQuantizer,
    ExponentialQuantizer,
    FixedPointQuantizer,
    LSQQuantizer,
    TTQQuantizer,
)


@qbench.hookimpl
def qbench_register_quantizers() -> list[type]:
    return list(BUILTIN_QUANTIZERS)
