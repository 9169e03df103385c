"""Numerics modes: which CPU kernels a case may use, and the facts that say which ones it used.

Floating-point training is deterministic on one machine, but its last bits depend on the kernels
the libraries pick at run time for the CPU they find: ATen's vectorised kernels (AVX2 or AVX-512),
MKL's GEMMs (a code branch per instruction set), oneDNN's JIT kernels, and numpy's OpenBLAS (a
kernel set per core type, used by the shift-add simulator's float64 referee). Over a few epochs those
last bits grow into differences of several per cent (docs/numerics.md has the measurements).

Two modes:

- ``native`` (the default): every library picks the fastest kernels for this CPU. A case and seed
  give the same record on this machine whatever the executor and worker count, not on another CPU.
- ``portable``: every library is pinned to its AVX2 code path before it initialises, so the same
  case gives the same record, bit for bit, on any x86-64 CPU with AVX2 and FMA (Intel Haswell and
  later, AMD Zen and later), with or without AVX-512. On a CPU without AVX2, or on another
  architecture, or on a GPU, the mode cannot promise identity and says so (:func:`problems`).

The pins are environment variables read once by each library when it initialises, so they must be
set before torch and numpy are imported: :func:`pinned_environment` gives them to the processes the
executors start; a process that is already running can only be checked (:func:`problems`), never
fixed. This module imports neither torch nor numpy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

NATIVE = "native"
PORTABLE = "portable"
MODES = (NATIVE, PORTABLE)
DEFAULT_MODE = NATIVE

#: What the portable mode sets in a worker's environment before torch and numpy load, and why:
PORTABLE_ENV: Mapping[str, str] = {
    # ATen's CPU kernels (elementwise ops, reductions, activations): the AVX2 build of each.
    "ATEN_CPU_CAPABILITY": "avx2",
    # MKL's conditional numerical reproducibility: the AVX2 branch, and STRICT so that MKL does not
    # switch to other code paths on CPUs of other vendors or with other cache sizes.
    "MKL_CBWR": "AVX2,STRICT",
    # oneDNN's JIT kernels (torch uses them for some convolutions and matmuls): no AVX-512.
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # numpy's OpenBLAS (DYNAMIC_ARCH) picks a kernel set per core type; Haswell is its AVX2 set.
    "OPENBLAS_CORETYPE": "Haswell",
}
# (and, on a CPU with AVX-512, NPY_DISABLE_CPU_FEATURES naming numpy's AVX-512 targets: see
# pinned_environment)

#: The CPU flags a portable record needs, and the ones that change what native kernels do.
REQUIRED_FLAGS = ("avx2", "fma")
FLAGS_THAT_MATTER = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_bf16", "amx_tile", "asimd", "sve")  # fmt: skip

_environ_lock = threading.Lock()


def check_mode(mode: str, where: str) -> str:
    """``mode`` if it names a mode; ``ValueError`` naming ``where`` it came from otherwise."""
    if mode not in MODES:
        raise ValueError(f"{where}: unknown numerics mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def pinned_environment(mode: str) -> dict[str, str]:
    """The environment variables a new process needs for ``mode`` (empty for ``native``)."""
    if mode != PORTABLE:
        return {}
    pins = dict(PORTABLE_ENV)
    avx512 = numpy_avx512_targets()
    if avx512:
        # numpy's own loops (exp, log, tanh of the simulator's float64 referee) have AVX-512 builds
        # whose last bits differ from the AVX2 ones; only targets this numpy dispatches may be named.
        pins["NPY_DISABLE_CPU_FEATURES"] = " ".join(avx512)
    return pins


def numpy_avx512_targets() -> list[str]:
    """The AVX-512 targets the installed numpy dispatches to on this CPU ([] on a CPU without AVX-512)."""
    if "avx512f" not in cpu_info()[1]:
        return []
    try:
        import numpy  # noqa: F401  (the driver has it loaded; this only reads its dispatch table)

        try:
            from numpy._core import _multiarray_umath as umath
        except ImportError:  # numpy 1.x
            from numpy.core import _multiarray_umath as umath  # type: ignore[no-redef]
        dispatch = list(getattr(umath, "__cpu_dispatch__", []))
    except Exception:  # an unknown numpy layout: pin nothing rather than fail to start workers
        return []
    return [name for name in dispatch if "AVX512" in name or name == "X86_V4"]


@contextlib.contextmanager
def environment_for_children(variables: Mapping[str, str]) -> Iterator[None]:
    """Set ``variables`` in this process's environment while processes are started, then restore it.

    Child processes copy the environment when they start; this process's own libraries were
    initialised long before and do not read it again, so the driver's numerics stay as they were.
    """
    if not variables:
        yield
        return
    with _environ_lock:
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, tuple[str, ...]]:
    """(model name, flags) of this machine's CPU as Linux reports it; the platform's words elsewhere."""
    model, flags = "", ()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = tuple(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return model, flags


def cpu_flags_that_matter() -> list[str]:
    """The flags of :data:`FLAGS_THAT_MATTER` this CPU has, in that order."""
    present = set(cpu_info()[1])
    return [flag for flag in FLAGS_THAT_MATTER if flag in present]


def machine_problems(mode: str) -> list[str]:
    """Why this machine cannot give ``mode``'s promise (empty when it can, and always for native)."""
    if mode != PORTABLE:
        return []
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return [f"the portable mode pins x86-64 kernels; this machine is {platform.machine()}"]
    flags = set(cpu_info()[1])
    missing = [flag for flag in REQUIRED_FLAGS if flag not in flags]
    return [f"this CPU lacks {', '.join(missing)}, which the portable kernels need"] if missing else []


