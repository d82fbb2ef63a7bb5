"""build_log: the events every source derives the same way from crossings and corrections."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.contract import (
    CarRetired,
    ChequeredFlag,
    Disqualified,
    Entry,
    Event,
    Flag,
    FlagChanged,
    LapCompleted,
    LapDeleted,
    SectorCompleted,
    SessionFinished,
    SessionStarted,
    TimePenalty,
)
from simulator.derive import Correction, Crossing, build_log
from simulator.errors import SourceError


def started(kind: str = "race", cars: Sequence[str] = ("1", "2"), **extra: Any) -> dict[str, Any]:
    return {
        "series": "Test", "event_name": "Test", "session_kind": kind,
        "scheduled_start": "2024-03-02T14:00:00+03:00", "time_zone": "Asia/Bahrain",
        "classes": ["A"], "entries": [Entry(car=c, car_class="A", team="T") for c in cars],
        **extra,
    }


def cross(t: int, car: str, lap: int, lap_time: int | None = 100, **kw: Any) -> Crossing:
    return Crossing(session_time_ms=t, car=car, driver=f"D{car}", lap=lap, lap_time_ms=lap_time,
                    **kw)


def log(crossings: Iterable[Crossing], *, kind: str = "race", cars: Sequence[str] = ("1", "2"),
        corrections: Iterable[Correction] = (), granularity: str = "lap",
        **extra: Any) -> list[Event]:
    return list(build_log(session_id="s", started=started(kind, cars, **extra),
                          crossings=crossings, corrections=corrections,
                          granularity=granularity))  # type: ignore[arg-type]


def kinds(events: Sequence[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def laps_of(events: Sequence[Event]) -> list[LapCompleted]:
    return [e for e in events if isinstance(e, LapCompleted)]


def two_cars(laps: int = 3, *, gap: int = 10, lap_ms: int = 100) -> list[Crossing]:
    """Car 1 leads car 2 by ``gap`` ms on every lap."""
    return [cross(n * lap_ms + off, car, n, lap_ms)
            for n in range(1, laps + 1) for car, off in (("1", 0), ("2", gap))]


class TestEnvelope:
    def test_started_first_finished_last(self) -> None:
        """SessionStarted opens the log at time 0 and SessionFinished closes it."""
        events = log(two_cars())
        assert isinstance(events[0], SessionStarted) and events[0].session_time_ms == 0
        assert events[0].series == "Test" and [e.car for e in events[0].entries] == ["1", "2"]
        assert isinstance(events[-1], SessionFinished)
        assert events[-1].session_time_ms == events[-2].session_time_ms

    def test_seq_and_epoch(self) -> None:
        """Events carry the session id, the epoch and a gapless seq from 1."""
        events = list(build_log(session_id="x", started=started(), crossings=two_cars(),
                                epoch=3))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert {(e.session_id, e.epoch) for e in events} == {("x", 3)}

    def test_lap_fields(self) -> None:
        """A crossing becomes a LapCompleted with every field it describes."""
        c = Crossing(session_time_ms=500, car="007", driver="Bond", lap=4, lap_time_ms=123,
                     sector_times_ms=(40, None, 43), in_pit=True, pit_time_ms=70, valid=False,
                     synthesized=True)
        lap = laps_of(log([c], cars=("007",)))[0]
        assert (lap.session_time_ms, lap.car, lap.driver, lap.lap, lap.lap_time_ms) == (
            500, "007", "Bond", 4, 123)
        assert lap.sector_times_ms == [40, None, 43]
        assert (lap.in_pit, lap.pit_time_ms, lap.valid, lap.synthesized) == (True, 70, False, True)

    def test_backwards_crossing(self) -> None:
        """Crossings that go backwards in time are a clear error."""
        with pytest.raises(SourceError, match="before the previous crossing"):
            log([cross(200, "1", 1), cross(150, "2", 1)])

    def test_negative_time(self) -> None:
        """A crossing before the start of the session is refused."""
        with pytest.raises(SourceError, match="before the session started"):
            log([cross(-1, "1", 1)])

    def test_streams(self) -> None:
        """In lap granularity the crossings are read lazily, a few ahead of the output."""
        pulled = 0

        def endless() -> Iterator[Crossing]:
            nonlocal pulled
            for n in itertools.count(1):
                pulled += 1
                yield cross(n * 100, "1", n)

        events = build_log(session_id="s", started=started(), crossings=endless())
        first = list(itertools.islice(events, 1000))
        assert len(laps_of(first)) == 999
        assert pulled <= 1001


class TestFlags:
    def test_flag_change_before_lap(self) -> None:
        """The first crossing that shows a new flag is preceded by a FlagChanged."""
        crossings = [cross(100, "1", 1), cross(110, "2", 1, flag=Flag.FCY),
                     cross(200, "1", 2, flag=Flag.FCY), cross(210, "2", 2)]
        events = log(crossings)
        changes = [(e.seq, e.previous, e.flag) for e in events if isinstance(e, FlagChanged)]
        lap_seq = {(e.car, e.lap): e.seq for e in laps_of(events)}
        assert changes == [(lap_seq[("2", 1)] - 1, Flag.GREEN, Flag.FCY),
                           (lap_seq[("2", 2)] - 1, Flag.FCY, Flag.GREEN)]

    def test_green_start_is_no_change(self) -> None:
        """A session that stays green has no FlagChanged before the chequered flag."""
        events = log(two_cars(), distance_laps=None)
        assert not [e for e in events if isinstance(e, FlagChanged)]


class TestChequered:
    def test_by_flag(self) -> None:
        """The first crossing flagged CHEQUERED brings the flag, right after that crossing."""
        crossings = [*two_cars(2), cross(300, "1", 3, flag=Flag.CHEQUERED),
                     cross(310, "2", 3, flag=Flag.CHEQUERED)]
        events = log(crossings)
        assert kinds(events)[-5:] == ["FlagChanged", "LapCompleted", "ChequeredFlag",
                                      "LapCompleted", "SessionFinished"]
        flag = next(e for e in events if isinstance(e, ChequeredFlag))
        assert (flag.leader, flag.laps, flag.session_time_ms) == ("1", 3, 300)

    def test_by_distance(self) -> None:
        """In a race the flag falls when the leader completes distance_laps."""
        events = log(two_cars(4), distance_laps=3)
        flag = next(e for e in events if isinstance(e, ChequeredFlag))
        assert (flag.leader, flag.laps, flag.session_time_ms) == ("1", 3, 300)
        lap = next(e for e in laps_of(events) if (e.car, e.lap) == ("1", 3))
        assert flag.seq == lap.seq + 1
        assert isinstance(events[flag.seq], FlagChanged)
        assert events[flag.seq].flag is Flag.CHEQUERED

    def test_by_time_waits_for_the_leader(self) -> None:
        """Past duration_ms the flag waits for the leader, not a lapped car crossing first."""
        crossings = [cross(100, "1", 1), cross(150, "2", 1), cross(200, "1", 2),
                     cross(260, "2", 2), cross(300, "1", 3), cross(370, "2", 3)]
        events = log(crossings, duration_ms=250)
        flag = next(e for e in events if isinstance(e, ChequeredFlag))
        assert (flag.leader, flag.laps, flag.session_time_ms) == ("1", 3, 300)

    def test_overtaken_leader(self) -> None:
        """The leader is the car with the most laps, whoever crosses first after the time."""
        crossings = [cross(100, "1", 1), cross(150, "2", 1), cross(240, "2", 2),
                     cross(260, "1", 2)]
        events = log(crossings, duration_ms=230)
        flag = next(e for e in events if isinstance(e, ChequeredFlag))
        assert (flag.leader, flag.session_time_ms) == ("2", 240)

    def test_qualifying_at_duration(self) -> None:
        """In qualifying the flag falls at duration_ms, before a crossing at that moment."""
        crossings = [cross(100, "1", 1, 100), cross(150, "2", 1, 90), cross(200, "1", 2, 100),
                     cross(250, "2", 2, 95)]
        events = log(crossings, kind="qualifying", duration_ms=200)
        names = kinds(events)
        flag_at = names.index("ChequeredFlag")
        flag = events[flag_at]
        assert isinstance(flag, ChequeredFlag)
        assert (flag.session_time_ms, flag.leader) == (200, "2")  # the best lap so far
        after = events[flag_at + 2]
        assert isinstance(after, LapCompleted) and after.session_time_ms == 200
        assert not [e for e in events if isinstance(e, CarRetired)]

    def test_qualifying_ends_before_duration(self) -> None:
        """If every car stops before duration_ms the flag still falls at duration_ms."""
        events = log([cross(100, "1", 1)], kind="qualifying", duration_ms=900)
        assert kinds(events)[-3:] == ["ChequeredFlag", "FlagChanged", "SessionFinished"]
        assert events[-1].session_time_ms == 900

    def test_race_without_a_flag(self) -> None:
        """A race whose data never reaches the flag infers no retirements."""
        events = log(two_cars(2))
        assert kinds(events)[-1] == "SessionFinished"
        assert not [e for e in events if isinstance(e, ChequeredFlag | CarRetired)]

    def test_only_one_flag(self) -> None:
        """Later CHEQUERED crossings and leader crossings do not bring a second flag."""
        crossings = [cross(n * 100 + o, c, n, flag=Flag.CHEQUERED if n >= 2 else Flag.GREEN)
                     for n in range(1, 5) for c, o in (("1", 0), ("2", 5))]
        events = log(crossings, distance_laps=2)
        assert len([e for e in events if isinstance(e, ChequeredFlag)]) == 1
        assert len([e for e in events if isinstance(e, FlagChanged)]) == 1


class TestRetirements:
    def test_retired_at_end(self) -> None:
        """Cars that never cross at or after the flag retire with their lap count."""
        crossings = [cross(100, "1", 1), cross(110, "2", 1), cross(120, "3", 1),
                     cross(200, "1", 2), cross(210, "2", 2), cross(300, "1", 3),
                     cross(300, "3", 2), cross(400, "1", 4)]
        events = log(crossings, cars=("1", "2", "3", "4"), distance_laps=3)
        retired = [(e.car, e.laps, e.reason) for e in events if isinstance(e, CarRetired)]
        # #3 crosses at the very millisecond of the flag: it finishes.
        assert retired == [("2", 2, "never took the chequered flag"),
                           ("4", 0, "never crossed the line")]
        assert {e.session_time_ms for e in events if isinstance(e, CarRetired)} == {400}
        assert kinds(events)[-3:] == ["CarRetired", "CarRetired", "SessionFinished"]


class TestRedFlag:
    def test_laps_under_and_through_the_red_are_not_valid(self) -> None:
        """A lap ending under RED, and each car's lap under way when the red ended, are
        emitted with valid=False; the flag turns RED and back like any other."""
        red = Flag.RED
        events = log([
            cross(100, "1", 1), cross(110, "2", 1),
            cross(200, "1", 2, flag=red),  # under red: the car into the pit lane
            cross(2_000, "2", 2, 1_890),  # first after it: spans the suspension
            cross(2_050, "1", 3, 1_850),  # its previous crossing was under red
            cross(2_150, "1", 4), cross(2_160, "2", 3),
        ])
        laps = laps_of(events)
        assert [(e.car, e.lap, e.valid) for e in laps] == [
            ("1", 1, True), ("2", 1, True), ("1", 2, False), ("2", 2, False),
            ("1", 3, False), ("1", 4, True), ("2", 3, True)]
        changes = [(e.session_time_ms, e.previous, e.flag) for e in events
                   if isinstance(e, FlagChanged)]
        assert changes == [(200, Flag.GREEN, red), (2_000, red, Flag.GREEN)]

    def test_no_chequered_flag_under_red_and_the_running_cars_stay(self) -> None:
        """Time up while suspended: no chequered flag; the cars that crossed under red, or
        less than a lap before it, are not retired; a car stopped long before is."""
        events = log([
            cross(100, "3", 1),
            cross(1_000, "2", 10, 100, in_pit=True),  # pitting; 1_000 + 100 >= the red
            cross(1_050, "1", 11, 100, flag=Flag.RED),  # the red flag, after the time
        ], cars=("1", "2", "3"), duration_ms=1_020)
        assert not any(isinstance(e, ChequeredFlag) for e in events)
        retired = [(e.car, e.reason) for e in events if isinstance(e, CarRetired)]
        assert retired == [("3", "stopped before the red flag")]
        assert isinstance(events[-1], SessionFinished)


class TestSectors:
    def test_moments(self) -> None:
        """Sectors fall at the previous crossing plus the cumulative sector times."""
        crossings = [cross(100, "1", 1, 100, sector_times_ms=(30, 30, 40)),
                     cross(210, "1", 2, 110, sector_times_ms=(35, 35, 40))]
        events = log(crossings, cars=("1",), granularity="sector")
        sectors = [(e.lap, e.sector, e.session_time_ms, e.sector_time_ms)
                   for e in events if isinstance(e, SectorCompleted)]
        assert sectors == [(1, 1, 30, 30), (1, 2, 60, 30), (1, 3, 100, 40),
                           (2, 1, 135, 35), (2, 2, 170, 35), (2, 3, 210, 40)]

    def test_first_lap_from_lap_time(self) -> None:
        """Lap 1 starts at its crossing minus its lap time, or at 0 when untimed."""
        crossings = [cross(150, "1", 1, 100, sector_times_ms=(50, 50, 0)),
                     cross(160, "2", 1, None, sector_times_ms=(70, None, None))]
        events = log(crossings, granularity="sector")
        moments = {(e.car, e.sector): e.session_time_ms
                   for e in events if isinstance(e, SectorCompleted)}
        assert moments == {("1", 1): 100, ("1", 2): 150, ("1", 3): 150, ("2", 1): 70}

    def test_unknown_sector_counts_back_from_the_line(self) -> None:
        """A sector after an unknown one is placed back from the crossing."""
        crossings = [cross(100, "1", 1, 100, sector_times_ms=(None, 30, 40))]
        events = log(crossings, cars=("1",), granularity="sector")
        moments = [(e.sector, e.session_time_ms) for e in events
                   if isinstance(e, SectorCompleted)]
        assert moments == [(2, 60), (3, 100)]

    def test_interleaved_in_time_order(self) -> None:
        """Sectors of a car interleave with other cars' crossings, each before its lap."""
        crossings = [cross(100, "1", 1, 100, sector_times_ms=(30, 30, 40)),
                     cross(150, "2", 1, 150, sector_times_ms=(50, 50, 50)),
                     cross(200, "1", 2, 100, sector_times_ms=(30, 30, 40)),
                     cross(300, "2", 2, 150, sector_times_ms=(50, 50, 50))]
        events = log(crossings, granularity="sector")
        times = [e.session_time_ms for e in events]
        assert times == sorted(times)
        crossing = {(e.car, e.lap): e.seq for e in laps_of(events)}
        sectors = [e for e in events if isinstance(e, SectorCompleted)]
        assert len(sectors) == 12
        assert all(s.seq < crossing[(s.car, s.lap)] for s in sectors)
        # At one millisecond, sectors come before crossings; #2's lap 1 starts at 0.
        order = [(type(e).__name__, getattr(e, "car", ""), e.session_time_ms)
                 for e in events[1:9]]
        assert order == [("SectorCompleted", "1", 30), ("SectorCompleted", "2", 50),
                         ("SectorCompleted", "1", 60), ("SectorCompleted", "1", 100),
                         ("SectorCompleted", "2", 100), ("LapCompleted", "1", 100),
                         ("SectorCompleted", "1", 130), ("SectorCompleted", "2", 150)]

    def test_same_laps_as_lap_granularity(self) -> None:
        """Sector granularity adds SectorCompleted events and changes nothing else."""
        crossings = [cross(n * 100 + o, c, n, 100, sector_times_ms=(30, 30, 40))
                     for n in range(1, 6) for c, o in (("1", 0), ("2", 7))]
        plain = log(crossings, distance_laps=4)
        sectored = log(crossings, distance_laps=4, granularity="sector")
        strip = [(type(e).__name__, e.session_time_ms, getattr(e, "car", None))
                 for e in sectored if not isinstance(e, SectorCompleted)]
        assert strip == [(type(e).__name__, e.session_time_ms, getattr(e, "car", None))
                         for e in plain]


