"""A browsable static site of a run or a merge: index, one page per dataset, one per configuration.

Built from the folder's ``leaderboard.json`` (every table it holds, whatever their names), its
plots, its store (seeds, training curves, provenance) and, after a merge, ``merge.json``
(contributors, origins, records left apart). Pages:

- ``index.html``: the datasets with their primary metric and configurations, the contributor
  profiles (who, which machine, how many records), the provenance, the downloads;
- ``datasets/<slug>.html``: every table of the leaderboard restricted to the dataset, its plots,
  a link per configuration;
- ``configs/<slug>.html``: one (dataset, cell, quantizer): its seeds, the rows of any other
  table naming it (a selection grid, when the leaderboard has one), the dataset's training curves
  plot (the one the leaderboard drew, :mod:`qbench.leaderboard.render.plots`: the site draws
  nothing itself), each seed's training curve as a per-epoch table, provenance and origins (of
  the first ``MAX_SEEDS_DETAILED`` seeds); ``configs/<slug>.json`` is its records, as stored.

Every text is escaped. The pages load nothing from the network and have no inline script or
style: ``assets/site.js`` (sorting) and ``assets/site.css`` are files, and the policy is
``default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'``. The output depends
only on the folder's content, so ``qbench validate`` can rebuild it and compare.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterator
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from qbench import record as R
from qbench.leaderboard.compute.formatting import fmt_value
from qbench.leaderboard.compute.frame import GROUP_KEY
from qbench.leaderboard.render.display import Column, DisplayTable
from qbench.leaderboard.render.html import html_table, sort_script
from qbench.leaderboard.render.plots import curves_stem, slug
from qbench.record import from_json
from qbench.store import STORE_FILENAME

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; "
       "form-action 'none'")  # fmt: skip
SITE_FILES = ("index.html",)
#: Columns of the runs table shown on a configuration page (the values follow).
RUN_KEYS = ("case_id", "seed", "status", "error", "record_sha256")
#: Seeds of a configuration whose curves and provenance are detailed on its page (all are listed).
MAX_SEEDS_DETAILED = 20


def page_slug(label: str) -> str:
    """A file name for a label: readable part plus a short hash, so that distinct labels never collide."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()[:60] or "x"
    return f"{readable}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"


def config_label(row: dict[str, Any]) -> str:
    return " / ".join(str(row.get(k)) for k in GROUP_KEY)


def _rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(section["columns"], row, strict=True)) for row in section["rows"]]


