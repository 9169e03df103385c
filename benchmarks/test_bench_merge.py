"""Scale: merging 50 bundles of 2,000 records each (issue 16).

Target: under 30 s and under 1 GiB peak memory on 2 cores. Each bundle is what ``qbench pack``
writes for a folder of synthetic records (``tests/synthetic.py``: 2,000 records of
one contributor, tables without plots); the 50 bundles hold 100,000 distinct records over the
same 400 configurations, so the merged leaderboard has 250 seeds per configuration.

The merge runs in a fresh process pinned to two cores (``taskset -c 0,1`` where available):
every bundle unpacked, its manifest checked and what the merge uses of it checked
(:func:`qbench.leaderboard.audit.validate.validate_merge_input`: file hashes, records, run values against
the records, aggregates and paired differences recomputed in plain Python; not the re-rendering of
its Markdown/CSV/HTML, which is ``qbench validate``'s full check), the records merged, the store,
the leaderboards (with plots) and the site written. Measured: wall
time, CPU time and peak resident memory; the reference in the same run is the rebuild of the
merged store alone (``qbench leaderboard``), so the ratio says what the validation and the site
cost on top of writing the leaderboard.

Memory: what must stay under 1 GiB is the most the merge's processes hold at one time. The
validating workers (two, one per core) live only while the inputs are read; the merging process
reaches its own peak later, building the merged leaderboard and the site. So the peak is the
larger of (the merging process's peak while the inputs are read + two workers' peak) and the
merging process's peak over the whole merge (``VmHWM``): an upper bound, not a sampled guess.

Run: ``.venv/bin/pytest benchmarks/test_bench_merge.py -s`` (a few minutes; set
``QBENCH_BENCH_BUNDLES`` / ``QBENCH_BENCH_BUNDLE_RECORDS`` to change the size).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

BUNDLES = int(os.environ.get("QBENCH_BENCH_BUNDLES", "50"))
PER_BUNDLE = int(os.environ.get("QBENCH_BENCH_BUNDLE_RECORDS", "2000"))
SECONDS_LIMIT = 30.0
MEMORY_LIMIT = 1 << 30

RUN_SCRIPT = """
import json, os, resource, sys, time
from pathlib import Path
start, cpu = time.perf_counter(), time.process_time()
def peak_bytes():
    status = Path("/proc/self/status").read_text()
    return 1024 * int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
reading = {}
if sys.argv[1] == "merge":
    from qbench.publish import merge as merging
    read_sources = merging.read_sources
    def measured(*args):
        try:
            return read_sources(*args)
        finally:
            reading["peak_rss_bytes"] = peak_bytes()
            # the validating workers are done here; a child forked later by the leaderboard shares
            # the merging process's pages, which its own peak would count a second time
            reading["workers_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    merging.read_sources = measured
    merging.merge([Path(p) for p in sys.argv[3:]], Path(sys.argv[2]), "scale")
else:
    from qbench.leaderboard import rebuild_from_store
    rebuild_from_store(Path(sys.argv[3]), Path(sys.argv[2]), "scale")
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                  "children_cpu_seconds": children.ru_utime + children.ru_stime,
                  "children_peak_rss_bytes": children.ru_maxrss * 1024, "peak_rss_bytes": peak_bytes(),
                  "reading_peak_rss_bytes": reading.get("peak_rss_bytes", 0),
                  "workers_peak_rss_bytes": reading.get("workers_peak_rss_bytes", 0),
                  "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}))
"""


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from qbench.leaderboard import rebuild_from_store
    from qbench.publish.bundle import pack
    from qbench.publish.merge import write_store
    from tests.synthetic import make_many

    root = tmp_path_factory.mktemp("bundles")
    started = time.perf_counter()
    base = make_many(PER_BUNDLE)
    paths = []
    for k in range(BUNDLES):
        folder = root / f"run{k:02d}"
        folder.mkdir()
        records = {}
        for i, record in enumerate(base):
            copy = dict(record, case_id=f"b{k:02d}-{i:05d}", seed=k * 10 + record["seed"])
            records[copy["case_id"]] = copy
        write_store(records, folder / "qbench.sqlite")
        rebuild_from_store(folder / "qbench.sqlite", folder, "synthetic", plots=False)
        paths.append(pack(folder, root / f"run{k:02d}.qbench.tar.gz", by=f"contributor {k}", machine=f"m{k}"))
        shutil.rmtree(folder)
    print(f"\n{BUNDLES} bundles of {PER_BUNDLE} records written in {time.perf_counter() - started:.1f} s")
    return paths


def _run(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    pin = ["taskset", "-c", "0,1"] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []
    done = subprocess.run([*pin, sys.executable, "-c", RUN_SCRIPT, *args], capture_output=True, text=True, env=env,
                          check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_merge_50_bundles_of_2000_records(bundles, tmp_path):
    out = tmp_path / "site"
    merged = _run(["merge", str(out), *map(str, bundles)])
    summary = json.loads((out / "merge.json").read_text())
    assert summary["records"] == BUNDLES * PER_BUNDLE and summary["excluded"] == []
    reference = _run(["rebuild", str(tmp_path / "rebuilt"), str(out / "qbench.sqlite")])
    # read_sources validates 4 inputs or more in a pool of one worker per core it may use
    workers = min(BUNDLES, merged["cores"] or 1) if BUNDLES >= 4 and (merged["cores"] or 1) >= 2 else 0
    peak = max(merged["reading_peak_rss_bytes"] + workers * merged["workers_peak_rss_bytes"],
               merged["peak_rss_bytes"])  # fmt: skip
    table = (f"\nmerge of {BUNDLES} bundles x {PER_BUNDLE} records: {merged['seconds']:.1f} s wall, "
             f"{merged['cpu_seconds']:.1f} s CPU (+ {merged['children_cpu_seconds']:.1f} s in child processes: "
             f"the validating workers, the leaderboard's), peak memory of its processes at one time at most "
             f"{peak / 2**20:.0f} MiB (merging "
             f"process {merged['reading_peak_rss_bytes'] / 2**20:.0f} MiB while reading + {workers} workers x "
             f"{merged['workers_peak_rss_bytes'] / 2**20:.0f} MiB; {merged['peak_rss_bytes'] / 2**20:.0f} MiB "
             f"over the whole merge)\n"
             f"reference, rebuilding the merged store's leaderboard alone: {reference['seconds']:.1f} s wall, "
             f"peak RSS {reference['peak_rss_bytes'] / 2**20:.0f} MiB; ratio merge / rebuild "
             f"{merged['seconds'] / reference['seconds']:.2f}")  # fmt: skip
    print(table)
    assert merged["seconds"] < SECONDS_LIMIT, table
    assert peak < MEMORY_LIMIT, table
