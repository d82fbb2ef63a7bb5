"""Scenario TOML files: what they load into, and every kind of error, with its line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.contract import (
    Disqualified,
    Flag,
    LapCompleted,
    LapDeleted,
    SectorCompleted,
    SessionKind,
    SessionStarted,
    TimePenalty,
)
from simulator.errors import SourceError
from simulator.scenario import load, parse, parse_text
from simulator.sources import load_source
from simulator.tomlpos import locate

BASE = '''\
format = 1

[session]
series = "Test Series"
event = "Test Event"
kind = "qualifying"
scheduled_start = "2023-11-03T17:10:00+03:00"
time_zone = "Asia/Bahrain"
duration = "30:00"
classes = ["A", "B"]
source = "published"
synthesized = ["duration"]

[[session.segments]]
classes = ["B"]
start = "15:00"
duration = "10:00"
source = "published"

[[entries]]
car = "1"
class = "A"
team = "Team One"
manufacturer = "Maker"
drivers = ["Ann One", "Bob One"]
source = "published"
synthesized = ["drivers"]

[[entries]]
car = "007"
class = "A"
team = "Team Double-O"
drivers = ["Cat Seven"]
source = "synthesized"

[[entries]]
car = "7"
class = "B"
team = "Team Seven"
drivers = ["Dan Seven"]
source = "seed"

[[cars]]
car = "1"
driver = "Ann One"
start = "0:30"
source = "synthesized"
laps = [
  { lap = 1, time = "2:00.000", sectors = ["40.000", "45.000", "35.000"] },
  { time = "1:40", source = "published", synthesized = ["sectors"], sectors = ["31", "40", "29"] },
  { lap = 3, time = "2:10.000", in_pit = true, flag = "YELLOW" },
  { lap = 4, time = "3:30.000", pit_time = "1:20.000", driver = "Bob One" },
]

[[cars]]
car = "007"
driver = "Cat Seven"
source = "synthesized"
laps = [
  { time = "2:05.000" },
  { time = "1:39.000" },
  { at = "8:00", valid = false },
  { time = "1:41.500" },
]

[[cars]]
car = "7"
driver = "Dan Seven"
source = "synthesized"
laps = [
  { time = "2:10.000" },
  { time = "1:50.000" },
]

[[corrections]]
kind = "LapDeleted"
at = "6:00"
car = "007"
lap = 2
reason = "track limits"
source = "synthesized"

[[corrections]]
kind = "TimePenalty"
at = "7:00"
car = "1"
penalty = "5"
reason = "pit lane speeding"
source = "published"

[[corrections]]
kind = "Disqualified"
at = "29:00"
car = "7"
reason = "technical"
source = "synthesized"

[championship]
name = "Drivers"
source = "published"
rounds_remaining = 0

[championship.rules]
class = "A"
race_points = [25, 18, 15]
pole_points = 1

[[championship.standings]]
car = "1"
name = "One"
points = 50
places = [1, 2]

[[championship.standings]]
car = "007"
name = "Double-O"
points = 40
places = [2]
synthesized = ["places"]
'''


def write(tmp_path: Path, text: str, name: str = "mini.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def mutate(old: str, new: str, count: int = 1) -> str:
    assert BASE.count(old) >= count, old
    return BASE.replace(old, new, count)


class TestLoad:
    def test_session_started_carries_metadata_entries_and_championship(self, tmp_path: Path):
        """The SessionStarted holds the session, the entry list and the championship setup."""
        events = list(load(write(tmp_path, BASE)).events())
        started = events[0]
        assert isinstance(started, SessionStarted)
        assert started.session_id == "mini"
        assert started.series == "Test Series" and started.event_name == "Test Event"
        assert started.session_kind is SessionKind.QUALIFYING
        assert started.scheduled_start == "2023-11-03T17:10:00+03:00"
        assert started.duration_ms == 30 * 60_000
        assert [e.car for e in started.entries] == ["1", "007", "7"]
        assert started.entries[0].manufacturer == "Maker"
        champ = started.championship
        assert champ is not None
        assert champ.rules.race_points == [25, 18, 15] and champ.rules.championship_class == "A"
        assert [(c.car, c.points, c.places) for c in champ.standings] == [
            ("1", 50, [1, 2]), ("007", 40, [2])]

    def test_provenance_reaches_the_events(self, tmp_path: Path):
        """Sources mark entries, competitors, laps, corrections and session values."""
        events = list(load(write(tmp_path, BASE)).events())
        started = events[0]
        assert isinstance(started, SessionStarted)
        assert [e.synthesized for e in started.entries] == [True, True, False]
        assert started.championship is not None
        assert [c.published for c in started.championship.standings] == [True, False]
        assert started.synthesized == ["duration_ms", "entries.1.drivers", "entries.007",
                                       "championship.standings.007.places"]
        laps = {(e.car, e.lap): e for e in events if isinstance(e, LapCompleted)}
        assert laps[("1", 2)].synthesized is False  # its own source: published
        assert laps[("1", 1)].synthesized is True
        assert laps[("7", 1)].synthesized is True
        deleted = next(e for e in events if isinstance(e, LapDeleted))
        penalty = next(e for e in events if isinstance(e, TimePenalty))
        assert deleted.synthesized is True and penalty.synthesized is False

    def test_crossings_accumulate_from_the_start_or_are_pinned(self, tmp_path: Path):
        """A crossing is the car's start plus its lap times, unless `at` pins it."""
        events = list(load(write(tmp_path, BASE)).events())
        laps = {(e.car, e.lap): e for e in events if isinstance(e, LapCompleted)}
        assert laps[("1", 1)].session_time_ms == 30_000 + 120_000
        assert laps[("1", 2)].session_time_ms == 150_000 + 100_000
        assert laps[("007", 2)].session_time_ms == 125_000 + 99_000
        assert laps[("007", 3)].session_time_ms == 480_000
        assert laps[("007", 3)].lap_time_ms is None and laps[("007", 3)].valid is False
        assert laps[("007", 4)].session_time_ms == 480_000 + 101_500
        # Car 7's class runs in the segment from 15:00: it starts there by default.
        assert laps[("7", 1)].session_time_ms == 15 * 60_000 + 130_000
        times = [e.session_time_ms for e in events]
        assert times == sorted(times)

    def test_lap_fields_pass_through(self, tmp_path: Path):
        """Sectors, in-pit, pit time, flag and driver reach the LapCompleted."""
        events = list(load(write(tmp_path, BASE)).events())
        laps = {(e.car, e.lap): e for e in events if isinstance(e, LapCompleted)}
        assert laps[("1", 1)].sector_times_ms == [40_000, 45_000, 35_000]
        assert laps[("1", 3)].in_pit is True and laps[("1", 3)].flag is Flag.YELLOW
        assert laps[("1", 4)].pit_time_ms == 80_000 and laps[("1", 4)].driver == "Bob One"
        assert laps[("1", 1)].driver == "Ann One"

    def test_corrections_become_their_events(self, tmp_path: Path):
        """LapDeleted, TimePenalty and Disqualified arrive at their moments with reasons."""
        events = list(load(write(tmp_path, BASE)).events())
        deleted = next(e for e in events if isinstance(e, LapDeleted))
        penalty = next(e for e in events if isinstance(e, TimePenalty))
        dsq = next(e for e in events if isinstance(e, Disqualified))
        assert (deleted.car, deleted.lap, deleted.session_time_ms) == ("007", 2, 360_000)
        assert (penalty.car, penalty.penalty_ms, penalty.reason) == ("1", 5000,
                                                                     "pit lane speeding")
        assert (dsq.car, dsq.session_time_ms, dsq.reason) == ("7", 29 * 60_000, "technical")

    def test_session_id_from_file_stem_table_or_caller(self, tmp_path: Path):
        """The session id is the file's stem, `session.id`, or the caller's override."""
        path = write(tmp_path, BASE)
        assert load(path).session_id == "mini"
        assert load(path, session_id="other").session_id == "other"
        named = write(tmp_path, mutate('series = "Test Series"',
                                       'id = "named"\nseries = "Test Series"'), "x.toml")
        assert load(named).session_id == "named"
        assert {e.session_id for e in load(named).events()} == {"named"}

    def test_sector_granularity_and_dispatch(self, tmp_path: Path):
        """load_source dispatches .toml here; sector granularity adds SectorCompleted."""
        path = write(tmp_path, BASE)
        lap_events = list(load_source(str(path)).events())
        sector_events = list(load_source(str(path), granularity="sector").events())
        assert not any(isinstance(e, SectorCompleted) for e in lap_events)
        sectors = [e for e in sector_events if isinstance(e, SectorCompleted)]
        assert len(sectors) == 2 * 3  # car 1 laps 1 and 2 have sector times
        assert [e.seq for e in sector_events] == list(range(1, len(sector_events) + 1))

    def test_source_iterates_again(self, tmp_path: Path):
        """A loaded source gives the same log every time it is read."""
        source = load(write(tmp_path, BASE))
        assert list(source.events()) == list(source.events())
        assert source.size == len(list(source.events()))

    def test_the_bahrain_scenario_loads(self):
        """The committed 2023 Bahrain qualifying scenario parses with all 37 cars."""
        path = Path(__file__).resolve().parents[1] / "scenarios/wec-2023-bahrain-qualifying.toml"
        scenario = parse(path)
        assert len(scenario.started["entries"]) == 37


