"""One matrix expanded once: its first cases, its methods, the most it may cost, every case the
protocol could ask for.

``qbench run`` makes one :class:`ExpandedMatrix` per run and hands it to planning, the rounds and
the dry run, so that no step expands the matrix again (a matrix with a large tuning grid and
seed rule would otherwise be expanded at every round and every planning pass), and all of them
agree on the same cases by construction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qbench.matrix import Case, Matrix, Method, case_for, expand, methods
from qbench.protocol import Protocol, canonical, possible_extensions


@dataclass(frozen=True, eq=False)
class ExpandedMatrix:
    """A matrix and what follows from it before any result (see :meth:`of`)."""

    matrix: Matrix
    cases: tuple[Case, ...]  # the cases known before any result (qbench.matrix.expand)
    methods: tuple[Method, ...]  # every (dataset, cell, quantizer) some seed keeps, in expansion order
    grid: tuple[str, ...]  # the tuning grid's points, canonical (the protocol's decisions compare these)
    _cases: dict[tuple[int, str, int], Case | None] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, matrix: Matrix) -> ExpandedMatrix:
        return cls(matrix, tuple(expand(matrix)), tuple(methods(matrix)),
                   tuple(canonical(p) for p in matrix.protocol.points()))  # fmt: skip

    @property
    def protocol(self) -> Protocol:
        return self.matrix.protocol

    @property
    def max_cases(self) -> int:
        """The most cases the matrix may cost (the grid on the tuning seeds, then up to ``max`` seeds)."""
        return len(self.methods) * self.protocol.max_cases_per_method()

    def case_for(self, index: int, point: Mapping[str, Any], seed: int) -> Case | None:
        """The case of ``methods[index]`` at one point and seed (None when an exclude removes it);
        each is built once: planning asks for the same ones at every pass."""
        key = (index, canonical(dict(point)), seed)
        if key not in self._cases:
            self._cases[key] = case_for(self.matrix, self.methods[index], point, seed)
        return self._cases[key]

    def candidates(self, extra: Mapping[tuple[str, str, str], list[str]] | None = None,
                   every_extension: bool = False) -> list[Case]:  # fmt: skip
        """Every case the protocol could ever ask for: each method, grid point and seed (up to the
        maximum); ``extra``: the extension points each method reached ({method labels: [point]});
        ``every_extension``: every point an extension could reach, for every method (the stale check)."""
        protocol = self.protocol
        beyond = possible_extensions(protocol) if every_extension else []
        found = []
        for index, method in enumerate(self.methods):
            points = [*protocol.points(), *beyond, *(json.loads(p) for p in (extra or {}).get(labels(method), []))]
            for point in {canonical(p): p for p in points}.values():
                for seed in protocol.seeds[: protocol.max_seeds]:
                    case = self.case_for(index, point, seed)
                    if case is not None:
                        found.append(case)
        return found


def labels(method: Method) -> tuple[str, str, str]:
    """A method as the protocol's decisions name it: (dataset, cell, quantizer) labels."""
    return method[0].label, method[1].label, method[2].label
