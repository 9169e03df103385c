"""The ``[train]`` table of a matrix: declared like component parameters, checked before any case runs."""

from __future__ import annotations

from typing import Any

from qbench.params import Param, resolve_params

#: Defaults follow the paper profile where the paper is silent (docs/paper.md, "Recipe").
TRAIN_PARAMS: dict[str, Param] = {
    "epochs": Param(int, 10, "passes over the training split", min=1),
    "batch": Param(int, 32, "sequences per batch", min=1),
    "bptt": Param(int, 100, "truncated back-propagation length (characters)", min=1),
    "lr": Param(float, 2e-3, "Adam learning rate", min=0.0),
    "grad_clip": Param(float, 1.0, "gradient-norm clipping; 0 disables", min=0.0),
    "lr_decay": Param(float, 0.5, "learning-rate factor when validation stops improving", min=0.0, max=1.0),
    "patience": Param(int, 3, "epochs without validation improvement before stopping; 0 disables", min=0),
    "max_steps": Param(int, 0, "training steps per epoch at most; 0 means the whole split", min=0),
    "eval_tokens": Param(int, 0, "validation/test characters evaluated at most; 0 means all", min=0),
    "hardware_tokens": Param(int, 2000, "test characters (or sequences / 10) given to hardware backends", min=1),
    "diverge_factor": Param(float, 10.0, "loss above factor x initial loss counts as divergence", min=1.0),
}


def resolve_train(given: dict[str, Any]) -> dict[str, Any]:
    """Check a ``[train]`` table and fill in defaults (raises :class:`qbench.ParamError`)."""
    return resolve_params("[train]", TRAIN_PARAMS, given)


#: The ``[limits]`` table: how a case is run, not what it computes, so never part of a case id.
LIMIT_PARAMS: dict[str, Param] = {
    "case_timeout": Param((float, type(None)), None, "seconds a case may run before it is stopped and stored "
                          "as an error (timeout)", min=0.001, max=30 * 24 * 3600.0),  # fmt: skip
}


def resolve_limits(where: str, given: Any) -> dict[str, Any]:
    """Check a ``[limits]`` table (raises :class:`qbench.errors.MatrixError`)."""
    from qbench.errors import MatrixError, UsageError

    if not isinstance(given, dict):
        raise MatrixError(f"{where}: [limits] must be a table, e.g. [limits] case_timeout = 600")
    try:
        return resolve_params("[limits]", LIMIT_PARAMS, given)
    except UsageError as exc:
        raise MatrixError(f"{where}: {exc}") from None
