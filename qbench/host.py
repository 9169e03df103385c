"""The plugin host: a pluggy manager with the built-ins, then every ``qbench`` entry point.

:func:`get_host` builds it with no import-time side effects; tests pass extra plugin objects.
Loading is one plugin at a time so that a failure names the plugin and its distribution.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as metadata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from qbench import hookspecs, signalled
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
    recipe: HostRecipe = field(default_factory=lambda: HostRecipe())

    def in_process_plugins(self) -> list[str]:
        """Plugins no installed distribution provides (registered in this process, e.g. by
        :func:`qbench.testing.registered_plugins`): worker processes cannot load them."""
        return [info.name for info in self.plugins if not info.builtin and not info.distribution]

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


@dataclass(frozen=True)
class HostRecipe:
    """What builds a host: the driver ships it to worker processes, which build their own host from it.

    ``extra_plugins`` are plugin objects registered in-process (a notebook, a test): a worker
    process imports only installed distributions, so executors with worker processes refuse a
    recipe that has any (see :func:`qbench.runconfig.resolve_run_config`).
    """

    extra_plugins: tuple[Any, ...] = ()
    load_entry_points: bool = True

    def build(self) -> Host:
        return get_host(self.extra_plugins, load_entry_points=self.load_entry_points)


#: One candidate plugin: (name, object or loader, info, origin named in errors).
Candidate = tuple[str, Any, PluginInfo, str]


def get_host(extra_plugins: tuple[Any, ...] = (), load_entry_points: bool = True,
             keep_broken: bool = False) -> Host:  # fmt: skip
    """Create the plugin manager, register built-ins, entry points and ``extra_plugins``, fill registries.

    Raises :class:`qbench.PluginError` (a usage error) naming the plugin at fault; with
    ``keep_broken`` (``qbench plugins``) a plugin that fails is left out and listed with its
    error (:attr:`PluginInfo.broken`) while the others still work.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    candidates = [*_builtin_candidates(), *(_entry_point_candidates() if load_entry_points else []),
                  *_extra_candidates(extra_plugins)]  # fmt: skip
    infos: list[PluginInfo] = []
    registries = {kind: Registry(kind) for kind in COMPONENT_KINDS}
    owners: list[tuple[ColumnOwner, tuple[str, ...]]] = []
    for candidate in candidates:
        try:
            registries, mine = _admit(pm, candidate, infos, registries, owners)
        except PluginError as exc:
            if not keep_broken:
                raise
            _list_as_broken(candidate[2], infos, exc)
            continue
        owners += mine
    for registry in registries.values():
        registry.freeze()
    return Host(pm, registries, infos, HostRecipe(tuple(extra_plugins), load_entry_points))


def _builtin_candidates() -> list[Candidate]:
    version = _qbench_version()
    return [(module_name, lambda m=module_name: importlib.import_module(m),
             PluginInfo(module_name, BUILTIN_DISTRIBUTION, version, True), f"built-in plugin {module_name!r}")
            for module_name in BUILTIN_PLUGINS]  # fmt: skip


def _entry_point_candidates() -> list[Candidate]:
    candidates: list[Candidate] = []
    for ep in sorted(metadata.entry_points(group=PROJECT_NAME), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        dist_version = ep.dist.version if ep.dist is not None else "?"
        origin = f"plugin {ep.name!r} (distribution {dist} {dist_version}, entry point {ep.value!r})"
        candidates.append((ep.name, _entry_point_loader(ep, origin, dist), PluginInfo(ep.name, dist, dist_version,
                                                                                    False), origin))  # fmt: skip
    return candidates


def _extra_candidates(extra_plugins: tuple[Any, ...]) -> list[Candidate]:
    candidates: list[Candidate] = []
    for index, plugin in enumerate(extra_plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
        candidates.append((name, lambda p=plugin: p, PluginInfo(name, "", "", False), f"plugin {name!r}"))
    return candidates


def _admit(pm: pluggy.PluginManager, candidate: Candidate, infos: list[PluginInfo], registries: dict[str, Registry],
           owners: list[tuple[ColumnOwner, tuple[str, ...]]]) -> tuple[dict[str, Registry], list[Any]]:  # fmt: skip
    """Register one plugin: the registries with its components added and its column claims, or
    :class:`PluginError` with the plugin unregistered again (nothing of it stays)."""
    name, load, info, origin = candidate
    if name in {i.name for i in infos}:
        raise PluginError(f"{origin}: a plugin named {name!r} is already registered")
    infos.append(info)
    plugin = load()
    warn_unmarked_hooks(plugin, origin)
    _register(pm, plugin, name, origin)
    try:
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
    except PluginError:
        pm.unregister(name=name)
        raise
    for kind, cls in added:
        info.components.setdefault(kind, []).append(cls.name)
    return staged, mine


def _list_as_broken(info: PluginInfo, infos: list[PluginInfo], exc: PluginError) -> None:
    if info not in infos:  # a second plugin of one name: listed too, as broken
        infos.append(info)
    info.broken = str(exc)
    info.components.clear()


def _entry_point_loader(ep: Any, origin: str, dist: str) -> Any:
    def load() -> Any:
        try:
            return ep.load()
        except BaseException as exc:  # SystemExit or a KeyboardInterrupt no signal raised: the plugin's error too
            if signalled.is_real(exc):
                raise
            raise PluginError(
                f"error importing {origin}: {signalled.plugin_raised(exc)}. Fix or uninstall it (pip uninstall {dist})"
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
            except BaseException as exc:  # SystemExit too: a hook must never end the command silently
                if signalled.is_real(exc):
                    raise
                raise PluginError(f"{origin}: {hook.name} raised {signalled.plugin_raised(exc)}") from exc
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


_facade: Host | None = None


def facade_host() -> Host:
    """The host behind :func:`create` (notebooks, plugin tests), built on first use.

    Only the public facade uses it: the run driver, the commands and the workers are handed
    their host (or the :class:`HostRecipe` that rebuilds it) explicitly.
    """
    global _facade
    if _facade is None:
        _facade = get_host()
    return _facade


@contextlib.contextmanager
def facade_using(host: Host | None) -> Iterator[Host | None]:
    """Make :func:`create` use ``host`` inside the block (``None``: a fresh one, built on first use)."""
    global _facade
    previous, _facade = _facade, host
    try:
        yield host
    finally:
        _facade = previous


def create(kind: str, name: str, **params: Any) -> Any:
    """Return a configured component: ``qbench.create("quantizer", "ternary", stochastic=True)``."""
    return facade_host().create(kind, name, **params)
