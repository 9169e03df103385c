"""A testing kit for plugin authors.

Subclass the conformance suites (``qbench.testing.quantizers.QuantizerContract`` and the others)
in your own tests and provide the fixture they name; use :func:`registered_plugins` to run
qbench with your plugin registered for the length of one test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from qbench import host as _host


@contextlib.contextmanager
def registered_plugins(*plugins: Any, load_entry_points: bool = True) -> Iterator[_host.Host]:
    """Make ``qbench.create`` and the runner see ``plugins`` (objects with hookimpls) inside the block."""
    previous = _host._default_host
    _host._default_host = _host.get_host(tuple(plugins), load_entry_points=load_entry_points)
    try:
        yield _host._default_host
    finally:
        _host._default_host = previous
