"""Submission bundles: one deterministic archive of a run, with a manifest of sha256 hashes.

``qbench pack RUN_DIR`` writes ``<run>.qbench.tar.gz`` (or ``.zip``) holding the store, ``run.json``,
the leaderboards and plots, the matrix file, ``environment.json`` (python, torch, platform, cpu,
qbench and every installed distribution that provides qbench plugins, with versions, and the
plugin versions the records name), ``contributor.json`` (who, which machine) and
``manifest.json``: ``{"format": "qbench-bundle/1", "files": {name: sha256}}`` for every other
entry. Entries are sorted and carry fixed times, owners and modes, so packing the same folder
twice gives the same bytes.

Reading a bundle (:func:`extract`) accepts regular files with plain relative names only, checks
every hash against the manifest and refuses unlisted entries; nothing outside the target folder
is ever written.
"""

from __future__ import annotations

import getpass
import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from qbench import record as R
from qbench.atomicio import file_sha256
from qbench.errors import UsageError
from qbench.store import STORE_FILENAME

FORMAT = "qbench-bundle/1"
MANIFEST = "manifest.json"
CONTRIBUTOR = "contributor.json"
ENVIRONMENT = "environment.json"
MATRIX = "matrix.toml"
SUFFIXES = (".tar.gz", ".tgz", ".zip")
#: 2000-01-01T00:00:00Z: a fixed entry time (zip cannot store dates before 1980).
FIXED_MTIME = 946684800
PUBLISHED = ("run.json", "leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.html")
MAX_BUNDLE_BYTES = 8 << 30


def is_bundle(path: Path) -> bool:
    return Path(path).is_file() and str(path).endswith(SUFFIXES)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(records_plugins: dict[str, str]) -> dict[str, Any]:
    """The packing machine's software and hardware, and the plugin versions the records were made with."""
    from importlib import metadata

    from qbench import __version__

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    installed = {}
    for dist in metadata.distributions():
        if any(ep.group == "qbench" for ep in dist.entry_points):
            installed[dist.metadata["Name"]] = dist.version
    return {
        "qbench": __version__,
        "python": platform.python_version(),
        "torch": version("torch"),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
        "plugin_distributions_installed": dict(sorted(installed.items())),
        "plugin_distributions_in_records": dict(sorted(records_plugins.items())),
    }


def _record_plugins(store_path: Path) -> dict[str, str]:
    from qbench.store import Store

    found: dict[str, set[str]] = {}
    with Store.read_only(store_path) as store:
        for record in store.records():
            plugins = (record.get(R.PROVENANCE) or {}).get("plugins") or {}
            for entry in plugins.values() if isinstance(plugins, dict) else ():
                if isinstance(entry, dict) and entry.get("distribution"):
                    found.setdefault(str(entry["distribution"]), set()).add(str(entry.get("version")))
    return {name: ", ".join(sorted(versions)) for name, versions in found.items()}


def contributor(by: str | None, machine: str | None) -> dict[str, str]:
    """Who packs, and on which machine.

    The options, else ``$QBENCH_CONTRIBUTOR`` / ``$QBENCH_MACHINE``, else the login name and host name.
    """
    if by is None:
        by = os.environ.get("QBENCH_CONTRIBUTOR")
        if not by:
            try:
                by = getpass.getuser()
            except (KeyError, OSError):
                by = "unknown"
    if machine is None:
        machine = os.environ.get("QBENCH_MACHINE") or platform.node() or "unknown"
    if not by.strip() or not machine.strip():
        raise UsageError("--by and --machine must not be empty")
    return {"by": by, "machine": machine}


