"""The plugin host: a pluggy manager with the built-ins, then every ``qbench`` entry point.

:func:`get_host` builds it with no import-time side effects; tests pass extra plugin objects.
Loading is one plugin at a time so that a failure names the plugin and its distribution.

Isolation: an installed plugin that cannot be imported or registered is reported once (on
stderr, through the ``qbench.plugins`` logger) and left out; everything that does not use it
keeps working, and naming one of its components says which plugin is missing and why. Plugins
disabled by name (``QBENCH_DISABLE_PLUGINS=name,...`` or ``qbench -p no:NAME``) are not even
imported.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata as metadata
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from qbench import hookspecs, signalled
from qbench.columns import ColumnOwner, check_ownership
from qbench.components import COMPONENT_KINDS, REGISTRATION_HOOKS
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
#: plugins (or distributions) to leave out, comma-separated (``qbench -p no:NAME`` adds to it)
DISABLE_ENV = "QBENCH_DISABLE_PLUGINS"

log = logging.getLogger("qbench.plugins")
_reported: set[str] = set()  # each broken plugin is reported once per process, however many hosts


@dataclass
class PluginInfo:
    """One registered plugin, for ``qbench plugins``."""

    name: str
    distribution: str
    version: str
    builtin: bool
    components: dict[str, list[str]] = field(default_factory=dict)
    broken: str = ""  # why the plugin was left out (an installed plugin that fails to load or register)
    disabled: bool = False  # left out on purpose (QBENCH_DISABLE_PLUGINS, ``-p no:NAME``)
    #: hook-named functions without the ``@qbench.hookimpl`` marker (ignored; ``plugins --check`` fails)
    unmarked: list[str] = field(default_factory=list)


@dataclass
class Host:
    """The plugin manager and the four frozen registries built from it."""

    pm: pluggy.PluginManager
    registries: dict[str, Registry]
    plugins: list[PluginInfo]
    recipe: HostRecipe = field(default_factory=lambda: HostRecipe())

    @property
    def broken(self) -> list[PluginInfo]:
        return [info for info in self.plugins if info.broken]

    @property
    def disabled(self) -> list[PluginInfo]:
        return [info for info in self.plugins if info.disabled]

    def in_process_plugins(self) -> list[str]:
        """Plugins no installed distribution provides (registered in this process, e.g. by
        :func:`qbench.testing.registered_plugins`): worker processes cannot load them."""
        return [info.name for info in self.plugins
                if not info.builtin and not info.distribution and not info.broken]  # fmt: skip

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
        raise PluginError(f"{origin}: invalid hook implementation: {exc}; registration hooks take no "
                          "arguments") from exc
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
    #: plugins left out by name (None: those of the environment variable where the host is built)
    disabled: tuple[str, ...] | None = None

    def build(self) -> Host:
        return get_host(self.extra_plugins, load_entry_points=self.load_entry_points, disabled=self.disabled)


#: One candidate plugin: (name, object or loader, info, origin named in errors).
Candidate = tuple[str, Any, PluginInfo, str]


def disabled_from_environment() -> tuple[str, ...]:
    """The plugin or distribution names :data:`DISABLE_ENV` lists."""
    return tuple(name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip())


def get_host(extra_plugins: tuple[Any, ...] = (), load_entry_points: bool = True, keep_broken: bool = False,
             disabled: tuple[str, ...] | None = None) -> Host:  # fmt: skip
    """Create the plugin manager, register built-ins, entry points and ``extra_plugins``, fill registries.

    An installed plugin (entry point) that fails to import or register is left out and reported
    (:attr:`PluginInfo.broken`), never stopping the others. A built-in or an ``extra_plugins``
    object that fails raises :class:`qbench.PluginError` (the plugin under test must not be
    dropped quietly) unless ``keep_broken`` (``qbench plugins``) lists it as broken too.
    ``disabled``: plugin or distribution names to leave out (default: :data:`DISABLE_ENV`).
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    disabled = tuple(disabled) if disabled is not None else disabled_from_environment()
    candidates = [*_builtin_candidates(), *(_entry_point_candidates() if load_entry_points else []),
                  *_extra_candidates(extra_plugins)]  # fmt: skip
    infos: list[PluginInfo] = []
    registries = {kind: Registry(kind) for kind in COMPONENT_KINDS}
    owners: list[tuple[ColumnOwner, tuple[str, ...]]] = []
    left_out: dict[str, dict[str, str]] = {kind: {} for kind in COMPONENT_KINDS}
    for candidate in candidates:
        info = candidate[2]
        if info.name in disabled or (not info.builtin and info.distribution in disabled):
            info.disabled = True
            infos.append(info)
            continue
        try:
            registries, mine = _admit(pm, candidate, infos, registries, owners, left_out)
        except PluginError as exc:
            isolated = not info.builtin and bool(info.distribution)  # an installed distribution's entry point
            if not (keep_broken or isolated):
                raise
            _list_as_broken(info, infos, exc)
            if isolated:
                _report(info.broken)
            continue
        owners += mine
    _note_left_out(registries, left_out, infos)
    for registry in registries.values():
        registry.freeze()
    return Host(pm, registries, infos, HostRecipe(tuple(extra_plugins), load_entry_points, disabled))