def _tables(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every split table of the leaderboard (columns + rows), by name, the runs last."""
    found = {k: v for k, v in document.items()
             if isinstance(v, dict) and isinstance(v.get("columns"), list)
             and isinstance(v.get("rows"), list)}  # fmt: skip
    return dict(sorted(found.items(), key=lambda item: (item[0] == "runs", item[0])))


def _column(title: str, values: list[Any]) -> Column:
    """One column of a site table: numbers formatted and sortable by value, everything else as text."""
    kinds = set(map(type, values))
    if kinds and kinds <= {int, float} and all(map(math.isfinite, values)):  # a column of plain numbers
        return Column(title, list(map(fmt_value, values)), numeric=True, sort_values=list(map(repr, values)))
    present = [v for v in values if v is not None]
    numeric = bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    cells, keys = [], []
    # A merged site writes millions of cells: the exact JSON types first (plain ints and floats,
    # then strings); html_table escapes the text columns, remembering the labels that repeat.
    for value in values:
        kind = type(value)
        if kind is float and math.isfinite(value) or kind is int:
            cells.append(fmt_value(value))
            keys.append(repr(value))
        elif kind is str:
            cells.append(value)
            keys.append("" if numeric else None)
        elif value is None or isinstance(value, (bool, str)):
            cells.append("" if value is None else str(value))
            keys.append("" if numeric else None)
        elif isinstance(value, (int, float)):  # a non-finite float, or an int or float subclass
            finite = not isinstance(value, float) or math.isfinite(value)
            cells.append(fmt_value(value) if finite else str(value))
            keys.append(repr(value) if finite else "")
        else:
            cells.append(json.dumps(value, ensure_ascii=False))
            keys.append("" if numeric else None)
    return Column(title, cells, numeric=numeric, sort_values=keys)  # type: ignore[arg-type]


def rows_table(columns: list[str], rows: list[dict[str, Any]], links: dict[int, str] | None = None,
               css: str = "sortable") -> str:  # fmt: skip
    """Rows of a leaderboard table (dicts by column) in the leaderboard's own sortable HTML table,
    with a ``details`` column linking each row in ``links`` to its page."""
    table = [_column(c, [r.get(c) for r in rows]) for c in columns]
    if links:
        where = [links.get(i) for i in range(len(rows))]
        table.append(Column("details", ["page" if w else "" for w in where], links=where))
    return html_table(DisplayTable(table), css=css)


def _page(title: str, depth: int, body: list[str]) -> str:
    up = "../" * depth
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<link rel="stylesheet" href="{up}assets/site.css">',
        f"<title>{escape(title)}</title></head><body>",
        f'<nav><a href="{up}index.html">index</a><a href="{up}leaderboard.csv" download>leaderboard.csv</a>'
        f'<a href="{up}leaderboard.json" download>leaderboard.json</a></nav>',
        f"<h1>{escape(title)}</h1>",
        *body,
        f'<script src="{up}assets/site.js"></script></body></html>',
        "",
    ])  # fmt: skip


def _dl(mapping: dict[str, Any]) -> str:
    items = []
    for key, value in mapping.items():
        text = value if isinstance(value, str) else ", ".join(map(str, value)) if isinstance(value, list) else \
            json.dumps(value, sort_keys=True, ensure_ascii=False)
        items.append(f"<dt>{escape(str(key))}</dt><dd>{escape(text)}</dd>")
    return "<dl>" + "".join(items) + "</dl>"


def curve_table(curve: list[dict[str, Any]]) -> str:
    """One seed's training curve as a compact table, a row per epoch and a column per value recorded.

    Numbers, not a drawing: the one curve renderer is the leaderboard's plot of the dataset
    (:mod:`qbench.leaderboard.render.plots`, linked above the tables), and a merged site details
    thousands of seeds, which matplotlib would take tens of seconds to draw.
    """
    points = [point for point in curve if isinstance(point, dict)]
    if not points:
        return '<p class="muted">no training curve recorded</p>'
    keys = sorted({key for point in points for key in point} - {"epoch"})
    rows = [{"epoch": point.get("epoch", index + 1), **point} for index, point in enumerate(points)]
    return rows_table(["epoch", *keys], rows, css="sortable curve")


class _Records:
    """Records of the store by case id, read a configuration at a time (a merge may hold 100,000)."""

    def __init__(self, folder: Path) -> None:
        from qbench.store import connect_read_only

        path = folder / STORE_FILENAME
        self._db = connect_read_only(path) if path.is_file() else None

    def texts(self, case_ids: list[str]) -> list[str]:
        """The stored texts (the records' canonical JSON), in the order of ``case_ids``."""
        if self._db is None:
            return []
        found: dict[str, str] = {}
        for start in range(0, len(case_ids), 500):
            chunk = case_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for case_id, text in self._db.execute(f"SELECT case_id, record FROM records WHERE case_id IN ({marks})",
                                                  chunk):  # fmt: skip
                found[case_id] = text
        return [found[c] for c in case_ids if c in found]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _read_json(path: Path) -> dict[str, Any]:
    from qbench.errors import UsageError

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: not a JSON object")
    return value


def _check_merge_summary(path: Path, merge: dict[str, Any]) -> None:
    """The parts of merge.json the pages read, of the types they read them as (UsageError if not)."""
    from qbench.errors import UsageError

    def rows(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(item, dict) for item in value)

    origins = merge.get("origins") or {}
    if not (rows(merge.get("inputs") or []) and rows(merge.get("excluded") or []) and isinstance(origins, dict)
            and all(rows(value) for value in origins.values())):  # fmt: skip
        raise UsageError(f"{path}: not a merge summary qbench wrote (inputs, excluded and origins must be lists of "
                         "objects); merge the inputs again")  # fmt: skip


def site_pages(folder: Path) -> Iterator[tuple[str, bytes]]:
    """Every file of the site of ``folder`` (relative path, bytes), computed one at a time, nothing written."""
    from qbench.errors import UsageError
    from qbench.leaderboard.audit.sources import LEADERBOARD_JSON, read_leaderboard_json

    folder = Path(folder)
    if not (folder / LEADERBOARD_JSON).is_file():
        raise UsageError(f"{folder}: no {LEADERBOARD_JSON}; give a run folder or a merged folder")
    document = read_leaderboard_json(folder / LEADERBOARD_JSON, strict=True)
    merge = _read_json(folder / "merge.json") if (folder / "merge.json").is_file() else {}
    _check_merge_summary(folder / "merge.json", merge)
    tables = _tables(document)
    title = str(document.get("title", "qbench"))
    datasets: dict[str, Any] = document.get("datasets") or {}
    runs = _rows(tables["runs"]) if "runs" in tables else []
    value_columns = [c for c in tables.get("runs", {}).get("columns", []) if c not in RUN_KEYS and c not in GROUP_KEY
                     and c not in ("matrix", "quantizer", "cell", "dataset")]  # fmt: skip
    configs: dict[str, dict[str, Any]] = {}
    seeds_of: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        label = config_label(run)
        configs.setdefault(label, {k: run.get(k) for k in GROUP_KEY})
        seeds_of.setdefault(label, []).append(run)
    # Rows of the other tables that name a configuration (a selection grid, say), grouped once.
    named_rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name, section in tables.items():
        if name in ("runs", "aggregates", "paired") or not all(k in section["columns"] for k in GROUP_KEY):
            continue
        for row in _rows(section):
            named_rows.setdefault(config_label(row), {}).setdefault(name, []).append(row)
    origins: dict[str, list[dict[str, str]]] = merge.get("origins") or {}

    # ---- index
    body = ["<h2>Datasets</h2>"]
    rows = []
    for label, info in sorted(datasets.items()):
        count = sum(1 for c in configs.values() if c["dataset_label"] == label)
        rows.append({"dataset": label, "primary metric": info.get("primary_metric"),
                     "direction": info.get("direction"), "configurations": count,
                     "runs": sum(1 for r in runs if r.get("dataset_label") == label)})  # fmt: skip
    links = {i: f"datasets/{page_slug(r['dataset'])}.html" for i, r in enumerate(rows)}
    body.append(rows_table(["dataset", "primary metric", "direction", "configurations", "runs"], rows, links))
    body.append("<h2>Profiles</h2>")
    inputs = merge.get("inputs") or []
    if inputs:
        body.append("<p>Contributors and machines of the merged results.</p>")
        body.append(rows_table(["by", "machine", "source", "records", "sha256"], inputs))
    else:
        body.append('<p class="muted">One run (not a merge): its machine is in the provenance below.</p>')
    excluded = merge.get("excluded") or []
    if excluded:
        body.append("<h2>Not compared</h2><p>Records of the inputs left out of the leaderboard, with the reason.</p>")
        body.append(rows_table(["case_id", "by", "machine", "source", "reason"], excluded))
    body.append("<h2>Provenance</h2>" + _dl(document.get("provenance") or {}))
    body.append('<h2>Downloads</h2><ul><li><a href="leaderboard.csv" download>leaderboard.csv</a></li>'
                '<li><a href="leaderboard.json" download>leaderboard.json</a></li>'
                '<li><a href="leaderboard.md">leaderboard.md</a></li></ul>')  # fmt: skip
    yield "index.html", _page(title, 0, body).encode()

    # ---- one page per dataset
    plots = sorted(name for name in (document.get("files") or {})
                   if name.startswith("plots/") and name.endswith(".svg"))
    for label, info in sorted(datasets.items()):
        body = [f"<p>Ranked by {escape(str(info.get('primary_metric')))} "
                f"({'lower' if info.get('direction') == 'min' else 'higher'} is better).</p>"]  # fmt: skip
        for name, section in tables.items():
            if name == "runs" or "dataset_label" not in section["columns"]:
                continue
            rows = [r for r in _rows(section) if r.get("dataset_label") == label]
            if not rows:
                continue
            links = {i: f"../configs/{page_slug(config_label(r))}.html" for i, r in enumerate(rows)
                     if all(k in r for k in GROUP_KEY)}  # fmt: skip
            columns = [c for c in section["columns"] if c not in ("dataset_label", "case_ids")]
            body.append(f"<h2>{escape(name)}</h2>" + rows_table(columns, rows, links))
        prefix = f"plots/{slug(label)}-"
        figures = [p for p in plots if p.startswith(prefix)]
        if figures:
            body.append("<h2>Plots</h2>" + "".join(
                f'<figure><img src="../{escape(p)}" alt="{escape(Path(p).stem)}"><figcaption>'
                f"{escape(Path(p).stem)}</figcaption></figure>" for p in figures))  # fmt: skip
        yield f"datasets/{page_slug(label)}.html", _page(f"{title}: {label}", 1, body).encode()

    # ---- one page per configuration
    records = _Records(folder)
    for label, key in sorted(configs.items()):
        seeds = seeds_of[label]
        body = [_dl({"dataset": key["dataset_label"], "cell": key["cell_label"], "quantizer": key["quantizer_label"]}),
                f'<p><a href="../datasets/{page_slug(str(key["dataset_label"]))}.html">back to the dataset</a> · '
                f'<a href="{page_slug(label)}.json" download>records (JSON)</a></p>', "<h2>Seeds</h2>"]  # fmt: skip
        present = [c for c in value_columns if any(r.get(c) is not None for r in seeds)]
        body.append(rows_table(["seed", "status", *present, "case_id", "error"], seeds))
        for name, rows in named_rows.get(label, {}).items():  # e.g. a selection grid: its every grid point
            body.append(f"<h2>{escape(name)}</h2>" + rows_table(list(tables[name]["columns"]), rows))
        body.append("<h2>Training curves</h2>")
        plot = f"plots/{curves_stem(str(key['dataset_label']))}.svg"
        if plot in plots:
            line = f"{key['quantizer_label']} / {key['cell_label']}"  # the plot's legend names it so
            body.append(f'<figure><img src="../{escape(plot)}" alt="training curves of the dataset"><figcaption>'
                        f"every configuration of the dataset, mean over seeds; this one is {escape(line)}"
                        "</figcaption></figure>")  # fmt: skip
        texts = records.texts([str(r.get("case_id")) for r in seeds])
        # A merge may give a configuration hundreds of seeds: the first few are detailed, every
        # one is in the seeds table above and in the JSON download.
        mine = [from_json(text) for text in texts[:MAX_SEEDS_DETAILED]]
        if len(texts) > MAX_SEEDS_DETAILED:
            body.append(f'<p class="muted">{len(texts)} seeds: the curves and provenance of the first '
                        f"{MAX_SEEDS_DETAILED} are shown; every record is in the JSON download.</p>")  # fmt: skip
        for record in mine:
            body.append(f"<h3>seed {escape(str(record.get(R.SEED)))}</h3>" + curve_table(record.get(R.CURVE) or []))
        if not mine:
            body.append('<p class="muted">no store beside the leaderboard: curves not available</p>')
        body.append("<h2>Provenance</h2>")
        for record in mine:
            facts = dict(record.get(R.PROVENANCE) or {})
            facts["train"] = record.get(R.TRAIN)
            for origin in origins.get(str(record.get(R.CASE_ID)), []):
                facts[f"contributed by ({origin.get('source')})"] = f"{origin.get('by')} on {origin.get('machine')}"
            body.append(f"<h3>seed {escape(str(record.get(R.SEED)))} ({escape(str(record.get(R.CASE_ID)))})</h3>"
                        + _dl(facts))  # fmt: skip
        yield f"configs/{page_slug(label)}.html", _page(f"{title}: {label}", 1, body).encode()
        # the stored texts as they are: the download is byte for byte what the store holds
        yield f"configs/{page_slug(label)}.json", ("[\n" + ",\n".join(texts) + "\n]\n").encode()
    records.close()
    yield "assets/site.js", sort_script().encode("utf-8")  # the leaderboard page's own script, as a file
    yield "assets/site.css", resources.files("qbench.publish").joinpath("assets", "site.css").read_bytes()


#: What a site writes into the folder it is built from (the rest of that folder is the run's or the merge's).
SITE_AREA = ("index.html", "datasets", "configs", "assets")


def write_site(folder: Path, out: Path) -> list[Path]:
    """Write the site of ``folder`` into ``out`` (the leaderboard files are copied when ``out`` is elsewhere).

    Writes without looking at what is there: :func:`publish_site` is the command's checked form.
    """
    pages = site_pages(Path(folder))
    first = next(pages)  # usage errors (no leaderboard here) before anything is written
    copied, written = _write(Path(folder), Path(out), itertools.chain([first], pages))
    return written


def _write(folder: Path, out: Path, pages: Iterator[tuple[str, bytes]]) -> tuple[list[Path], list[Path]]:
    """(the leaderboard files copied, the pages written)."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    copied, written = [], []
    if folder.resolve() != out.resolve():
        from qbench.leaderboard.audit.sources import read_leaderboard_json

        listed = list(read_leaderboard_json(folder / "leaderboard.json").get("files") or {})
        for name in ["leaderboard.json", *listed, STORE_FILENAME, "run.json", "merge.json"]:
            if (folder / name).is_file() and ".." not in Path(name).parts and not Path(name).is_absolute():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / name, out / name)
                copied.append(out / name)
    for name, data in pages:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return copied, written


def publish_site(folder: Path, out: Path, replace: bool = False) -> list[Path]:
    """``qbench site``: :func:`write_site` into a folder it may write (new, empty, an earlier site's,
    or the folder itself), listing what it wrote in ``qbench-files.json``; never over a file it did
    not write unless ``replace``."""
    from qbench.errors import UsageError
    from qbench.outdir import claim_output, prepare_out_dir, shown

    folder, out = Path(folder), Path(out)
    pages = site_pages(folder)
    first = next(pages)  # usage errors (no leaderboard here) before anything is looked at or written
    in_place = out.is_dir() and folder.resolve() == out.resolve()
    claim = claim_output(out, "site", replace, area=SITE_AREA if in_place else None,
                         accepted=("site", "merge") if in_place else ("site",))  # fmt: skip
    prepare_out_dir(out)
    try:
        copied, written = _write(folder, out, itertools.chain([first], pages))
        claim.finish(copied + written)
    except OSError as exc:
        raise UsageError(f"--out {shown(out)}: cannot write the site there ({exc.strerror or exc}); "
                         "give --out a folder you can write to") from None  # fmt: skip
    return written


def compare_site(folder: Path) -> str | None:
    """The first site file that is not what the folder's content gives (None: all agree or no site)."""
    if not (folder / "index.html").is_file() or not (folder / "assets" / "site.js").is_file():
        return None
    for name, data in site_pages(folder):
        path = folder / name
        if not path.is_file():
            return f"site: {name} is missing"
        published = path.read_bytes()
        if published != data:
            lines_a, lines_b = published.decode("utf-8", "replace").splitlines(), data.decode().splitlines()
            line = next((i for i, (a, b) in enumerate(zip(lines_a, lines_b, strict=False), 1) if a != b),
                        min(len(lines_a), len(lines_b)) + 1)  # fmt: skip
            return f"site: {name} line {line} is not what the records and leaderboard give (edited?)"
    return None
