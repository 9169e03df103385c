"""Small real matrices for the end-to-end tests, written as TOML text (one place, many tests)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

Component = str | tuple[str, Mapping[str, Any]]


def _table(axis: str, component: Component) -> str:
    name, params = (component, {}) if isinstance(component, str) else component
    lines = [f"[[{axis}]]", f"name = {json.dumps(name)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in params.items()]  # JSON scalars are TOML
    return "\n".join(lines)


def matrix_toml(
    name: str,
    quantizers: Iterable[Component] = ("float",),
    cells: Iterable[Component] = (("rnn", {"hidden": 16}),),
    datasets: Iterable[Component] = (("pydoc-char", {"max_chars": 20000}),),
    hardware: Iterable[Component] = (),
    seeds: Iterable[int] | Mapping[str, Any] = (0,),
    tune: Mapping[str, Any] | None = None,
    **train: Any,
) -> str:
    """A matrix over real components; ``train`` becomes the ``[train]`` table.

    ``seeds`` may be a seed rule ({"min": 3, "max": 6, "precision": 0.05}); ``tune`` becomes the
    ``[tune]`` table ({"train.lr": [0.01, 0.03], "seeds": 1}).
    """
    if isinstance(seeds, Mapping):
        rule = ", ".join(f"{key} = {json.dumps(value)}" for key, value in seeds.items())
        parts = [f"name = {json.dumps(name)}", f"seeds = {{ {rule} }}"]
    else:
        parts = [f"name = {json.dumps(name)}", f"seeds = {json.dumps(list(seeds))}"]
    for axis, components in (("quantizer", quantizers), ("cell", cells), ("dataset", datasets),
                             ("hardware", hardware)):  # fmt: skip
        parts += [_table(axis, component) for component in components]
    parts.append("[train]\n" + "\n".join(f"{key} = {json.dumps(value)}" for key, value in train.items()))
    if tune:
        parts.append("[tune]\n" + "\n".join(f"{key} = {json.dumps(value)}" for key, value in tune.items()))
    return "\n\n".join(parts) + "\n"


def write_matrix_file(directory: Path, name: str, **kwargs: Any) -> Path:
    path = Path(directory) / f"{name}.toml"
    path.write_text(matrix_toml(name, **kwargs))
    return path
