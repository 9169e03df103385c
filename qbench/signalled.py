"""Which interrupts were real: a KeyboardInterrupt that no signal raised came from plugin code.

qbench's handlers for SIGINT and SIGTERM (:mod:`qbench.interrupts`) note each signal here before
raising. Code that calls a plugin (the host loading it, the case runner, a worker) lets a
KeyboardInterrupt through only when a signal was noted; otherwise it is the plugin's own raise and
is reported as the plugin's error, never taken for the user's Ctrl-C. A process where qbench
installed no handler (a pool worker ignores SIGINT) never notes one.
"""

from __future__ import annotations

_received: list[int] = []


def note(signum: int) -> None:
    _received.append(signum)


def received() -> bool:
    """Whether SIGINT or SIGTERM reached one of qbench's handlers in this process (since :func:`clear`)."""
    return bool(_received)


def clear() -> None:
    _received.clear()


class CaseTimeout(BaseException):
    """Raised inside a case by the in-process executor's SIGALRM timer when its time limit is reached."""


def is_real(exc: BaseException) -> bool:
    """Whether ``exc`` must propagate: a KeyboardInterrupt a signal raised, or a case's time limit
    (anything else from plugin code is its error)."""
    return isinstance(exc, CaseTimeout) or (isinstance(exc, KeyboardInterrupt) and received())


def plugin_raised(exc: BaseException) -> str:
    """How a BaseException raised by plugin code is named in its error ('SystemExit(0)', ...)."""
    name = type(exc).__name__
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) (a plugin must not exit the process)"
    if isinstance(exc, KeyboardInterrupt):
        return f"{name} raised by plugin code, not by a Ctrl-C: {exc}"
    return f"{name}: {exc}"
