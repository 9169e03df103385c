"""Recompute a published leaderboard from its records and find the first published cell that differs.

The leaderboard is a pure function of the stored records (:func:`qbench.leaderboard.write_frame`),
so the strongest check of a published folder is to build it again from the store and compare
every format with the rebuild. The comparisons are generic over the content, not a list of
columns: every split table of ``leaderboard.json`` cell by cell, every CSV cell, every cell of
every Markdown table (and every other line), every text and attribute of the HTML. Whatever
table a later version adds is therefore verified without touching this module.

Two things are not compared byte for byte, because they legitimately depend on the machine
that draws them rather than on the records: the plot images (matplotlib's output differs
between its versions; they are covered by the sha256 list instead) and the ``generator``
field (the qbench version that wrote the folder).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

#: JSON keys not compared with the rebuild (see the module docstring).
UNCOMPARED_KEYS = ("generator", "files")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Mismatch:
    """One published value that is not what the records give."""

    file: str
    where: str
    published: Any
    recomputed: Any

    def __str__(self) -> str:
        return f"{self.file} {self.where}: published {self.published!r}, the records give {self.recomputed!r}"


def same_value(a: Any, b: Any) -> bool:
    """Equal, numbers up to the last bits of rounding (a rebuild on another numpy may differ there)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
            return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)
    return bool(a == b)


def same_text(a: str, b: str) -> bool:
    if a == b:
        return True
    if _NUMBER.match(a) and _NUMBER.match(b):
        return same_value(float(a), float(b))
    return False


# ------------------------------------------------------------------------------------------ JSON


def _row_label(columns: list[str], row: list[Any], index: int) -> str:
    named = dict(zip(columns, row, strict=False))
    key = [str(named[k]) for k in ("dataset_label", "cell_label", "quantizer_label") if named.get(k) is not None]
    if "metric" in named and named.get("metric") is not None:
        key.append(str(named["metric"]))
    if not key and named.get("case_id"):
        key.append(str(named["case_id"]))
    return f"row {index}" + (f" ({' / '.join(key)})" if key else "")


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("columns"), list) and isinstance(value.get("rows"), list)


