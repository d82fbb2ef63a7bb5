"""The Al Kamel analysis CSV loader: the shared race, each quirk, and malformed lines."""

from __future__ import annotations

import collections
import csv
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import alkamel
from simulator.contract import (
    CarRetired,
    ChequeredFlag,
    Event,
    Flag,
    FlagChanged,
    LapCompleted,
    LapDeleted,
    SectorCompleted,
    SessionFinished,
    SessionKind,
    SessionStarted,
)
from simulator.errors import SourceError
from simulator.sources import load_source
from simulator.timefmt import format_ms, parse_ms

HEADER = (
    "NUMBER; DRIVER_NUMBER; LAP_NUMBER; LAP_TIME; LAP_IMPROVEMENT; "
    "CROSSING_FINISH_LINE_IN_PIT; S1; S1_IMPROVEMENT; S2; S2_IMPROVEMENT; S3; "
    "S3_IMPROVEMENT; KPH; ELAPSED; HOUR;S1_LARGE;S2_LARGE;S3_LARGE;TOP_SPEED;DRIVER_NAME;"
    "PIT_TIME;CLASS;GROUP;TEAM;MANUFACTURER;FLAG_AT_FL;S1_SECONDS;S2_SECONDS;S3_SECONDS;"
)
COLUMNS = [c.strip() for c in HEADER.split(";")]
# 1-based columns, as SourceError reports them.
COL = {name: i + 1 for i, name in enumerate(COLUMNS) if name}

RETIRED = {"7": 175, "20": 111, "63": 200, "94": 179, "77": 178, "78": 36, "87": 176, "88": 148}


@dataclass(kw_only=True)
class Lap:
    """One row of a hand-written export (times as the export writes them)."""

    car: str
    lap: int
    lap_time: str
    elapsed: str
    hour: str
    sectors: tuple[str, str, str] = ("", "", "")
    driver: str = "Ann DRIVER"
    car_class: str = "HYPERCAR"
    team: str = "Team A"
    manufacturer: str = "Maker"
    flag: str = "GF"
    in_pit: str = ""
    pit_time: str = ""
    improvement: str = "0"

    def cells(self) -> list[str]:
        values = {
            "NUMBER": self.car, "DRIVER_NUMBER": "1", "LAP_NUMBER": str(self.lap),
            "LAP_TIME": self.lap_time, "LAP_IMPROVEMENT": self.improvement,
            "CROSSING_FINISH_LINE_IN_PIT": self.in_pit, "S1": self.sectors[0],
            "S1_IMPROVEMENT": "0", "S2": self.sectors[1], "S2_IMPROVEMENT": "0",
            "S3": self.sectors[2], "S3_IMPROVEMENT": "0", "KPH": "170.1",
            "ELAPSED": self.elapsed, "HOUR": self.hour, "DRIVER_NAME": self.driver,
            "PIT_TIME": self.pit_time, "CLASS": self.car_class, "TEAM": self.team,
            "MANUFACTURER": self.manufacturer, "FLAG_AT_FL": self.flag,
        }
        return [values.get(name, "") for name in COLUMNS]


def write_csv(path: Path, laps: Sequence[Lap], *, bom: bool = True, crlf: bool = True) -> Path:
    """Write rows the way Al Kamel does: BOM, padded header, trailing ';', CRLF."""
    end = "\r\n" if crlf else "\n"
    lines = [HEADER] + [";".join(lap.cells()) for lap in laps]
    text = end.join(lines) + end
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def sector(ms: int) -> str:
    """A sector time as the export writes it: ss.fff, or m:ss.fff from a minute on."""
    return format_ms(ms) if ms >= 60_000 else f"{ms // 1000}.{ms % 1000:03d}"


def stint(car: str, laps: int, lap_ms: int, *, start: str = "14:00:00.000",
          offset_ms: int = 0, **kw: str) -> list[Lap]:
    """``laps`` laps of ``lap_ms`` each; ELAPSED and HOUR follow from the start."""
    start_ms = parse_ms(start)
    rows = []
    for n in range(1, laps + 1):
        elapsed = offset_ms + n * lap_ms
        third = lap_ms // 3
        rows.append(Lap(
            car=car, lap=n, lap_time=format_ms(lap_ms), elapsed=format_ms(elapsed),
            hour=format_ms((start_ms + elapsed) % 86_400_000, hours=True),
            sectors=(sector(third), sector(third), sector(lap_ms - 2 * third)), **kw))
    return rows


