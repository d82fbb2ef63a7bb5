"""``lapcast fold``, run as a real subprocess on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lapcast.cli.fold_cmd import (
    PENALTY_REASON,
    Penalty,
    SourceReader,
    fold_source,
    parse_penalty,
)
from simulator.contract import (
    ChequeredFlag,
    Entry,
    Event,
    LapCompleted,
    SessionFinished,
    SessionKind,
    SessionStarted,
    TimePenalty,
    encode,
)
from simulator.eventlog import EventLogBuilder

REPO = Path(__file__).resolve().parents[1]
QUALIFYING_TOML = REPO / "scenarios" / "wec-2023-bahrain-qualifying.toml"


def lapcast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lapcast", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def fold_json(*args: str) -> dict[str, Any]:
    proc = lapcast("fold", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


@pytest.fixture(scope="module")
def race(race_csv: Path) -> dict[str, Any]:
    return fold_json(str(race_csv))


@pytest.fixture(scope="module")
def penalized(race_csv: Path) -> dict[str, Any]:
    return fold_json(str(race_csv), "--penalty", "51=295")


def order(doc: dict[str, Any]) -> list[str]:
    return [row["car"] for row in doc["running_order"]]


def row(doc: dict[str, Any], car: str) -> dict[str, Any]:
    return next(r for r in doc["running_order"] if r["car"] == car)


class TestRaceJson:
    def test_counts(self, race: dict[str, Any]) -> None:
        """7,486 lap events and 36 cars; no championship key for a source without one."""
        assert race["lap_events"] == 7486 and race["events"] > 7486
        assert len(race["running_order"]) == 36
        assert "championship" not in race

    def test_finish_on_the_road(self, race: dict[str, Any]) -> None:
        """#8 wins after 235 laps, #51 second 27.539 s behind, then #5, #93, #35, #15, #2."""
        assert order(race)[:7] == ["8", "51", "5", "93", "35", "15", "2"]
        winner, second = race["running_order"][:2]
        assert (winner["laps"], winner["status"], winner["gap_ms"]) == (235, "finished", None)
        assert (second["gap_ms"], second["interval_ms"]) == (27539, 27539)
        assert row(race, "6")["position"] == 11

    def test_rows_carry_the_documented_keys(self, race: dict[str, Any]) -> None:
        """Each row has the keys the issue lists, with class positions."""
        keys = {"position", "class_position", "car", "class", "status", "laps", "elapsed_ms",
                "gap_ms", "interval_ms", "best_lap_ms", "last_lap_ms", "pit_stops"}
        assert all(keys <= set(r) for r in race["running_order"])
        assert row(race, "55")["class_position"] == 1 and row(race, "55")["class"] == "LMGT3"

    def test_penalty_on_the_command_line(self, penalized: dict[str, Any]) -> None:
        """--penalty 51=295: #8, #5, #93, #35, #15, #2, ..., #6 10th and #51 14th."""
        assert order(penalized)[:6] == ["8", "5", "93", "35", "15", "2"]
        assert row(penalized, "6")["position"] == 10
        assert row(penalized, "51")["position"] == 14 and row(penalized, "51")["laps"] == 233

    def test_penalty_is_one_more_event(self, race: dict[str, Any],
                                       penalized: dict[str, Any]) -> None:
        """Each --penalty appends one TimePenalty after the source's last event."""
        assert penalized["events"] == race["events"] + 1

    def test_class_poles(self, race: dict[str, Any]) -> None:
        """Class fastest laps: #8 lap 208 110492 ms (Buemi), #60 lap 193 121914 ms (Cairoli)."""
        hyper, gt3 = race["class_poles"]["HYPERCAR"], race["class_poles"]["LMGT3"]
        assert (hyper["car"], hyper["lap"], hyper["lap_time_ms"]) == ("8", 208, 110492)
        assert "BUEMI" in hyper["driver"].upper()
        assert (gt3["car"], gt3["lap"], gt3["lap_time_ms"]) == ("60", 193, 121914)
        assert "CAIROLI" in gt3["driver"].upper()

    def test_pit_stops_and_retirements(self, race: dict[str, Any]) -> None:
        """Pit stops #8 9, #51 7, #55 8; the eight cars without a flag are retired."""
        assert [row(race, c)["pit_stops"] for c in ("8", "51", "55")] == [9, 7, 8]
        retired = {r["car"] for r in race["running_order"] if r["status"] == "retired"}
        assert retired == {"7", "20", "63", "94", "77", "78", "87", "88"}

    def test_lmgt3_winner(self, race: dict[str, Any]) -> None:
        """#55 Vista AF Corse wins LMGT3."""
        gt3 = [r for r in race["running_order"] if r["class"] == "LMGT3"]
        assert gt3[0]["car"] == "55" and gt3[0]["team"] == "Vista AF Corse"

    def test_sector_granularity_same_result(self, race_csv: Path,
                                            race: dict[str, Any]) -> None:
        """--granularity sector adds SectorCompleted events and ends in the same order."""
        sectors = fold_json(str(race_csv), "--granularity", "sector")
        assert sectors["events"] > race["events"]
        assert sectors["running_order"] == race["running_order"]
        def without_seq(poles: dict[str, Any]) -> dict[str, Any]:
            # History entries name the seq of their event, which sector events shift.
            return {name: {**p, "history": [{k: v for k, v in h.items() if k != "seq"}
                                            for h in p["history"]]}
                    for name, p in poles.items()}

        assert without_seq(sectors["class_poles"]) == without_seq(race["class_poles"])

    def test_session_id(self, race_csv: Path) -> None:
        """--session-id names the session in the document."""
        assert fold_json(str(race_csv), "--session-id", "bahrain-8h")["session_id"] == (
            "bahrain-8h")


