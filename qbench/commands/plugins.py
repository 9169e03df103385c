"""``qbench plugins``: every plugin, its distribution, version and components."""

from __future__ import annotations

import argparse

NAME = "plugins"
HELP = "list plugins with their distribution, version and components (--check: exercise them)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="instantiate every component with its defaults")


def execute(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from qbench.errors import ExitCode
    from qbench.host import get_host

    # the tool that diagnoses a broken plugin must not be stopped by it: the others are listed
    host = get_host(keep_broken=True)
    rows = []
    for info in host.plugins:
        parts = [f"{kind}: {', '.join(names)}" for kind, names in sorted(info.components.items())]
        origin = "built-in" if info.builtin else "external"
        if info.broken:
            shown = f"BROKEN (left out): {info.broken}"
        elif info.disabled:
            shown = "DISABLED (QBENCH_DISABLE_PLUGINS or -p no:NAME)"
        else:
            shown = "; ".join(parts) or "-"
        rows.append((info.name, info.distribution or "-", info.version or "-", origin, shown))
    print(tabulate(rows, headers=("plugin", "distribution", "version", "origin", "components")))
    broken = [info.name for info in host.broken]
    if host.disabled:
        print(f"{len(host.disabled)} disabled plugin(s): {', '.join(i.name for i in host.disabled)}")
    if broken:
        print(f"{len(broken)} broken plugin(s): {', '.join(broken)}; they are left out of every command (matrices "
              "that name their components stop with a message) until each is fixed, uninstalled or disabled "
              "(-p no:NAME)")  # fmt: skip
        return ExitCode.USAGE_ERROR
    if not args.check:
        return ExitCode.OK
    from qbench.plugincheck import check_components

    problems = check_components(host)
    problems += [f"plugin {info.name}: {message}" for info in host.plugins for message in info.unmarked]
    for problem in problems:
        print(f"FAIL {problem}")
    print(f"checked {sum(len(r) for r in host.registries.values())} components: "
          f"{'all ok' if not problems else f'{len(problems)} problem(s)'}")
    return ExitCode.CASES_FAILED if problems else ExitCode.OK
