"""A testing kit for plugin authors.

Subclass the conformance suites (``qbench.testing.quantizers.QuantizerContract`` and the others)
in your own tests and provide the fixture they name; use :func:`registered_plugins` to run
qbench with your plugin registered for the length of one test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from qbench.host import Host, facade_using, get_host


@contextlib.contextmanager
def registered_plugins(*plugins: Any, load_entry_points: bool = True) -> Iterator[Host]:
    """A host with ``plugins`` (objects with hookimpls) registered: ``qbench.create`` uses it inside the
    block, and ``qbench.driver.run_matrix(..., host=host)`` runs a matrix with it.

    Such plugins live in this process only: run them with ``--executor local --workers 1`` (the
    process pool and Dask workers import installed distributions, and refuse these with a message).
    """
    host = get_host(tuple(plugins), load_entry_points=load_entry_points)
    with facade_using(host):
        yield host
