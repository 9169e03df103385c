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
    seeds: Iterable[int] = (0,),
    **train: Any,
) -> str:
    """A matrix over real components; ``train`` becomes the ``[train]`` table."""
    parts = [f"name = {json.dumps(name)}", f"seeds = {json.dumps(list(seeds))}"]
    for axis, components in (("quantizer", quantizers), ("cell", cells), ("dataset", datasets),
                             ("hardware", hardware)):  # fmt: skip
        parts += [_table(axis, component) for component in components]
    parts.append("[train]\n" + "\n".join(f"{key} = {json.dumps(value)}" for key, value in train.items()))
    return "\n\n".join(parts) + "\n"


def write_matrix_file(directory: Path, name: str, **kwargs: Any) -> Path:
    path = Path(directory) / f"{name}.toml"
    path.write_text(matrix_toml(name, **kwargs))
    return path
