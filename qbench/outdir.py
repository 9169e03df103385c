"""The output folder of a run, checked before anything is computed.

``--out`` naming a file, a path under a file, a folder that cannot be written (permissions, a
read-only file system), a name with a NUL byte or one too long for the file system: each is one
usage error here, before any dataset is prepared or any case runs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from qbench.atomicio import file_sha256
from qbench.errors import UsageError


def shown(path: Path | str, limit: int = 120) -> str:
    """A path as a message shows it: control characters escaped, long ones shortened."""
    text = repr(str(path))[1:-1]
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]} ({len(str(path))} characters)"


def check_out_path(out: Path) -> None:
    """Reject what no file system accepts, without touching the disk."""
    text = str(out)
    if "\0" in text:
        raise UsageError(f"output folder {shown(out)}: contains a NUL byte; give --out a plain folder name "
                         "(or rename the matrix)")  # fmt: skip
    limit = 255
    with contextlib.suppress(OSError, AttributeError):
        limit = os.pathconf(_existing_parent(out), "PC_NAME_MAX")
    long = [part for part in out.parts if len(os.fsencode(part)) > limit]
    if long:
        raise UsageError(f"output folder {shown(out)}: the name {shown(long[0], 40)} is longer than the "
                         f"{limit} bytes a file name may have here; give --out a shorter folder (or rename the matrix)")


def _existing_parent(path: Path) -> Path:
    for candidate in (path.absolute(), *path.absolute().parents):
        if candidate.is_dir():
            return candidate
    return Path("/")


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` if needed and prove it writable (a file is created and removed), or raise UsageError."""
    check_out_path(out)
    fix = "give --out a folder you can write to"
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {shown(out)}: is a file, not a folder; {fix}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"output folder {shown(out)}: a file is in the way ({shown(_blocker(out))} is not a "
                         f"folder); {fix}") from None  # fmt: skip
    except NotADirectoryError:
        raise UsageError(f"output folder {shown(out)}: {shown(_blocker(out))} is a file, not a folder; {fix}") from None
    except OSError as exc:
        raise UsageError(f"output folder {shown(out)}: cannot create it ({exc.strerror or exc}); {fix}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".qbench-write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"output folder {shown(out)}: cannot write in it ({exc.strerror or exc}); {fix}") from None


def _blocker(out: Path) -> Path:
    """The first component of ``out`` that exists and is not a folder."""
    for candidate in (*reversed(out.parents), out):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return out


# ---------------------------------------------------------------- folders a command wrote itself

#: What ``qbench site`` and ``qbench merge`` write last into their ``--out``: the sha256 of every
#: file they wrote there. A later site or merge replaces only the files listed, only while they are
#: unchanged, and removes the listed ones it does not write again; anything else in the folder is
#: someone else's and is never overwritten without ``--replace``.
WRITTEN = "qbench-files.json"
WRITTEN_FORMAT = "qbench-files/1"
#: The names ``qbench run`` and ``qbench leaderboard`` write into a folder (``plots`` a folder).
RUN_FILES = ("qbench.sqlite", "run.json", "leaderboard.md", "leaderboard.csv", "leaderboard.json",
             "leaderboard.html", "plots")  # fmt: skip
LEADERBOARD_FILES = RUN_FILES[2:]