def bundle_entries(run_dir: Path, by: str | None, machine: str | None) -> dict[str, bytes]:
    """Every entry of the bundle of ``run_dir`` (name -> bytes), the manifest included."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a run directory (give the --out folder of a qbench run)")
    store_path = run_dir / STORE_FILENAME
    if not store_path.is_file():
        raise UsageError(f"{run_dir}: no {STORE_FILENAME} here; pack the folder a qbench run wrote")
    if not (run_dir / "leaderboard.json").is_file():
        raise UsageError(f"{run_dir}: no leaderboard.json; write it first with qbench leaderboard --store {run_dir}")
    entries: dict[str, bytes] = {}
    for name in (STORE_FILENAME, *PUBLISHED):
        if (run_dir / name).is_file():
            entries[name] = (run_dir / name).read_bytes()
    if (run_dir / "plots").is_dir():
        from qbench.atomicio import is_temp_name

        for path in sorted((run_dir / "plots").iterdir()):
            if path.is_file() and not is_temp_name(path.name):  # a killed writer's leftover is not published
                entries[f"plots/{path.name}"] = path.read_bytes()
    if "run.json" in entries:
        try:
            run_info = json.loads(entries["run.json"])
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UsageError(f"{run_dir / 'run.json'}: not readable JSON") from None
        if not isinstance(run_info, dict):
            raise UsageError(f"{run_dir / 'run.json'}: not a JSON object; pack the folder a qbench run wrote")
        matrix = find_matrix(run_dir, run_info)
        if matrix is not None:
            entries[MATRIX] = matrix
    plugins = _record_plugins(store_path)
    dump = {"indent": 2, "sort_keys": True, "ensure_ascii": False}
    entries[ENVIRONMENT] = (json.dumps(environment(plugins), **dump) + "\n").encode()  # type: ignore[arg-type]
    entries[CONTRIBUTOR] = (json.dumps(contributor(by, machine), **dump) + "\n").encode()  # type: ignore[arg-type]
    manifest = {"format": FORMAT, "files": {name: _sha256(data) for name, data in sorted(entries.items())}}
    entries[MANIFEST] = (json.dumps(manifest, **dump) + "\n").encode()  # type: ignore[arg-type]
    return dict(sorted(entries.items()))


#: A matrix file is small; anything larger named by run.json is not read.
MAX_MATRIX_BYTES = 1 << 20


def find_matrix(run_dir: Path, run_info: dict[str, Any]) -> bytes | None:
    """The bytes of the run's matrix file, or None when no file is known to be it.

    ``run.json``'s ``matrix_path`` is as the run was given it, relative to the folder it was
    started from, which need not be the one packing: it is looked for there, in the run folder and
    in the folders above it. Only a ``.toml`` file whose sha256 is the run's ``matrix_hash`` and
    which names the run's matrix is taken, so a run.json cannot have any other file packed.
    """
    import tomllib

    named, digest, name = run_info.get("matrix_path"), run_info.get("matrix_hash"), run_info.get("matrix")
    if not isinstance(named, str) or not isinstance(digest, str) or not named.endswith(".toml") or "\0" in named:
        return None
    relative = Path(named)
    bases = [Path.cwd(), run_dir, *run_dir.resolve().parents] if not relative.is_absolute() else [Path("/")]
    for base in bases:
        candidate = base / relative
        try:
            if not candidate.is_file() or candidate.stat().st_size > MAX_MATRIX_BYTES:
                continue
            data = candidate.read_bytes()
        except OSError:
            continue
        if _sha256(data) != digest:
            continue
        try:
            parsed = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if parsed.get("name") == name:
            return data
    return None


def _is_qbench_bundle(path: Path) -> bool:
    """Whether ``path`` holds a manifest.json of a qbench bundle (an earlier ``qbench pack``'s output)."""
    try:
        if str(path).endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo(MANIFEST)
                if info.file_size > MAX_MATRIX_BYTES:
                    return False
                data = archive.read(info)
        else:
            with tarfile.open(path, mode="r:*") as archive:
                member = archive.getmember(MANIFEST)
                handle = archive.extractfile(member) if member.isfile() and member.size <= MAX_MATRIX_BYTES else None
                if handle is None:
                    return False
                data = handle.read()
        return json.loads(data).get("format") == FORMAT
    except (OSError, EOFError, KeyError, tarfile.TarError, zipfile.BadZipFile, ValueError, AttributeError):
        return False


def write_archive(entries: dict[str, bytes], out: Path, replace: bool = False) -> Path:
    """A deterministic .tar.gz or .zip of ``entries`` (sorted, fixed times, owners and modes)."""
    from qbench.outdir import check_out_path, shown

    out = Path(out)
    if not str(out).endswith(SUFFIXES):
        raise UsageError(f"-o {shown(out)}: name the bundle .tar.gz, .tgz or .zip")
    check_out_path(out)
    if out.is_dir():
        raise UsageError(f"-o {shown(out)}: is a folder; name the bundle file to write")
    if out.exists() and not replace and not _is_qbench_bundle(out):
        raise UsageError(f"-o {shown(out)}: a file that is not a qbench bundle is there; give another name, or add "
                         "--replace to overwrite it")  # fmt: skip
    buffer = io.BytesIO()
    if str(out).endswith(".zip"):
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in sorted(entries.items()):
                info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    else:
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as compressed:
            with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
                for name, data in sorted(entries.items()):
                    member = tarfile.TarInfo(name)
                    member.size, member.mtime, member.mode = len(data), FIXED_MTIME, 0o644
                    member.uid = member.gid = 0
                    member.uname = member.gname = ""
                    archive.addfile(member, io.BytesIO(data))
    from qbench.atomicio import write_bytes

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(out, buffer.getvalue())  # a unique temporary file, removed on any failure
    except OSError as exc:
        raise UsageError(f"-o {shown(out)}: cannot write the bundle there ({exc.strerror or exc}); give a file in "
                         "a folder you can write to") from None  # fmt: skip
    return out


def pack(run_dir: Path, out: Path | None = None, by: str | None = None, machine: str | None = None,
         replace: bool = False) -> Path:  # fmt: skip
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir.resolve().parent / f"{run_dir.resolve().name}.qbench.tar.gz"
    return write_archive(bundle_entries(run_dir, by, machine), out, replace)


# ------------------------------------------------------------------------------------------ read


@dataclass
class Bundle:
    """An extracted bundle: where its files are, who made it, and what is wrong with its manifest."""

    source: Path
    folder: Path
    sha256: str
    contributor: dict[str, str]
    environment: dict[str, Any]
    problems: list[str] = field(default_factory=list)


def _safe_name(name: str, source: Path) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in name or name.startswith("./"):
        raise UsageError(f"{source}: entry {name!r} is not a plain relative path; not a qbench bundle")
    return path.as_posix()


#: The manifest, contributor.json and environment.json are read into memory: never a large one.
MAX_SMALL_ENTRY = 16 << 20
#: The longest name one part of an entry's path may have (most file systems' limit, in bytes).
MAX_NAME_BYTES = 255


@dataclass
class _Member:
    name: str
    size: int
    handle: Any  # the tar member or zip info it is opened by


def _members(source: Path, archive: Any) -> list[_Member]:
    """Every regular entry of an open archive, from the headers only (no entry is read): checked
    for plain relative names the file system can hold, no name twice, no name both a file and a
    folder, and a total size within MAX_BUNDLE_BYTES."""
    from qbench.outdir import shown

    found: list[_Member] = []
    if isinstance(archive, zipfile.ZipFile):
        for info in archive.infolist():
            if not info.is_dir():
                found.append(_Member(_safe_name(info.filename, source), info.file_size, info))
    else:
        for member in archive.getmembers():
            if member.isdir():
                continue
            if not member.isfile():
                raise UsageError(f"{source}: entry {member.name!r} is a link or device; not a qbench bundle")
            found.append(_Member(_safe_name(member.name, source), member.size, member))
    names: set[str] = set()
    for entry in found:
        too_long = [part for part in PurePosixPath(entry.name).parts if len(os.fsencode(part)) > MAX_NAME_BYTES]
        if too_long:
            raise UsageError(f"{source}: entry {shown(entry.name, 80)} has a name longer than {MAX_NAME_BYTES} bytes; "
                             "not a qbench bundle")  # fmt: skip
        if entry.name in names:
            raise UsageError(f"{source}: entry {shown(entry.name, 80)} is in the archive twice; not a qbench bundle")
        names.add(entry.name)
    for entry in found:
        folder = next((str(p) for p in PurePosixPath(entry.name).parents if str(p) in names), None)
        if folder is not None:
            raise UsageError(f"{source}: {shown(folder, 80)} is both a file and a folder of the archive; not a "
                             "qbench bundle")  # fmt: skip
    if sum(entry.size for entry in found) > MAX_BUNDLE_BYTES:
        raise UsageError(f"{source}: unpacks to more than {MAX_BUNDLE_BYTES >> 30} GiB; not a bundle")
    return found


def _open_member(archive: Any, entry: _Member) -> Any:
    if isinstance(archive, zipfile.ZipFile):
        return archive.open(entry.handle)
    handle = archive.extractfile(entry.handle)
    assert handle is not None  # a regular file always has contents
    return handle


def extract(source: Path, into: Path) -> Bundle:
    """Unpack ``source`` into the empty folder ``into`` and check its manifest (problems listed, not raised).

    Names, types and sizes are checked from the headers first; the manifest is read next, and an
    entry it does not list is never read (a problem names it); each listed entry is copied to disk
    in blocks, hashed on the way, so a large member costs neither memory nor a read before its turn.
    """
    from qbench.outdir import shown

    source, into = Path(source), Path(into)
    problems: list[str] = []
    small: dict[str, bytes] = {}
    try:
        archive: Any = zipfile.ZipFile(source) if str(source).endswith(".zip") else tarfile.open(source, mode="r:*")
        with archive:
            members = {entry.name: entry for entry in _members(source, archive)}
            if MANIFEST not in members:
                raise UsageError(f"{source}: no {MANIFEST}; not a bundle written by qbench pack")
            if members[MANIFEST].size > MAX_SMALL_ENTRY:
                raise UsageError(f"{source}: {MANIFEST} is larger than {MAX_SMALL_ENTRY >> 20} MiB; not a qbench "
                                 "bundle manifest")  # fmt: skip
            with _open_member(archive, members[MANIFEST]) as handle:
                small[MANIFEST] = handle.read()
            try:
                manifest = json.loads(small[MANIFEST])
                files = manifest["files"]
                assert isinstance(files, dict) and all(isinstance(v, str) for v in files.values())
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AssertionError):
                raise UsageError(f"{source}: {MANIFEST} is not a qbench bundle manifest") from None
            if manifest.get("format") != FORMAT:
                raise UsageError(f"{source}: bundle format {manifest.get('format')!r}, this qbench reads {FORMAT!r}")
            for name in sorted(set(members) - {MANIFEST}):
                if name not in files:
                    problems.append(f"bundle: {name} is not listed in {MANIFEST} (not read)")
                    continue
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with _open_member(archive, members[name]) as handle, open(target, "wb") as out:
                    for block in iter(lambda h=handle: h.read(1 << 20), b""):  # type: ignore[misc]
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != files[name]:
                    problems.append(f"bundle: {name} does not match its sha256 in {MANIFEST} (changed after packing?)")
                if name in (CONTRIBUTOR, ENVIRONMENT) and members[name].size <= MAX_SMALL_ENTRY:
                    small[name] = target.read_bytes()
            (into / MANIFEST).write_bytes(small[MANIFEST])
    except UsageError:
        raise
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error) as exc:
        raise UsageError(f"{shown(source)}: not a readable bundle ({exc}); give a file written by qbench "
                         "pack") from None
    problems += [f"bundle: {name} is listed in {MANIFEST} but missing" for name in sorted(set(files) - set(members))]

    def load(name: str) -> dict[str, Any]:
        try:
            value = json.loads(small.get(name, b"{}"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            problems.append(f"bundle: {name} is not JSON")
            return {}
        return value if isinstance(value, dict) else {}

    who = {k: str(v) for k, v in load(CONTRIBUTOR).items() if k in ("by", "machine")}
    return Bundle(source, into, file_sha256(source), who, load(ENVIRONMENT), problems)