def events_of(path: Path, **kw: object) -> list[Event]:
    return list(alkamel.load(path, **kw).events())  # type: ignore[arg-type]


def laps_of(events: Sequence[Event]) -> list[LapCompleted]:
    return [e for e in events if isinstance(e, LapCompleted)]


@pytest.fixture(scope="module")
def race(race_csv: Path) -> list[Event]:
    return list(alkamel.load(race_csv).events())


class TestSharedRace:
    def test_lap_count(self, race: list[Event]) -> None:
        """The shared race gives 7,486 LapCompleted events."""
        assert len(laps_of(race)) == 7486

    def test_cars_and_classes(self, race: list[Event], race_csv: Path) -> None:
        """36 cars in two classes, in the entry list and on track, as the raw rows say."""
        started = race[0]
        assert isinstance(started, SessionStarted)
        assert len(started.entries) == 36
        assert started.classes == ["HYPERCAR", "LMGT3"]
        assert {lap.car for lap in laps_of(race)} == {e.car for e in started.entries}
        with race_csv.open(encoding="utf-8-sig", newline="") as f:
            raw = {row[0]: row[21] for row in list(csv.reader(f, delimiter=";"))[1:]}
        assert {e.car: e.car_class for e in started.entries} == raw

    def test_metadata(self, race: list[Event]) -> None:
        """The file name gives the series, event, race kind, duration, time zone and a
        portable session id."""
        started = race[0]
        assert isinstance(started, SessionStarted)
        assert started.series == "FIA WEC"
        assert started.event_name == "2024 8 Hours of Bahrain"
        assert started.session_kind is SessionKind.RACE
        assert started.duration_ms == 8 * 3_600_000
        assert started.time_zone == "Asia/Bahrain"
        assert started.scheduled_start == "14:00:24.054+03:00"
        assert started.session_id == "wec-2024-bahrain-8h-race-analysis"

    def test_entry_list(self, race: list[Event]) -> None:
        """Team, manufacturer and drivers (in order of appearance) come from the rows."""
        started = race[0]
        assert isinstance(started, SessionStarted)
        toyota = next(e for e in started.entries if e.car == "8")
        assert toyota.team == "Toyota Gazoo Racing"
        assert toyota.manufacturer == "Toyota"
        assert set(toyota.drivers) == {"Sébastien BUEMI", "Brendon HARTLEY", "Ryo HIRAKAWA"}
        first = next(lap.driver for lap in laps_of(race) if lap.car == "8")
        assert toyota.drivers[0] == first

    def test_exactly_two_deleted_laps(self, race: list[Event]) -> None:
        """#54 lap 175 and #82 lap 197 are deleted, each at the car's next crossing."""
        deleted = [e for e in race if isinstance(e, LapDeleted)]
        assert [(e.car, e.lap) for e in deleted] == [("54", 175), ("82", 197)]
        for e in deleted:
            nxt = next(lap for lap in laps_of(race) if lap.car == e.car and lap.lap == e.lap + 1)
            assert e.session_time_ms == nxt.session_time_ms
            assert e.seq > nxt.seq
            assert "LAP_IMPROVEMENT" in e.reason

    def test_chequered_flag_on_leader(self, race: list[Event]) -> None:
        """The chequered flag falls right after #8 completes lap 235."""
        flags = [e for e in race if isinstance(e, ChequeredFlag)]
        assert len(flags) == 1
        flag = flags[0]
        assert (flag.leader, flag.laps) == ("8", 235)
        lap = next(e for e in laps_of(race) if e.car == "8" and e.lap == 235)
        assert (flag.seq, flag.session_time_ms) == (lap.seq + 1, lap.session_time_ms)

    def test_retired_cars(self, race: list[Event]) -> None:
        """The eight cars that never took the flag get CarRetired with their lap count."""
        retired = {e.car: e.laps for e in race if isinstance(e, CarRetired)}
        assert retired == RETIRED
        finished = {e.car for e in laps_of(race) if e.flag is Flag.CHEQUERED}
        assert len(finished) == 28 and not finished & set(RETIRED)

    def test_seq_and_time_order(self, race: list[Event]) -> None:
        """seq runs gapless from 1 and session time never goes backwards."""
        assert [e.seq for e in race] == list(range(1, len(race) + 1))
        times = [e.session_time_ms for e in race]
        assert times == sorted(times)
        assert isinstance(race[0], SessionStarted) and isinstance(race[-1], SessionFinished)

    def test_fastest_lap(self, race: list[Event]) -> None:
        """#8 lap 208 is 1:50.492, exactly 110492 ms, by Buemi."""
        lap = next(e for e in laps_of(race) if e.car == "8" and e.lap == 208)
        assert lap.lap_time_ms == 110492
        assert lap.driver == "Sébastien BUEMI"
        assert lap.valid

    def test_lap_one_invalid(self, race: list[Event]) -> None:
        """Every lap 1 of the race is invalid, and only lap 1."""
        invalid = {(e.car, e.lap) for e in laps_of(race) if not e.valid}
        assert {lap for _, lap in invalid} == {1}
        assert len(invalid) == 36

    def test_flags(self, race: list[Event]) -> None:
        """Full-course yellows and safety cars become FlagChanged events, ending chequered."""
        changes = [(e.previous, e.flag) for e in race if isinstance(e, FlagChanged)]
        assert changes[0] == (Flag.GREEN, Flag.FCY)
        assert changes[-1] == (Flag.GREEN, Flag.CHEQUERED)
        assert changes.count((Flag.GREEN, Flag.SAFETY_CAR)) == 2

    def test_pit_crossings(self, race: list[Event]) -> None:
        """In-laps followed by another lap count 9 stops for #8, 7 for #51, 8 for #55."""
        by_car: dict[str, list[LapCompleted]] = collections.defaultdict(list)
        for lap in laps_of(race):
            by_car[lap.car].append(lap)
        stops = {car: sum(1 for lap in laps[:-1] if lap.in_pit) for car, laps in by_car.items()}
        assert (stops["8"], stops["51"], stops["55"]) == (9, 7, 8)
        out_laps = [b for a, b in zip(by_car["8"], by_car["8"][1:], strict=False) if a.in_pit]
        assert all(lap.pit_time_ms for lap in out_laps)

    def test_size_and_reiteration(self, race_csv: Path) -> None:
        """size counts the events and events() can be iterated twice with the same result."""
        source = alkamel.load(race_csv)
        first = list(source.events())
        assert source.size == len(first)
        assert list(source.events()) == first

    def test_sector_granularity(self, race_csv: Path) -> None:
        """Sector events are interleaved in time order, each before its lap's crossing."""
        events = list(alkamel.load(race_csv, granularity="sector").events())
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        times = [e.session_time_ms for e in events]
        assert times == sorted(times)
        sectors = [e for e in events if isinstance(e, SectorCompleted)]
        # #50's lap 1 lacks S2 and S3; every other lap has all three sectors.
        assert len(sectors) == 7486 * 3 - 2
        crossing = {(e.car, e.lap): e.seq for e in laps_of(events)}
        assert all(s.seq < crossing[(s.car, s.lap)] for s in sectors)
        assert len(laps_of(events)) == 7486

    def test_load_time(self, race_csv: Path) -> None:
        """Reading the file and building the whole log takes well under a second."""
        began = time.perf_counter()
        alkamel.load(race_csv)
        assert time.perf_counter() - began < 1.0

    def test_dispatch(self, race_csv: Path) -> None:
        """load_source sends a .csv to this loader and passes the session id on."""
        source = load_source(str(race_csv), session_id="bahrain")
        assert source.session_id == "bahrain"
        first = next(iter(source.events()))
        assert first.session_id == "bahrain"


