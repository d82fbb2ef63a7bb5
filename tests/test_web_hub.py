"""The web hub and the HTTP door: snapshot + deltas, the whole lap chart, control refusals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from typing import Any

import msgspec
from starlette.testclient import TestClient

from consumers.testing import stop_process
from lapcast.board.views import STATE_VIEWS
from lapcast.mosquitto import MosquittoProcess
from lapcast.web.app import Broadcast, WebSettings, build_app
from lapcast.web.hub import WebHub
from simulator import topics
from simulator.contract import EngineStatus, Rejection, StateDocument, encode

SESSION = "hub-test"


def state(name: str, seq: int, view: Any, *, epoch: int = 1) -> tuple[str, bytes]:
    """A whole state document; the view is checked against the projection's own type."""
    doc = StateDocument(projection=name, session_id=SESSION, epoch=epoch, seq=seq,
                        session_time_ms=seq * 1000, published_at_ns=1,
                        state=msgspec.convert(view, STATE_VIEWS[name]))
    return topics.state(SESSION, name), encode(doc)


def order(*rows: dict[str, Any], flag: str = "GREEN") -> dict[str, Any]:
    return {"session_kind": "race", "session_time_ms": 0, "flag": flag, "chequered": False,
            "finished": False, "classes": ["HYPERCAR"], "rows": list(rows)}


def row(car: str, position: int, laps: int) -> dict[str, Any]:
    """A whole running-order row, the figures not given empty."""
    return {"car": car, "position": position, "class_position": position, "class": "HYPERCAR",
            "team": "", "manufacturer": "", "driver": "", "status": "running", "laps": laps,
            "elapsed_ms": None, "gap_ms": None, "gap_laps": 0, "interval_ms": None,
            "interval_laps": 0, "class_gap_ms": None, "class_gap_laps": 0,
            "class_interval_ms": None, "class_interval_laps": 0, "best_lap_ms": None,
            "best_lap": None, "last_lap_ms": None, "last_lap": None, "last_lap_marker": "",
            "sector_bests_ms": [], "sector_markers": [], "last_sectors_ms": [],
            "last_sector_markers": [], "pit_stops": 0, "in_pit": False, "penalty_ms": 0}


def chart(rows: dict[str, list[list[Any]]]) -> dict[str, Any]:
    return {"session_kind": "race", "window": 1,
            "columns": ["lap", "position", "class_position", "gap_ms", "interval_ms"],
            "rows": [{"car": car, "class": "HYPERCAR", "laps": laps}
                     for car, laps in rows.items()]}


def replay(snapshot: dict[str, Any], deltas: list[dict[str, Any]]) -> dict[str, Any]:
    """What a page holds after a snapshot and the deltas (the page's own merge)."""
    views = {name: {"fields": dict(e["fields"]), "rows": dict(e["rows"])}
             for name, e in snapshot["states"].items()}
    for delta in deltas:
        for name, entry in delta.get("states", {}).items():
            if entry.get("replace") or name not in views:
                views[name] = {"fields": {}, "rows": {}}
            views[name]["fields"].update(entry["fields"])
            for key, value in entry["rows"].items():
                if value is None:
                    views[name]["rows"].pop(key, None)
                else:
                    views[name]["rows"][key] = value
    return views


class TestDeltas:
    """A page that starts from a snapshot and applies the deltas holds the store's state."""

    def test_snapshot_then_only_changed_rows(self) -> None:
        """The second delta carries the one row and the one field that changed."""
        hub = WebHub(SESSION)
        hub.offer(*state("running-order", 1, order(row("7", 1, 1), row("8", 2, 1))))
        first = hub.flush()
        assert first is not None and first["states"]["running-order"]["replace"]
        snapshot = hub.snapshot()
        hub.offer(*state("running-order", 2, order(row("8", 1, 2), row("7", 2, 1), flag="FCY")))
        delta = hub.flush()
        assert delta is not None
        entry = delta["states"]["running-order"]
        assert set(entry["rows"]) == {"7", "8"}
        assert entry["fields"] == {"flag": "FCY"}
        hub.offer(*state("running-order", 3, order(row("8", 1, 3), row("7", 2, 1), flag="FCY")))
        delta3 = hub.flush()
        assert delta3 is not None and set(delta3["states"]["running-order"]["rows"]) == {"8"}
        views = replay(snapshot, [delta, delta3])
        assert views["running-order"]["rows"]["8"]["laps"] == 3
        assert hub.flush() is None  # nothing new

    def test_stale_state_is_ignored(self) -> None:
        """A retained state older than the one shown changes nothing (the board's rule)."""
        hub = WebHub(SESSION)
        hub.offer(*state("running-order", 5, order(row("7", 1, 5))))
        hub.flush()
        hub.offer(*state("running-order", 4, order(row("7", 1, 4))))
        assert hub.flush() is None


