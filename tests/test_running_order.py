"""The running-order projection: unit sessions built event by event, then the real race."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.folding import Folder, fold_all
from consumers.projections.running_order import (
    CONSUMER,
    RankedList,
    RunningOrderView,
    apply,
    initial,
    typed_view,
    view,
)
from simulator.contract import (
    CarRetired,
    ChequeredFlag,
    Disqualified,
    Entry,
    Event,
    FlagChanged,
    LapCompleted,
    LapDeleted,
    SectorCompleted,
    SessionKind,
    SessionStarted,
    TimePenalty,
)
from simulator.eventlog import EventLogBuilder
from simulator.sources import load_source
from simulator.timefmt import parse_ms

ENTRIES = (("1", "HYPERCAR"), ("2", "HYPERCAR"), ("3", "HYPERCAR"), ("50", "LMGT3"),
           ("60", "LMGT3"))


class Session:
    """A hand-built session: emits events in time order with gapless seq."""

    def __init__(self, kind: SessionKind = SessionKind.RACE,
                 entries: tuple[tuple[str, str], ...] = ENTRIES) -> None:
        self.kind = kind
        self.log = EventLogBuilder("unit")
        self.laps: dict[str, int] = {}
        self.events: list[Event] = [self.log.emit(
            SessionStarted, session_time_ms=0, series="Test", event_name="Unit",
            session_kind=kind, scheduled_start="2024-03-02T14:00:00+03:00",
            time_zone="Asia/Bahrain", classes=sorted({c for _, c in entries}),
            entries=[Entry(car=car, car_class=cls, team=f"Team {car}",
                           drivers=[f"Driver {car}"]) for car, cls in entries],
        )]

    def lap(self, car: str, t: int, ms: int | None = None, *, valid: bool | None = None,
            in_pit: bool = False, sectors: list[int | None] | None = None,
            driver: str = "") -> LapCompleted:
        n = self.laps.get(car, 0) + 1
        self.laps[car] = n
        if valid is None:
            valid = n > 1 or self.kind is not SessionKind.RACE
        event = self.log.emit(LapCompleted, session_time_ms=t, car=car,
                              driver=driver or f"Driver {car}", lap=n,
                              lap_time_ms=ms, sector_times_ms=sectors or [], in_pit=in_pit,
                              valid=valid)
        self.events.append(event)
        return event

    def emit(self, event_type: type[Any], t: int, **fields: Any) -> None:
        self.events.append(self.log.emit(event_type, session_time_ms=t, **fields))

    def view(self) -> dict[str, Any]:
        state = initial()
        for event in self.events:
            state = apply(state, event)
        return view(state)

    def rows(self) -> dict[str, dict[str, Any]]:
        return {row["car"]: row for row in self.view()["rows"]}

    def order(self) -> list[str]:
        return [row["car"] for row in self.view()["rows"]]


def race_with_laps(laps: dict[str, list[int]]) -> Session:
    """A race where each car crosses at the given session times (lap times derived)."""
    s = Session()
    crossings = sorted((t, car) for car, times in laps.items() for t in times)
    last: dict[str, int] = {}
    for t, car in crossings:
        s.lap(car, t, t - last.get(car, 0))
        last[car] = t
    return s


class TestRaceOrder:
    def test_ranks_by_laps_then_crossing_time(self) -> None:
        """More laps first; equal laps by the earlier crossing of the line."""
        s = race_with_laps({"1": [100, 200, 300], "2": [101, 199, 301], "3": [150, 320]})
        assert s.order() == ["1", "2", "3", "50", "60"]
        rows = s.rows()
        assert rows["1"]["laps"] == 3 and rows["1"]["elapsed_ms"] == 300
        assert rows["2"]["gap_ms"] == 1 and rows["2"]["interval_ms"] == 1
        assert rows["3"]["gap_laps"] == 1 and rows["3"]["gap_ms"] is None
        assert rows["3"]["interval_laps"] == 1

    def test_cars_without_laps_follow_in_entry_order(self) -> None:
        """A car that has not crossed the line yet sits after every car that has."""
        s = race_with_laps({"60": [90]})
        assert s.order() == ["60", "1", "2", "3", "50"]
        assert s.rows()["1"]["laps"] == 0 and s.rows()["1"]["elapsed_ms"] is None

    def test_class_positions_and_class_gaps(self) -> None:
        """Class position counts only the class; class gaps refer to the class leader."""
        s = race_with_laps({"1": [100, 200], "50": [110, 220], "60": [120, 230],
                            "2": [130]})
        rows = s.rows()
        assert [rows[c]["position"] for c in ("1", "50", "60", "2")] == [1, 2, 3, 4]
        assert rows["50"]["class_position"] == 1 and rows["60"]["class_position"] == 2
        assert rows["2"]["class_position"] == 2
        assert rows["60"]["class_gap_ms"] == 10 and rows["60"]["class_interval_ms"] == 10
        assert rows["2"]["class_gap_laps"] == 1 and rows["2"]["class_gap_ms"] is None
        assert rows["50"]["class_gap_ms"] is None and rows["50"]["gap_ms"] == 20

    def test_retired_car_keeps_its_place_by_distance(self) -> None:
        """A retired car ranks by the laps it did, whatever its status."""
        s = race_with_laps({"1": [100, 200, 300], "2": [110, 210], "3": [120]})
        s.emit(CarRetired, 300, car="2", laps=2)
        rows = s.rows()
        assert s.order()[:3] == ["1", "2", "3"]
        assert rows["2"]["status"] == "retired" and rows["1"]["status"] == "running"

    def test_disqualified_car_ranks_last(self) -> None:
        """A disqualified car drops below cars with no laps at all."""
        s = race_with_laps({"1": [100, 200], "2": [110, 210]})
        s.emit(Disqualified, 210, car="1", reason="technical")
        assert s.order() == ["2", "3", "50", "60", "1"]
        row = s.rows()["1"]
        assert row["status"] == "disqualified" and row["gap_ms"] is None

    def test_time_penalty_adds_to_elapsed(self) -> None:
        """Before the flag, a penalty adds to elapsed time and can swap two cars."""
        s = race_with_laps({"1": [100, 200], "2": [105, 205]})
        s.emit(TimePenalty, 205, car="1", penalty_ms=10, reason="unsafe release")
        rows = s.rows()
        assert s.order()[:2] == ["2", "1"]
        assert rows["1"]["elapsed_ms"] == 210 and rows["1"]["penalty_ms"] == 10
        assert rows["1"]["gap_ms"] == 5

    def test_chequered_flag_finishes_each_car_at_its_next_crossing(self) -> None:
        """The leader takes the flag; the others finish at their first crossing after it."""
        s = race_with_laps({"1": [100, 200], "2": [150]})
        s.emit(ChequeredFlag, 200, leader="1", laps=2)
        assert s.rows()["1"]["status"] == "finished" and s.rows()["2"]["status"] == "running"
        s.lap("2", 250, 100)
        s.lap("2", 350, 100)  # after its finish: does not count
        rows = s.rows()
        assert rows["2"]["status"] == "finished" and rows["2"]["laps"] == 2
        assert rows["2"]["gap_ms"] == 50
        assert s.view()["chequered"] is True and s.view()["flag"] == "CHEQUERED"

    def test_penalty_after_the_race_can_cost_laps(self) -> None:
        """A penalty shifts every crossing: the car's finish comes a lap earlier."""
        s = race_with_laps({"1": [100, 200, 300], "2": [105, 205]})
        s.emit(ChequeredFlag, 300, leader="1", laps=3)
        s.lap("2", 305, 100)
        s.lap("3", 310, 310)
        s.emit(TimePenalty, 320, car="1", penalty_ms=150, reason="tyres")
        rows = s.rows()
        # Shifted crossings 250, 350, 450: the first at or after 300 is lap 2 at 350.
        assert rows["1"]["laps"] == 2 and rows["1"]["elapsed_ms"] == 350
        assert rows["1"]["status"] == "finished"
        assert s.order()[:3] == ["2", "1", "3"]
        assert rows["1"]["gap_laps"] == 1

    def test_penalty_before_the_flag_is_honoured_at_the_flag(self) -> None:
        """A penalty given during the race already decides where the car finishes."""
        s = race_with_laps({"1": [100, 200], "2": [110, 210]})
        s.emit(TimePenalty, 210, car="2", penalty_ms=100, reason="drive-through not served")
        s.lap("1", 300, 100)
        s.emit(ChequeredFlag, 300, leader="1", laps=3)
        s.lap("2", 310, 100)
        rows = s.rows()
        # Shifted, car 2 crossed lap 2 at 310 (>= 300): its lap 3 came after its finish.
        assert rows["2"]["laps"] == 2 and rows["2"]["status"] == "finished"

    def test_car_crossing_with_the_flag_finishes(self) -> None:
        """A car crossing the line at the very millisecond the flag falls has finished."""
        s = race_with_laps({"1": [100, 200], "2": [150, 200]})
        s.emit(ChequeredFlag, 200, leader="1", laps=2)
        s.lap("2", 300, 100)
        rows = s.rows()
        assert rows["2"]["status"] == "finished" and rows["2"]["laps"] == 2

    def test_pit_stops_count_completed_stops(self) -> None:
        """An in-lap followed by another lap is a stop; the car is in the pit lane meanwhile."""
        s = Session()
        s.lap("1", 100, 100)
        s.lap("1", 200, 100, in_pit=True)
        assert s.rows()["1"]["in_pit"] is True and s.rows()["1"]["pit_stops"] == 0
        s.lap("1", 330, 130)
        assert s.rows()["1"]["in_pit"] is False and s.rows()["1"]["pit_stops"] == 1
        s.lap("1", 430, 100, in_pit=True)  # went in and stayed: not a completed stop
        assert s.rows()["1"]["pit_stops"] == 1 and s.rows()["1"]["in_pit"] is True

    def test_sector_leaves_the_pit_lane(self) -> None:
        """The first sector of the out-lap shows the car back on track."""
        s = Session()
        s.lap("1", 100, 100)
        s.lap("1", 200, 100, in_pit=True)
        s.emit(SectorCompleted, 260, car="1", lap=3, sector=1, sector_time_ms=60)
        assert s.rows()["1"]["in_pit"] is False

    def test_best_lap_ignores_race_lap_one_and_invalid_laps(self) -> None:
        """Lap 1 of a race (timed from the start line) and invalid laps never count."""
        s = Session()
        s.lap("1", 90, 90)
        s.lap("1", 180, 90, valid=False)
        s.lap("1", 280, 100)
        row = s.rows()["1"]
        assert row["best_lap_ms"] == 100 and row["best_lap"] == 3
        assert row["last_lap_ms"] == 100 and row["last_lap_marker"] == "overall-best"

    def test_lap_deleted_recomputes_the_best(self) -> None:
        """Deleting the best lap makes the next best the car's best."""
        s = Session()
        s.lap("1", 100, 100)
        s.lap("1", 210, 110)
        s.lap("1", 300, 90)
        s.emit(LapDeleted, 300, car="1", lap=3, reason="track limits")
        row = s.rows()["1"]
        assert row["best_lap_ms"] == 110 and row["best_lap"] == 2
        assert row["last_lap_marker"] == ""

    def test_last_lap_markers(self) -> None:
        """The last lap is marked overall-best, class-best or personal-best."""
        s = Session()
        for car, base in (("1", 0), ("2", 1), ("50", 2)):
            s.lap(car, 100 + base, 100 + base)
        s.lap("1", 200, 100)
        s.lap("2", 202, 101)
        s.lap("50", 210, 108)
        s.lap("2", 305, 103)
        s.lap("1", 310, 110)
        rows = s.rows()
        assert rows["50"]["last_lap_marker"] == "class-best"
        assert rows["2"]["last_lap_marker"] == ""
        assert rows["1"]["last_lap_marker"] == ""
        s.lap("2", 400, 95)
        assert s.rows()["2"]["last_lap_marker"] == "overall-best"
        s.lap("1", 500, 99)
        assert s.rows()["1"]["last_lap_marker"] == "personal-best"

    def test_sector_bests_and_markers(self) -> None:
        """Sector bests per car, marked overall, class or personal best."""
        s = Session()
        s.lap("1", 100, 100, sectors=[20, 40, 40])  # lap 1: sector 1 not counted
        s.lap("50", 110, 110, sectors=[35, 40, 35])
        s.lap("1", 200, 100, sectors=[30, 35, 35])
        s.lap("2", 210, 210, sectors=[31, 34, 145])
        s.lap("2", 310, 100, sectors=[29, 36, 35])
        rows = s.rows()
        assert rows["1"]["sector_bests_ms"] == [30, 35, 35]
        assert rows["1"]["sector_markers"] == ["personal-best", "personal-best",
                                               "overall-best"]
        assert rows["2"]["sector_bests_ms"] == [29, 34, 35]
        assert rows["2"]["sector_markers"] == ["overall-best", "overall-best", "overall-best"]
        assert rows["50"]["sector_bests_ms"] == [None, 40, 35]
        assert rows["50"]["sector_markers"] == ["", "class-best", "overall-best"]
        assert rows["2"]["last_sectors_ms"] == [29, 36, 35]
        assert rows["2"]["last_sector_markers"] == ["overall-best", "", "overall-best"]

    def test_sector_events_colour_as_they_happen(self) -> None:
        """SectorCompleted updates the bests before the lap is complete."""
        s = Session()
        s.lap("1", 100, 100, sectors=[30, 35, 35])
        s.lap("2", 101, 101, sectors=[30, 36, 35])
        s.emit(SectorCompleted, 128, car="2", lap=2, sector=1, sector_time_ms=27)
        rows = s.rows()
        assert rows["2"]["last_sectors_ms"] == [27, None, None]
        assert rows["2"]["sector_bests_ms"][0] == 27
        assert rows["2"]["last_sector_markers"][0] == "overall-best"

    def test_current_driver_follows_the_laps(self) -> None:
        """The driver of the latest lap is the car's current driver."""
        s = Session()
        s.lap("1", 100, 100, driver="A")
        s.lap("1", 200, 100, driver="B")
        assert s.rows()["1"]["driver"] == "B"

    def test_flag_changes(self) -> None:
        """The session flag follows FlagChanged."""
        s = Session()
        s.emit(FlagChanged, 50, flag="FCY", previous="GREEN")
        assert s.view()["flag"] == "FCY" and s.view()["session_time_ms"] == 50

    def test_unknown_car_joins_the_order(self) -> None:
        """A car missing from the entry list is still timed."""
        s = Session()
        s.lap("007", 100, 100)
        s.lap("7", 120, 120)
        rows = s.rows()
        assert s.order()[:2] == ["007", "7"]
        assert rows["007"]["class"] == "" and rows["7"]["laps"] == 1


