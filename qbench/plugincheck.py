"""``qbench plugins --check``: construct every component with its defaults and exercise it cheaply.

Besides the basic checks of every component, the kits' quick checks of learned quantizers and declared
cells run here (no training):
a learned quantizer's state is a function of the tensor, its owned gradient reaches the weights
and the state, and its state survives the trip to a worker and into the export; a declared
cell's traced step does the work its declaration counts, and its fused kernel equals its
per-step reference; every quantizer passes the shape probe of each role it takes; every backend
measures a small exported model and returns only declared JSON columns. Each failure is one line
naming the component and the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from qbench import signalled
from qbench.components import QuantContext

#: a small layer keeps every check well under a second
HIDDEN, INPUT = 4, 3


def _check_quantizer(quantizer: Any) -> str | None:
    import torch

    from qbench.quantprobe import probe_problems

    problems = probe_problems(quantizer)  # every role it takes, the same probe as a matrix's
    if problems:
        return "; ".join(problems)
    generator = torch.Generator().manual_seed(0)
    w = torch.empty(16, 24).uniform_(-0.5, 0.5, generator=generator)
    for training in (False, True):
        ctx = QuantContext("input", 24, 16, training, generator)
        state = quantizer.init_state(w, ctx)
        if state:
            ctx = replace(ctx, state=state)
        with torch.no_grad():
            q = quantizer.quantize(w, ctx)
        values = quantizer.value_set(ctx)
        if values is not None:
            allowed = torch.tensor(sorted(values), dtype=torch.float64)
            distance = (q.double().reshape(-1, 1) - allowed.reshape(1, -1)).abs().min(dim=1).values
            if bool((distance > 1e-6 * (1 + allowed.abs().max())).any()):
                return "quantize returned values outside value_set"
    if not quantizer.bits_per_weight() > 0:
        return "bits_per_weight must be positive"
    return None


def hardware_checks(backend: Any, cell_cls: Any, quantizer: Any) -> list[tuple[str, Callable[[], None]]]:
    """Measure a small model exported by the same code as a run's (untrained) and check what comes
    back: only declared columns, JSON values (``qbench.Unsupported`` is an answer too)."""
    if cell_cls is None or quantizer is None:
        return []

    def measure() -> None:
        import numpy as np

        from qbench.data import LANGUAGE_MODEL, EvalSample
        from qbench.errors import Unsupported
        from qbench.training.model import SequenceModel

        model = SequenceModel(_small(cell_cls), quantizer, LANGUAGE_MODEL, INPUT, INPUT, 0).eval()
        tokens = np.random.default_rng(0).integers(0, INPUT, 13)
        try:
            result = backend.measure(model.export(LANGUAGE_MODEL), EvalSample(LANGUAGE_MODEL, tokens=tokens,
                                                                               float_metrics={"bits": 2.0}))
        except Unsupported:
            return
        problems = backend.measurement_problems(result)
        if problems:
            raise AssertionError("; ".join(problems))

    return [("measure", measure)]


def learned_checks(quantizer: Any, cell_cls: Any) -> list[tuple[str, Callable[[], None]]]:
    """The learned-quantizer checks that apply to ``quantizer`` (none for one without learned state,
    its own gradient or a hidden role; a quantizer of the hidden state also gets the sequence-level
    backward checked against the per-step loop); the round trip
    builds a small stack of ``cell_cls`` (a declared cell)."""
    import torch

    from qbench.testing import checks
    from qbench.training import build_stack

    w = torch.empty(8, 6).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
    ctx = QuantContext("input", 6, 8, True, torch.Generator().manual_seed(2))
    has_state = bool(quantizer.init_state(w, ctx))
    found: list[tuple[str, Callable[[], None]]] = []
    if has_state or quantizer.owns_gradient:
        found.append(("learned state", lambda: checks.check_state_is_a_function_of_the_tensor(quantizer, w, ctx)))
    if quantizer.owns_gradient:
        found.append(("owned gradient", lambda: checks.check_owned_gradient(quantizer, w, ctx)))
    if quantizer.applies_to("hidden"):
        found.append(("sequence backward", lambda: checks.check_sequence_backward(quantizer)))
    if has_state:
        def round_trip() -> None:
            stack = build_stack(_small(cell_cls), INPUT, quantizer, 0)
            x = torch.randn(4, 2, INPUT, generator=torch.Generator().manual_seed(0))
            checks.check_learned_state_round_trip(stack, x)

        found.append(("learned state round trip", round_trip))
    return found


def cell_checks(cell_cls: Any, quantizer: Any) -> list[tuple[str, Callable[[], None]]]:
    """The checks of a declared cell, on a small stack of it quantized by ``quantizer`` (none for a
    cell that builds its own stack)."""
    if not getattr(cell_cls, "tensors", ()):
        return []
    import torch

    from qbench.testing import checks
    from qbench.training import build_stack

    cell = _small(cell_cls)
    found: list[tuple[str, Callable[[], None]]] = [
        ("declared counts", lambda: checks.check_counts(cell, build_stack(cell, INPUT, quantizer, 0)))
    ]
    if cell_cls.fused_kernel:
        x = torch.randn(5, 2, INPUT, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

        def fused() -> None:
            stack = build_stack(cell, INPUT, quantizer, 0).double().train()
            checks.check_fused_matches_reference(stack, x)

        found.append(("fused vs reference", fused))
    from qbench.components import has_scan

    if has_scan(cell_cls):
        x_scan = torch.randn(6, 2, INPUT, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

        def scanned() -> None:
            stack = build_stack(cell, INPUT, quantizer, 0).double().train()
            checks.check_fused_matches_reference(stack, x_scan, fast="scan")

        found.append(("scan vs reference", scanned))
    return found


def _small(cell_cls: Any) -> Any:
    return cell_cls(**({"hidden": HIDDEN} if "hidden" in cell_cls.params else {}))


def _declared(cls: Any) -> bool:
    from qbench.components import Cell

    return bool(getattr(cls, "tensors", ())) and cls.build is Cell.build


def _partners(host: Any) -> tuple[Any, Any]:
    """What the checks pair a component with (qbench names no built-in here): the first registered
    declared cell, and the first registered quantizer that is deterministic, stateless and leaves
    the gradient to the host (each None when there is none)."""
    registries = host.registries
    cells = registries["cell"].items() if "cell" in registries else []
    cell = next((entry.cls for _, entry in cells if _declared(entry.cls)), None)
    quantizer = None
    for _, entry in registries["quantizer"].items() if "quantizer" in registries else []:
        try:
            candidate = entry.cls()
            plain = not (candidate.stochastic or candidate.owns_gradient) and _check_quantizer(candidate) is None
        except Exception:  # noqa: BLE001 - a broken quantizer is reported by its own check
            continue
        if plain:
            quantizer = candidate
            break
    return cell, quantizer


def _run(checks: list[tuple[str, Callable[[], None]]]) -> list[str]:
    failures = []
    for label, check in checks:
        try:
            check()
        except BaseException as exc:  # a plugin's bug of any kind is this check's finding (sys.exit() too)
            if signalled.is_real(exc):
                raise
            finding = exc if isinstance(exc, AssertionError) else f"raised {signalled.plugin_raised(exc)}"
            failures.append(f"{label}: {finding}")
    return failures


def check_components(host: Any) -> list[str]:
    """Problems found, one line each ("kind name: what")."""
    problems: list[str] = []
    partner_cell, partner_quantizer = _partners(host)
    for kind, registry in host.registries.items():
        for name, entry in registry.items():
            try:
                component = entry.cls()
            except BaseException as exc:
                if signalled.is_real(exc):
                    raise
                problems.append(f"{kind} {name} ({entry.plugin}): cannot be created with its defaults: {exc}")
                continue
            found: list[str] = []
            try:
                problem = _check_quantizer(component) if kind == "quantizer" else None
                if problem:
                    found.append(problem)
                elif kind == "quantizer" and partner_cell is not None:
                    found += _run(learned_checks(component, partner_cell))
                elif kind == "cell" and partner_quantizer is not None:
                    found += _run(cell_checks(entry.cls, partner_quantizer))
                elif kind == "hardware":
                    found += _run(hardware_checks(component, partner_cell, partner_quantizer))
            except BaseException as exc:
                if signalled.is_real(exc):
                    raise
                found.append(f"raised {signalled.plugin_raised(exc)}")
            problems += [f"{kind} {name} ({entry.plugin}): {problem}" for problem in found]
    return problems
