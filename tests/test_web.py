"""`lapcast web` in a real browser: Debian's chromium, headless, driven by Playwright.

Everything is real: a Mosquitto from the fixture, the replay engine, the four built-in
consumers and `lapcast web` as child processes, and the page in chromium. Playwright's
own browser downloads are never used (``executable_path`` is the system chromium).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.subscribe
from playwright.sync_api import Page, sync_playwright

from consumers.folding import fold_all
from consumers.projections.lap_chart import full_history
from consumers.registry import ALL_BUILTIN, load_consumer
from consumers.testing import consumer_process, stop_process
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.sources import load_source

REPO = Path(__file__).resolve().parents[1]
QUALIFYING = REPO / "scenarios" / "wec-2023-bahrain-qualifying.toml"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@contextmanager
def timing_chain(broker: MosquittoProcess, tmp_path: Path, session_id: str, source: str, *,
                 speed: str, control: bool = True) -> Iterator[str]:
    """Consumers, `lapcast web` and a replay of ``source``; yields the page's URL."""
    procs: list[subprocess.Popen[bytes]] = [
        consumer_process(name, broker_url=broker.url, session_id=session_id,
                         state_dir=tmp_path / "state" / name,
                         log_file=tmp_path / f"{name}.log")
        for name in ALL_BUILTIN
    ]
    web_log = (tmp_path / "web.log").open("wb")
    web = subprocess.Popen(
        [sys.executable, "-m", "lapcast", "web", "--session", session_id, "--broker",
         broker.url, "--port", "0", *(["--control"] if control else [])],
        stdout=subprocess.PIPE, stderr=web_log)
    procs.append(web)
    try:
        assert web.stdout is not None
        url = web.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:"), (tmp_path / "web.log").read_text()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "lapcast", "replay", source, "--session-id", session_id,
             "--broker", broker.url, "--speed", speed,
             "--journal", str(tmp_path / "journal.jsonl")],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "replay.log").open("wb")))
        yield url
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        web_log.close()


@contextmanager
def browser_page(errors: list[str]) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1300})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
        finally:
            browser.close()


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def engine_state(broker: MosquittoProcess, session_id: str) -> str:
    """The engine's retained status, read from the broker (not from the page)."""
    message = paho.mqtt.subscribe.simple(topics.status(session_id), hostname="127.0.0.1",
                                         port=broker.port, retained=True)
    return str(json.loads(message.payload)["state"])


def measures(page: Page) -> dict[str, list[float]]:
    """Every duration of each of the page's Performance API measures, in ms, sorted."""
    result: dict[str, list[float]] = page.evaluate(
        "() => performance.getEntriesByType('measure').reduce((out, m) => {"
        " (out[m.name] = out[m.name] || []).push(m.duration); return out; }, {})")
    return {name: sorted(values) for name, values in result.items()}


def p90(values: list[float]) -> float:
    return values[int(len(values) * 0.9)] if values else 0.0


class TestTheQualifyingPage:
    """After a replay of the 2023 Bahrain qualifying the page tells its story."""

    def test_poles_points_and_charts(self, broker: MosquittoProcess, tmp_path: Path,
                                     session_id: str) -> None:
        """The three class poles, #8 on 134 points, drawn charts, and no console error."""
        errors: list[str] = []
        with timing_chain(broker, tmp_path, session_id, str(QUALIFYING), speed="max") as url, \
                browser_page(errors) as page:
            page.goto(url)
            poles = page.locator("#poles-body")
            until(lambda: all(t in poles.inner_text() for t in
                              ("1:46.564", "1:52.290", "1:58.692")), 60, "the three poles")
            points = page.locator('#champ-body tr[data-car="8"] .pts')
            until(lambda: points.count() and points.inner_text() == "134", 60, "#8 on 134")
            until(lambda: page.locator("#engine-state").inner_text() == "finished", 60,
                  "the engine to finish")
            gap = page.locator("#gap-chart")
            until(lambda: int(gap.get_attribute("data-lines") or 0) >= 10, 20,
                  "the gap chart's lines")
            assert int(page.locator("#lap-chart").get_attribute("data-lines") or 0) >= 30
            # The deleted lap that took a pole away stays on the page.
            assert "deleted" in poles.inner_text()
            assert page.locator("table.timing").count() == 3
            assert page.locator("#feed").inner_text() == "live"
            # The whole chart the page got, live, is the offline fold's, lap for lap.
            with urllib.request.urlopen(url.split("?")[0] + "api/snapshot") as reply:
                live = json.load(reply)["laps"]
            folder = fold_all([load_consumer("lap-chart")],
                              load_source(str(QUALIFYING)).events())[0]
            assert live == full_history(folder.state)
            page.screenshot(path=str(tmp_path / "qualifying.png"), full_page=True)
            assert (tmp_path / "qualifying.png").stat().st_size > 10_000
            assert p90(measures(page).get("lapcast-render", [])) < 50
        assert errors == []