class TestQualifyingOrder:
    def test_ranks_by_best_valid_lap(self) -> None:
        """The fastest valid lap ranks first; invalid laps do not count."""
        s = Session(SessionKind.QUALIFYING)
        s.lap("1", 100, 100)
        s.lap("2", 105, 95, valid=False)
        s.lap("2", 200, 98)
        s.lap("3", 210, 99)
        rows = s.rows()
        assert s.order()[:3] == ["2", "3", "1"]
        assert rows["3"]["gap_ms"] == 1 and rows["1"]["interval_ms"] == 1
        assert rows["1"]["gap_ms"] == 2 and rows["2"]["gap_ms"] is None

    def test_equal_times_rank_who_set_it_first(self) -> None:
        """On equal best laps, the car that set it earlier ranks ahead."""
        s = Session(SessionKind.QUALIFYING)
        s.lap("2", 100, 100)
        s.lap("1", 150, 100)
        assert s.order()[:2] == ["2", "1"]
        assert s.rows()["1"]["gap_ms"] == 0

    def test_cars_without_a_time_rank_after_by_laps(self) -> None:
        """Cars with no valid time come after those with one, more laps first."""
        s = Session(SessionKind.QUALIFYING)
        s.lap("60", 100, None)
        s.lap("60", 200, 100, valid=False)
        s.lap("3", 210, 110)
        assert s.order()[:2] == ["3", "60"]
        assert s.rows()["60"]["best_lap_ms"] is None and s.rows()["60"]["laps"] == 2

    def test_deleted_best_moves_the_car_down(self) -> None:
        """A LapDeleted of the best lap re-ranks that car by its next best."""
        s = Session(SessionKind.QUALIFYING)
        s.lap("1", 100, 100)
        s.lap("2", 110, 98)
        s.lap("1", 200, 95)
        s.emit(LapDeleted, 210, car="1", lap=2, reason="track limits")
        assert s.order()[:2] == ["2", "1"]
        assert s.rows()["1"]["best_lap_ms"] == 100

    def test_lap_after_the_flag_does_not_count(self) -> None:
        """A car finishes at its first crossing after the flag; a later lap counts for nothing."""
        s = Session(SessionKind.QUALIFYING)
        s.lap("1", 100, 100)
        s.emit(ChequeredFlag, 150, leader="1", laps=1)
        s.lap("2", 160, 99)  # the flying lap that ends after the flag counts
        s.lap("2", 250, 90)  # a lap after its finish does not
        rows = s.rows()
        assert rows["2"]["best_lap_ms"] == 99 and rows["2"]["status"] == "finished"
        assert s.view()["session_kind"] == "qualifying"


