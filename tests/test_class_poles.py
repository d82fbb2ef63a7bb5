"""The class-poles projection: unit sessions built event by event, then the real race."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from consumers.folding import fold_all
from consumers.projections.class_poles import CONSUMER, apply, initial, view
from simulator.contract import (
    ChequeredFlag,
    Entry,
    Event,
    LapCompleted,
    LapDeleted,
    SessionKind,
    SessionStarted,
)
from simulator.eventlog import EventLogBuilder
from simulator.sources import load_source

ENTRIES = (("1", "HYPERCAR"), ("2", "HYPERCAR"), ("3", "HYPERCAR"), ("50", "LMGT3"),
           ("60", "LMGT3"))


class Session:
    """A hand-built session: emits events in time order with gapless seq."""

    def __init__(self, kind: SessionKind = SessionKind.QUALIFYING) -> None:
        self.kind = kind
        self.log = EventLogBuilder("unit")
        self.laps: dict[str, int] = {}
        self.events: list[Event] = [self.log.emit(
            SessionStarted, session_time_ms=0, series="Test", event_name="Unit",
            session_kind=kind, scheduled_start="2024-03-02T14:00:00+03:00",
            time_zone="Asia/Bahrain", classes=["HYPERCAR", "LMGT3"],
            entries=[Entry(car=car, car_class=cls, team=f"Team {car}",
                           drivers=[f"Driver {car}"]) for car, cls in ENTRIES],
        )]

    def lap(self, car: str, t: int, ms: int | None, *, valid: bool | None = None,
            driver: str = "") -> None:
        n = self.laps.get(car, 0) + 1
        self.laps[car] = n
        if valid is None:
            valid = n > 1 or self.kind is not SessionKind.RACE
        self.events.append(self.log.emit(
            LapCompleted, session_time_ms=t, car=car, driver=driver or f"Driver {car}", lap=n,
            lap_time_ms=ms, valid=valid))

    def emit(self, event_type: type[Any], t: int, **fields: Any) -> None:
        self.events.append(self.log.emit(event_type, session_time_ms=t, **fields))

    def view(self) -> dict[str, Any]:
        state = initial()
        for event in self.events:
            state = apply(state, event)
        return view(state)


class TestPoles:
    def test_best_valid_lap_per_class(self) -> None:
        """Each class's pole is its best valid lap, with car, driver and lap number."""
        s = Session()
        s.lap("1", 100, 100, driver="Ann")
        s.lap("2", 110, 98, driver="Bob")
        s.lap("50", 120, 120)
        s.lap("60", 130, 110, valid=False)
        s.lap("1", 200, 97, driver="Cy")
        poles = s.view()
        assert {k: poles["HYPERCAR"][k] for k in ("car", "driver", "lap", "lap_time_ms")} == {
            "car": "1", "driver": "Cy", "lap": 2, "lap_time_ms": 97}
        assert poles["LMGT3"]["car"] == "50" and poles["LMGT3"]["lap_time_ms"] == 120

    def test_gaps_to_the_class_pole(self) -> None:
        """Every car of the class has its gap to the pole; cars without a time come last."""
        s = Session()
        s.lap("1", 100, 100)
        s.lap("2", 110, 98)
        cars = s.view()["HYPERCAR"]["cars"]
        assert cars == [
            {"car": "2", "best_lap_ms": 98, "lap": 1, "driver": "Driver 2", "gap_ms": 0},
            {"car": "1", "best_lap_ms": 100, "lap": 1, "driver": "Driver 1", "gap_ms": 2},
            {"car": "3", "best_lap_ms": None, "lap": None, "driver": None, "gap_ms": None},
        ]

    def test_equal_times_first_setter_keeps_pole(self) -> None:
        """A car that equals the pole time does not take the pole."""
        s = Session()
        s.lap("2", 100, 100)
        s.lap("1", 150, 100)
        poles = s.view()["HYPERCAR"]
        assert poles["car"] == "2" and len(poles["history"]) == 1

    def test_race_lap_one_is_never_a_fastest_lap(self) -> None:
        """In a race, lap 1 (valid=False from the loader) never counts."""
        s = Session(SessionKind.RACE)
        s.lap("1", 90, 90)
        s.lap("2", 100, 100)
        s.lap("2", 199, 99)
        s.lap("1", 200, 110)
        poles = s.view()["HYPERCAR"]
        assert poles["car"] == "2" and poles["lap"] == 2

    def test_deleted_pole_goes_to_the_next_best(self) -> None:
        """A deleted pole lap hands the pole to the next best; history shows both."""
        s = Session()
        s.lap("1", 100, 100)
        s.lap("2", 110, 99)
        s.lap("2", 200, 95)
        s.emit(LapDeleted, 210, car="2", lap=2, reason="track limits")
        poles = s.view()["HYPERCAR"]
        assert (poles["car"], poles["lap"], poles["lap_time_ms"]) == ("2", 1, 99)
        s.emit(LapDeleted, 220, car="2", lap=1, reason="track limits")
        poles = s.view()["HYPERCAR"]
        assert (poles["car"], poles["lap_time_ms"]) == ("1", 100)
        assert [(h["car"], h["lap_time_ms"], h["cause"]) for h in poles["history"]] == [
            ("1", 100, "lap"), ("2", 99, "lap"), ("2", 95, "lap"), ("2", 99, "deleted"),
            ("1", 100, "deleted")]
        assert [h["seq"] for h in poles["history"]] == [2, 3, 4, 5, 6]
        assert poles["history"][3]["session_time_ms"] == 210

    def test_deleting_the_only_time_leaves_no_pole(self) -> None:
        """With its only valid lap deleted, a class has no pole, and history says so."""
        s = Session()
        s.lap("50", 100, 120)
        s.emit(LapDeleted, 110, car="50", lap=1, reason="track limits")
        poles = s.view()["LMGT3"]
        assert poles["car"] is None and poles["lap_time_ms"] is None
        assert poles["history"][-1]["car"] is None
        assert poles["history"][-1]["cause"] == "deleted"

    def test_deleting_another_lap_changes_nothing(self) -> None:
        """Deleting a lap that is not the pole lap leaves the pole and history alone."""
        s = Session()
        s.lap("1", 100, 100)
        s.lap("1", 200, 101)
        s.lap("2", 210, 102)
        s.emit(LapDeleted, 220, car="1", lap=2, reason="track limits")
        s.emit(LapDeleted, 230, car="2", lap=1, reason="track limits")
        s.emit(LapDeleted, 240, car="2", lap=1, reason="again")
        poles = s.view()["HYPERCAR"]
        assert poles["car"] == "1" and len(poles["history"]) == 1
        assert [c["car"] for c in poles["cars"]] == ["1", "2", "3"]
        assert poles["cars"][1]["best_lap_ms"] is None

    def test_lap_after_the_flag_does_not_count(self) -> None:
        """After its crossing at or past the flag, a car's laps count for nothing."""
        s = Session()
        s.lap("1", 100, 100)
        s.emit(ChequeredFlag, 150, leader="1", laps=1)
        s.lap("2", 160, 99)
        s.lap("2", 250, 90)
        poles = s.view()["HYPERCAR"]
        assert poles["car"] == "2" and poles["lap_time_ms"] == 99

    def test_checkpoint_round_trip(self) -> None:
        """The state pickles and goes on folding to the same view."""
        s = Session()
        for i, car in enumerate(("1", "2", "50", "60", "1", "2")):
            s.lap(car, 100 + i, 100 - i)
        s.emit(LapDeleted, 200, car="2", lap=2, reason="track limits")
        state = initial()
        for event in s.events[:4]:
            state = apply(state, event)
        state = pickle.loads(pickle.dumps(state))
        for event in s.events[4:]:
            state = apply(state, event)
        assert view(state) == s.view()


