"""Hook specifications of qbench (contract).

Plugins implement these with ``@qbench.hookimpl``. Every registration hook is collected: pluggy
calls every implementation and qbench merges the lists; a name two plugins register is kept under
both qualified names (``DISTRIBUTION:name``), and the bare name is then ambiguous (see
:mod:`qbench.registry`). :data:`qbench.components.REGISTRATION_HOOKS` names the hook of each kind.
"""

from __future__ import annotations

from qbench.components import Cell, Dataset, HardwareBackend, Quantizer
from qbench.markers import hookspec

# -------------------------------------------------------------------------
# Registration hooks: called once, when the plugin manager is created.
# -------------------------------------------------------------------------


@hookspec
def qbench_register_quantizers() -> list[type[Quantizer]]:
    """Register weight quantizers.

    Called once at start-up, after every plugin has been registered. Results of all
    implementations are collected.

    :returns: a list of :class:`qbench.Quantizer` subclasses.
    """


@hookspec
def qbench_register_cells() -> list[type[Cell]]:
    """Register recurrent cells.

    Called once at start-up, after every plugin has been registered. Results of all
    implementations are collected.

    :returns: a list of :class:`qbench.Cell` subclasses.
    """


@hookspec
def qbench_register_datasets() -> list[type[Dataset]]:
    """Register datasets.

    Called once at start-up, after every plugin has been registered. Results of all
    implementations are collected.

    :returns: a list of :class:`qbench.Dataset` subclasses.
    """


@hookspec
def qbench_register_hardware() -> list[type[HardwareBackend]]:
    """Register hardware cost backends.

    Called once at start-up, after every plugin has been registered. Results of all
    implementations are collected.

    :returns: a list of :class:`qbench.HardwareBackend` subclasses.
    """
