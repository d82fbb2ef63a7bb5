"""The live board: the pure renderer, the newest-state store, and the command on a real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiomqtt
import msgspec
import pytest
from rich.console import Console
from rich.style import Style

from lapcast.board.live import BoardSettings, draw
from lapcast.board.render import render_board
from lapcast.board.store import BoardSnapshot, BoardStore
from lapcast.board.views import STATE_VIEWS
from lapcast.mosquitto import MosquittoProcess, free_port
from simulator import topics
from simulator.contract import (
    ConsumerHealth,
    ConsumerLost,
    EngineLost,
    EngineStatus,
    Entry,
    SessionStarted,
    StateDocument,
    encode,
)

SESSION = "t-board"


# --- hand-made states, in the shapes the projections and the engine publish -------------


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "position": 1, "class_position": 1, "car": "8", "class": "HYPERCAR",
        "team": "Toyota Gazoo Racing", "manufacturer": "Toyota", "driver": "Brendon Hartley",
        "status": "running", "laps": 7, "elapsed_ms": None,
        "gap_ms": None, "gap_laps": 0, "interval_ms": None, "interval_laps": 0,
        "class_gap_ms": None, "class_gap_laps": 0, "class_interval_ms": None,
        "class_interval_laps": 0, "best_lap_ms": 106564, "best_lap": 5,
        "last_lap_ms": 107900, "last_lap": 7, "last_lap_marker": "",
        "sector_bests_ms": [35100, 38200, 33264], "sector_markers": ["", "", ""],
        "last_sectors_ms": [35612, 38901, 33387], "last_sector_markers": ["", "", ""],
        "pit_stops": 0, "in_pit": False, "penalty_ms": 0,
    }
    base.update(fields)
    return base


ROWS = [
    row(last_lap_ms=106564, last_lap=5, last_lap_marker="overall-best",
        last_sector_markers=["overall-best", "class-best", "personal-best"], pit_stops=1),
    row(position=2, class_position=2, car="7", driver="Kamui Kobayashi", best_lap_ms=107053,
        last_lap_ms=107053, last_lap_marker="personal-best", class_gap_ms=489,
        class_interval_ms=489, gap_ms=489, interval_ms=489, in_pit=True,
        last_sectors_ms=[36001, 37999, 33053]),
    row(position=3, class_position=1, car="23", team="United Autosports",
        driver="Tom Blomqvist", best_lap_ms=112290, last_lap_ms=112290,
        last_lap_marker="class-best", gap_ms=5726, interval_ms=5237, **{"class": "LMP2"}),
    row(position=4, class_position=1, car="85", team="Iron Dames", driver="Sarah Bovy",
        best_lap_ms=118692, last_lap_ms=131000, status="retired", penalty_ms=5000,
        **{"class": "GTE Am"}),
    row(position=5, class_position=2, car="777", team="D'Station Racing",
        driver="Liam Talbot", best_lap_ms=118992, class_gap_ms=300, class_interval_ms=300,
        laps=3, status="finished", **{"class": "GTE Am"}),
    row(position=6, class_position=3, car="57", team="Kessel Racing", driver="Takeshi Kimura",
        best_lap_ms=None, last_lap_ms=None, laps=1, class_gap_ms=None, class_gap_laps=2,
        class_interval_laps=2, status="disqualified", **{"class": "GTE Am"}),
]

POLES = {
    "HYPERCAR": {
        "car": "8", "driver": "Brendon Hartley", "lap": 5, "lap_time_ms": 106564,
        "cars": [{"car": "8", "best_lap_ms": 106564, "lap": 5, "driver": "Brendon Hartley",
                  "gap_ms": 0}],
        "history": [
            {"car": "2", "driver": "Alex Lynn", "lap": 3, "lap_time_ms": 107265,
             "session_time_ms": 240_000, "seq": 20, "cause": "lap"},
            {"car": "7", "driver": "Kamui Kobayashi", "lap": 4, "lap_time_ms": 106300,
             "session_time_ms": 420_000, "seq": 40, "cause": "lap"},
            {"car": "8", "driver": "Brendon Hartley", "lap": 5, "lap_time_ms": 106564,
             "session_time_ms": 561_250, "seq": 60, "cause": "deleted"},
        ],
    },
    "LMP2": {"car": "23", "driver": "Tom Blomqvist", "lap": 6, "lap_time_ms": 112290,
             "cars": [], "history": []},
    "GTE Am": {"car": "85", "driver": "Sarah Bovy", "lap": 4, "lap_time_ms": 118692,
               "cars": [], "history": []},
}

CHAMPIONSHIP = {
    "name": "Hypercar drivers", "class": "HYPERCAR", "pole_car": "8", "rounds_remaining": 0,
    "session_kind": "qualifying",
    "standings": [
        {"position": 1, "car": "8", "name": "Buemi / Hartley / Hirakawa", "points_before": 133,
         "pole_points": 1, "race_position": None, "race_points": 0, "points": 134,
         "places": [2, 2], "published": True},
        {"position": 2, "car": "7", "name": "Conway / Kobayashi / López", "points_before": 118,
         "pole_points": 0, "race_position": None, "race_points": 0, "points": 118,
         "places": [3, 1], "published": True},
    ],
    "contenders": [],
    "clinch": ["#8 is champion with 3rd place even if #7 wins (157 to 156)"],
    "counterfactuals": ["without the pole point #7 would take the title on countback"],
}


def meta() -> bytes:
    return encode(SessionStarted(
        session_id=SESSION, seq=1, session_time_ms=0, series="FIA WEC",
        event_name="8 Hours of Bahrain", session_kind="qualifying",
        scheduled_start="2023-11-02T19:00:00+03:00", time_zone="Asia/Bahrain",
        classes=["HYPERCAR", "LMP2", "GTE Am"], duration_ms=1_200_000,
        entries=[Entry(car="8", car_class="HYPERCAR", team="Toyota Gazoo Racing")],
    ))


def stamped(projection: str, state: Any, *, seq: int = 60, epoch: int = 1) -> bytes:
    """A whole state document; the view is checked against the projection's own type."""
    return encode(StateDocument(
        projection=projection, session_id=SESSION, epoch=epoch, seq=seq,
        session_time_ms=600_000, published_at_ns=1,
        state=msgspec.convert(state, STATE_VIEWS[projection]),
    ))