class TestCorrections:
    def test_merged_at_their_time(self) -> None:
        """Corrections come at their time, after a crossing at the same moment."""
        corrections = [
            Correction(session_time_ms=200, kind="time-penalty", car="2", reason="speeding",
                       penalty_ms=5000),
            Correction(session_time_ms=110, kind="lap-deleted", car="2", lap=1,
                       reason="track limits"),
            Correction(session_time_ms=150, kind="disqualified", car="1", reason="weight"),
        ]
        events = log(two_cars(2), corrections=corrections)
        assert kinds(events)[1:8] == ["LapCompleted", "LapCompleted", "LapDeleted",
                                      "Disqualified", "LapCompleted", "TimePenalty",
                                      "LapCompleted"]
        deleted, disq, penalty = events[3], events[4], events[6]
        assert isinstance(deleted, LapDeleted) and (deleted.car, deleted.lap) == ("2", 1)
        assert isinstance(disq, Disqualified) and disq.reason == "weight"
        assert isinstance(penalty, TimePenalty) and penalty.penalty_ms == 5000

    def test_after_the_last_crossing(self) -> None:
        """A correction after the last crossing comes before the session finishes."""
        correction = Correction(session_time_ms=900, kind="time-penalty", car="1",
                                reason="late", penalty_ms=1000, synthesized=True)
        events = log(two_cars(1), corrections=[correction])
        assert kinds(events)[-2:] == ["TimePenalty", "SessionFinished"]
        assert events[-1].session_time_ms == 900
        assert isinstance(events[-2], TimePenalty) and events[-2].synthesized

    def test_incomplete_correction(self) -> None:
        """A lap deletion without a lap is a clear error."""
        with pytest.raises(SourceError, match="has no lap"):
            log(two_cars(1), corrections=[Correction(session_time_ms=5, kind="lap-deleted",
                                                     car="1", reason="?")])