class TestRankedList:
    @settings(max_examples=200, deadline=None)
    @given(start=st.lists(st.integers(0, 400), min_size=1, max_size=60, unique=True),
           moves=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 400)), max_size=60))
    def test_replace_keeps_the_list_sorted(self, start: list[int],
                                           moves: list[tuple[int, int]]) -> None:
        """replace(old, new) leaves exactly the keys a remove and an add would."""
        ranked = RankedList(start)
        ranked._reset(4)  # tiny sublists, so that moves cross sublist boundaries
        keys = set(start)
        for i, new in moves:
            old = sorted(keys)[i % len(keys)]
            if new in keys:
                continue  # keys are unique (each ends with its car index)
            ranked.replace(old, new)
            keys.remove(old)
            keys.add(new)
            assert list(ranked) == sorted(keys)
        ranked._check()  # sortedcontainers' own invariants (maxes, index)


class TestState:
    def test_checkpoint_round_trip(self) -> None:
        """The state pickles and goes on folding to the same view."""
        s = race_with_laps({"1": [100, 200, 300], "2": [105, 205], "50": [120]})
        half = len(s.events) // 2
        state = initial()
        for event in s.events[:half]:
            state = apply(state, event)
        state = pickle.loads(pickle.dumps(state))
        for event in s.events[half:]:
            state = apply(state, event)
        assert view(state) == s.view()

    def test_view_is_the_typed_view_in_plain_builtins(self, race_csv: Path) -> None:
        """The published view (built as dicts) is exactly RunningOrderView's fields, in
        builtins, all along the real race (pits, penalties, retirements, the flag) and a
        qualifying scenario."""
        for source in (str(race_csv), "scenarios/wec-2023-bahrain-qualifying.toml"):
            state = initial()
            for i, event in enumerate(load_source(source).events()):
                state = apply(state, event)
                if i % 250 == 0:
                    plain = view(state)
                    assert isinstance(typed_view(state), RunningOrderView)
                    assert msgspec.to_builtins(typed_view(state)) == plain
                    assert msgspec.to_builtins(plain) == plain  # no enum or Struct left
            assert msgspec.to_builtins(typed_view(state)) == view(state)

    def test_consumer_is_registered(self) -> None:
        """The entry point running-order names this consumer."""
        from consumers.registry import load_consumer

        assert load_consumer("running-order") is CONSUMER
        assert CONSUMER.json_key == "running_order"