def running(rows: list[dict[str, Any]] = ROWS, **fields: Any) -> dict[str, Any]:
    return {"session_kind": "qualifying", "session_time_ms": 600_000, "flag": "GREEN",
            "chequered": False, "finished": False, "classes": [], "rows": rows, **fields}


def status(**fields: Any) -> bytes:
    """A whole engine status, as the engine writes it."""
    doc: dict[str, Any] = {
        "state": "running", "session_id": SESSION, "epoch": 1, "last_seq": 63,
        "total_events": 400, "session_time_ms": 612_345, "end_ms": 1_200_000,
        "speed": 200.0, "lag_ms": 2, "events_published": 63, "batch": 1, "encoding": "json"}
    doc.update(fields)
    return encode(EngineStatus(**doc))


def health(consumer: str, **fields: Any) -> bytes:
    """A whole consumer health report, the figures not given zero."""
    doc: dict[str, Any] = {
        "consumer": consumer, "session_id": SESSION, "client_id": f"lapcast-{consumer}",
        "state": "live", "events_applied": 0, "epoch": 1, "last_seq": 0, "head_epoch": 1,
        "head_seq": 0, "lag_events": 0, "lag_ms": 0, "pending": 0, "dead_letters": 0,
        "refused": 0, "duplicates": 0, "catchups": 0, "reconnects": 0, "checkpoints": 0}
    doc.update(fields)
    return encode(ConsumerHealth(**doc))


def topic(rest: str) -> str:
    return f"{topics.session_root(SESSION)}/{rest}"


def full_store(**state_seq: int) -> BoardStore:
    store = BoardStore(SESSION)
    store.offer(topic("meta"), meta())
    store.offer(topic("status"), status())
    store.offer(topic("state/running-order"), stamped("running-order", running()))
    store.offer(topic("state/class-poles"), stamped("class-poles", POLES))
    store.offer(topic("state/championship"), stamped("championship", CHAMPIONSHIP))
    return store


