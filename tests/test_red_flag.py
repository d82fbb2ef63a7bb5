"""Red flags (Al Kamel ``RF``): the shared race rewritten with a suspension, and small exports.

The shared 2024 race has no red flag, so the tests write it again in a temporary
folder, in the export's own format, with one: from ``RED_MS`` every car's first
crossing is flagged ``RF`` (into the pit lane), its other crossings in the next
``LENGTH_MS`` are gone (the cars wait in the pit lane), and, when the race resumes,
its next crossing is the lap that spans the suspension (its LAP_TIME the whole
time since its previous crossing, 40-odd minutes). Not resumed: the file ends at
the red flag, as a race that ends under red.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers.projections import running_order
from consumers.registry import BUILTIN, load_consumer
from consumers.testing import consumer_process, stop_process, wait_for
from lapcast.board.render import render_board
from lapcast.board.store import BoardStore
from lapcast.cli.fold_cmd import fold_source
from lapcast.mosquitto import MosquittoProcess
from simulator import alkamel, topics
from simulator.contract import (
    CarRetired,
    ChampionshipSetup,
    ChequeredFlag,
    Competitor,
    Event,
    Flag,
    FlagChanged,
    LapCompleted,
    PointsRules,
    SessionFinished,
)
from simulator.timefmt import format_ms, parse_ms
from tests.test_alkamel import Lap, stint, write_csv

# #36's best lap (lap 130, 1:51.648, 4:15:00.9 into the race) is its first crossing
# under the red flag: the rewrite must take it away from the car's bests.
BEST_36_MS = parse_ms("4:15:00.920")
RED_MS = BEST_36_MS - 1_000
LENGTH_MS = 43 * 60_000
NAME = "wec-2024-bahrain-8h-race.analysis.csv"  # the name says: a race of 8 hours


@dataclass
class Rewrite:
    """What the rewrite did, per car (lap numbers as in the new file)."""

    path: Path
    red_laps: dict[str, int] = field(default_factory=dict)  # the crossing flagged RF
    spanning: dict[str, int] = field(default_factory=dict)  # the first lap after it
    laps: dict[str, int] = field(default_factory=dict)  # laps in the new file
    last_ms: dict[str, int] = field(default_factory=dict)  # last crossing in the new file


def rewrite(src: Path, dst_dir: Path, *, resumed: bool) -> Rewrite:
    text = src.read_bytes().decode("utf-8-sig")
    lines = [line for line in text.split("\r\n") if line.strip()]
    names = [c.strip() for c in lines[0].split(";")]
    ix = {n: i for i, n in enumerate(names) if n}
    by_car: dict[str, list[list[str]]] = {}
    for line in lines[1:]:
        cells = line.split(";")
        by_car.setdefault(cells[ix["NUMBER"]].strip(), []).append(cells)
    out = Rewrite(path=dst_dir / NAME)
    kept_rows: list[list[str]] = []
    end_ms = RED_MS + LENGTH_MS
    for car, rows in by_car.items():
        rows.sort(key=lambda c: parse_ms(c[ix["ELAPSED"]].strip()))
        dropped = 0
        previous: int | None = None
        for cells in rows:
            t = parse_ms(cells[ix["ELAPSED"]].strip())
            if RED_MS <= t < end_ms:
                if car in out.red_laps:
                    dropped += 1  # waiting in the pit lane: no crossing
                    continue
                cells[ix["FLAG_AT_FL"]] = "RF"
                cells[ix["CROSSING_FINISH_LINE_IN_PIT"]] = "B"
            elif t >= end_ms:
                if not resumed:
                    continue
                if car not in out.spanning:
                    assert previous is not None
                    cells[ix["LAP_TIME"]] = format_ms(t - previous)
                    cells[ix["LAP_IMPROVEMENT"]] = "0"
            lap = int(cells[ix["LAP_NUMBER"]]) - dropped
            cells[ix["LAP_NUMBER"]] = str(lap)
            if RED_MS <= t < end_ms:
                out.red_laps[car] = lap
            elif t >= end_ms and car not in out.spanning:
                out.spanning[car] = lap
            kept_rows.append(cells)
            previous = t
            out.laps[car] = lap
            out.last_ms[car] = t
    body = [lines[0]] + [";".join(cells) for cells in kept_rows]
    out.path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(body) + "\r\n").encode())
    return out


@pytest.fixture(scope="module")
def resumed(race_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Rewrite:
    return rewrite(race_csv, tmp_path_factory.mktemp("resumed"), resumed=True)


@pytest.fixture(scope="module")
def ended(race_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Rewrite:
    return rewrite(race_csv, tmp_path_factory.mktemp("ended"), resumed=False)


def laps_of(events: list[Event]) -> list[LapCompleted]:
    return [e for e in events if isinstance(e, LapCompleted)]


def rows_by_car(views: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["car"]: r for r in views["running_order"]["rows"]}


class TestResumedRace:
    def test_the_flag_turns_red_and_back(self, resumed: Rewrite) -> None:
        """The flag turns RED at the first RF crossing and back to green at the restart."""
        events = list(alkamel.load(resumed.path).events())
        changes = [e for e in events if isinstance(e, FlagChanged)]
        red = [i for i, e in enumerate(changes) if e.flag is Flag.RED]
        assert len(red) == 1
        turned, back = changes[red[0]], changes[red[0] + 1]
        first_rf = min(e.session_time_ms for e in laps_of(events) if e.flag is Flag.RED)
        assert turned.session_time_ms == first_rf and turned.previous is Flag.GREEN
        assert back.previous is Flag.RED and back.flag is not Flag.RED
        assert back.session_time_ms >= RED_MS + LENGTH_MS
        assert changes[-1].flag is Flag.CHEQUERED

    def test_laps_under_and_through_the_red_are_not_valid(self, resumed: Rewrite) -> None:
        """Exactly the laps ending under RF and the laps spanning the suspension (and lap 1)
        are not valid; the spanning laps are the long ones."""
        laps = laps_of(list(alkamel.load(resumed.path).events()))
        invalid = {(e.car, e.lap) for e in laps if not e.valid}
        expected = ({(e.car, 1) for e in laps if e.lap == 1}
                    | set(resumed.red_laps.items()) | set(resumed.spanning.items()))
        assert invalid == expected
        assert len(resumed.red_laps) == 34  # every car still running at 4:15
        spanning = [e for e in laps if (e.car, e.lap) in resumed.spanning.items()]
        assert all((e.lap_time_ms or 0) > LENGTH_MS - 5 * 60_000 for e in spanning)
        assert max(e.lap_time_ms or 0 for e in spanning) > LENGTH_MS

    def test_no_best_lap_or_fastest_lap_under_or_through_the_red(
        self, resumed: Rewrite, race_csv: Path
    ) -> None:
        """No car's best lap, nor a class's fastest lap, is a lap under or through the red;
        #36 loses its best lap (1:51.648, flagged RF), the others keep theirs."""
        original = rows_by_car(fold_source(str(race_csv)).views())
        views = fold_source(str(resumed.path)).views()
        rows = rows_by_car(views)
        for car, row in rows.items():
            assert row["best_lap"] not in (resumed.red_laps.get(car), resumed.spanning.get(car))
        assert original["36"]["best_lap_ms"] == 111_648
        assert rows["36"]["best_lap_ms"] > 111_648
        changed = {car for car in rows
                   if rows[car]["best_lap_ms"] != original[car]["best_lap_ms"]}
        # #94 set its best (lap 135) at 4:26:33, while the cars waited: that row is gone.
        assert changed == {"36", "94"}
        poles = views["class_poles"]
        assert (poles["HYPERCAR"]["car"], poles["HYPERCAR"]["lap_time_ms"]) == ("8", 110_492)
        for name, pole in poles.items():
            for entry in pole["cars"]:
                if entry["lap"] is not None:
                    car = entry["car"]
                    assert entry["lap"] not in (resumed.red_laps.get(car),
                                                resumed.spanning.get(car)), name

    def test_classification_counts_the_spanning_lap(self, resumed: Rewrite) -> None:
        """The suspension's laps count for the classification: each car's laps are its rows,
        the retirements are the race's own eight, the others take the flag."""
        views = fold_source(str(resumed.path)).views()
        running = views["running_order"]
        assert running["chequered"] and running["flag"] == "CHEQUERED"
        rows = rows_by_car(views)
        assert {car: r["laps"] for car, r in rows.items()} == resumed.laps
        statuses = {car: r["status"] for car, r in rows.items()}
        assert {c for c, s in statuses.items() if s == "retired"} == {
            "7", "20", "63", "94", "77", "78", "87", "88"}
        assert Counter(statuses.values()) == {"finished": 28, "retired": 8}