def _fix(info: PluginInfo) -> str:
    how = f"pip uninstall {info.distribution}" if info.distribution else "remove it"
    return (f"Fix the plugin, upgrade it, {how}, or disable it with {DISABLE_ENV}={info.name} "
            f"(qbench -p no:{info.name})")


@contextlib.contextmanager
def plugin_reports(stream: Any) -> Iterator[None]:
    """Inside the block, each left-out plugin is reported once on ``stream`` (one command of the CLI)."""
    global _reported
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous, _reported = _reported, set()
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        _reported = previous


def _report(why: str, what: str = "plugin left out") -> None:
    message = f"qbench: {what}: {why}"
    if message not in _reported:
        _reported.add(message)
        log.warning(message)


def _note_left_out(registries: dict[str, Registry], left_out: dict[str, dict[str, str]],
                   infos: list[PluginInfo]) -> None:  # fmt: skip
    """Tell each registry what is missing and why, so that naming it says so (not just "unknown")."""
    general = []
    for info in infos:
        who = f"plugin {info.name!r}" + (f" (distribution {info.distribution} {info.version})"
                                         if info.distribution and not info.builtin else "")  # fmt: skip
        if info.disabled:
            general.append(f"{who} is disabled ({DISABLE_ENV} or -p no:{info.name}); enable it if it provides "
                           "this component")  # fmt: skip
        elif info.broken:
            general.append(f"{who} was left out because it is broken; if it provides this component: "
                           f"{_fix(info)}")  # fmt: skip
    for kind, registry in registries.items():
        registry.left_out = {**left_out[kind], **({"": "; ".join(general)} if general else {})}


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
           owners: list[tuple[ColumnOwner, tuple[str, ...]]],
           left_out: dict[str, dict[str, str]]) -> tuple[dict[str, Registry], list[Any]]:  # fmt: skip
    """Register one plugin: the registries with its components added and its column claims, or
    :class:`PluginError` with the plugin unregistered again (nothing of it stays). Every problem
    of the plugin is in the one error, each with its fix."""
    name, load, info, origin = candidate
    if name in {i.name for i in infos}:
        raise PluginError(f"{origin}: a plugin named {name!r} is already registered; rename its entry point")
    infos.append(info)
    plugin = load()
    info.unmarked = unmarked_hooks(plugin)
    for message in info.unmarked:
        # another installed package's: reported as a broken one is, never a warning that a plugin
        # author's filterwarnings=error session would turn fatal
        if info.distribution and not info.builtin:
            _report(f"{origin}: {message}", "plugin problem")
        else:
            _warn_unmarked(f"{origin}: {message}")
    _register(pm, plugin, name, origin)
    added: list[tuple[str, Any]] = []
    try:
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{origin}: {_unknown_hook_message(exc)}") from exc
        added, problems = _components_of(pm, plugin)
        staged = {kind: registry.copy() for kind, registry in registries.items()}
        for kind, cls in added:
            found = staged[kind].problems(cls)
            if not found:
                try:
                    staged[kind].add(cls, name, info.distribution, info.version)
                except PluginError as exc:
                    found = [str(exc)]
            problems += found
        mine = [(ColumnOwner("hardware", cls.name, name, info.distribution), tuple(cls.columns))
                for kind, cls in added if kind == "hardware" and not staged["hardware"].problems(cls)]  # fmt: skip
        try:
            check_ownership([*owners, *mine])
        except PluginError as exc:
            problems.append(str(exc))
        if problems:
            numbered = problems[0] if len(problems) == 1 else " ".join(
                f"({i}) {p}" for i, p in enumerate(problems, 1))  # fmt: skip
            raise PluginError(f"{origin}: {len(problems)} problem(s): {numbered}")
    except PluginError as exc:
        pm.unregister(name=name)
        for kind, cls in added:
            bare = getattr(cls, "name", None)
            if isinstance(bare, str) and bare:
                left_out[kind][bare] = (f"it is provided by {origin}, which was left out: {exc}. "
                                        f"{_fix(info)}")  # fmt: skip
        raise
    for kind, cls in added:
        info.components.setdefault(kind, []).append(cls.name)
    return staged, mine


