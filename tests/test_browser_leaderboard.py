"""The published page in a real browser: headless Chromium driven over the DevTools protocol.

The page comes from a real ``qbench run`` of a tiny matrix, with a third-party quantizer whose
description is hostile markup. Chromium is talked to over ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON), so the test needs nothing beyond the standard library
and the ``chromium`` binary; it is skipped, saying why, when the binary is absent (``.ci/run``
installs it: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from qbench.cli import main

from .matrices import matrix_toml

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
MARKUP = '<img src=x onerror="window.__owned=1"><b>bold</b> & <script>window.__owned=2</script>'
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1000",
         "--remote-debugging-pipe")  # fmt: skip

PLUGIN = f"""
import qbench
from qbench_builtins.quantizers.connect import FloatQuantizer


class MarkupFloat(FloatQuantizer):
    name = "markup-float"
    description = {MARKUP!r}


@qbench.hookimpl
def qbench_register_quantizers():
    return [MarkupFloat]
"""

MATRIX = matrix_toml(
    "browser", quantizers=("float", "ternary", "binary", "markup-float"), cells=(("gru", {"hidden": 16}),),
    seeds=(0, 1), epochs=1, batch=16, bptt=20,
)


class DevTools:
    """The smallest DevTools-protocol client: commands out on fd 3, replies and events in on fd 4."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # bash, not sh: dash cannot redirect from descriptors above 9.
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self.process = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", script, binary, *FLAGS, f"--user-data-dir={profile}",
             "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited: {self.process.stderr.read().decode()[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stderr.close()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """``qbench run`` of four quantizers x two seeds on a tiny GRU, one of them a hostile plugin."""
    import importlib
    import sys


    root = tmp_path_factory.mktemp("browser")
    site = root / "site"
    info = site / "markup_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: markup-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[qbench]\nmarkup = markup_plugin\n")
    (site / "markup_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (root / "browser.toml").write_text(MATRIX)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        code = main(["run", "--matrix", str(root / "browser.toml"), "--out", str(root / "out"), "--no-progress"])
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("markup_plugin", None)
    assert code == 0
    return root / "out"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_page_from_a_real_run_sorts_shows_markup_as_text_and_renders(real_run, tmp_path):
    page = real_run / "leaderboard.html"
    assert main(["validate", str(real_run)]) == 0
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session)  # fmt: skip
        browser.send("Page.navigate", {"url": page.as_uri()}, session)
        browser.wait_for("Page.loadEventFired")

        def evaluate(expression: str):
            result = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
            assert "exceptionDetails" not in result, result
            return result["result"].get("value")

        table = "document.querySelector('table.sortable')"
        headers = f"Array.from({table}.tHead.rows[0].cells)"
        column = evaluate(f"{headers}.findIndex(c => c.textContent.startsWith('test_bpc'))")
        values = f"Array.from({table}.tBodies[0].rows).map(r => Number(r.cells[{column}].dataset.v))"
        ranked = evaluate(values)
        assert len(ranked) == 4 and ranked == sorted(ranked)  # ranked by bpc, lower first

        def click_header() -> None:
            box = evaluate(f"(() => {{ const th = {table}.tHead.rows[0].cells[{column}]; th.scrollIntoView();"
                           " const r = th.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
                           " })()")  # fmt: skip
            for kind in ("mousePressed", "mouseReleased"):
                browser.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                          "clickCount": 1}, session)  # fmt: skip

        click_header()  # first click: ascending
        assert evaluate(values) == sorted(ranked)
        click_header()  # second click: descending
        assert evaluate(values) == sorted(ranked, reverse=True)
        assert evaluate(f"{table}.tHead.rows[0].cells[{column}].getAttribute('aria-sort')") == "descending"

        components = evaluate("document.getElementById('components').innerText")
        assert MARKUP in components  # the plugin's markup is text on the page ...
        assert evaluate("document.querySelectorAll('b, main img, #components img, #components script').length") == 0
        assert evaluate("window.__owned === undefined")  # ... and none of it ran
        plots = len(list((real_run / "plots").glob("*.svg")))  # metric vs bits, curves (+ energy if measured)
        assert (
            plots >= 2
            and evaluate("document.images.length") == plots
            and evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        )  # the plots, from data: URIs

        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)
        from PIL import Image

        image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("L")
        assert image.size[0] >= 1000
        low, high = image.getextrema()
        assert high - low > 100 and len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10  # not blank

        time.sleep(0.2)  # let late console messages arrive
        try:
            browser.wait_for("never", timeout=0.3)
        except TimeoutError:
            pass
        errors = [e for e in browser.events if e.get("method") in ("Runtime.exceptionThrown",)
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]  # fmt: skip
        assert errors == []
    finally:
        browser.close()
