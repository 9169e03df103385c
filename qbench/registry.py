"""Typed registries of components, filled from the plugin hooks and frozen after start-up."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from qbench.components import COMPONENT_KINDS, RESERVED_PARAM_NAMES, Component
from qbench.errors import ParamError, PluginError, UnknownComponentError
from qbench.params import Param

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Entry:
    """A registered component class and the plugin that registered it."""

    cls: type[Component]
    plugin: str
    distribution: str
    version: str


class Registry:
    """Components of one kind by name. Duplicate names and malformed classes are plugin errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.base = COMPONENT_KINDS[kind]
        self._entries: dict[str, Entry] = {}
        self._frozen = False

    def add(self, cls: Any, plugin: str, distribution: str = "", version: str = "") -> None:
        origin = f"plugin {plugin!r}" + (f" (distribution {distribution} {version})" if distribution else "")
        if self._frozen:
            raise PluginError(f"{origin}: the {self.kind} registry is frozen after start-up")
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(
                f"{origin}: qbench_register_{self.kind}s returned {cls!r}, "
                f"which is not a subclass of qbench.{self.base.__name__}"
            )
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise PluginError(
                f"{origin}: {self.kind} class {cls.__name__} has name {name!r}; a name is lower case "
                "letters and digits, words joined by dashes (e.g. 'pow2-ternary')"
            )
        params = getattr(cls, "params", {})
        if not isinstance(params, dict) or not all(isinstance(p, Param) for p in params.values()):
            raise PluginError(f"{origin}: {self.kind} {name!r} must declare params as a dict of qbench.Param")
        clash = RESERVED_PARAM_NAMES & set(params)
        if clash:
            raise PluginError(f"{origin}: {self.kind} {name!r} declares reserved parameter names {sorted(clash)}")
        for key, spec in params.items():
            if spec.required:
                continue
            try:
                spec.check(f"{self.kind} {name!r}", key, spec.default)
            except ParamError as exc:
                raise PluginError(f"{origin}: {self.kind} {name!r}: the default of parameter {key!r} is invalid: "
                                  f"{exc}; fix the default in its qbench.Param") from None  # fmt: skip
        if self.kind == "hardware":
            self._check_backend(origin, name, cls)
        if self.kind == "cell" and getattr(cls, "tensors", None):
            from qbench.components import declaration_problem

            problem = declaration_problem(cls)
            if problem is not None:
                raise PluginError(f"{origin}: cell {name!r}: {problem}")
        if self.kind == "dataset":
            from qbench.metrics import MetricError, MetricSet

            try:
                MetricSet.of(cls)
            except MetricError as exc:
                raise PluginError(f"{origin}: dataset {name!r}: {exc}") from None
        if name in self._entries:
            first = self._entries[name]
            first_origin = f"plugin {first.plugin!r}" + (
                f" (distribution {first.distribution} {first.version})" if first.distribution else ""
            )
            raise PluginError(
                f"{self.kind} name {name!r} is registered twice: by {first_origin} and by {origin}; "
                "uninstall one of them or rename its component"
            )
        self._entries[name] = Entry(cls, plugin, distribution, version)

    @staticmethod
    def _check_backend(origin: str, name: str, cls: Any) -> None:
        columns = getattr(cls, "columns", {})
        if not isinstance(columns, dict) or not all(isinstance(c, str) and d in ("min", "max", "")
                                                    for c, d in columns.items()):  # fmt: skip
            raise PluginError(f"{origin}: hardware {name!r}: columns must map each column name to 'min', 'max' "
                              f"or '', got {columns!r}")  # fmt: skip
        for attribute in ("headline", "cost_axes", "leading_columns"):
            chosen = getattr(cls, attribute, None) or ()
            unknown = [c for c in chosen if c not in columns]
            if unknown:
                raise PluginError(f"{origin}: hardware {name!r}: {attribute} names {unknown}, which it does not "
                                  "declare in columns")  # fmt: skip
        undirected = [c for c in getattr(cls, "cost_axes", ()) if not columns[c]]
        if undirected:
            raise PluginError(f"{origin}: hardware {name!r}: cost axes {undirected} need a direction ('min' or "
                              "'max') in columns")  # fmt: skip

    def copy(self) -> Registry:
        """An unfrozen copy (the host stages one plugin's components in it before accepting them)."""
        other = Registry(self.kind)
        other._entries = dict(self._entries)
        return other

    def freeze(self) -> None:
        self._frozen = True

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(name)) from None

    def unknown_message(self, name: Any) -> str:
        known = sorted(self._entries)
        hint = difflib.get_close_matches(str(name), known, n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        return f"unknown {self.kind} {name!r}.{did_you_mean} Available: {', '.join(known) or 'none'}"

    def create(self, name: str, **params: Any) -> Any:
        return self.get(name).cls(**params)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, Entry]]:
        return sorted(self._entries.items())
