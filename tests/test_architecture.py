"""The map of docs/architecture.md, enforced: floors, no upward import, no cycle, no private name across modules.

A small ``ast`` walk over ``qbench/`` and ``plugins/`` (no dependency): every import statement,
module level or inside a function (a function-local import hides a cycle, it does not remove it),
``if TYPE_CHECKING:`` blocks included, for the floors and for cycles alike: a type is a dependency
too, and a module that names a type of a floor above it is not the lowest floor it claims to be
(``from __future__ import annotations`` only hides such a circle from import time). Violations
that exist today in code owned by other work are listed in ``ALLOWED``, each with its reason;
the lead removes an entry when its fix lands. Anything else fails, and
``test_the_checks_fail_on_a_synthetic_package`` shows each check failing.
"""

from __future__ import annotations

import ast
import re
import textwrap
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: top to bottom; a module may import its own floor and the floors below it, never one above.
#: A dotted entry places that module and everything under it (the longest entry wins); a
#: top-level name places only the package root itself (``qbench``: the public facade over the
#: registries and the component contracts), so a new package must be placed here explicitly.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("qbench.cli", "qbench.__main__", "qbench.commands")),
    ("run driver", ("qbench.driver", "qbench.rounds", "qbench.rerun", "qbench.runlock", "qbench.outdir",
                    "qbench.interrupts", "qbench.publish")),
    # the leaderboard's three wings: reading published results back, writing them, building them
    ("leaderboard audit", ("qbench.leaderboard.audit",)),
    ("leaderboard rendering", ("qbench.leaderboard", "qbench.leaderboard.render")),
    (
        "planning / executors / store / leaderboard",
        (
            "qbench.matrix",
            "qbench.quantprobe",
            "qbench.expanded",
            "qbench.planning",
            "qbench.executors",
            "qbench.case_runner",
            "qbench.store",
            "qbench.storecolumns",
            "qbench.storeblocks",
            "qbench.leaderboard.compute",
            "qbench.provenance",
            "qbench.plugincheck",
            "qbench.testing",
        ),
    ),
    (
        "registries and components",
        (
            "qbench",
            "qbench.host",
            "qbench.registry",
            "qbench.hookspecs",
            "qbench_builtins",
            "qbench_builtins.cells",
            "qbench_builtins.datasets",
            "qbench_builtins.hardware",
            "qbench_builtins.quantizers",
        ),
    ),
    ("shared services", ("qbench.training", "qbench.trainconfig", "qbench.datacache", "qbench.ste",
                         "qbench.protocol", "qbench.grids", "qbench.stats", "qbench.verdicts")),
    (
        "component contracts",
        (
            "qbench.components",
            "qbench.metrics",
            "qbench.columns",
            "qbench.record",
            "qbench.params",
            "qbench.errors",
            "qbench.data",
            "qbench.export",
            "qbench.roles",
            "qbench.markers",
            "qbench.version",
            "qbench.atomicio",
            "qbench.signalled",
            "qbench.numerics",
            "qbench.schemas",
        ),
    ),
]

#: today's violations in code owned by other work: (kind, importer, imported, name). Remove an
#: entry when its fix lands; a NEW violation fails the test.
ALLOWED: set[tuple[str, str, str, str]] = set()


# ---- the checker (works on any folder of packages: the tests below feed it a synthetic one) ----


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # the module (or package) imported
    name: str  # the name taken from it ("" for ``import x``)
    type_only: bool
    line: int


@dataclass
class Graph:
    modules: dict[str, Path]
    imports: list[Import] = field(default_factory=list)
    #: ``module._private`` attribute reads through an imported module: (importer, module, name, line)
    private_reads: list[tuple[str, str, str, int]] = field(default_factory=list)


def find_modules(roots: Iterable[tuple[Path, Path]]) -> dict[str, Path]:
    """``{dotted name: file}`` for every ``.py`` under each (folder, folder its names are relative to)."""
    found = {}
    for folder, relative_to in roots:
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(relative_to).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def build_graph(modules: dict[str, Path]) -> Graph:
    graph = Graph(modules)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        typed = _type_checking_lines(tree)
        aliases: dict[str, str] = {}  # local name -> internal module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = owner(alias.name)
                    if target and target != module:
                        graph.imports.append(Import(module, target, "", node.lineno in typed, node.lineno))
                        if target == alias.name:
                            aliases[alias.asname or alias.name] = target
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in modules else owner(base)
                    if target and target != module:
                        name = "" if full in modules else alias.name
                        graph.imports.append(Import(module, target, name, node.lineno in typed, node.lineno))
                        if full in modules:
                            aliases[alias.asname or alias.name] = full
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
            ):
                graph.private_reads.append((module, aliases[node.value.id], node.attr, node.lineno))
    return graph


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def floor_of(module: str, floors: list[tuple[str, tuple[str, ...]]]) -> int | None:
    best, index = -1, None
    for i, (_label, prefixes) in enumerate(floors):
        for prefix in prefixes:
            subtree = "." in prefix and module.startswith(prefix + ".")
            if (module == prefix or subtree) and len(prefix) > best:
                best, index = len(prefix), i
    return index