def process_problems(mode: str) -> list[str]:
    """Why this running process does not compute in ``mode`` (empty when it does, always for native).

    Checks what each library actually chose where it can tell (ATen's capability, OpenBLAS's core
    type) and the environment it read otherwise (MKL, oneDNN read theirs at their first call).
    """
    if mode != PORTABLE:
        return []
    problems = []
    for name, value in PORTABLE_ENV.items():
        if os.environ.get(name) != value:
            problems.append(f"{name} is {os.environ.get(name)!r}, not {value!r}")
    if "numpy" in sys.modules:
        active = _numpy_active_features()
        on = [name for name in numpy_avx512_targets() if active.get(name)]
        if on:
            problems.append(f"numpy dispatches to {', '.join(on)} (NPY_DISABLE_CPU_FEATURES was not set before numpy "
                            "loaded)")
    capability = aten_capability()
    if capability is not None and capability != "AVX2":
        problems.append(f"torch's ATen kernels use {capability}, not AVX2 (torch was loaded before the pin)")
    coretype = openblas_coretype()
    if coretype is not None and coretype.lower() != PORTABLE_ENV["OPENBLAS_CORETYPE"].lower():
        problems.append(f"numpy's OpenBLAS uses {coretype} kernels, not Haswell (numpy was loaded before the pin)")
    return problems


def _numpy_active_features() -> dict[str, bool]:
    try:
        try:
            from numpy._core import _multiarray_umath as umath
        except ImportError:  # numpy 1.x
            from numpy.core import _multiarray_umath as umath  # type: ignore[no-redef]
        return dict(getattr(umath, "__cpu_features__", {}))
    except Exception:
        return {}


def problems(mode: str) -> list[str]:
    """Everything that keeps this process on this machine from ``mode``'s promise."""
    return machine_problems(mode) + process_problems(mode)


def aten_capability() -> str | None:
    """ATen's CPU capability in this process (None when torch is not loaded: loading it would fix it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def openblas_coretype() -> str | None:
    """The core type numpy's OpenBLAS runs with (None when numpy is not loaded or it is not OpenBLAS)."""
    if "numpy" not in sys.modules:
        return None
    info = _blas_libraries()
    for library in info:
        if library.get("internal_api") == "openblas":
            return library.get("architecture")
    return None


_blas_cache: list[dict[str, Any]] | None = None