def position_of(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """Line and column (from 1) of the n-th occurrence of ``needle`` in ``text``."""
    at = -1
    for _ in range(occurrence):
        at = text.index(needle, at + 1)
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


# (name, old, new, message fragment, needle in the new text where the error points)
ERRORS = [
    ("syntax", 'kind = "qualifying"', "kind = qualifying", "TOML syntax", "qualifying"),
    ("missing key", 'series = "Test Series"\n', "", "missing key `series`", "[session]"),
    ("wrong type", "points = 50", 'points = "50"', "must be an integer", '"50"'),
    ("car as a number", 'car = "7"\nclass = "B"', 'car = 7\nclass = "B"',
     "must be a string", "7\nclass"),
    ("unknown car in laps", 'car = "7"\ndriver', 'car = "9"\ndriver', "unknown car '9'",
     '"9"\ndriver'),
    ("unknown car in a correction", 'car = "1"\npenalty', 'car = "3"\npenalty',
     "unknown car '3'", '"3"\npenalty'),
    ("bad lap time", '"1:41.500"', '"1:4x.500"', "not a time", '"1:4x.500"'),
    ("bad session time", 'at = "6:00"', 'at = "six"', "not a time", '"six"'),
    ("unknown key", 'team = "Team One"', 'team = "Team One"\ncolour = "red"',
     "unknown key `colour`", "colour"),
    ("unknown key in a lap", '{ time = "2:05.000" }', '{ time = "2:05.000", tyre = "soft" }',
     "unknown key `tyre`", "tyre"),
    ("unknown class", 'class = "B"\nteam', 'class = "Z"\nteam', "unknown class 'Z'",
     '"Z"'),
    ("bad source", 'source = "seed"', 'source = "rumour"', "expected one of", '"rumour"'),
    ("entered twice", 'car = "007"\nclass', 'car = "1"\nclass', "entered twice",
     '"1"\nclass', 2),
    ("lap out of order", "{ lap = 3,", "{ lap = 5,", "lap 5 where lap 3", "5,"),
    ("sectors do not add up", '"35.000"', '"35.001"', "add up to 2:00.001", "[\"40.000\""),
    ("sector count", '["40.000", "45.000", "35.000"]', '["40.000", "80.000"]',
     "2 sector times", '["40.000", "80.000"]'),
    ("bad sector", '"45.000"', '"4x.000"', "sector 2", '"4x.000"'),
    ("unknown flag", 'flag = "YELLOW"', 'flag = "PURPLE"', "expected one of", '"PURPLE"'),
    ("unknown driver", 'driver = "Bob One"', 'driver = "Eve"', "not entered in car 1",
     '"Eve"'),
    ("crossing goes back", '{ at = "8:00"', '{ at = "1:00"', "not after the car's previous",
     '"1:00"'),
    ("lap without time", '{ time = "1:41.500" }', '{ valid = true }', "give its `time`",
     "{ valid"),
    ("unknown correction", 'kind = "Disqualified"', 'kind = "Warned"', "expected one of",
     '"Warned"'),
    ("deleting a missing lap", "lap = 2\nreason", "lap = 9\nreason", "has no lap 9",
     "9\nreason"),
    ("penalty without amount", 'penalty = "5"\n', "", "missing key `penalty`",
     "[[corrections]]", 2),
    ("start without offset", '"2023-11-03T17:10:00+03:00"', '"2023-11-03T17:10:00"',
     "with its UTC offset", '"2023-11-03T17:10:00"'),
    ("championship class", 'class = "A"\nrace_points', 'class = "Q"\nrace_points',
     "unknown class 'Q'", '"Q"'),
    ("lap after its class session", '{ time = "1:50.000" }',
     '{ time = "1:50.000" },\n  { time = "8:00.000" },\n  { time = "1:50.000" }',
     "mark it valid = false", '{ time = "1:50.000" }', 2),
    ("leaves before its class session", 'car = "7"\ndriver = "Dan Seven"',
     'car = "7"\ndriver = "Dan Seven"\nstart = "14:00"', "before the B session", '"14:00"'),
    ("segment class", 'classes = ["B"]', 'classes = ["C"]', "unknown class 'C'", '"C"'),
    ("synthesized lists a missing key", 'synthesized = ["duration"]',
     'synthesized = ["weather"]', "`synthesized` lists 'weather'", '"weather"'),
    ("format version", "format = 1", "format = 2", "format 2 is not known", "2"),
    ("no duration", 'duration = "30:00"\nclasses = ["A", "B"]\nsource = "published"\n'
     'synthesized = ["duration"]', 'classes = ["A", "B"]\nsource = "published"',
     "give `duration`", "[session]"),
    ("empty standings points", "points = 40", "points = -3", "at least 0", "-3"),
    ("laps twice", 'car = "7"\ndriver = "Dan Seven"', 'car = "1"\ndriver = "Dan Seven"',
     "two [[cars]] tables", '"1"\ndriver = "Dan'),
]


CASES = [(*case, 1) if len(case) == 5 else case for case in ERRORS]


class TestErrors:
    @pytest.mark.parametrize(("old", "new", "fragment", "needle", "occurrence"),
                             [case[1:] for case in CASES], ids=[case[0] for case in CASES])
    def test_error_names_file_line_and_column(self, tmp_path: Path, old: str, new: str,
                                              fragment: str, needle: str, occurrence: int):
        """Each kind of mistake is a SourceError at the offending key, value or table."""
        text = mutate(old, new)
        path = write(tmp_path, text)
        with pytest.raises(SourceError) as info:
            load(path)
        err = info.value
        assert fragment in err.reason, err.reason
        assert err.path == str(path)
        assert (err.line, err.column) == position_of(text, needle, occurrence), str(err)
        assert str(err).startswith(f"{path}:{err.line}:{err.column}: ")

    def test_syntax_error_at_end_of_document(self, tmp_path: Path):
        """A syntax error tomllib reports at the end of the text still gets a line."""
        text = BASE + "[broken"
        with pytest.raises(SourceError) as info:
            load(write(tmp_path, text))
        assert info.value.line is not None and info.value.line >= text.count("\n")

    def test_not_utf8(self, tmp_path: Path):
        """Bytes that are not UTF-8 are reported at their line and column."""
        path = tmp_path / "bad.toml"
        path.write_bytes(b'format = 1\nx = "\xff"\n')
        with pytest.raises(SourceError, match="not UTF-8") as info:
            load(path)
        assert (info.value.line, info.value.column) == (2, 6)

    def test_missing_file(self, tmp_path: Path):
        """A file that cannot be read is a SourceError naming it."""
        with pytest.raises(SourceError, match="cannot read"):
            parse(tmp_path / "nowhere.toml")

    def test_no_entries(self):
        """A scenario without an entry list is refused."""
        text = BASE[:BASE.index("[[entries]]")]
        with pytest.raises(SourceError, match="missing key `entries`"):
            parse_text(text, path="x.toml")

    def test_table_where_a_value_belongs(self):
        """A value that should be a table says so."""
        with pytest.raises(SourceError, match=r"\[session\] must be a table") as info:
            parse_text('format = 1\nsession = "now"\n', path="x.toml")
        assert (info.value.line, info.value.column) == (2, 11)


class TestLocate:
    def test_paths_of_keys_values_and_tables(self):
        """The locator finds keys, values, array items and inline tables by path."""
        text = ('# c\ntitle = "x" # c\n[a]\n"quoted key".sub = 3\n[[b]]\nv = 1\n'
                'laps = [\n  { n = 1 }, # one\n  { n = 2, s = ["x", "y"] },\n]\n'
                '[[b]]\nv = """multi\nline"""\n[b.c]\nw = 2\n')
        pos = locate(text)
        assert pos.find(("title",)) == (2, 9)
        assert pos.find(("title",), key=True) == (2, 1)
        assert pos.find(("a", "quoted key", "sub")) == (4, 20)
        assert pos.find(("b", 0, "laps", 1, "n")) == (9, 9)
        assert pos.find(("b", 0, "laps", 1, "s", 1)) == (9, 22)
        assert pos.find(("b", 1, "c", "w")) == (15, 5)
        # A missing key points at the table that should hold it.
        assert pos.find(("b", 1, "missing")) == (11, 1)
        assert pos.find(("b", 0, "laps", 0, "missing")) == (8, 3)