def compare_json(published: Any, recomputed: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """First difference as (location, published, recomputed), or None."""
    if _is_table(published) and _is_table(recomputed):
        columns = published["columns"]
        if columns != recomputed["columns"]:
            return f"{where} columns", columns, recomputed["columns"]
        rows_a, rows_b = published["rows"], recomputed["rows"]
        for index, (a, b) in enumerate(zip(rows_a, rows_b, strict=False)):
            if a == b:  # the common case, compared in C
                continue
            if not isinstance(a, list) or len(a) != len(columns):
                return f"{where} row {index}", a, b
            label = _row_label(columns, b, index)
            for column, x, y in zip(columns, a, b, strict=True):
                found = compare_json(x, y, f"{where} {label} column {column}")
                if found:
                    return found
        if len(rows_a) != len(rows_b):
            return f"{where} number of rows", len(rows_a), len(rows_b)
        return None
    if isinstance(published, dict) and isinstance(recomputed, dict):
        for key in sorted(set(published) | set(recomputed)):
            if not where and key in UNCOMPARED_KEYS:
                continue
            if key not in published or key not in recomputed:
                return f"{where} {key}".strip(), published.get(key, "(absent)"), recomputed.get(key, "(absent)")
            found = compare_json(published[key], recomputed[key], f"{where} {key}".strip())
            if found:
                return found
        return None
    if isinstance(published, list) and isinstance(recomputed, list):
        for index, (a, b) in enumerate(zip(published, recomputed, strict=False)):
            found = compare_json(a, b, f"{where}[{index}]")
            if found:
                return found
        if len(published) != len(recomputed):
            return f"{where} length", len(published), len(recomputed)
        return None
    return None if same_value(published, recomputed) else (where, published, recomputed)


# ------------------------------------------------------------------------------------------- CSV


def compare_csv(published: str, recomputed: str) -> tuple[str, Any, Any] | None:
    rows_a = list(csv.reader(io.StringIO(published)))
    rows_b = list(csv.reader(io.StringIO(recomputed)))
    header = rows_b[0] if rows_b else []
    if not rows_a or rows_a[0] != header:
        return "header", rows_a[0] if rows_a else [], header
    for index, (a, b) in enumerate(zip(rows_a[1:], rows_b[1:], strict=False), start=1):
        label = " / ".join(b[header.index(k)] for k in ("dataset_label", "cell_label", "quantizer_label")
                           if k in header and header.index(k) < len(b))  # fmt: skip
        for column, (x, y) in enumerate(zip(a, b, strict=False)):
            if not same_text(x, y):
                return f"row {index} ({label}) column {header[column]}", x, y
        if len(a) != len(b):
            return f"row {index} ({label}) number of cells", len(a), len(b)
    if len(rows_a) != len(rows_b):
        return "number of rows", len(rows_a) - 1, len(rows_b) - 1
    return None


# -------------------------------------------------------------------------------------- Markdown

_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _md_cells(line: str) -> list[str]:
    return [cell.strip() for cell in _CELL_SPLIT.split(line.strip())[1:-1]]


def compare_markdown(published: str, recomputed: str) -> tuple[str, Any, Any] | None:
    """Line by line; a table line cell by cell, named by its heading, row and column header."""
    lines_a, lines_b = published.splitlines(), recomputed.splitlines()
    heading, header, row = "", list[str](), 0
    for number, (a, b) in enumerate(zip(lines_a, lines_b, strict=False), start=1):
        if b.startswith("#"):
            heading = b.lstrip("#").strip()
        if b.startswith("|"):
            cells_b = _md_cells(b)
            if not header:
                header, row = cells_b, 0
            elif not set("".join(cells_b)) <= set("-: "):
                row += 1
            cells_a = _md_cells(a) if a.startswith("|") else [a]
            for column, (x, y) in enumerate(zip(cells_a, cells_b, strict=False)):
                if not same_text(x, y):
                    name = header[column] if column < len(header) else str(column)
                    return f"line {number} (table under '{heading}', row {row}, column '{name}')", x, y
            if len(cells_a) != len(cells_b):
                return f"line {number} (table under '{heading}', row {row}) number of cells", a, b
            continue
        header = []
        if a != b:
            return f"line {number} (under '{heading}')", a, b
    if len(lines_a) != len(lines_b):
        return "number of lines", len(lines_a), len(lines_b)
    return None


# ------------------------------------------------------------------------------------------ HTML


class _Tokens(HTMLParser):
    """The page as (location, token) pairs: tags with their attributes, and text in its table cell."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[tuple[str, str]] = []
        self.heading = ""
        self._in_heading = False
        self.table = 0
        self.header: list[str] = []
        self.row = -1
        self.column = -1
        self.in_head = False
        self._cell_text = ""

    def where(self) -> str:
        if self.row >= 0 and self.column >= 0:
            name = self.header[self.column] if self.column < len(self.header) else str(self.column)
            part = "header" if self.in_head else f"row {self.row}"
            return f"table {self.table} under '{self.heading}', {part}, column '{name}'"
        return f"under '{self.heading}'"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "h3"):
            self._in_heading, self.heading = True, ""
        elif tag == "table":
            self.table += 1
            self.header, self.row = [], -1
        elif tag == "thead":
            self.in_head = True
        elif tag == "tbody":
            self.in_head = False
        elif tag == "tr":
            self.row += 0 if self.in_head else 1
            self.column = -1
        elif tag in ("td", "th"):
            self.column += 1
            self._cell_text = ""
        # An embedded plot is drawn by matplotlib, not computed from records: its bytes are not compared.
        kept = [(k, "data:(plot)" if k == "src" and (v or "").startswith("data:image/") else v) for k, v in attrs]
        self.tokens.append((self.where(), f"<{tag} " + " ".join(f'{k}="{v}"' for k, v in kept) + ">"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3"):
            self._in_heading = False
        elif tag in ("td", "th") and self.in_head:
            self.header.append(self._cell_text.strip())
        elif tag in ("table",):
            self.row = self.column = -1
        self.tokens.append((self.where(), f"</{tag}>"))

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self.heading += data
        self._cell_text += data
        if data.strip():
            self.tokens.append((self.where(), data.strip()))


def _html_tokens(text: str) -> list[tuple[str, str]]:
    parser = _Tokens()
    parser.feed(text)
    parser.close()
    return parser.tokens


def compare_html(published: str, recomputed: str) -> tuple[str, Any, Any] | None:
    tokens_a, tokens_b = _html_tokens(published), _html_tokens(recomputed)
    for (_, a), (where, b) in zip(tokens_a, tokens_b, strict=False):
        if not same_text(a, b):
            if a.startswith("<") and b.startswith("<"):
                numbers_a, numbers_b = re.findall(r'"([^"]*)"', a), re.findall(r'"([^"]*)"', b)
                if len(numbers_a) == len(numbers_b) and all(map(same_text, numbers_a, numbers_b)) and \
                        re.sub(r'"[^"]*"', "", a) == re.sub(r'"[^"]*"', "", b):
                    continue
            return where, a, b
    if len(tokens_a) != len(tokens_b):
        return "number of elements", len(tokens_a), len(tokens_b)
    return None


COMPARERS = {
    "leaderboard.md": compare_markdown,
    "leaderboard.csv": compare_csv,
    "leaderboard.html": compare_html,
}


def compare_folders(published: Path, rebuilt: Path) -> list[Mismatch]:
    """The first mismatch of each published format against the rebuild (empty: all agree)."""
    found: list[Mismatch] = []
    for name, comparer in COMPARERS.items():
        path = published / name
        if not path.is_file():
            continue  # reported by the hash check
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            found.append(Mismatch(name, "(whole file)", f"unreadable: {exc}", "text"))
            continue
        expected = (rebuilt / name).read_text(encoding="utf-8")
        difference = None if text == expected else comparer(text, expected)
        if difference:
            found.append(Mismatch(name, *difference))
    try:
        document = json.loads((published / "leaderboard.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        found.append(Mismatch("leaderboard.json", "(whole file)", f"unreadable: {exc}", "JSON"))
    else:
        difference = compare_json(document, json.loads((rebuilt / "leaderboard.json").read_text(encoding="utf-8")))
        if difference:
            found.append(Mismatch("leaderboard.json", *difference))
    return found