class TestLapHistory:
    """The whole chart survives a retained window of one lap."""

    def test_windows_and_changes_merge_into_every_lap(self) -> None:
        """Laps heard in states and in changes all reach the page, once each."""
        hub = WebHub(SESSION)
        hub.offer(*state("lap-chart", 1, chart({"7": [[1, 1, 1, 0, None]]})))
        first = hub.flush()
        assert first is not None and first["laps"] == {"7": [[1, 1, 1, 0, None]]}
        changes = {"projection": "lap-chart", "session_id": SESSION, "epoch": 1, "seq": 2,
                   "changes": {"7": {"car": "7", "class": "HYPERCAR",
                                     "laps": [[2, 1, 1, 0, None]]}}}
        hub.offer(topics.state_changes(SESSION, "lap-chart"), msgspec.json.encode(changes))
        hub.offer(*state("lap-chart", 3, chart({"7": [[3, 1, 1, 0, None]]})))
        delta = hub.flush()
        assert delta is not None
        assert delta["laps"] == {"7": [[2, 1, 1, 0, None], [3, 1, 1, 0, None]]}
        assert [cell[0] for cell in hub.snapshot()["laps"]["7"]] == [1, 2, 3]

    def test_a_new_epoch_starts_a_new_chart(self) -> None:
        """A seek backwards (new epoch) resets the chart on the page too."""
        hub = WebHub(SESSION)
        hub.offer(*state("lap-chart", 9, chart({"7": [[5, 1, 1, 0, None]]})))
        hub.flush()
        hub.offer(*state("lap-chart", 1, chart({"7": [[1, 2, 2, 400, 400]]}), epoch=2))
        delta = hub.flush()
        assert delta is not None and delta["laps_reset"] is True
        assert hub.snapshot()["laps"] == {"7": [[1, 2, 2, 400, 400]]}

    def test_rejections_reach_the_page(self) -> None:
        """The engine's answer to a refused command goes out once, with its reason."""
        hub = WebHub(SESSION)
        status = EngineStatus(
            state="running", session_id=SESSION, epoch=1, last_seq=0, total_events=0,
            session_time_ms=0, end_ms=0, speed=1.0, lag_ms=0, events_published=0, batch=1,
            encoding="json", rejected=Rejection(command="seek", reason="past the end"))
        hub.offer(topics.status(SESSION), encode(status))
        delta = hub.flush()
        assert delta is not None and delta["rejected"]["reason"] == "past the end"
        # The page gets the status's keys as before: null where the status has no value.
        page = delta["set"]["status"]
        assert page["reason"] is None and page["rejected"] == {"command": "seek",
                                                              "reason": "past the end"}
        assert set(page) == {"state", "session_time_ms", "end_ms", "speed", "lag_ms", "epoch",
                             "last_seq", "total_events", "rejected", "reason"}


class TestControlDoor:
    """Only the page of a --control server, with its token, from its origin, may command."""

    def client(self, *, control: bool, sent: list[bytes]) -> tuple[TestClient, WebSettings]:
        settings = WebSettings(session_id=SESSION, control=control)

        async def publish(payload: bytes) -> str | None:
            sent.append(payload)
            return None

        app = build_app(WebHub(SESSION), settings, Broadcast(), publish)
        return TestClient(app, base_url="http://127.0.0.1:8080"), settings

    def test_read_only_without_control(self) -> None:
        """Without --control every command is refused, even with a token."""
        sent: list[bytes] = []
        client, settings = self.client(control=False, sent=sent)
        reply = client.post("/api/control", content=b'{"command": "pause"}',
                            headers={"x-lapcast-token": settings.token,
                                     "origin": "http://127.0.0.1:8080"})
        assert reply.status_code == 403 and "read-only" in reply.json()["error"]
        assert sent == []

    def test_token_and_origin_are_checked(self) -> None:
        """A wrong token or a foreign origin is refused; the page's own request goes out."""
        sent: list[bytes] = []
        client, settings = self.client(control=True, sent=sent)
        own = {"x-lapcast-token": settings.token, "origin": "http://127.0.0.1:8080"}
        body = b'{"command": "pause"}'
        assert client.post("/api/control", content=body,
                           headers={**own, "x-lapcast-token": "guess"}).status_code == 403
        assert client.post("/api/control", content=body,
                           headers={**own, "origin": "http://evil.example"}).status_code == 403
        assert client.post("/api/control", content=body,
                           headers={"x-lapcast-token": settings.token}).status_code == 403
        bad = client.post("/api/control", content=b'{"command": "warp"}', headers=own)
        assert bad.status_code == 400 and "unknown command" in bad.json()["error"]
        assert sent == []
        assert client.post("/api/control", content=body, headers=own).status_code == 202
        assert sent == [body]

    def test_the_page_and_its_files_are_served(self) -> None:
        """The page, its script and style come from the package, with a strict CSP."""
        client, _ = self.client(control=False, sent=[])
        page = client.get("/")
        assert page.status_code == 200 and "default-src 'self'" in page.headers[
            "content-security-policy"]
        for name in ("app.js", "chart.js", "style.css"):
            assert client.get(f"/static/{name}").status_code == 200
        assert "password" not in client.get("/api/snapshot").text


class TestWebProcess:
    """`lapcast web` as the demo starts it: URL on one line, clean stop, clear errors."""

    def start(self, broker: MosquittoProcess, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "lapcast", "web", "--session", SESSION, "--broker",
             broker.url, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def test_url_then_a_clean_stop_with_a_page_open(self, broker: MosquittoProcess) -> None:
        """SIGTERM with an event stream open: exit status 0 within a second or two."""
        web = self.start(broker, "--port", "0")
        try:
            assert web.stdout is not None
            url = web.stdout.readline().decode().strip()
            assert url.startswith("http://127.0.0.1:") and url.endswith("/")
            with urllib.request.urlopen(url + "api/events", timeout=10) as stream:
                assert stream.readline() == b"retry: 1000\n"
                web.send_signal(signal.SIGTERM)
                assert web.wait(10) == 0
        finally:
            stop_process(web)

    def test_a_busy_port_is_a_clear_error(self, broker: MosquittoProcess) -> None:
        """A port already taken: one line naming it, exit status 2."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            web = self.start(broker, "--port", str(port))
            _, err = web.communicate(timeout=30)
        assert web.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in err.decode()
        assert b"Traceback" not in err
