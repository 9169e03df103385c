"""``qbench/`` spells no built-in component, metric or column name: those are declared by the
components (plugins/) or the matrix. Occurrences that remain are listed in ``ALLOWED`` with their
reason, like the architecture test's list; a new one fails."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: metric and column names the built-in plugins declare: found as words inside any string literal
COLUMN_NAMES = ("bpc", "energy_pj_per_token", "sim_exact", "sim_max_abs_error", "sim_bpc", "sim_accuracy")
#: built-in component names: found as whole string literals (prose in docstrings may mention them)
COMPONENT_NAMES = ("float", "pow2-ternary", "exponential", "ternary", "binary", "rnn", "lstm", "gru", "indrnn",
                   "pydoc-char", "digits-rows", "shift-add", "energy", "lsq", "ttq")
#: (file, name, reason): what is left, each to be removed when its declaration lands
ALLOWED = {
    ("qbench/metrics.py", "bpc", "contract-1 datasets that declare no metrics keep their column names"),
    ("qbench/leaderboard/frame.py", "energy_pj_per_token", "COST_ORDER: column order of the Markdown (snapshots)"),
    ("qbench/leaderboard/frame.py", "sim_exact", "COST_ORDER"),
    ("qbench/leaderboard/frame.py", "sim_max_abs_error", "COST_ORDER"),
    ("qbench/protocol.py", "float", "DEFAULT_BASELINE for records rebuilt without a stored protocol"),
    ("qbench/export.py", "float", "the output layer's scheme (a float layer), not the quantizer"),
    ("qbench/training/model.py", "float", "the output layer's scheme (a float layer), not the quantizer"),
    ("qbench/training/stack.py", "gru", "torch's fused kernel names (a declared cell picks one)"),
    ("qbench/training/stack.py", "lstm", "torch's fused kernel names (a declared cell picks one)"),
}
#: the kits and the synthetic fixtures name built-ins on purpose (they exercise them)
EXEMPT = ("qbench/testing/",)


def literals(tree: ast.AST) -> list[str]:
    """Every string constant of the code, docstrings left out."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def occurrences() -> set[tuple[str, str]]:
    found = set()
    for path in sorted((ROOT / "qbench").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(EXEMPT):
            continue
        texts = literals(ast.parse(path.read_text()))
        for name in COLUMN_NAMES:
            if any(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) for text in texts):
                found.add((rel, name))
        for name in COMPONENT_NAMES:
            if name in texts:
                found.add((rel, name))
    return found


def test_the_host_spells_no_builtin_name_beyond_the_listed_ones():
    allowed = {(file, name) for file, name, _ in ALLOWED}
    unexpected = sorted(occurrences() - allowed)
    assert not unexpected, f"built-in names spelled in qbench/ (declare them in the component instead): {unexpected}"
