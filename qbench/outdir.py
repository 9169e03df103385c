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
