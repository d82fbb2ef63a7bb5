"""Folding properties (hypothesis): duplicates, checkpoints and epochs, over the projections."""

from __future__ import annotations

import pickle
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.api import Consumer
from consumers.folding import Folder, fold_all
from consumers.registry import BUILTIN, load_consumer
from simulator.contract import (
    CarRetired,
    ChampionshipSetup,
    ChequeredFlag,
    Competitor,
    Disqualified,
    Entry,
    Event,
    Flag,
    FlagChanged,
    LapCompleted,
    LapDeleted,
    PointsRules,
    SectorCompleted,
    SessionFinished,
    SessionKind,
    SessionStarted,
    TimePenalty,
)
from simulator.eventlog import EventLogBuilder

CONSUMERS: list[Consumer[Any]] = [load_consumer(name) for name in BUILTIN]

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

ACTIONS = ["lap"] * 8 + ["sector"] * 2 + ["deleted", "penalty", "disqualified", "retired",
                                          "flag", "chequered"]


@st.composite
def session_logs(draw: st.DrawFn, epoch: int = 1) -> list[Event]:
    """A random but well-formed session: events in time order, seq 1..n of one epoch."""
    kind = draw(st.sampled_from([SessionKind.RACE, SessionKind.QUALIFYING,
                                 SessionKind.PRACTICE]))
    cars = draw(st.lists(st.sampled_from(["1", "2", "7", "007", "50", "51", "88"]),
                         min_size=2, max_size=6, unique=True))
    classes = {car: ("LMGT3" if car in ("50", "51", "88") else "HYPERCAR") for car in cars}
    hypercars = [c for c in cars if classes[c] == "HYPERCAR"]
    championship = None
    if hypercars and draw(st.booleans()):
        championship = ChampionshipSetup(
            name="Prop drivers", rules=PointsRules(race_points=[25, 18, 15, 12],
                                                   championship_class="HYPERCAR"),
            standings=[Competitor(car=c, name=f"Crew {c}", points=draw(st.integers(0, 60)),
                                  places=draw(st.lists(st.integers(0, 3), max_size=3)))
                       for c in hypercars],
            pole_car=draw(st.sampled_from([None, *hypercars])),
        )
    log = EventLogBuilder("prop", epoch=epoch)
    events: list[Event] = [log.emit(
        SessionStarted, session_time_ms=0, series="Prop", event_name="Prop", session_kind=kind,
        scheduled_start="2024-03-02T14:00:00+03:00", time_zone="Asia/Bahrain",
        classes=sorted(set(classes.values())), championship=championship,
        entries=[Entry(car=c, car_class=classes[c], team=f"T{c}", drivers=[f"D{c}", f"E{c}"])
                 for c in cars],
    )]
    t = 0
    laps: dict[str, int] = {}
    crossed: dict[str, int] = {}
    flag = Flag.GREEN
    chequered = False
    for _ in range(draw(st.integers(0, 45))):
        action = draw(st.sampled_from(ACTIONS))
        t += draw(st.integers(0, 3))  # small steps: ties at one millisecond happen
        car = draw(st.sampled_from(cars))
        if action == "lap":
            if crossed.get(car) == t:
                t += 1  # a car crosses the line at most once in a millisecond
            crossed[car] = t
            n = laps.get(car, 0) + 1
            laps[car] = n
            sectors = draw(st.lists(st.one_of(st.none(), st.integers(28, 32)),
                                    min_size=0, max_size=3))
            ms = draw(st.one_of(st.none(), st.integers(90, 95)))
            valid = draw(st.booleans()) if n > 1 or kind is not SessionKind.RACE else False
            events.append(log.emit(
                LapCompleted, session_time_ms=t, car=car, driver=draw(st.sampled_from(
                    [f"D{car}", f"E{car}"])), lap=n, lap_time_ms=ms, sector_times_ms=sectors,
                in_pit=draw(st.booleans()), valid=valid))
        elif action == "sector":
            events.append(log.emit(
                SectorCompleted, session_time_ms=t, car=car, lap=laps.get(car, 0) + 1,
                sector=draw(st.integers(1, 3)), sector_time_ms=draw(st.integers(27, 33))))
        elif action == "deleted" and laps.get(car):
            events.append(log.emit(LapDeleted, session_time_ms=t, car=car,
                                   lap=draw(st.integers(1, laps[car])), reason="track limits"))
        elif action == "penalty":
            events.append(log.emit(TimePenalty, session_time_ms=t, car=car,
                                   penalty_ms=draw(st.integers(1, 8)), reason="prop"))
        elif action == "disqualified":
            events.append(log.emit(Disqualified, session_time_ms=t, car=car, reason="prop"))
        elif action == "retired":
            events.append(log.emit(CarRetired, session_time_ms=t, car=car,
                                   laps=laps.get(car, 0)))
        elif action == "flag" and not chequered:
            new = draw(st.sampled_from([Flag.GREEN, Flag.FCY, Flag.SAFETY_CAR]))
            events.append(log.emit(FlagChanged, session_time_ms=t, flag=new, previous=flag))
            flag = new
        elif action == "chequered" and not chequered and laps:
            chequered = True
            leader = max(laps, key=lambda c: laps[c])
            events.append(log.emit(ChequeredFlag, session_time_ms=t, leader=leader,
                                   laps=laps[leader]))
    events.append(log.emit(SessionFinished, session_time_ms=t))
    return events


def views(folders: list[Folder[Any]]) -> dict[str, Any]:
    return {folder.consumer.name: folder.view() for folder in folders}


