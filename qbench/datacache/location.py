"""Where the dataset cache lives: ``$QBENCH_DATA`` (default ``~/.cache/qbench``) and its folders."""

from __future__ import annotations

import os
from pathlib import Path

from qbench.errors import DatasetError

ENV_VAR = "QBENCH_DATA"


def cache_dir() -> Path:
    """The cache folder: ``$QBENCH_DATA`` if set and not empty, else ``~/.cache/qbench``."""
    configured = os.environ.get(ENV_VAR, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "qbench"


def resolve_cache(cache: str | os.PathLike[str] | None) -> Path:
    """``cache`` as a Path, or :func:`cache_dir` when it is empty or None."""
    return Path(cache).expanduser() if cache else cache_dir()


def dataset_dir(cache: str | os.PathLike[str] | None, name: str, create: bool = True) -> Path:
    """``<cache>/<name>``, created when ``create`` (a cache that cannot be created is a usage error)."""
    folder = resolve_cache(cache) / name
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(
                f"cannot create the dataset cache folder {folder}: {exc.strerror or exc}. "
                f"Point {ENV_VAR} at a writable folder."
            ) from exc
    return folder
