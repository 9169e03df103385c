"""The plugin host: a pluggy manager with the built-ins, then every ``qbench`` entry point.

:func:`get_host` builds it with no import-time side effects; tests pass extra plugin objects.
Loading is one plugin at a time so that a failure names the plugin and its distribution.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
from dataclasses import dataclass, field
from typing import Any

import pluggy

from qbench import hookspecs
from qbench.columns import ColumnOwner, check_ownership
from qbench.components import COMPONENT_KINDS
from qbench.errors import PluginError
from qbench.markers import PROJECT_NAME
from qbench.registry import Registry
from qbench.version import __version__

#: Built-in plugins, registered first, in this order (each module implements some hooks).
BUILTIN_PLUGINS = (
    "qbench_builtins.quantizers",
    "qbench_builtins.cells",
    "qbench_builtins.datasets",
    "qbench_builtins.hardware",
)
BUILTIN_DISTRIBUTION = "qbench"


@dataclass
class PluginInfo:
    """One registered plugin, for ``qbench plugins``."""

    name: str
    distribution: str
    version: str
    builtin: bool
    components: dict[str, list[str]] = field(default_factory=dict)
    broken: str = ""  # why the plugin was left out (only with ``get_host(keep_broken=True)``)


@dataclass
class Host:
    """The plugin manager and the four frozen registries built from it."""

    pm: pluggy.PluginManager
    registries: dict[str, Registry]
    plugins: list[PluginInfo]

    def registry(self, kind: str) -> Registry:
        try:
            return self.registries[kind]
        except KeyError:
            raise PluginError(f"unknown component kind {kind!r}; use one of {', '.join(self.registries)}") from None

    def create(self, kind: str, name: str, **params: Any) -> Any:
        return self.registry(kind).create(name, **params)


def _qbench_version() -> str:
    try:
        return metadata.version(BUILTIN_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, origin: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{origin}: invalid hook implementation: {exc}") from exc
    except ValueError as exc:  # pluggy: plugin name or object already registered
        raise PluginError(f"{origin}: {exc}") from exc


def get_host(extra_plugins: tuple[Any, ...] = (), load_entry_points: bool = True,
             keep_broken: bool = False) -> Host:  # fmt: skip
    """Create the plugin manager, register built-ins, entry points and ``extra_plugins``, fill registries.

    Raises :class:`qbench.PluginError` (a usage error) naming the plugin at fault; with
    ``keep_broken`` (``qbench plugins``) a plugin that fails is left out and listed with its
    error (:attr:`PluginInfo.broken`) while the others still work.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    version = _qbench_version()
    infos: list[PluginInfo] = []
    candidates: list[tuple[str, Any, PluginInfo, str]] = []  # (name, object or loader, info, origin)

    for module_name in BUILTIN_PLUGINS:
        info = PluginInfo(module_name, BUILTIN_DISTRIBUTION, version, True)
        candidates.append((module_name, lambda m=module_name: importlib.import_module(m), info,
                           f"built-in plugin {module_name!r}"))  # fmt: skip

    if load_entry_points:
        for ep in sorted(metadata.entry_points(group=PROJECT_NAME), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            dist_version = ep.dist.version if ep.dist is not None else "?"
            origin = f"plugin {ep.name!r} (distribution {dist} {dist_version}, entry point {ep.value!r})"
            candidates.append((ep.name, _entry_point_loader(ep, origin, dist), PluginInfo(ep.name, dist, dist_version,
                                                                                        False), origin))  # fmt: skip

    for index, plugin in enumerate(extra_plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
        candidates.append((name, lambda p=plugin: p, PluginInfo(name, "", "", False), f"plugin {name!r}"))

    registries = {kind: Registry(kind) for kind in COMPONENT_KINDS}
    owners: list[tuple[ColumnOwner, tuple[str, ...]]] = []
    for name, load, info, origin in candidates:
        registered = False
        try:
            if name in {i.name for i in infos}:
                raise PluginError(f"{origin}: a plugin named {name!r} is already registered")
            infos.append(info)
            plugin = load()
            warn_unmarked_hooks(plugin, origin)
            _register(pm, plugin, name, origin)
            registered = True
            try:
                pm.check_pending()
            except pluggy.PluginValidationError as exc:
                raise PluginError(f"plugin {name!r}: {exc} (misspelled hook name?)") from exc
            added = _components_of(pm, plugin, name, info)
            staged = {kind: registry.copy() for kind, registry in registries.items()}
            for kind, cls in added:
                staged[kind].add(cls, name, info.distribution, info.version)
            mine = [(ColumnOwner("hardware", cls.name, name, info.distribution), tuple(cls.columns))
                    for kind, cls in added if kind == "hardware"]  # fmt: skip
            check_ownership([*owners, *mine])
        except PluginError as exc:
            if registered:
                pm.unregister(name=name)
            if not keep_broken:
                raise
            if info not in infos:  # a second plugin of one name: listed too, as broken
                infos.append(info)
            info.broken = str(exc)
            info.components.clear()
            continue
        registries = staged
        owners += mine
        for kind, cls in added:
            info.components.setdefault(kind, []).append(cls.name)
    for registry in registries.values():
        registry.freeze()
    return Host(pm, registries, infos)


def _entry_point_loader(ep: Any, origin: str, dist: str) -> Any:
    def load() -> Any:
        try:
            return ep.load()
        except Exception as exc:
            raise PluginError(
                f"error importing {origin}: {type(exc).__name__}: {exc}. Fix or uninstall it (pip uninstall {dist})"
            ) from exc

    return load


def _components_of(pm: pluggy.PluginManager, plugin: Any, name: str, info: PluginInfo) -> list[tuple[str, Any]]:
    """The classes one plugin's registration hooks return, in kind order."""
    added: list[tuple[str, Any]] = []
    for kind in COMPONENT_KINDS:
        hook = getattr(pm.hook, f"qbench_register_{kind}s" if kind != "hardware" else "qbench_register_hardware")
        for impl in hook.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            origin = f"plugin {name!r}"
            try:
                result = impl.function()
            except Exception as exc:
                raise PluginError(f"{origin}: {hook.name} raised {type(exc).__name__}: {exc}") from exc
            if not isinstance(result, (list, tuple)):
                raise PluginError(f"{origin}: {hook.name} must return a list of classes, got {result!r}")
            added += [(kind, cls) for cls in result]
    return added


class UnmarkedHookWarning(UserWarning):
    """A plugin defines a function named like a qbench hook without ``@qbench.hookimpl``: qbench ignores it."""


def warn_unmarked_hooks(plugin: Any, origin: str) -> None:
    """Warn about hook-named functions that lack the ``@qbench.hookimpl`` marker (silently ignored otherwise)."""
    import warnings

    names = [n for n in dir(hookspecs) if n.startswith(f"{PROJECT_NAME}_")]
    for name in names:
        function = getattr(plugin, name, None)
        if callable(function) and not hasattr(function, f"{PROJECT_NAME}_impl"):
            warnings.warn(UnmarkedHookWarning(
                f"{origin}: {name} has no @qbench.hookimpl marker, so qbench ignores it; decorate it with "
                "@qbench.hookimpl"), stacklevel=2)  # fmt: skip


_default_host: Host | None = None


def default_host() -> Host:
    """The process-wide host used by :func:`qbench.create` and the runner (built on first use)."""
    global _default_host
    if _default_host is None:
        _default_host = get_host()
    return _default_host


def in_process_plugins() -> list[str]:
    """Plugins of the process-wide host that no installed distribution provides (registered in this
    process, e.g. by :func:`qbench.testing.registered_plugins`): worker processes cannot load them."""
    if _default_host is None:
        return []
    return [info.name for info in _default_host.plugins if not info.builtin and not info.distribution]


def create(kind: str, name: str, **params: Any) -> Any:
    """Return a configured component: ``qbench.create("quantizer", "ternary", stochastic=True)``."""
    return default_host().create(kind, name, **params)