class TestRaceEndedUnderRed:
    def test_no_chequered_flag_and_the_flag_stays_red(self, ended: Rewrite) -> None:
        """The log ends under RED: no chequered flag, no flag change after the red one."""
        events = list(alkamel.load(ended.path).events())
        assert not any(isinstance(e, ChequeredFlag) for e in events)
        changes = [e for e in events if isinstance(e, FlagChanged)]
        assert changes[-1].flag is Flag.RED
        assert isinstance(events[-1], SessionFinished)

    def test_cars_stopped_before_the_red_retire(self, ended: Rewrite) -> None:
        """Only #78 and #20, out of the race long before the red flag, retire."""
        events = list(alkamel.load(ended.path).events())
        retired = {e.car: e for e in events if isinstance(e, CarRetired)}
        assert set(retired) == {"78", "20"}
        assert {e.reason for e in retired.values()} == {"stopped before the red flag"}
        assert (retired["78"].laps, retired["20"].laps) == (36, 111)

    def test_running_cars_finish_on_their_last_crossing(self, ended: Rewrite) -> None:
        """The cars running at the red are finished, ranked by laps, then by their last
        crossing (the one under red)."""
        views = fold_source(str(ended.path)).views()
        running = views["running_order"]
        assert (running["flag"], running["chequered"], running["finished"]) == ("RED", False,
                                                                                True)
        rows = running["rows"]
        statuses = {r["car"]: r["status"] for r in rows}
        assert {c for c, s in statuses.items() if s != "finished"} == {"78", "20"}
        assert statuses["78"] == statuses["20"] == "retired"
        assert {r["car"]: r["laps"] for r in rows} == ended.laps
        expected = sorted(ended.laps, key=lambda c: (-ended.laps[c], ended.last_ms[c]))
        assert [r["car"] for r in rows] == expected
        for r in rows:
            assert r["best_lap"] != ended.red_laps.get(r["car"])

    def test_lapcast_fold_shows_red(self, ended: Rewrite) -> None:
        """`lapcast fold` says RED in its table title and in its JSON document."""
        doc = json.loads(_lapcast("fold", str(ended.path), "--json"))
        assert doc["flag"] == "RED"
        assert doc["running_order"][0]["status"] == "finished"
        table = _lapcast("fold", str(ended.path))
        assert "RED flag: ended under red" in table.splitlines()[1]

    def test_checkpoint_in_the_middle_changes_nothing(self, ended: Rewrite) -> None:
        """A state pickled and resumed midway (a consumer's checkpoint) folds to the same view."""
        import pickle

        events = list(alkamel.load(ended.path).events())
        straight = running_order.initial()
        for e in events:
            running_order.apply(straight, e)
        resumed_state = running_order.initial()
        half = len(events) // 2
        for e in events[:half]:
            running_order.apply(resumed_state, e)
        running_order.view(resumed_state)
        resumed_state = pickle.loads(pickle.dumps(resumed_state))
        for e in events[half:]:
            running_order.apply(resumed_state, e)
        assert running_order.view(resumed_state) == running_order.view(straight)


