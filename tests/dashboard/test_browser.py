"""The dashboard page in headless Chromium (Debian's `chromium` package), over the filled hub of conftest.py.

Two ways in, no extra dependency:
- `chromium --headless --dump-dom` after a virtual-time budget: the DOM the page's own JavaScript built, with
  `?verify=ADDRESS` making the page verify an address as it opens;
- the Chrome DevTools protocol over a websocket (aiohttp's client): load the page, click a message's "verify"
  button as a user would, wait for the verdict, and take a screenshot.

Without a Chromium binary the tests are skipped locally (`apt-get install chromium`, or set SCB_CHROMIUM), but
they FAIL when `CI` is set (CI=true): .ci/run installs Chromium, and a CI run that silently skipped the only check
of the page's own JavaScript would pass without having tested it.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service
from tests.dashboard.conftest import Filled, Server


def find_chromium() -> str | None:
    for name in (os.environ.get("SCB_CHROMIUM", ""), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = find_chromium()
NO_CHROMIUM = "there is no Chromium binary (install Debian's chromium package: apt-get install chromium; or set " \
    "SCB_CHROMIUM)"


@pytest.fixture(autouse=True)
def chromium_required() -> None:
    require_service(CHROMIUM is not None, NO_CHROMIUM)


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,2400"]


@pytest.fixture
def profile() -> Iterator[str]:
    """A new, empty browser profile per run (nothing cached between runs or from the machine's user)."""
    path = tempfile.mkdtemp(prefix="scb-chromium-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Dom(HTMLParser):
    """Just enough of the dumped DOM: elements with their attributes, and the text inside elements with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag not in ("br", "img", "input", "meta", "link", "hr", "col", "source"):
            self._open.append(a.get("id"))
            if a.get("id"):
                self.text.setdefault(a["id"], "")

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident:
                self.text[ident] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        """Elements of `tag` whose attributes contain the given values (class: one of its classes)."""
        found = []
        for t, a in self.elements:
            if t != tag:
                continue
            ok = True
            for k, v in attrs.items():
                k = k.rstrip("_")
                if k == "class":
                    ok = ok and v in a.get("class", "").split()
                else:
                    ok = ok and a.get(k) == v
            if ok:
                found.append(a)
        return found


def dump_dom(url: str, profile: str) -> Dom:
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",  # type: ignore[list-item]
                           "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = Dom()
    dom.feed(proc.stdout)
    return dom


def test_page_loads_with_chart_holders_and_a_verdict(filled: Filled, dashboard: Server, profile: str) -> None:
    address = filled.settled_addresses[3]
    dom = dump_dom(f"{dashboard.url}/?verify={address}", profile)
    assert dom.find("body", **{"data-loaded": "yes"}), "the page's script did not finish loading its data"
    # the chart: 17 publish windows, a generation point and consumption bars for each
    chart = dom.find("svg", id="chart")[0]
    assert chart["data-points"] == "17"
    points = dom.find("circle", class_="gen-point")
    assert len(points) == 17 and sum(float(p["data-wh"]) for p in points) > 0
    bars = dom.find("rect", class_="bar")
    assert {b["data-party"] for b in bars} == {"h1", "h2", "h3"} and len(bars) >= 3 * 16
    # holders, messages, settlements, decisions
    assert [r["data-party"] for r in dom.find("tr") if "data-party" in r] == ["h1", "h2", "h3"]
    assert "out of good standing" in dom.text["holders"] and "GRID" in dom.text["holders"]
    assert len(dom.find("button", class_="verify")) == 15
    assert [r["data-period"] for r in dom.find("tr") if "data-period" in r] == ["3", "2", "1"]
    with filled.hub.factory() as session:
        from sqlalchemy import select

        from settlement.models import SettlementPeriod

        txs = list(session.scalars(select(SettlementPeriod.tx_hash)))
    assert {a["title"] for a in dom.find("td", class_="tx")} == set(txs)
    assert "unpaid past its due time" in dom.text["decisions"]
    assert dom.find("a", id="bills-csv")[0]["href"] == "/api/export/bills.csv"  # the system's CSV downloads
    assert [a["href"] for a in dom.find("a") if a.get("href", "").startswith("/holder/")] == \
        ["/holder/h1", "/holder/h2", "/holder/h3"]  # each household's own page
    # ?verify=ADDRESS: the page ran the verification and shows its steps and verdict
    assert dom.text["verify-verdict"].strip() == "VALID"
    assert address in dom.text["verify-subject"]
    assert "verifyReading" in dom.text["verify-steps"] and "FAIL" not in dom.text["verify-steps"]
    assert dom.text["problem"] == ""


def test_page_shows_a_verdict_that_is_not_valid(filled: Filled, dashboard: Server, profile: str) -> None:
    dom = dump_dom(f"{dashboard.url}/?verify={filled.open_addresses[-1]}", profile)
    assert dom.text["verify-verdict"].strip() == "COULD NOT CHECK"
    assert "not settled yet" in dom.text["verify-reason"]


# ------------------------------------------------------------------------------------------------ DevTools


class DevTools:
    """A minimal Chrome DevTools protocol client for one page target."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []  # everything the browser sent that was not an answer

    def problems(self) -> list[str]:
        """Script exceptions, console errors and browser-logged errors (CSP violations, failed loads)."""
        found = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                found.append(str(p.get("exceptionDetails", {}).get("exception", {}).get("description", p)))
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append(str([a.get("value", a.get("description")) for a in p.get("args", [])]))
            elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                found.append(f"{p['entry'].get('source')}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return found

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads((await self.ws.receive(timeout=60)).data)
            if message.get("id") == ident:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")


@contextlib.asynccontextmanager
async def devtools_page(profile: str) -> AsyncIterator[DevTools]:
    """Chromium with its DevTools port open on one blank page, and a DevTools client of that page."""
    import aiohttp

    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",  # type: ignore[list-item]
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                pages = [t for t in await r.json() if t["type"] == "page"]
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=64 * 2**20) as ws:
                tools = DevTools(ws)
                for domain in ("Page", "Runtime", "Log"):
                    await tools.send(f"{domain}.enable")
                yield tools
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _click_verify(url: str, address: str, profile: str, screenshot: Path) -> dict[str, Any]:
    async with devtools_page(profile) as tools:
        await tools.send("Page.navigate", url=url)
        await tools.wait_for("document.body && document.body.dataset.loaded === 'yes'")
        selector = json.dumps(f'button.verify[data-address="{address}"]')
        assert await tools.evaluate(f"!!document.querySelector({selector})"), "no verify button"
        await tools.evaluate(f"document.querySelector({selector}).click()")
        verdict = await tools.wait_for("(() => { const v = document.getElementById('verify-verdict')"
                                       ".textContent; return v && v !== '…' ? v : null; })()")
        # the messages list shows the verdict of the row that was verified
        row = await tools.wait_for(
            f"(() => {{ const b = document.querySelector({selector}); const v = b && "
            "b.parentElement.querySelector('.verdict'); return v ? v.textContent : null; })()")
        info = {
            "verdict": verdict, "row": row,
            "subject": await tools.evaluate("document.getElementById('verify-subject').textContent"),
            "steps": await tools.evaluate("document.querySelectorAll('#verify-steps li').length"),
            "points": await tools.evaluate("document.querySelectorAll('#chart circle.gen-point').length"),
        }
        # one holder: their consumption against their share of the generation
        await tools.evaluate("(() => { const s = document.getElementById('holder'); s.value = 'h2'; "
                             "s.dispatchEvent(new Event('change')); })()")
        info["legend"] = await tools.wait_for(
            "(() => { const t = document.getElementById('legend').textContent; "
            "return t.includes(\"h2's share\") ? t : null; })()")
        info["parties_shown"] = await tools.evaluate(
            "[...new Set([...document.querySelectorAll('#chart rect.bar')].map((r) => r.dataset.party))]")
        info["problems"] = tools.problems()
        shot = await tools.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return info


def test_clicking_verify_shows_the_verdict(filled: Filled, dashboard: Server, profile: str,
                                           tmp_path: Path) -> None:
    address = filled.settled_addresses[-1]  # the newest settled message: on the first page of the list
    screenshot = tmp_path / "dashboard.png"
    info = asyncio.run(_click_verify(dashboard.url + "/", address, profile, screenshot))
    assert info["verdict"] == "VALID" and info["row"] == "VALID", info
    assert address in info["subject"] and info["steps"] >= 6 and info["points"] == 17
    assert info["parties_shown"] == ["h2"] and "h1" not in info["legend"]
    assert info["problems"] == []  # no script error, no blocked resource, no failed request
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


# ------------------------------------------------------------------------------------------------ a household's page


def test_household_page_shows_bills_and_proofs_that_verify(filled: Filled, dashboard: Server, profile: str,
                                                          tmp_path: Path) -> None:
    """h2 opens its page with period 1's readings, downloads a reading's proof from the link the page shows, and
    checks it with `scb verify --proof` as a user would."""
    import requests

    from tests.settlement.conftest import write_toml

    dom = dump_dom(f"{dashboard.url}/holder/h2?period=1", profile)
    assert dom.find("body", **{"data-loaded": "yes"}), "the page's script did not finish loading its data"
    assert dom.text["party"] == "h2" and dom.text["status"] == "paying" and dom.text["good"] == "yes"
    assert "equity paid" in dom.text["equity-text"]
    assert [r["data-period"] for r in dom.find("tr") if "data-period" in r] == ["3", "2", "1"]
    assert dom.find("svg", id="chart")[0]["data-points"] == "17"
    assert {b["data-party"] for b in dom.find("rect", class_="bar")} == {"h2"}
    assert [r["data-event"] for r in dom.find("tr") if "data-event" in r] == ["Paid"]
    links = dom.find("a", class_="proof")
    assert len(links) == len([r for r in dom.find("tr") if "data-reading" in r]) > 0
    assert dom.find("a", id="bills-csv")[0]["href"] == "/api/export/bills.csv?holder=h2"
    href = links[2]["href"]
    proof = tmp_path / "proof.json"
    proof.write_bytes(requests.get(dashboard.url + href, timeout=60).content)
    config = write_toml(filled.hub.config, tmp_path / "scb.toml")
    verified = subprocess.run([sys.executable, "-m", "hub.cli", "--config", str(config), "verify", "--proof",
                               str(proof)], capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and "VALID" in verified.stdout, verified.stdout + verified.stderr


def test_household_out_of_good_standing(dashboard: Server, profile: str) -> None:
    dom = dump_dom(f"{dashboard.url}/holder/h3", profile)
    assert dom.text["good"].startswith("no") and "GRID" in dom.text["supply"]
    assert dom.text["debt"] != "0 ETH" and dom.text["problem"] == ""


async def _household_by_keyboard(url: str, profile: str, screenshot: Path) -> dict[str, Any]:
    async with devtools_page(profile) as tools:
        # a phone: 390 CSS pixels wide, touch, as the page's responsive layout is meant for
        await tools.send("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2,
                         mobile=True)
        await tools.send("Page.navigate", url=url)
        await tools.wait_for("document.body && document.body.dataset.loaded === 'yes'")
        info: dict[str, Any] = {"overflow": await tools.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")}
        # the keyboard alone: Tab to the first period's "readings" button, Enter opens its readings
        for _ in range(40):
            await tools.send("Input.dispatchKeyEvent", type="keyDown", key="Tab", code="Tab",
                             windowsVirtualKeyCode=9)
            await tools.send("Input.dispatchKeyEvent", type="keyUp", key="Tab", code="Tab", windowsVirtualKeyCode=9)
            if await tools.evaluate("document.activeElement.matches('button.readings')"):
                break
        info["focused"] = await tools.evaluate("document.activeElement.dataset.period || null")
        for kind in ("keyDown", "keyUp"):
            await tools.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                             windowsVirtualKeyCode=13, **({"text": "\r"} if kind == "keyDown" else {}))
        info["title"] = await tools.wait_for(
            "(() => { const t = document.getElementById('readings-title'); return t && "
            "/: \\d+/.test(t.textContent) ? t.textContent : null; })()")
        info["title_focused"] = await tools.evaluate("document.activeElement.id === 'readings-title'")
        info["proofs"] = await tools.evaluate("document.querySelectorAll('#readings a.proof').length")
        info["problems"] = tools.problems()
        shot = await tools.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return info


def test_household_page_on_a_phone_with_the_keyboard(dashboard: Server, profile: str, tmp_path: Path) -> None:
    info = asyncio.run(_household_by_keyboard(f"{dashboard.url}/holder/h1", profile, tmp_path / "holder.png"))
    assert info["overflow"] <= 0, info  # nothing wider than the phone: wide tables scroll inside their box
    assert info["focused"] == "3", info  # the newest period's button, reached with Tab
    assert info["title"].startswith("Readings of period 3") and info["title_focused"], info
    assert info["proofs"] > 0 and info["problems"] == [], info
    assert (tmp_path / "holder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