def text_of(snapshot: BoardSnapshot, width: int = 200) -> str:
    # Tall: the full board (a console as short as a terminal gets the compact one).
    console = Console(width=width, height=500, record=True, color_system=None)
    console.print(render_board(snapshot))
    return console.export_text()


def line_of(text: str, needle: str) -> str:
    lines = [line for line in text.splitlines() if needle in line]
    assert lines, f"{needle!r} not on the board:\n{text}"
    return lines[0]


def styles_of(snapshot: BoardSnapshot, needle: str, width: int = 200) -> list[Style]:
    """The styles of every segment of the board that shows ``needle``."""
    console = Console(width=width, height=500, color_system="truecolor", force_terminal=True)
    return [seg.style or Style() for seg in console.render(render_board(snapshot))
            if needle in seg.text]


# --- the renderer --------------------------------------------------------------------------


class TestRenderBoard:
    def test_every_column_of_a_class_row(self) -> None:
        """A row shows class position, car, driver, team, laps, best, gap, interval, last lap,
        sectors and pit state."""
        text = text_of(full_store().snapshot())
        line = line_of(text, "K. Kobayashi")
        for cell in ("2", "#7", "K. Kobayashi", "Toyota Gazoo", "7", "1:47.053", "+0.489",
                     "1:47.053", "36.001", "37.999", "33.053", "IN PIT"):
            assert cell in line, (cell, line)
        assert line.split()[0] == "2"
        header = line_of(text, "Driver")
        for title in ("Pos", "Car", "Driver", "Team", "Laps", "Best", "Gap", "Int", "Last",
                      "S1", "S2", "S3", "Pit"):
            assert title in header

    def test_columns_line_up_across_classes(self) -> None:
        """Every class table puts each column at the same place, as a timing screen does."""
        text = text_of(full_store().snapshot())
        headers = [line for line in text.splitlines() if "Driver" in line and "Best" in line]
        assert len(headers) == 3
        for title in ("Team", "Best", "Gap", "Last", "S3", "Pit"):
            assert len({h.index(title) for h in headers}) == 1, title

    def test_classes_in_entry_list_order_with_class_positions(self) -> None:
        """One table per class, in the entry list's order, cars by class position."""
        text = text_of(full_store().snapshot())
        order = [text.index(name) for name in (" HYPERCAR ", " LMP2 ", " GTE Am ")]
        assert order == sorted(order)
        assert text.index("S. Bovy") < text.index("L. Talbot") < text.index("T. Kimura")
        assert line_of(text, "T. Blomqvist").split()[0] == "1"

    def test_gaps_in_laps_and_penalties(self) -> None:
        """A lapped car's gap and interval read in laps; a time penalty shows beside the car."""
        text = text_of(full_store().snapshot())
        assert "+2 laps" in line_of(text, "T. Kimura")
        assert "#85 +5s" in line_of(text, "S. Bovy")

    def test_pit_and_status_column(self) -> None:
        """The pit column says IN PIT, RET, FIN, DSQ, or counts the stops made."""
        text = text_of(full_store().snapshot())
        assert "IN PIT" in line_of(text, "K. Kobayashi")
        assert "RET" in line_of(text, "S. Bovy")
        assert "FIN" in line_of(text, "L. Talbot")
        assert "DSQ" in line_of(text, "T. Kimura")
        stacked = text_of(full_store().snapshot(), width=110)  # the row ends the line
        assert line_of(stacked, "B. Hartley").rstrip().endswith(" 1")

    def test_markers_in_timing_screen_colours(self) -> None:
        """Overall best is bold purple, class best purple, personal best green."""
        snap = full_store().snapshot()
        overall = styles_of(snap, "1:46.564")  # #8's best and last lap (and its pole)
        assert overall and all(s.color is not None and s.color.name == "magenta"
                               for s in overall)
        assert any(s.bold for s in overall)
        class_best = styles_of(snap, "1:52.290")  # #23's last lap and best: class best
        assert any(s.color is not None and s.color.name == "magenta" and not s.bold
                   for s in class_best)
        personal = styles_of(snap, "1:47.053")  # #7's last lap: a personal best
        assert any(s.color is not None and s.color.name == "green" for s in personal)
        assert [s.color.name for s in styles_of(snap, "35.612") if s.color] == ["magenta"]
        assert [s.color.name for s in styles_of(snap, "33.387") if s.color] == ["green"]
        plain = styles_of(snap, "2:11.000")  # #85's last lap: no marker
        assert plain and all(s.color is None for s in plain)

    def test_header_clock_flag_engine_and_lag(self) -> None:
        """The header names the session, runs the clock, shows the flag, the engine and the lag."""
        store = full_store()
        text = text_of(store.snapshot())
        first, second = text.splitlines()[:2]
        assert "FIA WEC" in first and "8 Hours of Bahrain" in first and "Qualifying" in first
        assert "0:10:12.345" in second and "0:20:00.000" in second
        assert "GREEN" in second
        assert "running at 200x" in second
        assert "engine lag 2 ms" in second
        assert "board behind 3 events" in second
        chequered = stamped("running-order", running(chequered=True), seq=70)
        store.offer(topic("state/running-order"), chequered)
        assert "CHEQUERED" in text_of(store.snapshot()).splitlines()[1]

    def test_class_poles_and_the_deleted_provisional_pole(self) -> None:
        """The poles panel shows each class's pole, and the pole a deleted lap took away."""
        text = text_of(full_store().snapshot())
        assert "#8  1:46.564  Brendon Hartley lap 5" in text
        assert "#23  1:52.290  Tom Blomqvist" in text
        assert "#85  1:58.692  Sarah Bovy" in text
        assert "#7 1:46.300 deleted at 0:09:21.250" in text

    def test_class_without_a_time_yet(self) -> None:
        """A class whose cars have set no valid lap says so in the poles panel."""
        store = full_store()
        empty = {**POLES, "LMP2": {"car": None, "driver": None, "lap": None,
                                   "lap_time_ms": None, "cars": [], "history": []}}
        store.offer(topic("state/class-poles"), stamped("class-poles", empty, seq=61))
        text = text_of(store.snapshot(), width=110)  # stacked: the panel's lines alone
        assert "no time yet" in line_of(text, "│ LMP2")
        assert "#23" not in line_of(text, "│ LMP2")

    def test_championship_with_its_clinch_line(self) -> None:
        """The championship panel lists the standings and the clinch and what-if lines."""
        text = text_of(full_store().snapshot())
        assert "Hypercar drivers" in text
        line = line_of(text, "Buemi / Hartley / Hirakawa")
        for cell in ("#8", "133", "+1", "134"):
            assert cell in line
        assert "#8 is champion with 3rd place even if #7 wins (157 to 156)" in text
        assert "countback" in text

    def test_nothing_heard_yet(self) -> None:
        """Before any state arrives, the board says what it is waiting for."""
        text = text_of(BoardStore(SESSION).snapshot())
        assert "waiting for the running order" in text
        assert "waiting for the class poles" in text
        assert "waiting for the championship" in text
        assert "engine not heard yet" in text

    def test_session_without_a_championship(self) -> None:
        """A null championship view says there is none, not that it is still coming."""
        store = full_store()
        store.offer(topic("state/championship"), stamped("championship", None, seq=61))
        assert "no championship for this session" in text_of(store.snapshot())

    def test_narrow_terminal_stacks_the_panels(self) -> None:
        """Below the side-by-side width the poles and the championship go under the tables."""
        text = text_of(full_store().snapshot(), width=110)
        assert max(len(line) for line in text.splitlines()) <= 110
        assert text.index("GTE Am") < text.index("class poles") < text.index("Buemi")
        assert "1:58.692" in text and "157 to 156" in text


