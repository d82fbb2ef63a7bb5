"""The lap-chart projection: hand-built sessions, the real qualifying, a 10,000-car field."""

from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec

from consumers.folding import fold_all
from consumers.projections.lap_chart import (
    BYTE_BUDGET,
    CONSUMER,
    apply,
    initial,
    merge_rows,
    view,
    window_for,
)
from consumers.registry import ALL_BUILTIN, load_consumer
from simulator.contract import (
    Entry,
    Event,
    LapCompleted,
    LapDeleted,
    SessionKind,
    SessionStarted,
)
from simulator.eventlog import EventLogBuilder
from simulator.sources import load_source

REPO = Path(__file__).resolve().parents[1]
ENTRIES = (("1", "HYPERCAR"), ("2", "HYPERCAR"), ("50", "LMGT3"), ("60", "LMGT3"))


class Session:
    """A hand-built session: events in time order with gapless seq."""

    def __init__(self, kind: SessionKind) -> None:
        self.log = EventLogBuilder("unit")
        self.laps: dict[str, int] = {}
        self.events: list[Event] = [self.log.emit(
            SessionStarted, session_time_ms=0, series="Test", event_name="Unit",
            session_kind=kind, scheduled_start="2024-03-02T14:00:00+03:00",
            time_zone="Asia/Bahrain", classes=["HYPERCAR", "LMGT3"],
            entries=[Entry(car=car, car_class=cls, team=f"Team {car}",
                           drivers=[f"Driver {car}"]) for car, cls in ENTRIES],
        )]

    def lap(self, car: str, t: int, ms: int | None = 100_000, *, valid: bool = True) -> None:
        n = self.laps[car] = self.laps.get(car, 0) + 1
        self.events.append(self.log.emit(
            LapCompleted, session_time_ms=t, car=car, driver=f"Driver {car}", lap=n,
            lap_time_ms=ms, valid=valid))

    def delete(self, car: str, lap: int, t: int) -> None:
        self.events.append(self.log.emit(LapDeleted, session_time_ms=t, car=car, lap=lap,
                                         reason="track limits"))

    def chart(self) -> dict[str, list[list[Any]]]:
        state = initial()
        for event in self.events:
            state = apply(state, event)
        return {row["car"]: row["laps"] for row in view(state)["rows"]}


class TestRace:
    """In a race the order of crossing each lap's line is the order on that lap."""

    def test_positions_gaps_and_intervals_by_crossing(self) -> None:
        """Gap: to the car that completed the lap first; interval: to the one just before."""
        s = Session(SessionKind.RACE)
        s.lap("1", 100_000)
        s.lap("50", 101_000)
        s.lap("2", 101_500)
        s.lap("60", 110_000)
        s.lap("2", 200_000)  # #2 passes #1 on lap 2
        s.lap("1", 200_400)
        chart = s.chart()
        assert chart["1"] == [[1, 1, 1, 0, None], [2, 2, 2, 400, 400]]
        assert chart["2"] == [[1, 3, 2, 1500, 500], [2, 1, 1, 0, None]]
        assert chart["50"] == [[1, 2, 1, 1000, 1000]]
        assert chart["60"] == [[1, 4, 2, 10_000, 8500]]

    def test_a_lapped_car_has_its_gap_at_the_same_lap(self) -> None:
        """A lapped car is compared on the same lap number: its gap exceeds a lap time."""
        s = Session(SessionKind.RACE)
        s.lap("1", 100_000)
        s.lap("1", 200_000)
        s.lap("2", 230_000)
        assert s.chart()["2"] == [[1, 2, 2, 130_000, 130_000]]


