"""``qbench/`` spells no built-in component, metric or column name: those are declared by the
components (plugins/) or the matrix. Occurrences that remain are listed in ``ALLOWED`` with their
reason, like the architecture test's list; a new one fails."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: metric and column names the built-in plugins declare: found as words inside any string literal
COLUMN_NAMES = ("bpc", "energy_pj_per_token", "energy_pj_per_sequence", "sim_exact", "sim_max_abs_error", "sim_bpc",
                "sim_accuracy", "sim_agreement", "adds", "shifts", "mults", "weight_bytes_packed",
                "latency_us_per_token", "accuracy", "perplexity")  # fmt: skip
#: built-in component names (every quantizer, cell, dataset and backend of plugins/ and examples/):
#: found as whole string literals (prose in docstrings may mention them)
COMPONENT_NAMES = ("float", "pow2-ternary", "exponential", "ternary", "binary", "fixed", "learned-binary", "twn",
                   "lsq", "ttq", "rnn", "lstm", "gru", "indrnn", "mingru", "diagonal-rnn", "pydoc-char", "brown-char",
                   "ptb-char", "text8", "digits-rows", "mnist-rows", "fsdd", "adding-problem", "delayed-copy", "digits",
                   "shift-add", "energy", "c-kernel", "opcount")  # fmt: skip
#: (file, name, reason): what is left, each a name of the host's own vocabulary, not a component's
ALLOWED = {
    ("qbench/metrics.py", "bpc", "datasets that declare no metrics keep their column names"),
    ("qbench/metrics.py", "accuracy", "a measure the host computes (a dataset names the column)"),
    ("qbench/metrics.py", "perplexity", "a measure the host computes (a dataset names the column)"),
    ("qbench/training/tasks.py", "accuracy", "a measure the host computes"),
    ("qbench/training/tasks.py", "perplexity", "a measure the host computes"),
    ("qbench/components.py", "adds", "the exported model's element-wise operation counts (the export contract)"),
    ("qbench/components.py", "mults", "the exported model's element-wise operation counts (the export contract)"),
    ("qbench/export.py", "float", "the output layer's scheme (a float layer), not the quantizer"),
    ("qbench/training/model.py", "float", "the output layer's scheme (a float layer), not the quantizer"),
    ("qbench/training/stack.py", "gru", "torch's fused kernel names (a declared cell picks one)"),
    ("qbench/training/stack.py", "lstm", "torch's fused kernel names (a declared cell picks one)"),
    ("qbench/components.py", "gru", "torch's fused kernel names (a declared cell picks one)"),
    ("qbench/training/sequence.py", "gru", "torch's fused kernel names (the sequence-level BPTT mirrors each)"),
    ("qbench/training/sequence.py", "lstm", "torch's fused kernel names (the sequence-level BPTT mirrors each)"),
    ("qbench/leaderboard/compute/curvenotes.py", "bpc", "the unit of the curve values it compares with the training "
     "loss (bits per character, against nats)"),
    ("qbench/components.py", "lstm", "torch's fused kernel names (a declared cell picks one)"),
    ("qbench/commands/export.py", "shift-add", "qbench export compiles the shift-add simulator's integer program: "
     "it reads that backend's parameters from the record"),
    *(("qbench/leaderboard/compute/declarations.py", name, "the built-ins' declarations for records stored "
       "before records carried them (a test keeps the table equal to the classes)")
      for name in ("float", "shift-add", "energy", "c-kernel", "adds", "mults", "shifts", "sim_exact",
                   "sim_max_abs_error",
                   "energy_pj_per_token", "energy_pj_per_sequence", "latency_us_per_token")),
    *(("qbench/components.py", scheme, "the hardware families a quantizer's scheme names (the contract, checked "
       "at registration)") for scheme in ("float", "binary", "ternary", "pow2-ternary", "exponential", "fixed")),
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


def test_the_name_lists_cover_every_installed_component():
    """A new built-in component is added to COMPONENT_NAMES (else the grep would not look for it)."""
    from qbench.host import get_host

    host = get_host()
    kinds = ("quantizer", "cell", "dataset", "hardware")
    installed = {name for kind in kinds for name, _ in host.registry(kind).items()}
    assert installed <= set(COMPONENT_NAMES), sorted(installed - set(COMPONENT_NAMES))


def test_the_grep_finds_a_spelled_name(tmp_path, monkeypatch):
    """The check itself: a module that spells a built-in name is found (so the test can fail)."""
    package = tmp_path / "qbench" / "leaderboard"
    package.mkdir(parents=True)
    source = '"""The energy_pj_per_token column first."""\nBASELINE = "float"\nCOST = ("mults", 1)\n'
    (package / "order.py").write_text(source)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert occurrences() == {("qbench/leaderboard/order.py", "float"), ("qbench/leaderboard/order.py", "mults")}