# --- the real race -------------------------------------------------------------------------


def _folded(path: Path, *extra: Event, granularity: str = "lap") -> dict[str, Any]:
    events = list(load_source(str(path), granularity=granularity).events())  # type: ignore[arg-type]
    folder = fold_all([CONSUMER], [*events, *extra])[0]
    return folder.view()  # type: ignore[no-any-return]


def _penalty(path: Path, car: str, ms: int) -> TimePenalty:
    last = list(load_source(str(path)).events())[-1]
    return TimePenalty(session_id=last.session_id, epoch=last.epoch, seq=last.seq + 1,
                       session_time_ms=last.session_time_ms, car=car, penalty_ms=ms,
                       reason="post-race decision")


@pytest.fixture(scope="module")
def race_view(race_csv: Path) -> dict[str, Any]:
    return _folded(race_csv)


def _export(path: Path) -> list[dict[str, str]]:
    """The export's rows, read independently of the loader (for reference values)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=";")
        header = [h.strip() for h in next(reader)]
        return [dict(zip(header, row, strict=False)) for row in reader if row]


class TestRealRace:
    def test_finish_on_the_road(self, race_view: dict[str, Any]) -> None:
        """#8 wins after 235 laps, #51 27.539 s behind, then #5, #93, #35, #15, #2."""
        rows = race_view["rows"]
        assert len(rows) == 36
        assert [r["car"] for r in rows[:7]] == ["8", "51", "5", "93", "35", "15", "2"]
        assert rows[0]["laps"] == 235 and rows[0]["status"] == "finished"
        assert rows[1]["gap_ms"] == 27539 and rows[1]["gap_laps"] == 0
        assert race_view["chequered"] is True
        assert next(r for r in rows if r["car"] == "6")["position"] == 11

    def test_penalty_for_51_costs_it_two_laps(self, race_csv: Path) -> None:
        """With 4 min 55 s added, #51 finishes 14th on 233 laps and #6 moves up to 10th."""
        rows = _folded(race_csv, _penalty(race_csv, "51", 295_000))["rows"]
        assert [r["car"] for r in rows[:6]] == ["8", "5", "93", "35", "15", "2"]
        by_car = {r["car"]: r for r in rows}
        assert by_car["51"]["position"] == 14 and by_car["51"]["laps"] == 233
        assert by_car["51"]["penalty_ms"] == 295_000
        assert by_car["6"]["position"] == 10

    def test_retired_cars(self, race_view: dict[str, Any]) -> None:
        """The eight cars that never took the flag are retired, with their laps."""
        retired = {r["car"]: r["laps"] for r in race_view["rows"] if r["status"] == "retired"}
        assert retired == {"7": 175, "20": 111, "63": 200, "94": 179, "77": 178, "78": 36,
                           "87": 176, "88": 148}
        assert all(r["status"] == "finished" for r in race_view["rows"]
                   if r["car"] not in retired)

    def test_pit_stops(self, race_view: dict[str, Any]) -> None:
        """Completed stops: #8 made 9, #51 7, #55 8."""
        stops = {r["car"]: r["pit_stops"] for r in race_view["rows"]}
        assert (stops["8"], stops["51"], stops["55"]) == (9, 7, 8)

    def test_lmgt3_winner(self, race_view: dict[str, Any]) -> None:
        """#55 leads LMGT3 at the end."""
        lmgt3 = [r for r in race_view["rows"] if r["class"] == "LMGT3"]
        assert lmgt3[0]["car"] == "55" and lmgt3[0]["class_position"] == 1

    def test_best_laps_match_the_export_improvement_codes(
        self, race_csv: Path, race_view: dict[str, Any]
    ) -> None:
        """Every car's best valid lap is the lap the export flags (2 or 3), deleted laps aside."""
        flagged = {r["NUMBER"]: (int(r["LAP_NUMBER"]), parse_ms(r["LAP_TIME"]))
                   for r in _export(race_csv) if r["LAP_IMPROVEMENT"] in ("2", "3")}
        got = {r["car"]: (r["best_lap"], r["best_lap_ms"]) for r in race_view["rows"]}
        assert got == flagged
        fastest = [r["car"] for r in race_view["rows"] if r["last_lap_marker"] == "overall-best"
                   or r["best_lap_ms"] == 110492]
        assert fastest == ["8"]

    def test_deleted_laps_never_count(self, race_csv: Path,
                                      race_view: dict[str, Any]) -> None:
        """The two deleted laps (#54 lap 175, #82 lap 197) are faster, yet not bests."""
        events = list(load_source(str(race_csv)).events())
        deleted = {(e.car, e.lap) for e in events if isinstance(e, LapDeleted)}
        assert deleted == {("54", 175), ("82", 197)}
        laps = {(e.car, e.lap): e.lap_time_ms for e in events if isinstance(e, LapCompleted)}
        rows = {r["car"]: r for r in race_view["rows"]}
        for car, lap in deleted:
            assert laps[car, lap] < rows[car]["best_lap_ms"] and rows[car]["best_lap"] != lap

    def test_sector_bests_match_the_export(
        self, race_csv: Path, race_view: dict[str, Any]
    ) -> None:
        """Sector bests and the overall-best marker are the sectors the export flags."""
        rows = _export(race_csv)
        got = {r["car"]: r for r in race_view["rows"]}
        for i, name in enumerate(("S1", "S2", "S3")):
            flagged = {r["NUMBER"]: (parse_ms(r[name]), r[f"{name}_IMPROVEMENT"])
                       for r in rows if r[f"{name}_IMPROVEMENT"] in ("2", "3")}
            assert {car: got[car]["sector_bests_ms"][i] for car in flagged} == {
                car: ms for car, (ms, _) in flagged.items()}
            overall = {car for car, (_, code) in flagged.items() if code == "3"}
            assert {car for car, r in got.items()
                    if r["sector_markers"][i] == "overall-best"} == overall

    def test_sector_granularity_gives_the_same_order(
        self, race_csv: Path, race_view: dict[str, Any]
    ) -> None:
        """Folding with SectorCompleted events ends in the same running order."""
        sectors = _folded(race_csv, granularity="sector")
        keys = ("car", "position", "laps", "elapsed_ms", "best_lap_ms", "sector_bests_ms",
                "sector_markers", "pit_stops", "status")
        assert [{k: r[k] for k in keys} for r in sectors["rows"]] == [
            {k: r[k] for k in keys} for r in race_view["rows"]]

    def test_folder_and_checkpoint_agree(self, race_csv: Path,
                                         race_view: dict[str, Any]) -> None:
        """A checkpoint in the middle of the race resumes to the same final view."""
        events = list(load_source(str(race_csv)).events())
        folder: Folder[Any] = Folder(CONSUMER)
        for event in events[:3000]:
            folder.apply(event)
        resumed = pickle.loads(pickle.dumps(folder))
        for event in events[2500:]:
            resumed.apply(event)
        assert resumed.view() == race_view