def _lapcast(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "lapcast", *args], check=True,
                          capture_output=True, text=True).stdout


class TestLiveFold:
    async def test_consumers_over_mqtt_equal_lapcast_fold(
        self, broker: MosquittoProcess, session_id: str, ended: Rewrite, tmp_path: Path
    ) -> None:
        """`lapcast replay` of the race that ends under red: every consumer's retained state
        is `lapcast fold`'s, RED flag and finished cars included."""
        journal = tmp_path / "journal.jsonl"
        procs = [consumer_process(name, broker_url=broker.url, session_id=session_id,
                                  state_dir=tmp_path / "state",
                                  log_file=tmp_path / f"{name}.log") for name in BUILTIN]
        try:
            for name in BUILTIN:
                await wait_for(broker.url, topics.consumer_status(session_id, name),
                               lambda d: d.get("state") != "lost")
            engine = subprocess.Popen(
                [sys.executable, "-m", "lapcast", "replay", str(ended.path), "--broker",
                 broker.url, "--session-id", session_id, "--speed", "max", "--batch", "5",
                 "--journal", str(journal)],
                stdout=subprocess.DEVNULL, stderr=(tmp_path / "replay.log").open("wb"))
            try:
                status = await wait_for(broker.url, topics.status(session_id),
                                        lambda d: d.get("state") == "finished", timeout=120)
                total = status["last_seq"]
                states = {}
                for name in BUILTIN:
                    doc = await wait_for(broker.url, topics.state(session_id, name),
                                         lambda d: d["seq"] >= total, timeout=90)
                    states[name] = doc["state"]
            finally:
                assert stop_process(engine) == 0
        finally:
            for proc in procs:
                stop_process(proc)
        expected = msgspec.json.decode(msgspec.json.encode(fold_source(str(journal)).views()))
        for name in BUILTIN:
            assert states[name] == expected.get(load_consumer(name).json_key), name
        assert states["running-order"]["flag"] == "RED"
        assert {r["status"] for r in states["running-order"]["rows"]} == {"finished", "retired"}