class TestControls:
    """A --control page pauses and resumes the engine; a refusal shows its reason."""

    def test_pause_stops_the_clock_and_resume_starts_it(
            self, broker: MosquittoProcess, tmp_path: Path, session_id: str) -> None:
        """Pause: engine status `paused`, the page's clock stands; resume: it moves again."""
        errors: list[str] = []
        with timing_chain(broker, tmp_path, session_id, str(QUALIFYING), speed="20") as url, \
                browser_page(errors) as page:
            page.goto(url)
            clock = page.locator("#clock")
            until(lambda: page.locator("#engine-state").inner_text() == "running", 30,
                  "a running engine")
            assert page.locator("#controls").is_visible()
            page.click("#btn-pause")
            until(lambda: engine_state(broker, session_id) == "paused", 10, "status paused")
            until(lambda: page.locator("#engine-state").inner_text() == "paused", 10,
                  "the page to show paused")
            stopped = clock.inner_text()
            time.sleep(1.5)
            assert clock.inner_text() == stopped
            page.click("#btn-pause")
            until(lambda: engine_state(broker, session_id) == "running", 10, "status running")
            until(lambda: clock.inner_text() != stopped, 10, "the clock to move again")
            # A command the engine refuses shows the engine's own reason.
            page.fill("#seek-to", "9:00:00")
            page.click("#seek-form button")
            toast = page.locator("#toast")
            until(lambda: toast.is_visible() and "refused" in toast.inner_text(), 10,
                  "the refusal")
            page.screenshot(path=str(tmp_path / "controls.png"))
        assert errors == []

    def test_read_only_page_has_no_controls(self, broker: MosquittoProcess, tmp_path: Path,
                                            session_id: str) -> None:
        """Without --control the page shows no controls and the server refuses commands."""
        errors: list[str] = []
        with timing_chain(broker, tmp_path, session_id, str(QUALIFYING), speed="max",
                          control=False) as url, browser_page(errors) as page:
            page.goto(url)
            until(lambda: page.locator("#engine-state").inner_text() in ("running", "finished"),
                  30, "the engine")
            assert not page.locator("#controls").is_visible()
            request = urllib.request.Request(url + "api/control", data=b'{"command":"pause"}',
                                             method="POST", headers={"Origin": url.rstrip("/")})
            try:
                urllib.request.urlopen(request)
                raise AssertionError("a read-only server took a command")
            except urllib.error.HTTPError as exc:
                assert exc.code == 403
        assert errors == []


class TestLargeField:
    """With 1,000 cars the page stays responsive: each update well under 50 ms of main thread."""

    def test_thousand_cars(self, broker: MosquittoProcess, tmp_path: Path,
                           session_id: str) -> None:
        """Deltas touch only the rows on screen; charts cost nothing until scrolled to.

        ``lapcast-render`` is the page's script for one update, ``lapcast-frame`` that plus
        the browser's style, layout and paint of the frame. The Performance API measures
        wall time, which a shared machine inflates when it preempts the browser: the test
        holds nine updates in ten to 50 ms and the median to 15 ms; the figures are
        printed (``-s``).
        """
        errors: list[str] = []
        source = "synth:cars=1000,seed=7,laps=12,classes=HYPERCAR:LMP2:LMGT3"
        with timing_chain(broker, tmp_path, session_id, source, speed="max") as url, \
                browser_page(errors) as page:
            page.goto(url)
            until(lambda: page.locator("#engine-state").inner_text() == "finished", 120,
                  "the replay to finish")
            until(lambda: page.locator("table.timing tbody tr").count() == 1000, 60,
                  "1,000 rows")
            # Rows far off screen are filled when the page is idle: all of them, in the end.
            until(lambda: page.evaluate(
                "() => [...document.querySelectorAll('table.timing tbody tr')]"
                ".every((tr) => tr.cells[1].textContent.startsWith('#'))"), 60,
                  "every row filled")
            scrolled = time.monotonic()
            page.locator("#gap-chart").scroll_into_view_if_needed()
            until(lambda: int(page.locator("#gap-chart").get_attribute("data-lines") or 0), 30,
                  "the gap chart")
            page.wait_for_timeout(1500)
            figures = measures(page)
            on_screen = time.monotonic() - scrolled
            page.screenshot(path=str(tmp_path / "thousand-charts.png"))
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(tmp_path / "thousand.png"))
        print({name: (round(v[len(v) // 2], 1), round(p90(v), 1), round(v[-1], 1), len(v))
               for name, v in figures.items()})
        renders = figures["lapcast-render"]
        assert len(renders) >= 3, figures
        assert p90(figures["lapcast-apply"]) < 50, figures
        assert p90(renders) < 50, figures
        assert renders[len(renders) // 2] < 15, figures
        # The charts are drawn off the update path, about once a second while on screen
        # (one draw may slip in as the page lays out, another as the scroll lands).
        assert len(figures["lapcast-chart"]) <= 3 + on_screen, figures
        assert errors == []
