"""A quantizer per role: one case's input weights, recurrent weights, biases and hidden state may
each go through a different quantizer, from any installed plugin.

A matrix's ``[[quantizer]]`` names the quantizer of every role of the recurrent layers, as always;
the output layer stays full precision unless the matrix assigns ``roles.output`` (so that every
matrix written before that role keeps its meaning); ``roles.ROLE = {...}``
in the same table gives one role its own (see ``docs/plugins.md``, "A quantizer per role"). The
host then builds a :class:`RoleQuantizers`: a :class:`qbench.Quantizer` that hands each call to
the quantizer of the context's role, so the stack, the clipping, the export and every undeclared
cell see one quantizer as before, and :meth:`qbench.Quantizer.for_role` gives the one of a role
(its ``owns_gradient``, ``scheme`` and declared costs).

Light module (no torch): only the contracts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qbench.components import ALL_ROLES, HIDDEN_ROLE, OUTPUT_ROLE, QuantContext, Quantizer

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: the roles a matrix may give its own quantizer, in the order labels list them
QUANTIZER_ROLES = ALL_ROLES


def composed_label(default: str, roles: Mapping[str, str]) -> str:
    """``ternary+hidden=lsq(bits=4)``: the default quantizer's label, then each role's, in role order."""
    parts = [f"{role}={roles[role]}" for role in QUANTIZER_ROLES if role in roles]
    return "+".join([default, *parts])


class RoleQuantizers(Quantizer):
    """The quantizers of one case by role: ``default`` for every role not in ``roles``.

    Not a registered component (the matrix composes it); every call that carries a context is
    answered by the quantizer of ``ctx.role``.
    """

    def __init__(self, default: Quantizer, roles: Mapping[str, Quantizer]) -> None:  # noqa: D107
        # no super().__init__: the parts are resolved components already
        unknown = sorted(set(roles) - set(QUANTIZER_ROLES))
        if unknown:
            raise ValueError(f"unknown quantizer roles {unknown}; roles are {', '.join(QUANTIZER_ROLES)}")
        self.default = default
        self.roles = dict(roles)
        self.config: dict[str, Any] = dict(default.config)
        # an instance attribute: the export and the messages name the composition
        self.name = composed_label(default.label, {r: q.label for r, q in self.roles.items()})  # type: ignore[misc]
        self.description = "; ".join(  # type: ignore[misc]
            [f"{default.label}: {default.description}"]
            + [f"{role} {q.label}: {q.description}" for role, q in self.roles.items()]
        )
        self.scheme = default.scheme  # type: ignore[misc]
        self.stochastic = any(bool(getattr(q, "stochastic", False)) for q in (default, *self.roles.values()))

    @property
    def label(self) -> str:
        return self.name

    def for_role(self, role: str) -> Quantizer:
        return self.roles.get(role, self.default)

    def quantize(self, w: torch.Tensor, ctx: QuantContext) -> torch.Tensor:
        return self.for_role(ctx.role).quantize(w, ctx)

    def init_state(self, w: torch.Tensor, ctx: QuantContext) -> dict[str, torch.Tensor]:
        return self.for_role(ctx.role).init_state(w, ctx)

    def applies_to(self, role: str) -> bool:
        # a role the matrix assigned is quantized (the matrix checked that its quantizer accepts it);
        # the output layer only when assigned: the default quantizer never reaches it
        if role == OUTPUT_ROLE:
            return role in self.roles
        return role in self.roles or self.default.applies_to(role)

    def bits_per_weight(self) -> float:
        return self.default.bits_per_weight()

    def hidden_estimator(self, ctx: QuantContext) -> Any:
        return self.for_role(ctx.role).hidden_estimator(ctx)

    def role_bits(self, role: str) -> float:
        return self.for_role(role).role_bits(role)

    def learned_state_bits(self, role: str) -> float:
        return self.for_role(role).learned_state_bits(role)

    def shadow_bound(self, ctx: QuantContext) -> float | None:
        return self.for_role(ctx.role).shadow_bound(ctx)

    def value_set(self, ctx: QuantContext) -> tuple[float, ...] | None:
        return self.for_role(ctx.role).value_set(ctx)

    def encoding(self, ctx: QuantContext) -> dict[str, Any]:
        return self.for_role(ctx.role).encoding(ctx)

    def code_scale(self, ctx: QuantContext) -> float | None:
        return self.for_role(ctx.role).code_scale(ctx)

    def __repr__(self) -> str:
        return f"<RoleQuantizers {self.label}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (RoleQuantizers, (self.default, self.roles))


def output_quantizer(quantizer: Quantizer) -> Quantizer | None:
    """The quantizer of the output layer: the one a matrix assigned to ``roles.output``, else None
    (the output layer stays full precision, as it always has, whatever the default quantizer is)."""
    if isinstance(quantizer, RoleQuantizers) and OUTPUT_ROLE in quantizer.roles:
        return quantizer.roles[OUTPUT_ROLE]
    return None


def role_refusal(quantizer: Quantizer, role: str) -> str | None:
    """Why ``quantizer`` cannot be the quantizer of ``role`` (None: it can)."""
    if role not in QUANTIZER_ROLES:
        return f"unknown role {role!r}; roles are {', '.join(QUANTIZER_ROLES)}"
    if not quantizer.applies_to(role):
        extra = (" (a weight quantizer; for the hidden state give a quantizer whose applies_to('hidden') is "
                 "True, e.g. lsq with hidden = true)") if role == HIDDEN_ROLE else ""  # fmt: skip
        return (f"quantizer {quantizer.label} does not quantize the {role} role "
                f"(its applies_to({role!r}) is False){extra}")
    return None
