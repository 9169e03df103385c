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


def get_host(extra_plugins: tuple[Any, ...] = (), load_entry_points: bool = True) -> Host:
    """Create the plugin manager, register built-ins, entry points and ``extra_plugins``, fill registries.

    Raises :class:`qbench.PluginError` (a usage error) naming the plugin at fault.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    version = _qbench_version()
    infos: list[PluginInfo] = []
    origins: dict[str, tuple[str, str]] = {}

    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        _register(pm, module, module_name, f"built-in plugin {module_name!r}")
        infos.append(PluginInfo(module_name, BUILTIN_DISTRIBUTION, version, True))
        origins[module_name] = (BUILTIN_DISTRIBUTION, version)

    if load_entry_points:
        for ep in sorted(metadata.entry_points(group=PROJECT_NAME), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            dist_version = ep.dist.version if ep.dist is not None else "?"
            origin = f"plugin {ep.name!r} (distribution {dist} {dist_version}, entry point {ep.value!r})"
            if pm.get_plugin(ep.name) is not None or ep.name in origins:
                raise PluginError(f"{origin}: a plugin named {ep.name!r} is already registered")
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"error importing {origin}: {type(exc).__name__}: {exc}. "
                    f"Fix or uninstall it (pip uninstall {dist})"
                ) from exc
            _register(pm, plugin, ep.name, origin)
            infos.append(PluginInfo(ep.name, dist, dist_version, False))
            origins[ep.name] = (dist, dist_version)

    for index, plugin in enumerate(extra_plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
        _register(pm, plugin, name, f"plugin {name!r}")
        infos.append(PluginInfo(name, "", "", False))
        origins[name] = ("", "")

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = pm.get_name(exc.plugin) if getattr(exc, "plugin", None) is not None else "?"
        raise PluginError(f"plugin {plugin!r}: {exc} (misspelled hook name?)") from exc

    registries = {kind: Registry(kind) for kind in COMPONENT_KINDS}
    by_name = {info.name: info for info in infos}
    for kind, registry in registries.items():
        hook = getattr(pm.hook, f"qbench_register_{kind}s" if kind != "hardware" else "qbench_register_hardware")
        for impl in hook.get_hookimpls():
            origin = f"plugin {impl.plugin_name!r}"
            try:
                result = impl.function()
            except Exception as exc:
                raise PluginError(f"{origin}: {hook.name} raised {type(exc).__name__}: {exc}") from exc
            if not isinstance(result, (list, tuple)):
                raise PluginError(f"{origin}: {hook.name} must return a list of classes, got {result!r}")
            dist, dist_version = origins.get(impl.plugin_name, ("", ""))
            for cls in result:
                registry.add(cls, impl.plugin_name, dist, dist_version)
                info = by_name.get(impl.plugin_name)
                if info is not None:
                    info.components.setdefault(kind, []).append(cls.name)
        registry.freeze()
    return Host(pm, registries, infos)


_default_host: Host | None = None


def default_host() -> Host:
    """The process-wide host used by :func:`qbench.create` and the runner (built on first use)."""
    global _default_host
    if _default_host is None:
        _default_host = get_host()
    return _default_host


def create(kind: str, name: str, **params: Any) -> Any:
    """Return a configured component: ``qbench.create("quantizer", "ternary", stochastic=True)``."""
    return default_host().create(kind, name, **params)
