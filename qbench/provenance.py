"""Where a record came from: versions, device, host, git commit."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from qbench import __version__
from qbench.numerics import provenance_facts


@functools.lru_cache(maxsize=1)
def git_commit(start: str | None = None) -> str | None:
    """The commit of the qbench checkout (or of ``start``), None outside a git work tree."""
    where = Path(start) if start else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def base_provenance(device: str) -> dict[str, object]:
    """Facts about the process that ran a case (the driver adds matrix hash and executor)."""
    facts: dict[str, object] = {
        "qbench_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "host": socket.gethostname(),
        "device": device,
        "git_commit": git_commit(),
    }
    try:
        import torch

        facts["torch_version"] = torch.__version__
        if device.startswith("cuda") and torch.cuda.is_available():
            facts["device_name"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        facts["torch_version"] = None
    # where the numbers come from: the CPU, the kernels each library chose (torch is loaded by now),
    # the numerics mode
    facts.update(provenance_facts())
    return facts


def component_versions(case: Any, host: Any) -> dict[str, dict[str, str]]:
    """``{kind or hardware:LABEL: {plugin, distribution, version}}`` of every component of ``case``
    (what the planner compares to find records made with another version of a plugin)."""
    named = [("quantizer", "quantizer", case.quantizer.name), ("cell", "cell", case.cell.name),
             ("dataset", "dataset", case.dataset.name),
             *((f"quantizer:{role}", "quantizer", spec.name) for role, spec in case.quantizer.roles),
             *((f"hardware:{spec.label}", "hardware", spec.name) for spec in case.hardware)]  # fmt: skip
    versions = {}
    for key, kind, name in named:
        entry = host.registry(kind).get(name)
        versions[key] = {"plugin": entry.plugin, "distribution": entry.distribution, "version": entry.version}
    return versions