class TestTables:
    def test_default_output_is_tables(self, race_csv: Path) -> None:
        """Without --json: the running order with class positions and the class fastest laps."""
        proc = lapcast("fold", str(race_csv), "--penalty", "51=4:55")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert "Running order (race, chequered flag)" in out
        assert "Class fastest laps" in out and "1:50.492" in out and "2:01.914" in out
        lines = [line for line in out.splitlines() if "Ferrari AF Corse" in line]
        assert any(" 14 " in line and "+295s" in line and "233" in line for line in lines)
        assert "Championship" not in out

    def test_championship_lines(self) -> None:
        """A source with a championship prints its standings after the tables."""
        proc = lapcast("fold", str(QUALIFYING_TOML))
        assert proc.returncode == 0, proc.stderr
        assert "Class poles" in proc.stdout
        assert "Championship" in proc.stdout and "pole: #8" in proc.stdout

    def test_championship_in_json(self) -> None:
        """--json carries the championship projection when the source has one."""
        doc = fold_json(str(QUALIFYING_TOML))
        assert doc["session_kind"] == "qualifying"
        assert doc["championship"]["pole_car"] == doc["class_poles"]["HYPERCAR"]["car"] == "8"


def _journal_events(epoch: int, cars: list[str]) -> list[Event]:
    log = EventLogBuilder("journal-test", epoch=epoch)
    events: list[Event] = [log.emit(
        SessionStarted, session_time_ms=0, series="Test", event_name="Journal",
        session_kind=SessionKind.RACE, scheduled_start="2024-03-02T14:00:00+03:00",
        time_zone="Asia/Bahrain", classes=["HYPERCAR"],
        entries=[Entry(car=c, car_class="HYPERCAR", team=f"Team {c}") for c in cars])]
    for lap in (1, 2):
        for i, car in enumerate(cars):
            events.append(log.emit(LapCompleted, session_time_ms=lap * 100_000 + i * 1000,
                                   car=car, driver=f"Driver {car}", lap=lap,
                                   lap_time_ms=100_000, valid=lap > 1))
            if lap == 2 and i == 0:  # the leader completes the distance
                events.append(log.emit(ChequeredFlag, session_time_ms=200_000, leader=car,
                                       laps=2))
    events.append(log.emit(SessionFinished, session_time_ms=200_000 + len(cars) * 1000))
    return events


