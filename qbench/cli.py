"""The ``qbench`` command line: a thin console entry over :func:`main`, which tests call directly.

Subcommands live in ``qbench.commands``; each module defines ``NAME``, ``HELP``,
``configure(parser)`` and ``execute(args) -> ExitCode``. A :class:`qbench.UsageError` becomes one
line on stderr and exit code 4; only qbench's own bugs print a traceback (exit code 3).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence

from qbench import __version__
from qbench.errors import ExitCode, UsageError
from qbench.interrupts import Terminated, sigterm_as_interrupt

COMMAND_MODULES = (
    "qbench.commands.run",
    "qbench.commands.plugins",
    "qbench.commands.list",
    "qbench.commands.leaderboard",
    "qbench.commands.compare",
    "qbench.commands.validate",
    "qbench.commands.pack",
    "qbench.commands.merge",
    "qbench.commands.site",
    "qbench.commands.export",
)


class CommandImportError(Exception):
    """A command module of qbench itself failed to import: a qbench bug, never skipped silently."""

    def __init__(self, module_name: str, cause: BaseException) -> None:
        super().__init__(f"command module {module_name} cannot be imported: {type(cause).__name__}: {cause}")
        self.module_name = module_name


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad usage; the contract says 4, with one clear line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qbench", description="Benchmark low-precision recurrent neural networks.")
    parser.add_argument("--version", action="version", version=f"qbench {__version__}")
    parser.add_argument("-p", dest="plugin_switches", action="append", default=[], metavar="no:NAME",
                        help="leave the plugin (or distribution) NAME out of this command; repeat for several "
                             "(the same as QBENCH_DISABLE_PLUGINS=NAME,...)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # every listed command ships with qbench: a missing one is a bug
            raise CommandImportError(module_name, exc) from exc
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(_execute=module.execute)
    return parser


@contextlib.contextmanager
def _plugins_disabled(switches: list[str]) -> Iterator[None]:
    """``-p no:NAME``: add NAME to the environment variable every host reads, for this command only
    (worker processes the command starts inherit it)."""
    from qbench.host import DISABLE_ENV, disabled_from_environment

    names = []
    for switch in switches:
        if not switch.startswith("no:") or not switch[3:].strip():
            raise UsageError(f"-p {switch}: qbench -p takes no:NAME (leave the plugin NAME out), e.g. -p no:acme")
        names.append(switch[3:].strip())
    if not names:
        yield
        return
    previous = os.environ.get(DISABLE_ENV)
    os.environ[DISABLE_ENV] = ",".join([*disabled_from_environment(), *names])
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(DISABLE_ENV, None)
        else:
            os.environ[DISABLE_ENV] = previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run qbench with ``argv`` and return the exit code (never calls ``sys.exit``)."""
    from qbench import signalled

    signalled.clear()
    # The handlers go in first: a Ctrl-C at any point is noted as real, and a KeyboardInterrupt
    # no signal raised (a plugin's) is never taken for the user's.
    with sigterm_as_interrupt():  # batch schedulers stop jobs with SIGTERM: treat it like Ctrl-C
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    from qbench import signalled

    try:
        parser = build_parser()
        try:
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        except SystemExit as exc:  # --help / --version: argparse's own exits, before any command runs
            return int(exc.code or 0) if isinstance(exc.code, int) else 0
        if not getattr(args, "_execute", None):
            parser.print_help()
            return int(ExitCode.USAGE_ERROR)
        from qbench.host import plugin_reports

        with _plugins_disabled(args.plugin_switches), plugin_reports(sys.stderr):
            return int(args._execute(args))
    except UsageError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE_ERROR)
    except KeyboardInterrupt as exc:
        if not signalled.received():  # raised by code (a plugin's, most likely), not by a Ctrl-C
            traceback.print_exc()
            print("qbench: internal error: KeyboardInterrupt raised by code, not by a Ctrl-C (a bug in a plugin "
                  "or in qbench); please report it with the traceback above", file=sys.stderr)  # fmt: skip
            return int(ExitCode.INTERNAL_ERROR)
        print("qbench: terminated (SIGTERM)" if isinstance(exc, Terminated) else "qbench: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except CommandImportError as exc:
        traceback.print_exc()
        print(f"qbench: internal error: {exc} (a bug in qbench; please report it with the traceback above)",
              file=sys.stderr)
        return int(ExitCode.INTERNAL_ERROR)
    except SystemExit as exc:  # a command never exits itself: a plugin called sys.exit()
        traceback.print_exc()
        print(f"qbench: internal error: SystemExit({exc.code!r}) raised while the command ran (a plugin called "
              "sys.exit?); nothing is reported as done; please report it with the traceback above",
              file=sys.stderr)  # fmt: skip
        return int(ExitCode.INTERNAL_ERROR)
    except Exception:
        traceback.print_exc()
        print("qbench: internal error (a bug in qbench or a plugin); please report it with the traceback above",
              file=sys.stderr)
        return int(ExitCode.INTERNAL_ERROR)


def console_main() -> None:
    sys.exit(main())
