"""The run report: OUT/report.html from any output format, checked in a real headless chromium.

The browser is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`):
no Python package beyond the standard library, no network, no server.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jaxgen.cli import main
from jaxgen.report import build_report
from jaxgen.report.output import read_run

SCRIPT_PROMPT = 'a red circle <script>window.pwned = 1</script><img src=x onerror="pwned=2">'
ROWS = [
    {"id": "a", "prompt": SCRIPT_PROMPT, "seed": 1},
    {"id": "b", "prompt": "a blue square", "seed": 2, "num_images": 2},
    *({"prompt": f"a green triangle number {i}", "seed": 10 + i} for i in range(7)),
    {"id": "bad", "prompt": "a yellow star", "height": 20},  # not a multiple of 8
]
IMAGES = 10  # 1 + 2 + 7
PER_PAGE = 4  # 3 pages: 4, 4, 2


def _generate(tmp_path_factory: pytest.TempPathFactory, model: Path, fmt: str) -> Path:
    root = tmp_path_factory.mktemp(f"report-{fmt}")
    manifest = root / "prompts.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = root / "out"
    assert main(["generate", "--manifest", str(manifest), "--out", str(out), "--model",
                 str(model), "--steps", "2", "--format", fmt, "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def dataset(tiny_sd1_dir, tmp_path_factory) -> Path:
    """A WebDataset output of 10 images and one rejected row."""
    return _generate(tmp_path_factory, tiny_sd1_dir, "webdataset")


def _gallery_titles(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('<figure class="thumb" title="')[1:]]


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_every_output_format_gives_the_same_gallery(fmt, dataset, tiny_sd1_dir, tmp_path_factory):
    other = _generate(tmp_path_factory, tiny_sd1_dir, fmt)
    pages = [build_report(d, thumbs_per_page=PER_PAGE).read_text() for d in (dataset, other)]
    assert _gallery_titles(pages[0]) == _gallery_titles(pages[1])
    assert len(_gallery_titles(pages[1])) == IMAGES
    assert len(list((other / "_report" / "thumbs").glob("*.jpg"))) == IMAGES


def test_report_escapes_prompts_and_references_only_its_own_files(dataset):
    page = build_report(dataset, thumbs_per_page=PER_PAGE).read_text()
    assert "<script>window.pwned" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page  # no network fonts or scripts
    sources = [part.split('"', 1)[0] for part in page.split(' src="')[1:]]
    assert len(sources) == IMAGES
    assert all((dataset / s).is_file() and s.startswith("_report/thumbs/") for s in sources)


def test_gallery_stops_at_max_images_and_says_so(dataset):
    page = build_report(dataset, thumbs_per_page=PER_PAGE, max_images=3).read_text()
    assert len(_gallery_titles(page)) == 3
    assert "Showing the first 3 of 10 images (the gallery stops at 3)" in page
    assert len(list((dataset / "_report" / "thumbs").glob("*.jpg"))) == 3  # rebuilt, not added


def test_settings_and_timings_come_from_the_job_and_shard_stats(dataset):
    facts = read_run(dataset)
    assert facts.complete and facts.output_format == "webdataset"
    assert facts.counts == {"rows_read": 10, "rows_generated": 9, "rows_rejected": 1,
                            "images": IMAGES, "shards_complete": 1, "shards": 1}
    assert facts.settings["defaults.steps"] == 2 and facts.settings["model"]
    assert facts.timings["images per shard-second"] > 0
    assert [(g.field, g.count) for g in facts.rejects] == [("height", 1)]
    assert facts.rejects[0].examples[0]["line"] == 10


def test_a_partial_output_reports_its_complete_shards(dataset, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(dataset, partial)
    (partial / "_dataset.json").unlink()  # as while the job still runs
    page = build_report(partial, thumbs_per_page=PER_PAGE).read_text()
    assert "partial: the job has not finished" in page
    assert '<b id="count-images">10</b>' in page


def test_generate_writes_the_report_and_jaxgen_report_rebuilds_it(dataset, capsys):
    page = dataset / "report.html"
    assert page.is_file()  # written by `jaxgen generate` itself
    page.unlink()
    assert main(["report", str(dataset), "--thumbs-per-page", str(PER_PAGE)]) == 0
    assert f"wrote {page.resolve()}" in capsys.readouterr().out
    assert '<b id="count-images">10</b>' in page.read_text()


def test_jaxgen_report_on_a_folder_without_a_job_exits_2_naming_it(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_a_directory_without_a_job_is_refused_with_its_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="no _job.json"):
        build_report(tmp_path)


_ON_FDS_3_AND_4 = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


class Browser:
    """Headless chromium spoken to over the DevTools protocol on fds 3 and 4."""

    def __init__(self, binary: str, profile: Path):
        to_browser, from_browser = os.pipe(), os.pipe()
        # A small trampoline puts the pipes on the fds chromium reads (3) and writes (4):
        # no preexec_fn, so no fork of this multithreaded (JAX) process.
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _ON_FDS_3_AND_4, str(to_browser[0]), str(from_browser[1]),
             binary, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_browser[0], from_browser[1]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser[0])
        os.close(from_browser[1])
        self._write, self._read_fd = to_browser[1], from_browser[0]
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    def _receive(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read_fd], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer in {timeout}s")
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while (reply := self._receive(timeout)).get("id") != self._last_id:
            self.events.append(reply)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_for(self, event: str, timeout: float = 60) -> None:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._receive(timeout))

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=1200, height=900,
                  deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads or CSP blocks seen so far."""
        self.eval("0")  # drains the events sent before this point
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(json.dumps(params["args"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def screenshot(self, path: Path) -> None:
        height = self.eval("document.documentElement.scrollHeight")
        self.send("Emulation.setDeviceMetricsOverride", width=1200, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot")["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        os.close(self._write)
        os.close(self._read_fd)
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser(tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no chromium on PATH (scripts/test.sh installs Debian's chromium)")
    b = Browser(binary, tmp_path / "chromium-profile")
    yield b
    b.close()


# Items the browser lays out, not just those not marked hidden: CSS can overrule `hidden`.
VISIBLE_ITEMS = ("Array.from(document.querySelectorAll('#gallery figure'))"
                 ".filter(f => f.getClientRects().length > 0).length")
LOADED_IMAGES = ("Array.from(document.querySelectorAll('#gallery .page:not([hidden]) img'))"
                 ".every(i => i.complete && i.naturalWidth > 0)")


def test_report_page_in_a_headless_browser(dataset, browser, tmp_path):
    path = build_report(dataset, thumbs_per_page=PER_PAGE)
    browser.open(path.as_uri())
    assert browser.eval("document.getElementById('count-images').textContent") == str(IMAGES)
    assert browser.eval(VISIBLE_ITEMS) == PER_PAGE
    assert browser.eval("document.querySelectorAll('#gallery figure').length") == IMAGES
    rejects = browser.eval("document.getElementById('rejects').innerText")
    assert "height: 1 row" in rejects and "height 20" in rejects and ":10" in rejects

    first = browser.eval("document.querySelector('#gallery figure').title")
    assert first.startswith(SCRIPT_PROMPT) and "seed 1" in first and "key 000000000" in first
    assert browser.eval("typeof window.pwned") == "undefined"  # shown as text, never run
    browser.eval("new Promise(r => setTimeout(r, 300))")  # lets lazy thumbnails arrive
    assert browser.eval(LOADED_IMAGES)

    assert browser.eval("document.getElementById('page-label').textContent") == "Page 1 of 3"
    for page, items in ((2, PER_PAGE), (3, IMAGES - 2 * PER_PAGE)):
        browser.eval("document.getElementById('next').click()")
        assert browser.eval("document.getElementById('page-label').textContent") == (
            f"Page {page} of 3")
        assert browser.eval(VISIBLE_ITEMS) == items
    assert browser.eval("document.getElementById('next').disabled")
    browser.eval("document.getElementById('prev').click()")
    assert browser.eval("document.querySelector('#gallery .page:not([hidden])').dataset.page") == (
        "2")

    browser.screenshot(tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert browser.errors() == []
