"""``qbench plugins --check``: construct every component with its defaults and exercise it cheaply."""

from __future__ import annotations

from typing import Any

from qbench.components import QuantContext


def _check_quantizer(quantizer: Any) -> str | None:
    import torch

    generator = torch.Generator().manual_seed(0)
    w = torch.empty(16, 24).uniform_(-0.5, 0.5, generator=generator)
    for training in (False, True):
        ctx = QuantContext("input", 24, 16, training, generator)
        q = quantizer.quantize(w, ctx)
        if q.shape != w.shape or q.dtype != w.dtype:
            return f"quantize returned shape {tuple(q.shape)} {q.dtype} for {tuple(w.shape)} {w.dtype}"
        values = quantizer.value_set(ctx)
        if values is not None:
            allowed = torch.tensor(sorted(values), dtype=torch.float64)
            distance = (q.double().reshape(-1, 1) - allowed.reshape(1, -1)).abs().min(dim=1).values
            if bool((distance > 1e-6 * (1 + allowed.abs().max())).any()):
                return "quantize returned values outside value_set"
    if not quantizer.bits_per_weight() > 0:
        return "bits_per_weight must be positive"
    return None


def check_components(host: Any) -> list[str]:
    """Problems found, one line each ("kind name: what")."""
    problems: list[str] = []
    for kind, registry in host.registries.items():
        for name, entry in registry.items():
            try:
                component = entry.cls()
            except Exception as exc:
                problems.append(f"{kind} {name} ({entry.plugin}): cannot be created with its defaults: {exc}")
                continue
            try:
                problem = _check_quantizer(component) if kind == "quantizer" else None
            except Exception as exc:
                problem = f"raised {type(exc).__name__}: {exc}"
            if problem:
                problems.append(f"{kind} {name} ({entry.plugin}): {problem}")
    return problems
