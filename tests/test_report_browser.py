"""The report in a real browser: headless Chromium opens index.html with no network, every chart renders and
draws marks, the console stays clean, and a screenshot is saved.

Talks to Chromium over the DevTools protocol (websocket-client); no Playwright browser download needed.
Set INFBENCH_SCREENSHOT=/path/to/shot.png to keep the screenshot; INFBENCH_REPORT=/path/to/index.html to check an
existing report (the default workflow's) instead of the example one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from report_example import example  # tests/report_example.py: a made-up summary

from infbench.report.build import build_report

websocket = pytest.importorskip("websocket", reason="websocket-client is needed (pip install -e '.[test]')")

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)"
)


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path):
        self.profile = profile
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: any remote fetch fails loudly
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
                "--remote-allow-origins=*",
                "--window-size=1400,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ws = self._connect()
        self.next_id = 0
        self.events: list[dict] = []

    def _connect(self):
        from urllib.request import ProxyHandler, build_opener

        local = build_opener(ProxyHandler({}))  # DevTools is on 127.0.0.1: never through a proxy from the env
        deadline = time.monotonic() + 60
        active = self.profile / "DevToolsActivePort"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            try:
                port = int(active.read_text().split()[0])
                targets = json.loads(local.open(f"http://127.0.0.1:{port}/json/list", timeout=2).read())
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    # our own socket: websocket-client would otherwise tunnel through an http_proxy from the env
                    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                    return websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, socket=sock)
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.2)
        raise RuntimeError("chromium's DevTools endpoint did not come up within 60 s")

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def console_problems(events: list[dict]) -> list[str]:
    """Console errors and warnings, uncaught exceptions, failed loads and log entries of level error."""
    problems = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            problems.append(
                f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
            )
        elif m == "Runtime.exceptionThrown":
            problems.append(
                f"exception: {p['exceptionDetails'].get('exception', {}).get('description') or p['exceptionDetails']}"
            )
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            problems.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.loadingFailed":
            problems.append(f"load failed: {p.get('errorText')}")
        elif m == "Network.requestWillBeSent" and not p["request"]["url"].startswith(
            ("file:", "data:", "blob:", "about:")
        ):
            problems.append(f"network request: {p['request']['url']}")
    return problems


# Click the summary table's img/s header: the rows must come back in ascending throughput, blanks last.
SORT_BY_THROUGHPUT = """
(() => {
  const t = document.getElementById("summary-table");
  const ths = Array.from(t.tHead.rows[0].cells);
  const i = ths.findIndex((th) => th.textContent === "img/s");
  ths[i].click();
  const raw = Array.from(t.tBodies[0].rows).map((r) => r.cells[i].dataset.v);
  const vals = raw.filter((v) => v !== "").map(Number);
  const blanksLast = raw.indexOf("") === -1 || raw.slice(raw.indexOf("")).every((v) => v === "");
  return vals.length > 1 && blanksLast && vals.every((v, k) => k === 0 || vals[k - 1] <= v);
})()
"""

# Marks per chart: Vega's SVG renderer draws each mark as an element inside a `g.role-mark` group.
COUNT_MARKS = """
Array.from(document.querySelectorAll("div.chart[data-spec]")).map((el) => ({
  id: el.id,
  svg: el.querySelectorAll("svg").length,
  width: Math.max(0, ...Array.from(el.querySelectorAll("svg")).map((s) => s.getBoundingClientRect().width)),
  // every number a chart prints (axes, legends, labels): none with more than 4 significant digits after a point
  longNumbers: Array.from(el.querySelectorAll("text")).map((t) => t.textContent).filter((t) => /\d\.\d{4,}/.test(t)),
  marks: el.querySelectorAll(
    ["path", "rect", "line", "g", "text"].map((tag) => "g.role-mark > " + tag).join(", ")
  ).length,
}))
"""


def check_report(index: Path, shot: Path) -> dict:
    browser = Browser(shot.parent / "chromium-profile")
    try:
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.send(f"{domain}.enable")
        browser.send("Page.navigate", url=index.resolve().as_uri())
        deadline = time.monotonic() + 90
        while browser.evaluate("document.body && document.body.dataset.chartsDone") != "true":
            assert time.monotonic() < deadline, "charts did not finish rendering within 90 s"
            time.sleep(0.25)
        browser.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
        state = {
            "rendered": int(browser.evaluate("document.body.dataset.chartsRendered")),
            "failed": int(browser.evaluate("document.body.dataset.chartsFailed")),
            "charts": browser.evaluate(COUNT_MARKS),
            "notes": browser.evaluate("document.querySelectorAll('p.note[data-note]').length"),
        }
        # the first screen: the answer, before the evidence, within the window's first 1000 px
        state["answer_top"] = browser.evaluate("document.getElementById('answer').getBoundingClientRect().top")
        state["answers"] = browser.evaluate(
            "Array.from(document.querySelectorAll('ul.answers li')).map((l) => l.textContent)"
        )
        state["sorted"] = browser.evaluate(SORT_BY_THROUGHPUT)
        browser.evaluate("window.scrollTo(0, 0)")
        height = browser.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        width = browser.evaluate("Math.ceil(document.documentElement.scrollWidth)")
        png = browser.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": min(height, 16000), "scale": 1},
        )
        shot.write_bytes(base64.b64decode(png["data"]))
        # let late events (e.g. a deferred console error) arrive
        browser.evaluate("new Promise((r) => setTimeout(r, 300))")
        state["problems"] = console_problems(browser.events)
        return state
    finally:
        browser.close()


def _keep(shot: Path) -> None:
    target = os.environ.get("INFBENCH_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


@pytest.mark.parametrize("machines,gpu", [(1, True), (2, False)], ids=["one-machine-gpu", "two-machines-cpu"])
def test_report_renders_in_headless_chromium(tmp_path, machines, gpu):
    summary, meta = example(machines=machines, gpu=gpu)
    out = tmp_path / "report"
    build_report(summary, meta, out)
    shot = tmp_path / "report.png"
    state = check_report(out / "index.html", shot)

    assert state["problems"] == [], state["problems"]
    assert state["failed"] == 0
    assert state["rendered"] == len(state["charts"]) > 0
    assert state["sorted"], "clicking the img/s header did not sort the summary table"
    for chart in state["charts"]:
        assert chart["svg"] >= 1 and chart["marks"] > 0, f"{chart['id']} drew no marks: {chart}"
        assert chart["longNumbers"] == [], chart  # e.g. the heatmap legend's "12.4781444904k"
    # charts at the page's width, not 150 px: the widest reaches most of the 1400 px window
    assert max(chart["width"] for chart in state["charts"]) > 900, [c["width"] for c in state["charts"]]
    assert state["answer_top"] < 400 and len(state["answers"]) >= 4, state["answers"]
    assert re.match(r"(\[[^]]+\] )?Throughput: ", state["answers"][0]), state["answers"][0]
    assert "accuracy" in state["answers"][0]
    if not gpu:  # the NVML chart is a note, not an empty chart
        assert state["notes"] >= 1
    assert shot.stat().st_size > 10_000
    if machines == 1:
        _keep(shot)


def test_existing_report_renders(tmp_path):
    """INFBENCH_REPORT=results/<dataset>/<model>/report/index.html pytest -k existing: checks a real report."""
    index = os.environ.get("INFBENCH_REPORT")
    if not index:
        pytest.skip("set INFBENCH_REPORT to the index.html of a report to check it")
    shot = tmp_path / "report.png"
    state = check_report(Path(index), shot)
    assert state["problems"] == [], state["problems"]
    assert state["failed"] == 0 and state["rendered"] == len(state["charts"])
    for chart in state["charts"]:
        assert chart["marks"] > 0, f"{chart['id']} drew no marks"
    _keep(shot)
