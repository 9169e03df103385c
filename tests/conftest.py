"""Shared fixtures (an isolated plugin host, fake installed distributions, a data cache) and the
``cuda`` marker's selection: CUDA variants are deselected, not skipped, where there is no GPU,
so that a skip in a CPU run always means something."""

from __future__ import annotations

import importlib
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from qbench import host as qbench_host

# A suite started in the background by a non-interactive shell (`cmd &`, nohup, some CI runners)
# inherits SIGINT ignored, and so does every driver a test starts: Python then installs no
# KeyboardInterrupt handler and the Ctrl-C tests' SIGINT does nothing. Those tests stand for a
# foreground job in a terminal, so the suite restores Python's usual handling (a child started with
# exec gets SIGINT at its default again).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_CUDA_DESELECTED = pytest.StashKey[int]()


def _cuda_available() -> bool:
    import torch  # only when a CUDA test was collected: collecting qbench's light tests stays light

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda or _cuda_available():
        return
    chosen = set(map(id, cuda))
    items[:] = [item for item in items if id(item) not in chosen]
    config.hook.pytest_deselected(items=cuda)
    config.stash[_CUDA_DESELECTED] = len(cuda)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    count = config.stash.get(_CUDA_DESELECTED, 0)
    if count:
        terminalreporter.write_line(
            f"cuda: {count} CUDA variants deselected (torch sees no GPU here; they run where one is)"
        )


@pytest.fixture
def fresh_host():
    """``qbench.create`` builds a fresh host in the test (plugins change between tests); the driver
    and the commands build their own host every time anyway."""
    with qbench_host.facade_using(None):
        yield


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch, fresh_host):
    """Install a fake distribution with ``qbench`` entry points on ``sys.path`` for one test.

    ``fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": "source..."})``
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(dist: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.0") -> Path:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[qbench]\n{lines}\n")
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return site

    yield make
    for name in list(sys.modules):
        if (site / f"{name}.py").exists():
            del sys.modules[name]


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    """A data cache shared by the tests of one session (prepared datasets are reused)."""
    return tmp_path_factory.mktemp("qbench-data")


@pytest.fixture(scope="session")
def published_runs(tmp_path_factory):
    """Three small real runs of one matrix as contributors would publish them (shared by the publishing tests).

    ``a``: float and ternary, seeds 0-2; ``b``: the same matrix in another folder with seeds 3-4;
    ``c``: seeds 0-1 with another training recipe (a different learning rate).
    """
    from qbench.cli import main

    from .matrices import write_matrix_file

    root = tmp_path_factory.mktemp("published")
    recipe = {"epochs": 1, "batch": 16, "bptt": 20}
    variants = {"a": ((0, 1, 2), {}), "b": ((3, 4), {}), "c": ((0, 1), {"lr": 0.05})}
    runs = {}
    for name, (seeds, extra) in variants.items():
        folder = root / f"matrix-{name}"
        folder.mkdir()
        matrix = write_matrix_file(folder, "pub", quantizers=("float", "ternary"), seeds=seeds, **recipe, **extra)
        assert main(["run", "--matrix", str(matrix), "--out", str(root / name), "--no-progress"]) == 0
        runs[name] = root / name
    return runs