class TestQuirks:
    def test_bom_padding_trailing_separator(self, tmp_path: Path) -> None:
        """BOM, padded header cells, trailing ';' and CRLF all load."""
        path = write_csv(tmp_path / "race.csv", stint("8", 3, 110_000))
        laps = laps_of(events_of(path))
        assert [(e.car, e.lap, e.lap_time_ms) for e in laps] == [
            ("8", 1, 110_000), ("8", 2, 110_000), ("8", 3, 110_000)]
        assert laps[0].driver == "Ann DRIVER"

    def test_plain_utf8_and_lf(self, tmp_path: Path) -> None:
        """A file without BOM and with LF line ends loads the same."""
        a = events_of(write_csv(tmp_path / "a.csv", stint("8", 3, 110_000)))
        b = events_of(write_csv(tmp_path / "a2.csv", stint("8", 3, 110_000), bom=False,
                                crlf=False), session_id="a")
        assert [e for e in a[1:] if not isinstance(e, SessionStarted)] == [
            e for e in b[1:] if not isinstance(e, SessionStarted)]

    def test_007_and_7_are_different_cars(self, tmp_path: Path) -> None:
        """Car numbers are strings: 007 and 7 are two cars, ties broken the same either way."""
        rows = stint("7", 2, 100_000, team="Seven") + stint("007", 2, 100_000, team="Bond")
        a = events_of(write_csv(tmp_path / "a.csv", rows), session_id="s")
        b = events_of(write_csv(tmp_path / "b.csv", rows[2:] + rows[:2]), session_id="s")
        started = a[0]
        assert isinstance(started, SessionStarted)
        assert {e.car: e.team for e in started.entries} == {"7": "Seven", "007": "Bond"}
        order = [(e.car, e.lap) for e in laps_of(a)]
        assert order == [(e.car, e.lap) for e in laps_of(b)]
        assert sorted(order) == [("007", 1), ("007", 2), ("7", 1), ("7", 2)]

    def test_untimed_lap(self, tmp_path: Path) -> None:
        """An empty LAP_TIME is an untimed lap: lap_time_ms None, still a completed lap."""
        rows = stint("8", 3, 110_000)
        rows[1].lap_time = ""
        rows[1].sectors = ("", "", "")
        laps = laps_of(events_of(write_csv(tmp_path / "race.csv", rows)))
        assert laps[1].lap == 2 and laps[1].lap_time_ms is None
        assert laps[1].sector_times_ms == [None, None, None]

    def test_sector_formats(self, tmp_path: Path) -> None:
        """Sectors are ss.fff or m:ss.fff (a minute or more); an empty one is None."""
        rows = stint("8", 2, 110_000)
        rows[1].sectors = ("35.849", "1:05.123", "")
        laps = laps_of(events_of(write_csv(tmp_path / "race.csv", rows)))
        assert laps[1].sector_times_ms == [35_849, 65_123, None]

    def test_elapsed_formats(self, tmp_path: Path) -> None:
        """ELAPSED reads m:ss.fff and h:mm:ss.fff alike."""
        rows = stint("8", 2, 1_900_000)  # 31:40 laps: the second crossing is past an hour
        rows[1].elapsed = "1:03:20.000"
        laps = laps_of(events_of(write_csv(tmp_path / "race.csv", rows)))
        assert [e.session_time_ms for e in laps] == [1_900_000, 3_800_000]

    def test_midnight_roll_over(self, tmp_path: Path) -> None:
        """HOUR passing midnight keeps the start time of day and the crossing order."""
        rows = stint("8", 4, 100_000, start="23:57:00.000")
        assert [r.hour for r in rows][:2] == ["23:58:40.000", "0:00:20.000"]
        rows[3].elapsed = ""  # timed from HOUR alone, across midnight
        events = events_of(write_csv(tmp_path / "night.csv", rows))
        started = events[0]
        assert isinstance(started, SessionStarted)
        assert started.scheduled_start == "23:57:00.000"
        assert [e.session_time_ms for e in laps_of(events)] == [
            100_000, 200_000, 300_000, 400_000]

    def test_pit_crossing(self, tmp_path: Path) -> None:
        """B marks an in-lap; PIT_TIME on the out-lap is in integer ms."""
        rows = stint("8", 3, 110_000)
        rows[1].in_pit = "B"
        rows[2].pit_time = "0:01:16.688"
        laps = laps_of(events_of(write_csv(tmp_path / "race.csv", rows)))
        assert [e.in_pit for e in laps] == [False, True, False]
        assert laps[2].pit_time_ms == 76_688

    def test_flag_codes(self, tmp_path: Path) -> None:
        """GF, FCY, SF and FF map to green, full-course yellow, safety car and chequered."""
        rows = stint("8", 4, 110_000)
        for row, code in zip(rows, ["GF", "FCY", "SF", "FF"], strict=True):
            row.flag = code
        laps = laps_of(events_of(write_csv(tmp_path / "race.csv", rows)))
        assert [e.flag for e in laps] == [Flag.GREEN, Flag.FCY, Flag.SAFETY_CAR,
                                          Flag.CHEQUERED]

    def test_unknown_flag(self, tmp_path: Path) -> None:
        """An unknown FLAG_AT_FL is an error naming the line and the column."""
        rows = stint("8", 3, 110_000)
        rows[1].flag = "RF?"
        path = write_csv(tmp_path / "race.csv", rows)
        with pytest.raises(SourceError) as info:
            alkamel.load(path)
        err = info.value
        assert (err.path, err.line, err.column) == (str(path), 3, COL["FLAG_AT_FL"])
        assert "FLAG_AT_FL 'RF?'" in str(err) and f"{path}:3:{COL['FLAG_AT_FL']}" in str(err)

    def test_cell_count(self, tmp_path: Path) -> None:
        """A line without its trailing separator (a cell short) is refused, not skipped."""
        path = write_csv(tmp_path / "race.csv", stint("8", 3, 110_000))
        lines = path.read_bytes().split(b"\r\n")
        lines[2] = lines[2].removesuffix(b";")
        path.write_bytes(b"\r\n".join(lines))
        with pytest.raises(SourceError, match="29 cells where the header has 30") as info:
            alkamel.load(path)
        assert info.value.line == 3

    def test_bad_time(self, tmp_path: Path) -> None:
        """A LAP_TIME that is not a time names its line and column."""
        rows = stint("8", 3, 110_000)
        rows[2].lap_time = "1:5x.000"
        message = re.escape("LAP_TIME '1:5x.000' is not a time")
        with pytest.raises(SourceError, match=message) as info:
            alkamel.load(write_csv(tmp_path / "race.csv", rows))
        assert (info.value.line, info.value.column) == (4, COL["LAP_TIME"])

    def test_clock_disagreement(self, tmp_path: Path) -> None:
        """ELAPSED and HOUR that disagree about the start name the line."""
        rows = stint("8", 4, 110_000)
        rows[2].elapsed = "2:30.000"
        with pytest.raises(SourceError, match="put the start at") as info:
            alkamel.load(write_csv(tmp_path / "race.csv", rows))
        assert (info.value.line, info.value.column) == (4, COL["ELAPSED"])

    def test_lap_out_of_order(self, tmp_path: Path) -> None:
        """A lap number that breaks the count names its own line."""
        rows = stint("8", 5, 110_000)
        rows[2].lap = 2
        with pytest.raises(SourceError, match="out of order") as info:
            alkamel.load(write_csv(tmp_path / "race.csv", rows))
        assert (info.value.line, info.value.column) == (4, COL["LAP_NUMBER"])

    def test_missing_column(self, tmp_path: Path) -> None:
        """A header without FLAG_AT_FL is refused on line 1."""
        path = tmp_path / "race.csv"
        path.write_text("NUMBER;LAP_NUMBER;LAP_TIME;ELAPSED;HOUR;DRIVER_NAME;CLASS;TEAM;\n")
        with pytest.raises(SourceError, match="FLAG_AT_FL") as info:
            alkamel.load(path)
        assert info.value.line == 1

    def test_not_utf8(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 name their line."""
        path = write_csv(tmp_path / "race.csv", stint("8", 3, 110_000))
        path.write_bytes(path.read_bytes().replace(b"Ann", b"\xff\xfe", 2))
        with pytest.raises(SourceError, match="not UTF-8") as info:
            alkamel.load(path)
        assert info.value.line == 2

    def test_deleted_lap_inferred(self, tmp_path: Path) -> None:
        """A lap faster than the marked best is completed, then deleted at the next crossing."""
        rows = stint("8", 5, 110_000)
        rows[1].improvement = "2"
        rows[3].lap_time = "1:49.000"  # faster than the marked best: deleted
        rows[0].lap_time = "1:40.000"  # lap 1 of a race never counts: not deleted
        events = events_of(write_csv(tmp_path / "race.csv", rows))
        deleted = [e for e in events if isinstance(e, LapDeleted)]
        assert [(e.car, e.lap) for e in deleted] == [("8", 4)]
        lap5 = next(e for e in laps_of(events) if e.lap == 5)
        assert deleted[0].session_time_ms == lap5.session_time_ms
        assert deleted[0].seq == lap5.seq + 1

    def test_qualifying_from_name(self, tmp_path: Path) -> None:
        """A qualifying file keeps lap 1 valid, flags chequered on FF and retires nobody."""
        rows = stint("8", 3, 110_000) + stint("7", 2, 111_000, team="Team B")
        rows[2].flag = "FF"
        path = write_csv(tmp_path / "wec-2023-bahrain-qualifying.analysis.csv", rows)
        events = events_of(path)
        started = events[0]
        assert isinstance(started, SessionStarted)
        assert started.session_kind is SessionKind.QUALIFYING
        assert started.duration_ms is None
        assert all(e.valid for e in laps_of(events))
        flags = [e for e in events if isinstance(e, ChequeredFlag)]
        assert [(f.leader, f.session_time_ms) for f in flags] == [("8", 330_000)]
        assert not [e for e in events if isinstance(e, CarRetired)]

    def test_overrides(self, tmp_path: Path) -> None:
        """Keyword overrides set SessionStarted fields; an unknown one is refused."""
        path = write_csv(tmp_path / "race.csv", stint("8", 3, 110_000))
        started = events_of(path, series="ELMS", scheduled_start="2024-04-14T12:00:00+02:00",
                            session_kind="practice")[0]
        assert isinstance(started, SessionStarted)
        assert (started.series, started.scheduled_start) == ("ELMS", "2024-04-14T12:00:00+02:00")
        assert started.session_kind is SessionKind.PRACTICE
        with pytest.raises(SourceError, match="unknown SessionStarted field"):
            alkamel.load(path, colour="red")

    def test_date_in_name(self, tmp_path: Path) -> None:
        """A date in the file name gives a full scheduled start with the circuit's offset."""
        path = write_csv(tmp_path / "wec-2024-03-02-bahrain-race.csv",
                         stint("8", 2, 110_000, start="14:00:24.054"))
        started = events_of(path)[0]
        assert isinstance(started, SessionStarted)
        assert started.scheduled_start == "2024-03-02T14:00:24.054+03:00"


# --- malformed lines (hypothesis) -----------------------------------------------------


@pytest.fixture(scope="module")
def sample_lines(race_csv: Path) -> list[str]:
    """Header plus the lines of three cars of three teams: #78 whole, #8 and #51 in part."""
    lines = race_csv.read_bytes().decode("utf-8-sig").split("\r\n")
    keep: dict[str, int] = {"78": 40, "8": 30, "51": 30}
    out = [lines[0]]
    seen: collections.Counter[str] = collections.Counter()
    for line in lines[1:]:
        car = line.split(";", 1)[0]
        if car in keep and seen[car] < keep[car]:
            seen[car] += 1
            out.append(line)
    return out


CELL_VALUES = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]),
            max_size=12),
    st.sampled_from(["", " ", "0", "1", "2", "3", "B", "FF", "XX", "7", "8", "51", "78", "007",
                     "-1", "1:2", "1:60.000", "99:59.999", "25:00:00.000", "0:00:01.000",
                     "1:53.136", "2:03:04.5", "HYPERCAR", "LMGT3", ";", "1e3"]),
)


class TestMalformedLines:
    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_mutated_line(self, sample_lines: list[str], data: st.DataObject) -> None:
        """Dropping or garbling one cell gives a full load or a SourceError naming that line."""
        index = data.draw(st.integers(1, len(sample_lines) - 1), label="line index")
        cells = sample_lines[index].split(";")
        column = data.draw(st.integers(0, len(cells) - 1), label="cell")
        if data.draw(st.booleans(), label="drop"):
            del cells[column]
        else:
            cells[column] = data.draw(CELL_VALUES, label="value")
        lines = list(sample_lines)
        lines[index] = ";".join(cells)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "mutated.csv"
            path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
            try:
                events = list(alkamel.load(path).events())
            except SourceError as err:
                assert err.line == index + 1, str(err)
                assert err.path == str(path)
                return
        assert len(laps_of(events)) == len(sample_lines) - 1
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