@pytest.fixture(scope="module")
def poles(race_csv: Path) -> dict[str, Any]:
    events = load_source(str(race_csv)).events()
    return fold_all([CONSUMER], events)[0].view()  # type: ignore[no-any-return]


class TestRealRace:
    def test_class_fastest_laps(self, poles: dict[str, Any]) -> None:
        """HYPERCAR #8 lap 208 1:50.492 Buemi; LMGT3 #60 lap 193 2:01.914 Cairoli."""
        hyper, gt3 = poles["HYPERCAR"], poles["LMGT3"]
        assert (hyper["car"], hyper["lap"], hyper["lap_time_ms"]) == ("8", 208, 110492)
        assert "BUEMI" in hyper["driver"].upper()
        assert (gt3["car"], gt3["lap"], gt3["lap_time_ms"]) == ("60", 193, 121914)
        assert "CAIROLI" in gt3["driver"].upper()

    def test_every_car_has_a_gap(self, poles: dict[str, Any]) -> None:
        """All 36 cars appear under their class with a gap to its fastest lap."""
        cars = [c for p in poles.values() for c in p["cars"]]
        assert len(cars) == 36 and all(c["gap_ms"] is not None for c in cars)
        assert poles["HYPERCAR"]["cars"][0] == {"car": "8", "best_lap_ms": 110492, "lap": 208,
                                                "driver": poles["HYPERCAR"]["driver"],
                                                "gap_ms": 0}

    def test_history_ends_with_the_fastest_lap(self, poles: dict[str, Any]) -> None:
        """The last change of each class is its final fastest lap, caused by a lap."""
        for pole in poles.values():
            last = pole["history"][-1]
            assert (last["car"], last["lap"], last["cause"]) == (pole["car"], pole["lap"], "lap")