# --- the store: newest state wins, whatever order the messages come in ------------------------


class TestBoardStore:
    def test_late_start_in_any_order(self) -> None:
        """Retained messages complete the board whichever arrives first."""
        store = BoardStore(SESSION)
        store.offer(topic("state/championship"), stamped("championship", CHAMPIONSHIP))
        store.offer(topic("state/class-poles"), stamped("class-poles", POLES))
        store.offer(topic("status"), status())
        store.offer(topic("state/running-order"), stamped("running-order", running()))
        store.offer(topic("meta"), meta())
        assert text_of(store.snapshot()) == text_of(full_store().snapshot())

    def test_stale_state_ignored(self) -> None:
        """A state older than (or as old as) the one shown changes nothing."""
        store = full_store()
        version = store.version
        older = running(rows=[row(car="99", driver="Old News")])
        assert not store.offer(topic("state/running-order"), stamped("running-order", older,
                                                                     seq=59))
        assert not store.offer(topic("state/running-order"), stamped("running-order", older,
                                                                     seq=60))
        assert store.version == version
        text = text_of(store.snapshot())
        assert "Old News" not in text and "K. Kobayashi" in text

    def test_newer_seq_and_newer_epoch_replace(self) -> None:
        """A higher seq replaces the state; a new epoch (a backward seek) does from seq 1."""
        store = full_store()
        newer = running(rows=[row(car="99", driver="Fresh Driver")])
        assert store.offer(topic("state/running-order"), stamped("running-order", newer,
                                                                 seq=61))
        assert "F. Driver" in text_of(store.snapshot())
        seek = running(rows=[row(car="98", driver="After Seek")])
        assert store.offer(topic("state/running-order"), stamped("running-order", seek,
                                                                 seq=1, epoch=2))
        assert "A. Seek" in text_of(store.snapshot())

    def test_undecodable_state_is_shown_as_a_problem(self) -> None:
        """A bad payload keeps the state shown and names the topic and the field on the board."""
        store = full_store()
        assert store.offer(topic("state/class-poles"), b'{"epoch":1,"seq":99,"state":[1]}')
        text = text_of(store.snapshot())
        assert "#23  1:52.290" in text
        assert "state/class-poles" in text and "$.state" in text

    def test_other_sessions_and_topics_ignored(self) -> None:
        """Messages of another session, or of topics the board does not read, change nothing."""
        store = full_store()
        version = store.version
        other = f"{topics.session_root('other')}/state/running-order"
        assert not store.offer(other, stamped("running-order", running(rows=[])))
        assert not store.offer(topic("events"), b"{}")
        assert store.version == version

    def test_cleared_retained_state(self) -> None:
        """An empty retained payload clears that state from the board."""
        store = full_store()
        store.offer(topic("state/class-poles"), b"")
        assert "waiting for the class poles" in text_of(store.snapshot())

    def test_finished_when_every_state_reflects_the_last_event(self) -> None:
        """Done means: engine finished, and each projection's state at the engine's last seq."""
        store = full_store()
        assert not store.snapshot().finished
        store.offer(topic("status"), status(state="finished", last_seq=60))
        assert store.snapshot().finished
        store.offer(topic("status"), status(state="finished", last_seq=61))
        assert not store.snapshot().finished
        store.offer(topic("status"), status(state="lost", reason="broker gone"))
        assert not store.snapshot().finished
        store.offer(topic("status"), encode(EngineLost(state="lost")))
        assert not store.snapshot().finished

    def test_engine_lost_will(self) -> None:
        """The engine's bare last will: "engine lost", no speed, lag or board behind."""
        store = full_store()
        store.offer(topic("status"), encode(EngineLost(state="lost")))
        second = text_of(store.snapshot()).splitlines()[1]
        assert "engine lost" in second
        assert " at " not in second and "lag" not in second and "behind" not in second
        # The clock falls back to the running order's.
        assert "clock 0:10:00.000" in second

    def test_engine_error_shows_its_reason(self) -> None:
        """An engine whose journal failed says ``error`` with the reason, in red."""
        store = full_store()
        store.offer(topic("status"), status(
            state="error", reason="journal j.jsonl: cannot write: No space left on device"))
        text = text_of(store.snapshot())
        assert "engine error (journal j.jsonl: cannot write: No space left on device)" in text
        assert not store.snapshot().finished
        assert [s for s in styles_of(store.snapshot(), "No space left") if s.color
                and s.color.name == "red"]

    def test_consumer_health_in_the_footer(self) -> None:
        """Each consumer's health shows on the board, a lost one in red."""
        store = full_store()
        store.offer(topic("consumers/class-poles/status"),
                    health("class-poles", last_seq=60, dead_letters=2))
        store.offer(topic("consumers/running-order/status"),
                    health("running-order", last_seq=58, lag_events=2))
        store.offer(topic("consumers/championship/status"), encode(ConsumerLost(
            state="lost", consumer="championship", session_id=SESSION,
            client_id="lapcast-championship")))
        text = text_of(store.snapshot())
        assert "class-poles seq 60 dead 2" in text
        assert "running-order seq 58 lag 2" in text
        assert "consumers championship  class-poles" in text  # a last will: no figures
        assert [s.color.name for s in styles_of(store.snapshot(), "championship") if s.color
                and s.color.name == "red"]


