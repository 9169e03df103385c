"""Who owns each column of a record: the host, a dataset (its metric columns) or one backend.

Two owners of one name would overwrite each other's values in the record, so a backend that
declares a column the host writes, a metric column (``test_``/``valid_``/``train_``) or a column
another backend declares is refused when the plugins register, naming both owners. No numpy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qbench.errors import PluginError
from qbench.record import FIELD_NAMES

#: Columns the host writes into every record: the record's fixed fields (:data:`qbench.record.FIELDS`,
#: cost columns included) and ``columns``, kept free for the host.
HOST_COLUMNS = frozenset({*FIELD_NAMES, "columns"})
#: Column name prefixes owned by the dataset's declared metrics (``<split>_<metric>``).
METRIC_PREFIXES = ("test_", "valid_", "train_")
HOST = "the host (qbench)"


@dataclass(frozen=True)
class ColumnOwner:
    """One declaring component: ``hardware`` backend ``energy`` of plugin ``qbench_builtins.hardware``."""

    kind: str
    name: str
    plugin: str
    distribution: str = ""

    def __str__(self) -> str:
        where = f" (distribution {self.distribution})" if self.distribution else ""
        return f"{self.kind} {self.name!r} of plugin {self.plugin!r}{where}"


def check_ownership(declared: Iterable[tuple[ColumnOwner, Iterable[str]]]) -> dict[str, ColumnOwner]:
    """``{column: owner}`` of every declared column; raise :class:`PluginError` naming both owners
    of a column declared twice, or a backend column that belongs to the host or to a metric."""
    owners: dict[str, ColumnOwner] = {}
    for owner, columns in declared:
        for column in columns:
            if column in HOST_COLUMNS:
                raise PluginError(f"{owner} declares column {column!r}, which belongs to {HOST}; a backend "
                                  f"reports its own columns: rename it (e.g. {owner.name.replace('-', '_')}_{column})")
            if column.startswith(METRIC_PREFIXES):
                raise PluginError(f"{owner} declares column {column!r}: names starting with "
                                  f"{', '.join(METRIC_PREFIXES)} belong to the datasets' declared metrics; rename it")
            first = owners.get(column)
            if first is not None and first != owner:
                raise PluginError(f"column {column!r} is declared by two components: {first} and {owner}; "
                                  "uninstall one of them or rename the column in one")  # fmt: skip
            owners[column] = owner
    return owners
