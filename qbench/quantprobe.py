"""The shape probe of a quantizer: small tensors of each role it takes, quantized once each way.

The matrix runs it on every quantizer it names before any case starts, and ``qbench plugins
--check`` on every installed one: a ``quantize`` that returns another shape or dtype would
otherwise fail deep inside each case's training with torch's own words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from qbench import signalled
from qbench.components import ALL_ROLES, HIDDEN_ROLE, OUTPUT_ROLE, QuantContext

#: hidden units, inputs and outputs of the probe's tensors (small: the probe runs at every matrix load)
HIDDEN, INPUT, BATCH, OUTPUTS = 6, 4, 2, 3


def _probe_tensor(role: str) -> tuple[tuple[int, ...], tuple[int, int]]:
    """(shape, (fan_in, fan_out)) of the probe's tensor of ``role``, as the host hands them over."""
    if role == "input":
        return (HIDDEN, INPUT), (INPUT, HIDDEN)
    if role == "recurrent":
        return (HIDDEN, HIDDEN), (HIDDEN, HIDDEN)
    if role == "bias":
        return (HIDDEN,), (INPUT, HIDDEN)
    if role == OUTPUT_ROLE:  # the output layer's [C, h] weight, fans (h, C)
        return (OUTPUTS, HIDDEN), (HIDDEN, OUTPUTS)
    return (BATCH, HIDDEN), (HIDDEN, HIDDEN)  # the hidden state of one time step


def probe_problems(quantizer: Any, roles: Iterable[str] = ALL_ROLES) -> list[str]:
    """What is wrong with ``quantizer``'s outputs on small tensors of every role of ``roles`` it takes
    (empty: none). A matrix probes the roles a case hands it; ``plugins --check`` every role."""
    import torch

    problems = []
    for role in roles:
        if not quantizer.applies_to(role):
            continue
        shape, (fan_in, fan_out) = _probe_tensor(role)
        generator = torch.Generator().manual_seed(0)
        w = torch.empty(shape).uniform_(-0.5, 0.5, generator=generator)
        what = f"a {tuple(shape)} {w.dtype} tensor of role {role!r}"
        try:
            for training in (False, True):
                ctx = QuantContext(role, fan_in, fan_out, training, generator)
                stand_in = torch.linspace(-1.0, 1.0, HIDDEN) if role == HIDDEN_ROLE else w
                state = quantizer.init_state(stand_in, ctx)
                if state:
                    ctx = replace(ctx, state=state)
                with torch.no_grad():
                    q = quantizer.quantize(w, ctx)
                if not isinstance(q, torch.Tensor):
                    problems.append(f"quantize returned {type(q).__name__} for {what}; return a torch.Tensor")
                    break
                if tuple(q.shape) != tuple(shape) or q.dtype != w.dtype:
                    problems.append(f"quantize returned shape {tuple(q.shape)} {q.dtype} for {what} (training="
                                    f"{training}); it must return the same shape and dtype")  # fmt: skip
                    break
        except BaseException as exc:  # noqa: BLE001 - any failure of the plugin's code is the finding (sys.exit too)
            if signalled.is_real(exc):
                raise
            hint = ("; a quantizer that cannot quantize the output layer returns False from applies_to('output')"
                    if role == OUTPUT_ROLE else "")  # fmt: skip
            problems.append(f"quantize raised {signalled.plugin_raised(exc)} on {what}{hint}")
    return problems