# --- the I/O: steady redraw, and the command against a real broker ----------------------------


class _FrameCounter:
    """Stands in for ``rich.live.Live``: counts the frames ``draw`` hands it."""

    def __init__(self) -> None:
        self.frames = 0

    def update(self, renderable: Any, *, refresh: bool = False) -> None:
        self.frames += 1


class TestSteadyRedraw:
    async def test_frame_rate_capped_however_fast_states_arrive(self) -> None:
        """Thousands of states a second still give at most fps frames a second."""
        store = full_store()
        live = _FrameCounter()
        fps = 10.0
        drawer = asyncio.create_task(draw(store, BoardSettings(session_id=SESSION, fps=fps),
                                          live))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        start = loop.time()
        seq = 100
        while loop.time() - start < 1.0:
            for _ in range(50):
                seq += 1
                store.offer(topic("status"), status(last_seq=seq))
            await asyncio.sleep(0.001)
        drawer.cancel()
        assert seq > 2000
        assert 5 <= live.frames <= fps * 1.0 + 2

    async def test_draw_returns_when_done(self) -> None:
        """With exit_when_done, drawing stops once the final state is shown."""
        store = full_store()
        store.offer(topic("status"), status(state="finished", last_seq=60))
        live = _FrameCounter()
        settings = BoardSettings(session_id=SESSION, fps=20, exit_when_done=True)
        async with asyncio.timeout(2):
            await draw(store, settings, live)  # type: ignore[arg-type]
        assert live.frames == 1