class TestJournal:
    def test_folds_the_latest_epoch(self, tmp_path: Path) -> None:
        """A journal folds its latest epoch only: a seek started the session over."""
        journal = tmp_path / "session.jsonl"
        lines = [encode(e) for e in _journal_events(1, ["1", "2", "3"])]
        lines += [encode(e) for e in _journal_events(2, ["3", "1"])]
        journal.write_bytes(b"".join(line + b"\n" for line in lines))
        assert order(fold_json(str(journal))) == ["3", "1"]
        # Shifted by 100 s, #3's first crossing already reaches the flag: one lap counts.
        doc = fold_json(str(journal), "--penalty", "3=100")
        assert order(doc) == ["1", "3"]
        assert doc["events"] == len(_journal_events(2, ["3", "1"])) + 1
        assert row(doc, "3")["penalty_ms"] == 100_000 and row(doc, "3")["laps"] == 1


class TestErrors:
    def test_unknown_car(self, race_csv: Path) -> None:
        """A penalty for a car that is not in the source is refused, naming the car."""
        proc = lapcast("fold", str(race_csv), "--penalty", "999=10")
        assert proc.returncode == 2
        assert "no car '999'" in proc.stderr and "Traceback" not in proc.stderr

    def test_bad_penalty(self, race_csv: Path) -> None:
        """A malformed --penalty is a usage error naming the option."""
        proc = lapcast("fold", str(race_csv), "--penalty", "51")
        assert proc.returncode == 2 and "--penalty" in proc.stderr

    def test_missing_source(self, tmp_path: Path) -> None:
        """A missing file is one clear line, exit 2."""
        proc = lapcast("fold", str(tmp_path / "nope.csv"))
        assert proc.returncode == 2 and "no such file" in proc.stderr


class TestParsing:
    def test_parse_penalty(self) -> None:
        """CAR=SECONDS accepts seconds, decimals and m:ss."""
        assert parse_penalty("51=295") == Penalty(car="51", penalty_ms=295_000)
        assert parse_penalty("007=4:55") == Penalty(car="007", penalty_ms=295_000)
        assert parse_penalty("8=5.5") == Penalty(car="8", penalty_ms=5_500)

    def test_penalties_follow_the_last_event(self) -> None:
        """Each penalty is a TimePenalty after the last event: seq continuing, same epoch."""
        events = _journal_events(2, ["1", "2"])
        reader = SourceReader("test", [Penalty(car="2", penalty_ms=5_000),
                                       Penalty(car="1", penalty_ms=1_000)])
        out = list(reader(events))
        last = events[-1]
        assert out[: len(events)] == events and reader.events == len(events) + 2
        added = out[len(events):]
        assert all(isinstance(e, TimePenalty) for e in added)
        assert [(e.car, e.penalty_ms, e.seq) for e in added] == [  # type: ignore[union-attr]
            ("2", 5_000, last.seq + 1), ("1", 1_000, last.seq + 2)]
        assert {(e.epoch, e.session_id, e.session_time_ms) for e in added} == {
            (last.epoch, last.session_id, last.session_time_ms)}
        assert {e.reason for e in added} == {PENALTY_REASON}  # type: ignore[union-attr]

    def test_in_process_fold(self, race_csv: Path) -> None:
        """fold_source folds every event, penalties included, into every folder."""
        result = fold_source(str(race_csv), penalties=[Penalty(car="51", penalty_ms=295_000)])
        assert all(f.seq == result.events for f in result.folders)
        assert result.views()["running_order"]["rows"][13]["car"] == "51"