class TestQualifying:
    """In qualifying each lap records the car's rank by best lap at that moment."""

    def test_rank_by_best_lap_so_far(self) -> None:
        """An untimed car has no position; a slower lap keeps the car's best."""
        s = Session(SessionKind.QUALIFYING)
        s.lap("1", 100_000, None, valid=False)
        s.lap("2", 105_000, 105_000)
        s.lap("1", 200_000, 100_000)
        s.lap("2", 210_000, 106_000)
        chart = s.chart()
        assert chart["1"] == [[1, None, None, None, None], [2, 1, 1, 0, None]]
        assert chart["2"] == [[1, 1, 1, 0, None], [2, 2, 2, 5000, 5000]]

    def test_a_deleted_best_lap_is_rescanned(self) -> None:
        """After a deletion the car's next best counts from its next lap on."""
        s = Session(SessionKind.QUALIFYING)
        s.lap("1", 100_000, 100_000)
        s.lap("2", 101_000, 101_000)
        s.delete("1", 1, 102_000)
        s.lap("2", 200_000, 102_000)
        assert s.chart()["2"] == [[1, 2, 2, 1000, 1000], [2, 1, 1, 0, None]]


class TestTheRealQualifying:
    """The 2023 Bahrain qualifying, folded like `lapcast fold` does."""

    def test_the_pole_sitters_end_first_in_class(self) -> None:
        """Each class pole sitter's last entry is first in its class (#8 first overall)."""
        assert "lap-chart" in ALL_BUILTIN and load_consumer("lap-chart") is CONSUMER
        source = load_source(str(REPO / "scenarios" / "wec-2023-bahrain-qualifying.toml"))
        folder, poles = fold_all([CONSUMER, load_consumer("class-poles")], source.events())
        doc = folder.view()
        rows = {row["car"]: row for row in doc["rows"]}
        assert doc["session_kind"] == "qualifying"
        pole_cars = {pole["car"] for pole in poles.view().values()}
        assert len(pole_cars) == 3
        for car in pole_cars:
            assert rows[car]["laps"][-1][2] == 1, car
        assert rows["8"]["laps"][-1][1] == 1
        # The state checkpoints.
        state = pickle.loads(pickle.dumps(folder.state))
        assert view(state) == doc


class TestBounded:
    """The retained view is a window, small enough for 10,000 cars; history merges."""

    def test_window_shrinks_with_the_field(self) -> None:
        """60 cars keep a whole 8-hour race; 10,000 cars keep their last lap."""
        assert window_for(60) > 300
        assert window_for(10_000) == 1
        assert window_for(60) * 60 * 35 < BYTE_BUDGET

    def test_merge_keeps_what_the_window_drops(self) -> None:
        """Rows merged as they are published keep every lap."""
        history: dict[str, dict[int, list[Any]]] = {}
        merge_rows(history, [{"car": "1", "laps": [[1, 1, 1, 0, None]]}])
        merge_rows(history, [{"car": "1", "laps": [[2, 2, 2, 5, 5]]}])
        assert sorted(history["1"]) == [1, 2]

    def test_ten_thousand_cars_under_200_mb_and_one_mib(self) -> None:
        """100 laps of 10,000 cars: state under 200 MB, retained view under 1 MiB."""
        cars = 10_000
        log = EventLogBuilder("big")
        tracemalloc.start()
        state = initial()
        state = apply(state, log.emit(
            SessionStarted, session_time_ms=0, series="Synth", event_name="Big",
            session_kind=SessionKind.RACE, scheduled_start="2024-03-02T14:00:00+03:00",
            time_zone="UTC", classes=["HYPERCAR", "LMGT3"],
            entries=[Entry(car=str(i), car_class="HYPERCAR" if i % 2 else "LMGT3",
                           team="T") for i in range(cars)]))
        for lap in range(1, 101):
            for i in range(cars):
                state = apply(state, LapCompleted(
                    session_id="big", seq=1 + lap * cars + i,
                    session_time_ms=lap * 100_000 + i * 37_123, car=str(i), driver="D",
                    lap=lap, lap_time_ms=100_000))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 200 * 1024 * 1024
        payload = msgspec.json.encode(view(state))
        assert len(payload) < 1024 * 1024