def written_by(out: Path) -> tuple[str | None, dict[str, str]]:
    """Which command wrote ``out`` and the sha256 of each file it wrote; (None, {}) without a
    readable ``qbench-files.json``."""
    import json

    try:
        value = json.loads((out / WRITTEN).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None, {}
    if not isinstance(value, dict) or value.get("format") != WRITTEN_FORMAT or not isinstance(value.get("files"), dict):
        return None, {}
    files = {str(k): str(v) for k, v in value["files"].items() if isinstance(k, str) and ".." not in Path(k).parts}
    return str(value.get("written_by")), files


def files_in(out: Path, area: tuple[str, ...] | None = None) -> list[str]:
    """Every file (links included) below ``out`` as a relative name, or only below the top-level names ``area``."""
    found = []
    tops = [out / name for name in area] if area is not None else list(out.iterdir())
    for top in tops:
        if top.is_symlink() or top.is_file():
            found.append(top.relative_to(out).as_posix())
        elif top.is_dir():
            found += [p.relative_to(out).as_posix() for p in top.rglob("*") if p.is_symlink() or not p.is_dir()]
    return sorted(found)


def _listed(names: list[str], limit: int = 3) -> str:
    shown_names = ", ".join(shown(n, 60) for n in names[:limit])
    return shown_names + (f" and {len(names) - limit} more" if len(names) > limit else "")


class OutputFolder:
    """An output folder a command has claimed: :meth:`finish` removes what its earlier output listed
    and this one did not write again, then lists what this one wrote."""

    def __init__(self, out: Path, writer: str, previous: dict[str, str], keep: dict[str, str]) -> None:
        self.out, self.writer, self.previous, self.keep = out, writer, previous, keep

    def finish(self, written: list[Path]) -> None:
        import json

        from qbench.atomicio import write_text

        files = {Path(p).relative_to(self.out).as_posix(): file_sha256(Path(p)) for p in written}
        for name in sorted(set(self.previous) - set(files), reverse=True):
            with contextlib.suppress(OSError):
                (self.out / name).unlink()
            for parent in (self.out / name).parents:  # folders the earlier output made and left empty
                if parent == self.out:
                    break
                with contextlib.suppress(OSError):
                    parent.rmdir()
        files = {**{k: v for k, v in self.keep.items() if (self.out / k).is_file()}, **files}
        files.pop(WRITTEN, None)
        payload = {"format": WRITTEN_FORMAT, "written_by": self.writer, "files": dict(sorted(files.items()))}
        write_text(self.out / WRITTEN, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def claim_output(out: Path, writer: str, replace: bool, area: tuple[str, ...] | None = None,
                 accepted: tuple[str, ...] | None = None) -> OutputFolder:  # fmt: skip
    """Check that ``qbench <writer>`` may write into ``out``, before anything is written (UsageError if not).

    ``out`` may be new, empty, or a folder an earlier ``qbench <accepted>`` wrote whose listed
    files are unchanged and which holds nothing else (only the top-level names ``area`` are looked
    at when given: a site written into the folder it is built from). ``replace``: files of the same
    name may be overwritten whatever wrote them (the others are left alone).
    """
    check_out_path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {shown(out)}: is a file, not a folder; give a new or empty folder")
    if not out.is_dir():
        return OutputFolder(out, writer, {}, {})
    earlier, listed = written_by(out)
    own = earlier in (accepted or (writer,))
    present = [n for n in files_in(out, area) if n != WRITTEN]
    unchanged = {n: listed[n] for n in present if own and n in listed and _same(out / n, listed[n])}
    others = [n for n in present if n not in unchanged]
    keep = {k: v for k, v in listed.items() if area is not None and k.split("/")[0] not in area}
    if others and not replace:
        what = f"qbench {writer} did not write" if not own else f"changed since qbench {earlier} wrote them, or not its"
        raise UsageError(f"--out {shown(out)}: holds files {what} ({_listed(others)}); give a new or empty folder, "
                         f"or add --replace to overwrite the files of the same name (the others are left alone)")
    # a site written into a merge's own folder keeps the folder the merge's
    folder_writer = earlier if own and area is not None and earlier else writer
    return OutputFolder(out, folder_writer, unchanged, keep if own else {})


def _same(path: Path, digest: str) -> bool:
    try:
        return not path.is_symlink() and path.is_file() and file_sha256(path) == digest
    except OSError:
        return False


def claim_run_files(out: Path, writer: str, replace: bool, store_folder: Path | None = None) -> None:
    """Check that ``qbench run`` or ``qbench leaderboard`` may write its store, ``run.json``,
    leaderboards and plots into ``out`` (UsageError if not; ``replace`` skips the check).

    Refused: a folder a site or a merge wrote (its leaderboards are theirs), another store's folder
    (``leaderboard --out`` elsewhere than the store: its leaderboards would no longer be its
    store's), and leaderboard files beside no qbench ``leaderboard.json``.
    """
    import json

    check_out_path(out)
    if replace or not out.is_dir():
        return
    fix = f"give another --out, or add --replace to overwrite them (qbench {writer} --replace)"
    earlier, listed = written_by(out)
    present = files_in(out, RUN_FILES)
    theirs = [n for n in present if n in listed]
    if theirs or (out / "merge.json").is_file() and present:
        by = earlier or "merge"
        raise UsageError(f"--out {shown(out)}: qbench {by} wrote {_listed(theirs or present)} there; "
                         f"qbench {writer} would overwrite them; {fix}")  # fmt: skip
    if store_folder is not None and out.resolve() != store_folder.resolve() and (out / "qbench.sqlite").exists():
        raise UsageError(f"--out {shown(out)}: holds another store (qbench.sqlite); its leaderboards would no "
                         f"longer be the ones of its records; {fix}")  # fmt: skip
    shown_files = [n for n in present if n.split("/")[0] in LEADERBOARD_FILES]
    if shown_files:
        try:
            schema = json.loads((out / "leaderboard.json").read_text(encoding="utf-8")).get("schema")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            schema = None
        if not (isinstance(schema, str) and schema.startswith("qbench-leaderboard/")):
            raise UsageError(f"--out {shown(out)}: holds {_listed(shown_files)} beside no leaderboard.json qbench "
                             f"wrote; {fix}")  # fmt: skip
