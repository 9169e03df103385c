"""A store of many records shaped like real ones: the committed quickstart's records, replicated.

Synthetic records (``tests/synthetic.py``) are lighter than what ``qbench run`` stores: a real
record carries a training curve, the shift-add and energy backends' columns (some of them text),
descriptions, provenance and, with the tuned protocol, a grid point in its ``[train]`` table.
:func:`write_store` copies every record of ``results/quickstart@cpu-2core/qbench.sqlite`` as many
times as needed, each copy with a new case id and seed and its numeric metrics (and curve values)
jittered by about 1%, and stores the quickstart's protocol beside them, so that the leaderboard
runs the tuned protocol over them as it does for the committed folder.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "results" / "quickstart@cpu-2core" / "qbench.sqlite"


def source_records(source: Path = SOURCE) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The source store's records (oldest first) and its protocol meta rows."""
    db = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        records = [json.loads(text) for (text,) in db.execute("SELECT record FROM records ORDER BY stored, case_id")]
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'protocol:%'"))
    finally:
        db.close()
    return records, meta


def _jitter(value: Any, rnd: random.Random) -> Any:
    if isinstance(value, float):
        return value * (1.0 + 0.01 * rnd.gauss(0.0, 1.0))
    return value


def replicate(records: list[dict[str, Any]], count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` records: copy ``k`` of the sources has ids ``<id>-r<k>`` and seeds shifted by
    ``k * (largest seed + 1)``; its direction columns and curve values are jittered."""
    rnd = random.Random(seed)
    stride = max(int(r.get("seed", 0)) for r in records) + 1
    made: list[dict[str, Any]] = []
    copy = 0
    while len(made) < count:
        for source in records:
            if len(made) == count:
                break
            record = json.loads(json.dumps(source))
            record["case_id"] = f"{source['case_id']}-r{copy}"
            record["seed"] = int(source["seed"]) + copy * stride
            for column in record.get("directions", {}):
                if column in record:
                    record[column] = _jitter(record[column], rnd)
            for point in record.get("curve") or []:
                for key, value in point.items():
                    if key != "epoch":
                        point[key] = _jitter(value, rnd)
            made.append(record)
        copy += 1
    return made


def write_store(path: Path, count: int, seed: int = 0) -> Path:
    """A store of ``count`` replicated records at ``path``, written as ``qbench run`` writes them
    (:meth:`qbench.store.Store.put_many`: each record with its row of the column table), in
    transactions of 5,000 records."""
    from qbench.store import Store

    records, meta = source_records()
    made = replicate(records, count, seed)
    with Store(path) as store:
        for start in range(0, len(made), 5000):
            store.put_many(made[start : start + 5000])
        for key, value in meta.items():
            store.set_meta(key, value)
    return path