def fold(events: list[Event]) -> dict[str, Any]:
    return views(fold_all(CONSUMERS, events))


class TestFoldingProperties:
    @SETTINGS
    @given(data=st.data(), events=session_logs())
    def test_duplicates_change_nothing(self, data: st.DataObject,
                                       events: list[Event]) -> None:
        """Events delivered again, anywhere after their first delivery, change no view."""
        delivered = list(events)
        for _ in range(data.draw(st.integers(1, 20))):
            i = data.draw(st.integers(0, len(events) - 1))
            j = data.draw(st.integers(delivered.index(events[i]) + 1, len(delivered)))
            delivered.insert(j, events[i])
        assert fold(delivered) == fold(events)

    @SETTINGS
    @given(data=st.data(), events=session_logs())
    def test_checkpoint_in_two_halves(self, data: st.DataObject, events: list[Event]) -> None:
        """Folding, pickling the folders, unpickling and folding the rest gives the same views."""
        cut = data.draw(st.integers(0, len(events)))
        # The resumed half may start earlier than the cut: a redelivery after the restart.
        resume = data.draw(st.integers(0, cut))
        folders = fold_all(CONSUMERS, events[:cut])
        restored: list[Folder[Any]] = pickle.loads(pickle.dumps(folders))
        for event in events[resume:]:
            for folder in restored:
                folder.apply(event)
        assert [f.seq for f in restored] == [len(events)] * len(CONSUMERS)
        assert views(restored) == fold(events)

    @SETTINGS
    @given(data=st.data(), first=session_logs(epoch=1), second=session_logs(epoch=2))
    def test_a_new_epoch_starts_over(self, data: st.DataObject, first: list[Event],
                                     second: list[Event]) -> None:
        """A higher epoch drops what the old one built; late events of the old one are ignored."""
        cut = data.draw(st.integers(1, len(first)))
        stale = data.draw(st.lists(st.sampled_from(first), max_size=5))
        folders = fold_all(CONSUMERS, [*first[:cut], *second, *stale])
        assert views(folders) == fold(second)
        assert all((f.epoch, f.seq) == (2, len(second)) for f in folders)

    @SETTINGS
    @given(events=session_logs())
    def test_views_encode_as_json(self, events: list[Event]) -> None:
        """Every view is msgspec-encodable: it is what the runner publishes."""
        import msgspec

        for name, value in fold(events).items():
            assert msgspec.json.decode(msgspec.json.encode(value)) == value, name


def recounted_order(events: list[Event]) -> list[tuple[str, int, int | None]]:
    """The running order computed from scratch, the slow and obvious way.

    ``(car, laps, best lap)`` per car, in order: what the incremental fold must agree
    with after every event.
    """
    kind = SessionKind.RACE
    flag_ms: int | None = None
    cars: dict[str, dict[str, Any]] = {}

    def car_of(number: str) -> dict[str, Any]:
        return cars.setdefault(number, {"idx": len(cars), "laps": [], "pen": 0, "dq": False})

    for e in events:
        if isinstance(e, SessionStarted):
            kind = SessionKind(e.session_kind)
            for entry in e.entries:
                car_of(entry.car)
        elif isinstance(e, LapCompleted):
            car = car_of(e.car)
            done = flag_ms is not None and any(lap[0] >= flag_ms for lap in car["laps"])
            car["laps"].append([e.session_time_ms, e.lap, e.lap_time_ms,
                                e.valid and not done and e.lap_time_ms is not None])
        elif isinstance(e, LapDeleted):
            for lap in car_of(e.car)["laps"]:
                if lap[1] == e.lap:
                    lap[3] = False
        elif isinstance(e, TimePenalty):
            car_of(e.car)["pen"] += e.penalty_ms
        elif isinstance(e, Disqualified):
            car_of(e.car)["dq"] = True
        elif isinstance(e, ChequeredFlag):
            flag_ms = e.session_time_ms
    ranked = []
    for number, car in cars.items():
        laps = car["laps"]
        counted = len(laps)
        if flag_ms is not None:
            past = [i for i, lap in enumerate(laps) if lap[0] + car["pen"] >= flag_ms]
            if past:
                counted = past[0] + 1
        done = laps[counted - 1][1] if counted else 0
        bests = sorted((lap[2], lap[0]) for lap in laps if lap[3])
        best = bests[0] if bests else None
        if kind is SessionKind.RACE:
            elapsed = laps[counted - 1][0] + car["pen"] if counted else 0
            key: tuple[Any, ...] = (car["dq"], 0, -done, elapsed, car["idx"])
        elif best is not None:
            key = (car["dq"], 0, best[0], best[1], car["idx"])
        else:
            key = (car["dq"], 1, -done, laps[counted - 1][0] if counted else 0, car["idx"])
        ranked.append((key, number, done, best[0] if best else None))
    return [(number, done, best) for _, number, done, best in sorted(ranked)]


class TestAgainstARecount:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(events=session_logs())
    def test_incremental_order_matches_a_full_recount(self, events: list[Event]) -> None:
        """After every event, the O(log n) order equals a sort of the field from scratch."""
        folder: Folder[Any] = Folder(load_consumer("running-order"))
        for n, event in enumerate(events, 1):
            folder.apply(event)
            rows = folder.view()["rows"]
            got = [(r["car"], r["laps"], r["best_lap_ms"]) for r in rows]
            assert got == recounted_order(events[:n]), f"after seq {event.seq}"