@pytest.mark.broker
class TestBoardCommand:
    async def test_late_board_shows_retained_states_and_exits_when_done(
        self, broker: MosquittoProcess
    ) -> None:
        """Started after everything was published, the board is complete at once."""
        async with aiomqtt.Client("127.0.0.1", broker.port,
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            for rest, payload in (
                ("meta", meta()),
                ("state/running-order", stamped("running-order", running())),
                ("state/class-poles", stamped("class-poles", POLES)),
                ("state/championship", stamped("championship", CHAMPIONSHIP)),
                ("status", status(state="finished", last_seq=60)),
            ):
                await client.publish(topic(rest), payload, qos=1, retain=True)
        env = {**os.environ, "COLUMNS": "200", "LINES": "60"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lapcast", "board", "--broker", broker.url,
            "--session", SESSION, "--exit-when-done",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        async with asyncio.timeout(20):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        text = out.decode()
        assert "#8  1:46.564" in text and "#23  1:52.290" in text and "#85  1:58.692" in text
        assert "157 to 156" in text
        assert "finished" in text

    async def test_refused_login_is_one_line_not_a_retry_loop(
        self, secure_broker: MosquittoProcess, secure_env: Callable[[str], dict[str, str]]
    ) -> None:
        """A wrong password on the secure profile ends the board with one clear line."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAPCAST_MQTT_")}
        env.update(secure_env("board"), LAPCAST_MQTT_PASSWORD="not-the-password")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lapcast", "board", "--broker", secure_broker.url,
            "--session", SESSION, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
        assert proc.returncode == 2
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lapcast board: "), lines
        assert "not-the-password" not in lines[0]

    async def test_unreachable_broker_is_said_on_the_board(self) -> None:
        """With no broker, the board keeps retrying and says why; Ctrl-C leaves its last frame."""
        env = {**os.environ, "COLUMNS": "120"}
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lapcast", "board", "--broker", f"mqtt://127.0.0.1:{port}",
            "--session", SESSION, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        await asyncio.sleep(2.0)
        assert proc.returncode is None  # still running, still retrying
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            out, _ = await proc.communicate()
        assert proc.returncode == 130
        assert f"broker mqtt://127.0.0.1:{port} unreachable" in out.decode()