def unplaced(graph: Graph, floors: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    return sorted(m for m in graph.modules if floor_of(m, floors) is None)


def upward_imports(graph: Graph, floors: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, str, str, str]]:
    found = []
    for imp in graph.imports:
        low, high = floor_of(imp.importer, floors), floor_of(imp.imported, floors)
        if low is not None and high is not None and high < low:
            found.append(("upward", imp.importer, imp.imported, imp.name))
    return sorted(set(found))


def private_imports(graph: Graph) -> list[tuple[str, str, str, str]]:
    found = {("private", imp.importer, imp.imported, imp.name) for imp in graph.imports if _private(imp.name)}
    found |= {("private", importer, target, name) for importer, target, name, _line in graph.private_reads}
    return sorted(found)


def cycles(graph: Graph) -> list[tuple[str, ...]]:
    """Strongly connected components of more than one module over every import (Tarjan).

    Type-only imports count: they never run, but they tie the two modules' designs together just
    the same (the simulator's ``intops`` once named ``program``'s ``LayerProgram`` that way). A
    submodule importing its own package root counts: the root imports it too, and such a
    pair works only by the luck of import order (``qbench.host`` reading ``qbench.__version__``).
    """
    edges: dict[str, set[str]] = {m: set() for m in graph.modules}
    for imp in graph.imports:
        edges[imp.importer].add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


# ---- the project ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(find_modules([(ROOT / "qbench", ROOT), (ROOT / "plugins", ROOT / "plugins")]))


def test_every_module_is_on_a_floor_of_the_map(graph: Graph) -> None:
    assert unplaced(graph, FLOORS) == [], "place new packages on a floor (here and in docs/architecture.md)"


def test_no_module_imports_a_floor_above_its_own(graph: Graph) -> None:
    assert [v for v in upward_imports(graph, FLOORS) if v not in ALLOWED] == []


def test_no_private_name_is_imported_across_modules(graph: Graph) -> None:
    assert [v for v in private_imports(graph) if v not in ALLOWED] == []


def test_the_import_graph_has_no_cycle(graph: Graph) -> None:
    assert cycles(graph) == []


#: what the leaderboard must never reach, directly or through another module: a leaderboard is a pure
#: function of its records and the stored protocol, so it builds where the run's plugins are absent
#: (the package root ``qbench`` builds the plugin host, so it is out too)
LEADERBOARD_NEVER = ("qbench", "qbench.host", "qbench.registry", "qbench.hookspecs", "qbench.matrix",
                     "qbench.expanded", "qbench.planning", "qbench.executors", "qbench.case_runner", "qbench.driver",
                     "qbench.rounds", "qbench_builtins")


def reachable(graph: Graph, start: str) -> dict[str, str]:
    """Every module ``start``'s imports reach (type-only ones included), each with the module importing it."""
    edges: dict[str, set[str]] = {m: set() for m in graph.modules}
    for imp in graph.imports:
        edges[imp.importer].add(imp.imported)
    seen: dict[str, str] = {}
    stack = [start]
    while stack:
        here = stack.pop()
        for nxt in sorted(edges[here]):
            if nxt not in seen and nxt != start:
                seen[nxt] = here
                stack.append(nxt)
    return seen


def test_the_leaderboard_never_reaches_the_plugins_or_the_matrix(graph: Graph) -> None:
    leaderboard = [m for m in graph.modules if m == "qbench.leaderboard" or m.startswith("qbench.leaderboard.")]
    assert len(leaderboard) > 5
    found = []
    for module in leaderboard:
        for target, via in reachable(graph, module).items():
            never = any(target == n or (n != "qbench" and target.startswith(n + ".")) for n in LEADERBOARD_NEVER)
            if never:
                found.append(f"{module} reaches {target} (imported by {via})")
    assert found == []


def test_allow_list_entries_are_still_violations(graph: Graph) -> None:
    """An entry whose violation is gone must be removed, so the list only ever shrinks."""
    current = set(upward_imports(graph, FLOORS)) | set(private_imports(graph))
    assert sorted(ALLOWED - current) == []


def test_the_map_in_the_docs_names_every_floor() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    for label, prefixes in FLOORS:
        assert label in text, f"docs/architecture.md does not describe the floor {label!r}"
        for prefix in prefixes:
            assert f"`{prefix}`" in text, f"docs/architecture.md does not place `{prefix}`"