@st.composite
def sessions(draw: st.DrawFn) -> list[Crossing]:
    """A few cars lapping at random paces, with random flags, sectors and untimed laps."""
    cars = draw(st.lists(st.sampled_from(["1", "7", "007", "51", "8"]), min_size=1,
                         max_size=4, unique=True))
    crossings = []
    for car in cars:
        t = 0
        for lap in range(1, draw(st.integers(1, 8)) + 1):
            sectors = tuple(draw(st.lists(st.one_of(st.none(), st.integers(0, 90)),
                                          min_size=0, max_size=3)))
            lap_ms = draw(st.integers(1, 300))
            t += lap_ms
            crossings.append(cross(t, car, lap, draw(st.one_of(st.none(), st.just(lap_ms))),
                                   sector_times_ms=sectors,
                                   flag=draw(st.sampled_from(list(Flag)))))
    crossings.sort(key=lambda c: c.session_time_ms)
    return crossings


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(crossings=sessions(), kind=st.sampled_from(["race", "qualifying"]),
           duration=st.one_of(st.none(), st.integers(0, 2000)),
           distance=st.one_of(st.none(), st.integers(1, 8)))
    def test_log_invariants(self, crossings: list[Crossing], kind: str, duration: int | None,
                            distance: int | None) -> None:
        """Any ordered crossings give a gapless, time-ordered log with every lap once."""
        for granularity in ("lap", "sector"):
            events = log(crossings, kind=kind, cars=(), granularity=granularity,
                         duration_ms=duration, distance_laps=distance)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            times = [e.session_time_ms for e in events]
            assert times == sorted(times)
            assert [(e.car, e.lap) for e in laps_of(events)] == [
                (c.car, c.lap) for c in crossings]
            assert isinstance(events[0], SessionStarted)
            assert isinstance(events[-1], SessionFinished)
            assert len([e for e in events if isinstance(e, ChequeredFlag)]) <= 1
            if granularity == "sector":
                crossing_seq = {(e.car, e.lap): e.seq for e in laps_of(events)}
                sectors = [e for e in events if isinstance(e, SectorCompleted)]
                assert all(s.seq < crossing_seq[(s.car, s.lap)] for s in sectors)