def _unknown_hook_message(exc: pluggy.PluginValidationError) -> str:
    """pluggy's "unknown hook" error, with the hook the author probably meant."""
    text = str(exc)
    known = sorted(n for n in dir(hookspecs) if n.startswith(f"{PROJECT_NAME}_"))
    wrong = [word.strip("'\"") for word in text.split() if word.strip("'\"").startswith(f"{PROJECT_NAME}_")]
    hint = difflib.get_close_matches(wrong[0], known, n=1) if wrong else []
    meant = f"; did you mean {hint[0]!r}?" if hint else "."
    return (f"{wrong[0] if wrong else 'a hook implementation'} is not a qbench hook{meant} The hooks are "
            f"{', '.join(known)}. (pluggy: {text})")


def _list_as_broken(info: PluginInfo, infos: list[PluginInfo], exc: PluginError) -> None:
    if info not in infos:  # a second plugin of one name: listed too, as broken
        infos.append(info)
    info.broken = f"{exc}. {_fix(info)}" if info.distribution and not info.builtin else str(exc)
    info.components.clear()


def _entry_point_loader(ep: Any, origin: str, dist: str) -> Any:
    def load() -> Any:
        try:
            return ep.load()
        except BaseException as exc:  # SystemExit or a KeyboardInterrupt no signal raised: the plugin's error too
            if signalled.is_real(exc):
                raise
            raise PluginError(
                f"error importing {origin}: {signalled.plugin_raised(exc)}"
            ) from exc

    return load


def _components_of(pm: pluggy.PluginManager, plugin: Any) -> tuple[list[tuple[str, Any]], list[str]]:
    """The classes one plugin's registration hooks return, in kind order, and what went wrong."""
    added: list[tuple[str, Any]] = []
    problems: list[str] = []
    for kind, hook_name in REGISTRATION_HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin is not plugin:
                continue
            try:
                result = impl.function()
            except BaseException as exc:  # SystemExit too: a hook must never end the command silently
                if signalled.is_real(exc):
                    raise
                problems.append(f"{hook_name} raised {signalled.plugin_raised(exc)}")
                continue
            if not isinstance(result, (list, tuple)):
                problems.append(f"{hook_name} must return a list of classes, got {result!r}")
                continue
            added += [(kind, cls) for cls in result]
    return added, problems


class UnmarkedHookWarning(UserWarning):
    """A plugin defines a function named like a qbench hook without ``@qbench.hookimpl``: qbench ignores it."""


def unmarked_hooks(plugin: Any) -> list[str]:
    """Functions of ``plugin`` that qbench silently ignores: hook names without the
    ``@qbench.hookimpl`` marker, and unmarked ``qbench_`` functions whose name is no hook."""
    known = sorted(n for n in dir(hookspecs) if n.startswith(f"{PROJECT_NAME}_"))
    found = []
    for name in dir(plugin):
        function = getattr(plugin, name, None)
        if not name.startswith(f"{PROJECT_NAME}_") or not callable(function):
            continue
        if hasattr(function, f"{PROJECT_NAME}_impl"):
            continue  # marked: pluggy validates it (an unknown name is an error there)
        if name in known:
            found.append(f"{name} has no @qbench.hookimpl marker, so qbench ignores it; decorate it with "
                         "@qbench.hookimpl")  # fmt: skip
        else:
            hint = difflib.get_close_matches(name, known, n=1)
            if hint:
                found.append(f"{name} is not a qbench hook and has no @qbench.hookimpl marker, so qbench ignores "
                             f"it; did you mean {hint[0]!r} (decorated with @qbench.hookimpl)?")  # fmt: skip
    return found


def warn_unmarked_hooks(plugin: Any, origin: str) -> None:
    """Warn about hook-named functions that lack the ``@qbench.hookimpl`` marker (silently ignored otherwise)."""
    for message in unmarked_hooks(plugin):
        _warn_unmarked(f"{origin}: {message}")


def _warn_unmarked(message: str) -> None:
    import warnings

    warnings.warn(UnmarkedHookWarning(message), stacklevel=3)


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