def test_the_version_is_the_distribution_version() -> None:
    from qbench.version import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]


# ---- the checks fail on a synthetic package -----------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Graph:
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return build_graph(find_modules([(tmp_path / "pkg", tmp_path)]))


#: "pkg": the root only
TINY_FLOORS = [("top", ("pkg.top",)), ("bottom", ("pkg.bottom",)), ("root", ("pkg", "pkg.root_types"))]
CLEAN = {
    "pkg/__init__.py": "",
    "pkg/top.py": "from pkg.bottom import helper\nfrom . import bottom\n",
    "pkg/bottom.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.root_types import Thing\n"
    "def helper():\n    return 1\n",
    "pkg/root_types.py": "class Thing:\n    pass\n",
}


def test_the_checks_pass_a_clean_synthetic_package(tmp_path: Path) -> None:
    graph = _package(tmp_path, CLEAN)
    assert unplaced(graph, TINY_FLOORS) == []
    assert private_imports(graph) == [] and cycles(graph) == []
    assert upward_imports(graph, TINY_FLOORS) == []
    assert [imp.type_only for imp in graph.imports if imp.importer == "pkg.bottom"] == [True]


@pytest.mark.parametrize(
    ("change", "check", "expected"),
    [
        # a function-local import hides a cycle from import time, not from the map
        (
            {"pkg/bottom.py": "def helper():\n    from pkg.top import thing\n    return thing\n"},
            "upward",
            [("upward", "pkg.bottom", "pkg.top", "thing")],
        ),
        (
            {"pkg/bottom.py": "def helper():\n    from pkg.top import thing\n    return thing\n"},
            "cycles",
            [("pkg.bottom", "pkg.top")],
        ),
        # a type-only import of the floor above: seen by the floors and by the cycle check
        (
            {"pkg/bottom.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import top\n"},
            "upward",
            [("upward", "pkg.bottom", "pkg.top", "")],
        ),
        (
            {"pkg/bottom.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.top import Thing\n"},
            "cycles",
            [("pkg.bottom", "pkg.top")],
        ),
        (
            {"pkg/__init__.py": "from pkg.bottom import helper\n", "pkg/bottom.py": "def helper():\n    import pkg\n"},
            "cycles",
            [("pkg", "pkg.bottom")],
        ),
        (
            {"pkg/top.py": "from pkg.bottom import _secret\n"},
            "private",
            [("private", "pkg.top", "pkg.bottom", "_secret")],
        ),
        (
            {"pkg/top.py": "from pkg import bottom\nvalue = bottom._secret\n"},
            "private",
            [("private", "pkg.top", "pkg.bottom", "_secret")],
        ),
        ({"pkg/side.py": "x = 1\n"}, "unplaced", ["pkg.side"]),
    ],
    ids=[
        "upward",
        "cycle",
        "type-only-upward",
        "type-only-cycle",
        "cycle-through-the-root",
        "private-import",
        "private-attribute",
        "unplaced",
    ],
)
def test_the_checks_fail_on_a_synthetic_package(
    tmp_path: Path, change: dict[str, str], check: str, expected: list
) -> None:
    graph = _package(tmp_path, {**CLEAN, "pkg/bottom.py": "def helper():\n    return 1\n", **change})
    if check == "upward":
        found: list = upward_imports(graph, TINY_FLOORS)
    elif check == "cycles":
        found = cycles(graph)
    elif check == "private":
        found = private_imports(graph)
    else:
        found = unplaced(graph, TINY_FLOORS)
    assert found == expected
    # and the project's allow-list would not excuse it
    assert not any(tuple(v) in ALLOWED for v in found if isinstance(v, tuple) and len(v) == 4)


def test_docs_describe_the_path_of_one_case_with_real_names() -> None:
    """Every ``module.function`` the walk-through names exists, so the map cannot go stale silently."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = re.findall(r"`((?:qbench|qbench_builtins)(?:\.\w+)+)`", text)
    assert len(named) >= 8
    modules = find_modules([(ROOT / "qbench", ROOT), (ROOT / "plugins", ROOT / "plugins")])
    for dotted in named:
        parts = dotted.split(".")
        cut = max(i for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules or i == 1)
        module, attributes = ".".join(parts[:cut]), parts[cut:]
        assert module in modules, f"docs/architecture.md names {dotted}: no such module"
        defined = _defined_names(modules[module])
        for attribute in attributes:  # a function, a class, a method of it, or a re-export
            assert attribute in defined, f"docs/architecture.md names {dotted}: {module} defines no {attribute}"


def _defined_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names
