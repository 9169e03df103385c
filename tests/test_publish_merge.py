"""Bundles (``qbench pack``), merged leaderboards (``qbench merge``) and the site (``qbench site``), issue 16.

Three contributors ran the same small matrix (see the ``published_runs`` fixture): ``a`` and
``b`` with different seeds, ``c`` with another learning rate.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from qbench.cli import main
from qbench.leaderboard.render.plots import curves_stem

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundles(published_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    who = {"a": ("alice", "laptop <x>"), "b": ("bob", "cluster node 7"), "c": ("carol", "desktop")}
    paths = {}
    for name, (by, machine) in who.items():
        out = root / (f"{name}.zip" if name == "b" else f"{name}.qbench.tar.gz")
        assert main(["pack", str(published_runs[name]), "-o", str(out), "--by", by, "--machine", machine]) == 0
        paths[name] = out
    return paths


def entries(path: Path) -> dict[str, bytes]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return {n: archive.read(n) for n in archive.namelist()}
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ pack


def test_a_bundle_holds_the_run_its_environment_and_a_manifest(bundles, published_runs):
    files = entries(bundles["a"])
    for name in ("qbench.sqlite", "run.json", "matrix.toml", "leaderboard.json", "leaderboard.md", "leaderboard.csv",
                 "leaderboard.html", "environment.json", "contributor.json", "manifest.json"):  # fmt: skip
        assert name in files, name
    assert any(name.startswith("plots/") for name in files)
    assert json.loads(files["contributor.json"]) == {"by": "alice", "machine": "laptop <x>"}
    environment = json.loads(files["environment.json"])
    assert {"python", "torch", "platform", "cpu", "qbench", "plugin_distributions_installed"} <= set(environment)
    assert environment["plugin_distributions_in_records"] == {"qbench": environment["qbench"]}
    manifest = json.loads(files["manifest.json"])
    assert manifest["format"] == "qbench-bundle/1" and set(manifest["files"]) == set(files) - {"manifest.json"}
    assert files["qbench.sqlite"] == (published_runs["a"] / "qbench.sqlite").read_bytes()


def test_packing_twice_gives_the_same_bytes(published_runs, bundles, tmp_path):
    again = tmp_path / "again.qbench.tar.gz"
    assert main(["pack", str(published_runs["a"]), "-o", str(again), "--by", "alice", "--machine", "laptop <x>"]) == 0
    assert again.read_bytes() == bundles["a"].read_bytes()


def test_pack_defaults_the_contributor_from_the_environment(published_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("QBENCH_CONTRIBUTOR", "erin")
    monkeypatch.setenv("QBENCH_MACHINE", "ci runner")
    out = tmp_path / "x.tgz"
    assert main(["pack", str(published_runs["b"]), "-o", str(out)]) == 0
    assert json.loads(entries(out)["contributor.json"]) == {"by": "erin", "machine": "ci runner"}


@pytest.mark.parametrize("name", ["a", "b"])
def test_validate_accepts_a_bundle(bundles, capsys, name):
    assert main(["validate", str(bundles[name])]) == 0
    out = capsys.readouterr().out
    assert "every published value recomputed" in out and "bundle by" in out


def rewrite_tar(source: Path, target: Path, change) -> None:
    files = change(entries(source))
    with tarfile.open(target, "w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_validate_catches_a_bundle_edited_after_packing(bundles, tmp_path, capsys):
    forged = tmp_path / "forged.tar.gz"
    rewrite_tar(bundles["a"], forged, lambda f: {**f, "contributor.json": b'{"by": "mallory", "machine": "x"}'})
    assert main(["validate", str(forged)]) == 1
    assert "bundle: contributor.json does not match its sha256 in manifest.json" in capsys.readouterr().out


def test_a_bundle_with_an_escaping_path_is_refused(bundles, tmp_path, capsys):
    evil = tmp_path / "evil.tar.gz"
    rewrite_tar(bundles["a"], evil, lambda f: {**f, "../outside.txt": b"x"})
    assert main(["validate", str(evil)]) == 4
    assert "is not a plain relative path" in capsys.readouterr().err
    assert not (tmp_path.parent / "outside.txt").exists()


@pytest.mark.parametrize("content", [b"", b"just text"])
def test_an_unreadable_bundle_is_a_usage_error(tmp_path, capsys, content):
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 4
    assert "not a readable bundle" in capsys.readouterr().err


def test_pack_usage_errors(tmp_path, capsys):
    assert main(["pack", str(tmp_path / "missing")]) == 4
    assert "not a run directory" in capsys.readouterr().err
    assert main(["pack", str(tmp_path)]) == 4
    assert "no qbench.sqlite here" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- merge


@pytest.fixture(scope="module")
def merged(bundles, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "site"
    assert main(["merge", str(bundles["a"]), str(bundles["b"]), str(bundles["c"]), "--out", str(out),
                 "--title", "two contributors"]) == 0  # fmt: skip
    return out


def test_two_contributors_merge_and_the_other_recipe_is_listed_apart(merged, published_runs):
    document = json.loads((merged / "leaderboard.json").read_text())
    columns = document["aggregates"]["columns"]
    n_ok = {row[columns.index("quantizer_label")]: row[columns.index("n_ok")] for row in document["aggregates"]["rows"]}
    assert n_ok == {"float": 5, "ternary": 5}  # seeds 0-2 from alice, 3-4 from bob
    summary = json.loads((merged / "merge.json").read_text())
    assert sorted((i["by"], i["machine"]) for i in summary["inputs"]) == [
        ("alice", "laptop <x>"), ("bob", "cluster node 7"), ("carol", "desktop")]
    assert len(summary["excluded"]) == 4
    assert all(e["by"] == "carol" and "training recipe differs" in e["reason"] and "lr 0.05, not" in e["reason"]
               for e in summary["excluded"])  # fmt: skip
    assert {o[0]["by"] for o in summary["origins"].values()} == {"alice", "bob"}
    assert len(summary["origins"]) == 10


def test_the_merged_site_validates(merged, capsys):
    assert main(["validate", str(merged)]) == 0
    assert "10 traced to stored records, every published value recomputed" in capsys.readouterr().out


def test_merging_in_any_order_gives_the_same_bytes(bundles, merged, tmp_path):
    order = [bundles["a"], bundles["b"], bundles["c"]]
    random.Random(16).shuffle(order)
    if order == [bundles["a"], bundles["b"], bundles["c"]]:
        order.reverse()
    out = tmp_path / "again"
    assert main(["merge", *map(str, order), "--out", str(out), "--title", "two contributors"]) == 0
    assert snapshot(out) == snapshot(merged)


def test_the_same_bundle_twice_under_two_names_is_one_set_of_records(bundles, tmp_path, capsys):
    copy = tmp_path / "copy.qbench.tar.gz"
    shutil.copyfile(bundles["a"], copy)
    assert main(["merge", str(bundles["a"]), str(copy), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "merge.json").read_text())
    assert summary["records"] == 6 and summary["excluded"] == []
    assert all(len(origins) == 2 for origins in summary["origins"].values())


def test_a_tampered_input_stops_the_merge(bundles, tmp_path, capsys):
    forged = tmp_path / "forged.tar.gz"

    def lower(files):
        document = json.loads(files["leaderboard.json"])
        columns = document["runs"]["columns"]
        document["runs"]["rows"][0][columns.index("test_bpc")] -= 0.5
        return {**files, "leaderboard.json": json.dumps(document).encode()}

    rewrite_tar(bundles["a"], forged, lower)
    assert main(["merge", str(forged), str(bundles["b"]), "--out", str(tmp_path / "out")]) == 4
    assert "does not validate, not merged" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _repacked(change, relist: bool = True):
    """``change`` applied to a bundle's files and the manifest's hashes made to agree with it (``relist``: and
    leaderboard.json's ``files`` too): a forger's bundle that only the checks of the content can catch."""
    import hashlib

    def apply(files):
        files = change(dict(files))
        if relist:
            document = json.loads(files["leaderboard.json"])
            document["files"] = {name: hashlib.sha256(files[name]).hexdigest() for name in document["files"]}
            files["leaderboard.json"] = json.dumps(document).encode()
        manifest = json.loads(files["manifest.json"])
        manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()
                             if name != "manifest.json"}  # fmt: skip
        return {**files, "manifest.json": json.dumps(manifest).encode()}

    return apply


def _edit_json(files, edit):
    document = json.loads(files["leaderboard.json"])
    edit(document)
    return {**files, "leaderboard.json": json.dumps(document).encode()}


def _swap_seed_values(document):
    """Swap test_bpc between seeds 0 and 1 of every method: every aggregate and paired difference stays the same."""
    runs = document["runs"]
    index = {name: runs["columns"].index(name) for name in ("quantizer_label", "seed", "test_bpc")}
    by_key = {(row[index["quantizer_label"]], row[index["seed"]]): row for row in runs["rows"]}
    for quantizer in {q for q, _ in by_key}:
        first, second = by_key[(quantizer, 0)], by_key[(quantizer, 1)]
        first[index["test_bpc"]], second[index["test_bpc"]] = second[index["test_bpc"]], first[index["test_bpc"]]


def _raise_an_aggregate(document):
    columns = document["aggregates"]["columns"]
    document["aggregates"]["rows"][0][columns.index("test_bpc_mean")] += 0.25


def _edit_a_record(files, tmp_path):
    import sqlite3

    path = tmp_path / "edited.sqlite"
    path.write_bytes(files["qbench.sqlite"])
    db = sqlite3.connect(path)
    case_id, text = db.execute("SELECT case_id, record FROM records ORDER BY case_id LIMIT 1").fetchone()
    record = json.loads(text)
    record["test_bpc"] -= 0.5
    db.execute("UPDATE records SET record = ? WHERE case_id = ?", (json.dumps(record, sort_keys=True), case_id))
    db.commit()
    db.close()
    return {**files, "qbench.sqlite": path.read_bytes()}


@pytest.mark.parametrize("tampering, message", [
    ("manifest", "leaderboard.md does not match its sha256 in manifest.json"),
    ("file hash", "files: leaderboard.md does not match its sha256"),
    ("run value", "test_bpc is"),
    ("aggregate", "test_bpc mean is"),
    ("record", "record_sha256 does not match the stored record"),
])  # fmt: skip
def test_merge_refuses_each_tampering_of_what_it_uses(bundles, tmp_path, capsys, tampering, message):
    """Merge checks less than validate (no re-rendering of an input's Markdown/CSV/HTML) but nothing it uses."""
    forged = tmp_path / "forged.tar.gz"
    changes = {
        "manifest": lambda f: {**f, "leaderboard.md": f["leaderboard.md"] + b"\nforged\n"},
        "file hash": _repacked(lambda f: {**f, "leaderboard.md": f["leaderboard.md"] + b"\nforged\n"}, relist=False),
        "run value": _repacked(lambda f: _edit_json(f, _swap_seed_values)),
        "aggregate": _repacked(lambda f: _edit_json(f, _raise_an_aggregate)),
        "record": _repacked(lambda f: _edit_a_record(f, tmp_path)),
    }
    rewrite_tar(bundles["a"], forged, changes[tampering])
    assert main(["merge", str(forged), str(bundles["b"]), "--out", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err
    assert "does not validate, not merged" in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_merge_says_what_it_checked_of_its_inputs(bundles, tmp_path, capsys):
    assert main(["merge", str(bundles["a"]), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "inputs checked: integrity" in out and "run qbench validate" in out


def test_merge_refuses_a_folder_holding_other_files(bundles, tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["merge", str(bundles["a"]), "--out", str(tmp_path)]) == 4
    assert "holds files qbench merge did not write (mine.txt)" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_merge_into_an_earlier_merge_replaces_only_what_that_merge_wrote(bundles, published_runs, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["merge", str(bundles["a"]), str(bundles["b"]), "--out", str(out)]) == 0
    assert main(["merge", str(bundles["a"]), "--out", str(out)]) == 0  # an earlier merge's folder: replaced
    listed = json.loads((out / "qbench-files.json").read_text())
    assert listed["written_by"] == "merge"
    assert set(snapshot(out)) == set(listed["files"]) | {"qbench-files.json"}, "the earlier merge's files were left"
    capsys.readouterr()
    assert main(["validate", str(out)]) == 0
    shutil.copytree(published_runs["c"], out / "run-c")  # a run folder put there since (issue 26: it was removed)
    before = snapshot(out)
    assert main(["merge", str(bundles["a"]), str(bundles["b"]), "--out", str(out)]) == 4
    assert "run-c/" in capsys.readouterr().err
    assert snapshot(out) == before, "a refused merge changed its --out"


# ------------------------------------------------------------------------------------------ site


def test_the_site_has_an_index_dataset_and_configuration_pages(merged):
    index = (merged / "index.html").read_text()
    assert "alice" in index and "laptop &lt;x&gt;" in index and "laptop <x>" not in index  # escaped
    assert "Not compared" in index and "lr 0.05, not" in index
    datasets = list((merged / "datasets").glob("*.html"))
    configs = list((merged / "configs").glob("*.html"))
    assert len(datasets) == 1 and len(configs) == 2
    page = next(p for p in configs if "ternary" in p.name).read_text()
    assert page.count("<h3>seed ") == 10  # five seeds: curves and provenance
    assert page.count('<table class="sortable curve">') == 5  # each seed's curve: a row per epoch
    assert "contributed by" in page and "bob on cluster node 7" in page
    # the one curve drawing is the leaderboard's plot of the dataset, linked from each configuration
    assert "<svg" not in page
    (dataset,) = json.loads((merged / "leaderboard.json").read_text())["datasets"]
    plot = f"plots/{curves_stem(dataset)}.svg"
    assert (merged / plot).is_file() and f'<img src="../{plot}"' in page
    curve = json.loads(next((merged / "configs").glob("*ternary*.json")).read_text())[0]["curve"]
    first = page.split('<table class="sortable curve">')[1].split("</table>")[0]
    assert first.count("<tr>") == 1 + len(curve)  # the head and one row per recorded epoch
    json.loads(next(p for p in (merged / "configs").glob("*ternary*.json")).read_text())
    for path in [merged / "index.html", *datasets, *configs]:
        text = path.read_text()
        assert "<script>" not in text and " on" + "click" not in text and "style=" not in text
        assert "script-src 'self'" in text and "http://" not in text


def test_qbench_site_of_one_run_validates_and_an_edited_page_is_caught(published_runs, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["site", str(published_runs["a"]), "--out", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    page = next((out / "configs").glob("*ternary*.html"))
    page.write_text(page.read_text().replace("<h2>Seeds</h2>", "<h2>Seeds (all good)</h2>"))
    capsys.readouterr()
    assert main(["validate", str(out)]) == 1
    assert f"site: configs/{page.name} line" in capsys.readouterr().out


def test_site_usage_error(tmp_path, capsys):
    assert main(["site", str(tmp_path), "--out", str(tmp_path / "x")]) == 4
    assert "no leaderboard.json" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- browser


@pytest.mark.browser
def test_the_merged_site_in_headless_chromium(merged, tmp_path):
    """Navigate index -> dataset -> configuration by clicking links; sort; images and script load under the CSP."""
    import base64

    from .test_browser_leaderboard import CHROMIUM, DevTools

    if CHROMIUM is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium)")
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session)  # fmt: skip
        seen: list[dict] = []

        def evaluate(expression: str):
            result = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
            assert "exceptionDetails" not in result, result
            return result["result"].get("value")

        def load(action) -> str:
            seen.extend(browser.events)
            browser.events.clear()
            action()
            browser.wait_for("Page.loadEventFired")
            return evaluate("location.pathname")

        def click(selector: str) -> None:
            box = evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                           " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
                           " })()")  # fmt: skip
            for kind in ("mousePressed", "mouseReleased"):
                browser.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                          "clickCount": 1}, session)  # fmt: skip

        load(lambda: browser.send("Page.navigate", {"url": (merged / "index.html").as_uri()}, session))
        assert evaluate("document.querySelector('h1').textContent") == "two contributors"
        assert evaluate("document.body.innerText").count("carol") == 5  # her profile and her four records listed apart
        path = load(lambda: click('a[href^="datasets/"]'))
        assert path.endswith(".html") and "/datasets/" in path
        # site.js ran (it makes headers focusable): the external script is allowed, nothing inline is needed
        assert evaluate("document.querySelector('table.sortable th').tabIndex") == 0
        table = "document.querySelector('table.sortable')"
        column = evaluate(f"Array.from({table}.tHead.rows[0].cells).findIndex(c => c.textContent === 'test_bpc_mean')")
        assert column >= 0
        values = f"Array.from({table}.tBodies[0].rows).map(r => Number(r.cells[{column}].dataset.v))"
        before = evaluate(values)
        click(f"table.sortable th:nth-child({column + 1})")
        assert evaluate(values) == sorted(before)
        click(f"table.sortable th:nth-child({column + 1})")
        assert evaluate(values) == sorted(before, reverse=True)
        images = evaluate("document.images.length")
        assert images >= 2 and evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        path = load(lambda: click('a[href*="configs/"][href*="ternary"]'))
        assert "/configs/" in path
        assert evaluate("document.querySelectorAll('table.curve tbody tr').length") >= 5
        assert evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert evaluate("document.body.innerText").count("bob on cluster node 7") == 2

        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)
        from PIL import Image

        image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("L")
        low, high = image.getextrema()
        assert high - low > 100 and len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10  # not blank
        try:
            browser.wait_for("never", timeout=0.3)  # collect late console messages
        except TimeoutError:
            pass
        seen.extend(browser.events)
        errors = [e for e in seen if e.get("method") in ("Runtime.exceptionThrown",)
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                  or (e.get("method") == "Log.entryAdded"
                      and e["params"]["entry"]["level"] in ("error", "warning"))]  # fmt: skip
        assert errors == []
    finally:
        browser.close()


def test_inputs_are_validated_by_as_many_workers_as_cores_this_process_may_use(monkeypatch, tmp_path):
    """It counted the machine's cores: pinned to one core (taskset, a container's cpuset) on a
    16-core machine, it started 16 validating processes on that core."""
    import os

    from qbench.publish import merge as merging

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    seen = []
    monkeypatch.setattr(merging, "read_source", lambda path, scratch: seen.append(os.getpid()) or path)
    inputs = [tmp_path / f"in{i}" for i in range(5)]
    assert merging.read_sources(inputs, tmp_path) == inputs
    assert seen == [os.getpid()] * 5, "one core: validated here, one input after the other"