# --- small exports written by hand --------------------------------------------------------


def _qualifying(tmp_path: Path) -> Path:
    """Two cars; #7's fastest lap ends under RF, #8's lap through the red is short."""
    seven = stint("7", 3, 112_000)
    eight = stint("8", 3, 111_000, offset_ms=500)
    seven += [
        Lap(car="7", lap=4, lap_time="1:40.000", elapsed="7:16.000", hour="14:07:16.000",
            flag="RF"),
        # Its previous crossing came under the red: this lap spans the rest of it.
        Lap(car="7", lap=5, lap_time="1:45.000", elapsed="30:00.000", hour="14:30:00.000"),
        Lap(car="7", lap=6, lap_time="1:53.000", elapsed="31:53.000", hour="14:31:53.000"),
    ]
    eight += [
        # Crossed before the red (5:33.5), then the first crossing after it: a lap that
        # spans the suspension, whatever its time says; the flag turns green here.
        Lap(car="8", lap=4, lap_time="1:39.000", elapsed="29:30.000", hour="14:29:30.000"),
        Lap(car="8", lap=5, lap_time="1:50.500", elapsed="31:20.500", hour="14:31:20.500"),
    ]
    return write_csv(tmp_path / "wec-2024-bahrain-qualifying.analysis.csv", seven + eight)


CHAMPIONSHIP = ChampionshipSetup(
    name="Hypercar drivers",
    standings=[Competitor(car="7", name="A", points=100), Competitor(car="8", name="B",
                                                                      points=100)],
    rules=PointsRules(race_points=[25, 18], pole_points=1, championship_class="HYPERCAR"),
)


