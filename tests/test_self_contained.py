"""The repository stands alone: no file cites a file outside it, and every Markdown page cited exists.

Facts the code relies on (the paper's formulas, the hardware figures, the performance anchors)
live in ``docs/``; a citation such as ``(docs/hardware.md, "Operation counts")`` must name a page
of this repository, never the developers' shared material nor a bare ``paper.md`` that only
exists elsewhere. Every text file is scanned, committed results included.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TEXT_SUFFIXES = {".py", ".md", ".toml", ".json", ".txt", ".sh", ".cfg", ".ini", ".yml", ".yaml", ".html", ".csv", ".js"}
SKIPPED_FOLDERS = {"__pycache__", "build", "dist", "node_modules"}

#: places outside the repository: the shared guides and the machine's work folders
OUTSIDE = re.compile(
    r"(?:\.\./)+shared\b|\bshared/guide\b|/work/|\bguide/\w+\.md|developers' shared material"
    r"|\b(?:architecture|hardware|paper|performance|data|style) guide\b"
)
#: a Markdown file named in prose or a link; a name right after a quote is a string in code, not a citation
CITED_PAGE = re.compile(r"(?<![\w./\"'-])((?:[\w.-]+/)*[\w-]+\.md)\b")
#: file names qbench writes into an output folder (named as such, they exist only in a run's folder)
OUTPUT_PAGES = {"leaderboard.md"}


def text_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(p.startswith(".") or p.endswith(".egg-info") or p in SKIPPED_FOLDERS for p in parts[:-1]):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES and path.stat().st_size < 5_000_000:
            found.append(path)
    return found


def bad_references(root: Path, skip: set[Path] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """``file:line: reason`` for every citation of a file outside ``root`` or of a page it lacks."""
    problems = []
    for path in text_files(root):
        if path in skip:
            continue
        relative = path.relative_to(root)
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for match in OUTSIDE.finditer(line):
                problems.append(f"{relative}:{number}: cites {match.group(0)!r}, outside the repository")
            for match in CITED_PAGE.finditer(line):
                page = match.group(1)
                if page.rsplit("/", 1)[-1] in OUTPUT_PAGES:  # a run folder's file (runs/x/leaderboard.md)
                    continue
                if "/" in page:
                    exists = (root / page).is_file() or (path.parent / page).is_file()
                else:  # a bare name: a page beside the citing file or at the root (docs pages say docs/)
                    exists = (path.parent / page).is_file() or (root / page).is_file()
                if not exists:
                    problems.append(f"{relative}:{number}: cites {page}, which is not in the repository "
                                    f"(a docs page is cited as docs/NAME.md)")  # fmt: skip
    return problems


def test_no_file_cites_a_file_outside_the_repository() -> None:
    assert bad_references(ROOT, skip={Path(__file__).resolve()}) == []


def test_the_pages_the_code_cites_exist() -> None:
    for page in ("paper.md", "hardware.md", "performance.md"):
        assert (ROOT / "docs" / page).is_file()


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('"""Counts (hardware.md, "Operation counts")."""\n', "cites hardware.md"),
        ("See the guide (`shared/guide/hardware.md`).\n", "outside the repository"),
        ("from ../shared/guide/paper.md\n", "outside the repository"),
        ("See [the notes](docs/nowhere.md).\n", "cites docs/nowhere.md"),
    ],
    ids=["bare-page", "shared-guide", "relative-shared", "missing-docs-page"],
)
def test_the_check_finds_each_kind_of_bad_reference(tmp_path: Path, text: str, found: str) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "hardware.md").write_text("# facts\n")
    (tmp_path / "module.py").write_text(text)
    problems = bad_references(tmp_path)
    assert len(problems) >= 1 and found in problems[0]
    (tmp_path / "module.py").write_text('"""Counts (docs/hardware.md, "Operation counts"); docs/hardware.md."""\n')
    assert bad_references(tmp_path) == []