def _blas_libraries() -> list[dict[str, Any]]:
    """threadpoolctl's view of the loaded BLAS libraries; read once numpy and torch are loaded (a
    library's kernels are fixed when it loads, and the look-up costs ~20 ms)."""
    global _blas_cache
    if _blas_cache is not None:
        return _blas_cache
    try:
        import threadpoolctl
    except ImportError:
        return []
    try:
        found = list(threadpoolctl.threadpool_info())
    except Exception:  # a third-party library's introspection must never fail a case
        return []
    if "numpy" in sys.modules and "torch" in sys.modules:
        _blas_cache = found
    return found


def blas_facts() -> dict[str, str]:
    """{library: "name version (kernels)"} for torch's BLAS and numpy's, as far as they say."""
    facts: dict[str, str] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        config = ""
        with contextlib.suppress(Exception):
            config = torch.__config__.show()
        marker = "Math Kernel Library Version "
        if marker in config:
            version = config.split(marker, 1)[1].split("-", 1)[0].split()[0]
            cbwr = os.environ.get("MKL_CBWR")
            facts["torch"] = f"MKL {version}" + (f" (MKL_CBWR={cbwr})" if cbwr else "")
        elif config:
            facts["torch"] = "no MKL"
    for library in _blas_libraries():
        if library.get("user_api") == "blas" and "numpy" in str(library.get("filepath", "")):
            facts["numpy"] = f"{library.get('internal_api')} {library.get('version')} ({library.get('architecture')})"
    return facts


def mode_of_this_process() -> str:
    """``portable`` when every pin holds in this process, else ``native``: what a record states."""
    return PORTABLE if not problems(PORTABLE) else NATIVE


def provenance_facts() -> dict[str, Any]:
    """What a record says about the numbers' origin (the case runner adds them to its provenance)."""
    model, _ = cpu_info()
    torch = sys.modules.get("torch")
    threads = None
    if torch is not None:
        with contextlib.suppress(Exception):
            threads = int(torch.get_num_threads())
    return {
        "numerics": mode_of_this_process(),
        "cpu_model": model,
        "cpu_flags": " ".join(cpu_flags_that_matter()),
        "aten_cpu_capability": aten_capability(),
        "blas": blas_facts(),
        "torch_threads": threads,
    }


#: The provenance keys that decide whether two records' numbers can be compared bit for bit.
NUMERICS_KEYS = ("numerics", "aten_cpu_capability", "blas", "cpu_model")


def numerics_signature(provenance: Mapping[str, Any] | None) -> str:
    """A short text naming where a record's numbers come from: the mode, plus the CPU in native mode.

    Portable records compare whatever the CPU; native ones only with the same CPU and kernels.
    Records made before qbench recorded its numerics say ``unrecorded``.
    """
    provenance = provenance or {}
    mode = provenance.get("numerics")
    if mode is None:
        return "unrecorded"
    if mode == PORTABLE:
        return PORTABLE
    return f"native on {provenance.get('cpu_model')} ({provenance.get('aten_cpu_capability')})"


def mixed_numerics(groups: Mapping[str, Iterable[tuple[str, Mapping[str, Any] | None]]]) -> list[str]:
    """One note per configuration whose records come from different numerics.

    ``groups``: ``{configuration label: [(origin, provenance), ...]}`` (origin: "A", "B", a bundle's
    contributor). Portable records compare bit for bit whatever the CPU; anything else compares only
    within the tolerance of kernel noise, which the note says.
    """
    notes = []
    for label, items in groups.items():
        by_origin: dict[str, set[str]] = {}
        for origin, provenance in items:
            by_origin.setdefault(origin, set()).add(numerics_signature(provenance))
        signatures = set().union(*by_origin.values()) if by_origin else set()
        if len(signatures) > 1:
            where = "; ".join(f"{origin}: {', '.join(sorted(s))}" for origin, s in sorted(by_origin.items()))
            notes.append(f"{label}: records from different numerics ({where}); their last bits, and after "
                         "training differences of a few per cent, can come from the kernels, not the method")
    return notes
