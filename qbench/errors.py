"""Exceptions a user can cause, and the exit codes of the command line.

A :class:`UsageError` carries a message written for the user who made the mistake: the CLI
prints it on one line and exits with :data:`ExitCode.USAGE_ERROR`, never with a traceback.
Anything else that escapes is qbench's own bug and exits with ``INTERNAL_ERROR``.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of ``qbench`` (contract, see the README)."""

    OK = 0
    CASES_FAILED = 1
    INTERRUPTED = 2
    INTERNAL_ERROR = 3
    USAGE_ERROR = 4


class UsageError(Exception):
    """Something the user can fix: a bad matrix, an unknown component, a broken plugin."""


class MatrixError(UsageError):
    """A matrix file that cannot be read, validated or expanded."""


class ParamError(UsageError):
    """A component parameter that is unknown, ill-typed or out of range."""


class UnknownComponentError(UsageError):
    """A component name that no registered plugin provides."""


class PluginError(UsageError):
    """A plugin that cannot be imported or registered."""


class DatasetError(UsageError):
    """A dataset that is missing, altered, truncated or at a wrong path."""


class Unsupported(Exception):
    """A hardware backend cannot represent a model exactly; the record says ``unsupported``."""


class Diverged(Exception):
    """Training produced NaN, inf or an exploding loss; the case ends with ``diverged``."""