class TestHandWritten:
    def test_rf_loads_as_red(self, tmp_path: Path) -> None:
        """RF in FLAG_AT_FL is Flag.RED on the lap and in a FlagChanged."""
        events = list(alkamel.load(_qualifying(tmp_path)).events())
        red = [e for e in laps_of(events) if e.flag is Flag.RED]
        assert [(e.car, e.lap) for e in red] == [("7", 4)]
        assert any(isinstance(e, FlagChanged) and e.flag is Flag.RED for e in events)

    def test_no_pole_under_or_through_the_red(self, tmp_path: Path) -> None:
        """The class pole and the championship's pole point ignore #7's lap under RF and
        #8's lap through the suspension, though both are the quickest times."""
        path = _qualifying(tmp_path)
        views = fold_source(str(path)).views()
        assert views["class_poles"]["HYPERCAR"]["car"] == "8"
        assert views["class_poles"]["HYPERCAR"]["lap_time_ms"] == 110_500
        rows = rows_by_car(views)
        assert (rows["7"]["best_lap"], rows["8"]["best_lap"]) == (1, 5)
        laps = laps_of(list(alkamel.load(path).events()))
        assert {(e.car, e.lap) for e in laps if not e.valid} == {("7", 4), ("7", 5), ("8", 4)}
        source = alkamel.load(path, championship=CHAMPIONSHIP)
        from consumers.folding import fold_all

        (folder,) = fold_all([load_consumer("championship")], source.events())
        assert folder.view()["pole_car"] == "8"

    def test_car_in_the_pits_at_the_red_is_running(self, tmp_path: Path) -> None:
        """Ended under red: a car whose last crossing was an in-lap a minute before the red
        is classified finished; a car stopped an hour before retires."""
        rows = stint("8", 40, 110_000)  # last crossing 1:13:20
        rows[-1].flag = "RF"
        pitting = stint("7", 39, 111_000)  # last crossing 1:12:09, 71 s before the red
        pitting[-1].in_pit = "B"
        stopped = stint("2", 10, 112_000)
        path = write_csv(tmp_path / "wec-2024-bahrain-8h-race.analysis.csv",
                         rows + pitting + stopped)
        events = list(alkamel.load(path).events())
        red = next(e for e in events if isinstance(e, FlagChanged) and e.flag is Flag.RED)
        assert red.session_time_ms == 40 * 110_000
        assert [e.car for e in events if isinstance(e, CarRetired)] == ["2"]
        views = fold_source(str(path)).views()
        assert {r["car"]: r["status"] for r in views["running_order"]["rows"]} == {
            "8": "finished", "7": "finished", "2": "retired"}

    def test_time_running_out_under_red_is_no_chequered_flag(self, tmp_path: Path) -> None:
        """A race whose time runs out while suspended ends under red, not chequered."""
        rows = stint("8", 3, 110_000)
        rows.append(Lap(car="8", lap=4, lap_time="1:00:10.000", elapsed="1:05:40.000",
                        hour="15:05:40.000", flag="RF"))
        path = write_csv(tmp_path / "wec-2024-bahrain-1h-race.analysis.csv", rows)
        events = list(alkamel.load(path).events())
        assert not any(isinstance(e, ChequeredFlag) for e in events)
        views = fold_source(str(path)).views()
        (row,) = views["running_order"]["rows"]
        assert (row["status"], row["laps"], views["running_order"]["flag"]) == (
            "finished", 4, "RED")

    def test_board_shows_red(self) -> None:
        """The board's flag line shows RED on red, and says the session is suspended."""
        from rich.console import Console

        store = BoardStore("t-red")
        state = {"session_kind": "race", "session_time_ms": 600_000, "flag": "RED",
                 "chequered": False, "finished": False, "classes": [], "rows": []}
        doc = {"projection": "running-order", "session_id": "t-red", "epoch": 1, "seq": 9,
               "session_time_ms": 600_000, "published_at_ns": 1, "state": state}
        store.offer(f"{topics.session_root('t-red')}/state/running-order",
                    json.dumps(doc).encode())
        console = Console(width=160, record=True, color_system=None)
        console.print(render_board(store.snapshot()))
        line = next(x for x in console.export_text().splitlines() if " RED " in x)
        assert "session suspended" in line
        styled = Console(width=160, color_system="truecolor", force_terminal=True)
        segments = [s for s in styled.render(render_board(store.snapshot()))
                    if s.text == " RED "]
        assert segments and segments[0].style is not None
        assert segments[0].style.bgcolor is not None
        assert segments[0].style.bgcolor.name == "red"
