"""Typed registries of components, filled from the plugin hooks and frozen after start-up.

Names: every component has a qualified name ``ORIGIN:name``, where ORIGIN is the distribution
that installed its plugin (``qbench`` for the built-ins; the plugin's own name for a plugin
registered in-process). A bare ``name`` means the one component of that name; when two
plugins register one name, the bare name is ambiguous and refused with the qualified names to
choose from (a plugin never shadows a built-in; in code, :meth:`Registry.create`, a built-in never
shadows the one plugin that shares its name: that plugin's code keeps its meaning). The
rules a class must follow live on its base class (:meth:`qbench.Component.declaration_problems`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from qbench import signalled
from qbench.components import COMPONENT_KINDS, NAME_PATTERN, REGISTRATION_HOOKS, Component
from qbench.errors import PluginError, UnknownComponentError

__all__ = ["NAME_PATTERN", "AmbiguousComponentError", "Entry", "Registry", "split_name"]


class AmbiguousComponentError(UnknownComponentError):
    """A bare component name that two or more plugins register: qualify it as ``ORIGIN:name``."""


def split_name(name: str) -> tuple[str, str]:
    """``("origin", "name")`` of a qualified name, ``("", "name")`` of a bare one."""
    origin, _, bare = name.rpartition(":")
    return origin, bare


@dataclass(frozen=True)
class Entry:
    """A registered component class and the plugin that registered it."""

    cls: type[Component]
    plugin: str
    distribution: str
    version: str

    @property
    def origin(self) -> str:
        """The prefix of the qualified name: the distribution, or the plugin of an in-process one."""
        return self.distribution or self.plugin

    @property
    def qualified(self) -> str:
        return f"{self.origin}:{self.cls.name}"

    def described(self) -> str:
        if self.plugin.startswith("qbench_builtins."):
            return f"qbench's built-in (qbench {self.version})" if self.version else "qbench's built-in"
        where = f"plugin {self.plugin!r}"
        return where + (f" (distribution {self.distribution} {self.version})" if self.distribution else "")


class Registry:
    """Components of one kind by qualified name; bare names resolve when they name one component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.base = COMPONENT_KINDS[kind]
        self.hook = REGISTRATION_HOOKS[kind]
        self._entries: dict[str, Entry] = {}  # by qualified name
        self._frozen = False
        #: names of components whose plugin was left out, with why (the message of a lookup that misses)
        self.left_out: dict[str, str] = {}

    def problems(self, cls: Any) -> list[str]:
        """What is wrong with ``cls`` as a component of this kind (empty: it may be added)."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            return [f"{self.hook} returned {cls!r}, which is not a subclass of qbench.{self.base.__name__}; "
                    f"return the class itself (a subclass of qbench.{self.base.__name__}), not an instance "
                    "or another object"]  # fmt: skip
        try:
            return cls.declaration_problems()
        except BaseException as exc:  # noqa: BLE001 - a class attribute that raises when read is the author's mistake
            if signalled.is_real(exc):  # (sys.exit() in it too: never a silent end of the command)
                raise
            return [f"{self.kind} class {cls.__name__}: reading its declaration raised {signalled.plugin_raised(exc)}"]

    def add(self, cls: Any, plugin: str, distribution: str = "", version: str = "") -> None:
        entry = Entry(cls, plugin, distribution, version)
        if self._frozen:
            raise PluginError(f"{entry.described()}: the {self.kind} registry is frozen after start-up")
        problems = self.problems(cls)
        if problems:
            raise PluginError(f"{entry.described()}: " + "; ".join(problems))
        if entry.qualified in self._entries:
            first = self._entries[entry.qualified]
            raise PluginError(
                f"{self.kind} {entry.qualified!r} is registered twice: by {first.described()} and by "
                f"{entry.described()}; a plugin registers each name once"
            )
        self._entries[entry.qualified] = entry

    def copy(self) -> Registry:
        """An unfrozen copy (the host stages one plugin's components in it before accepting them)."""
        other = Registry(self.kind)
        other._entries = dict(self._entries)
        other.left_out = dict(self.left_out)
        return other

    def freeze(self) -> None:
        self._frozen = True

    def candidates(self, name: str) -> list[Entry]:
        """The entries ``name`` (bare or qualified) may mean."""
        if not isinstance(name, str):
            return []
        origin, bare = split_name(name)
        if origin:
            entry = self._entries.get(name)
            return [entry] if entry is not None else []
        return [entry for entry in self._entries.values() if entry.cls.name == bare]

    def get(self, name: str) -> Entry:
        found = self.candidates(name)
        if len(found) == 1:
            return found[0]
        if found:
            choices = ", ".join(f"{e.qualified!r} ({e.described()})" for e in sorted(found, key=lambda e: e.qualified))
            raise AmbiguousComponentError(
                f"{self.kind} name {name!r} is ambiguous: {len(found)} plugins register it: {choices}; write the "
                f"qualified name of the one you mean, e.g. name = {found[0].qualified!r}"
            )
        raise UnknownComponentError(self.unknown_message(name))

    def display_name(self, entry: Entry) -> str:
        """The shortest name that means ``entry``: bare unless another plugin registers the same name."""
        return entry.cls.name if len(self.candidates(entry.cls.name)) == 1 else entry.qualified

    def unknown_message(self, name: Any) -> str:
        origin, bare = split_name(str(name))
        left = self.left_out.get(str(name)) or self.left_out.get(bare)
        if left:
            return f"{self.kind} {name!r} is not available: {left}"
        known = list(self)
        hint = difflib.get_close_matches(str(name), known, n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        message = f"unknown {self.kind} {name!r}.{did_you_mean} Available: {', '.join(known) or 'none'}"
        if origin and self.candidates(bare):
            message += f" ({bare!r} is registered as {', '.join(e.qualified for e in self.candidates(bare))})"
        elsewhere = self.left_out.get("")
        return message + (f". {elsewhere}" if elsewhere else "")

    def create(self, name: str, **params: Any) -> Any:
        """The configured component ``name``. A bare name that one installed plugin and qbench's
        built-ins share means the plugin here (plugin code, its tests and notebooks written before
        qbench added a built-in of that name keep working; ``qbench:NAME`` is the built-in); a matrix
        still has to say which, because its records must name one component (:meth:`get`)."""
        return self.for_code(name).cls(**params)

    def for_code(self, name: str) -> Entry:
        """What ``name`` means in code: :meth:`get`, except that a built-in never shadows one plugin."""
        found = self.candidates(name)
        plugins = [entry for entry in found if not entry.plugin.startswith("qbench_builtins.")]
        if len(found) > 1 and len(plugins) == 1:
            return plugins[0]
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and len(self.candidates(name)) == 1

    def __iter__(self) -> Iterator[str]:
        return iter(name for name, _ in self.items())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, Entry]]:
        """``(display name, entry)`` of every component, by display name."""
        return sorted((self.display_name(entry), entry) for entry in self._entries.values())
