"""qbench: benchmarks for low-precision recurrent neural networks.

``import qbench`` is light (no torch, numpy or pandas): it exposes the plugin markers, the
component base classes and :func:`create`.
"""

from __future__ import annotations

from qbench.components import Cell, Component, Dataset, HardwareBackend, QuantContext, Quantizer, TensorSpec
from qbench.errors import (
    DatasetError,
    ExitCode,
    MatrixError,
    ParamError,
    PluginError,
    UnknownComponentError,
    Unsupported,
    UsageError,
)
from qbench.host import create, get_host
from qbench.markers import hookimpl, hookspec
from qbench.metrics import Metric
from qbench.params import REQUIRED, Param
from qbench.version import __version__

__all__ = [
    "REQUIRED",
    "Cell",
    "Component",
    "Dataset",
    "DatasetError",
    "ExitCode",
    "HardwareBackend",
    "Metric",
    "MatrixError",
    "Param",
    "ParamError",
    "PluginError",
    "QuantContext",
    "Quantizer",
    "TensorSpec",
    "UnknownComponentError",
    "Unsupported",
    "UsageError",
    "__version__",
    "create",
    "get_host",
    "hookimpl",
    "hookspec",
]
