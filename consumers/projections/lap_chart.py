"""Lap chart: per car, per lap, its position, class position, gap to the leader and to
the car ahead, as they stood when it crossed the line. What gap and lap charts draw.

A race ranks the cars on lap ``N`` by the order in which they complete it, so each
lap number keeps how many cars (overall and per class) have completed it and when
the leader and the last of them crossed: a lap costs O(1). The gap to the leader
on lap ``N`` is the car's crossing minus the leader's crossing of lap ``N`` (the
usual gap chart: a lapped car's gap is simply larger than a lap), the interval
its crossing minus that of the car that completed lap ``N`` just before it.

Qualifying and practice rank by best valid lap: each car's entry on lap ``N`` is its
rank (overall, in its class) among the bests set so far, its best minus the best
overall and minus the best of the car ranked just ahead; a ``SortedList`` of bests
makes a lap O(log n). A ``LapDeleted`` re-scans that one car's laps. The history
is the chart as it stood: a later deletion does not rewrite earlier entries.

The state grows with cars x laps, so it is kept in flat ``array``s (28 bytes a lap,
10,000 cars x 250 laps in about 70 MB) and the view is a *window*: each car's last
``window`` laps, where ``window`` shrinks as the field grows so that the retained
document stays near ``BYTE_BUDGET`` (a 60-car field keeps 331 laps, the whole of an
8-hour race; 10,000 cars keep their last lap, about 800 kB). The published changes carry one row per
car that completed a lap, and a reader that listens from the start (``lapcast web``)
keeps the full history by merging them (``merge_rows``).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any, Final

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from consumers.api import Consumer
from simulator.contract import (
    Event,
    LapCompleted,
    LapDeleted,
    SessionKind,
    SessionStarted,
)

__all__ = [
    "BYTE_BUDGET",
    "CONSUMER",
    "CarChart",
    "LapChart",
    "apply",
    "full_history",
    "initial",
    "merge_rows",
    "view",
    "window_for",
]

# Bytes the retained view aims at (the consumers' default payload limit is 1 MiB): a
# row costs about ``_ROW_BYTES`` plus ``_CELL_BYTES`` a lap in JSON.
BYTE_BUDGET: Final = 700_000
_ROW_BYTES: Final = 60
_CELL_BYTES: Final = 35
# "No value" in the gap arrays (a car without a time in qualifying, the leader's interval).
_NONE: Final = -(1 << 62)


def window_for(cars: int) -> int:
    """How many recent laps per car the view shows for a field of ``cars``."""
    return max(1, (BYTE_BUDGET // max(cars, 1) - _ROW_BYTES) // _CELL_BYTES)


class CarChart:
    """One car's chart: five parallel arrays, one entry per lap it completed."""

    __slots__ = ("best_key", "car", "car_class", "class_pos", "gap", "idx", "interval",
                 "lap", "pos", "times")

    def __init__(self, *, car: str, idx: int, car_class: str) -> None:
        self.car = car
        self.idx = idx
        self.car_class = car_class
        self.lap = array("i")
        self.pos = array("i")  # 0: no position (qualifying, no time yet)
        self.class_pos = array("i")
        self.gap = array("q")  # ms; _NONE: none
        self.interval = array("q")
        # Qualifying only: (lap, lap time) of its eligible laps, and its key in the lists.
        self.times = array("q")
        self.best_key: tuple[int, int, int] | None = None

    def record(self, lap: int, pos: int, class_pos: int, gap: int, interval: int) -> None:
        self.lap.append(lap)
        self.pos.append(pos)
        self.class_pos.append(class_pos)
        self.gap.append(gap)
        self.interval.append(interval)


class _LapLine:
    """Who has completed one lap number so far (races): a count and two crossings."""

    __slots__ = ("count", "last_ms", "leader_ms")

    def __init__(self, at_ms: int) -> None:
        self.count = 0
        self.leader_ms = at_ms
        self.last_ms = at_ms


class LapChart:
    """The fold's state."""

    __slots__ = ("bests", "cars", "class_bests", "class_lines", "classes", "lines", "race",
                 "session_kind", "sets")

    def __init__(self) -> None:
        self.session_kind = ""
        self.race = True
        self.classes: list[str] = []
        self.cars: dict[str, CarChart] = {}
        # Races: lap number -> who completed it; per class too.
        self.lines: list[_LapLine | None] = []
        self.class_lines: dict[str, list[_LapLine | None]] = {}
        # Qualifying: the bests, overall and per class, as (ms, set order, car index).
        self.bests = SortedList()
        self.class_bests: dict[str, SortedList] = {}
        self.sets = 0


def initial() -> LapChart:
    return LapChart()


def _add_car(state: LapChart, car_no: str, car_class: str) -> CarChart:
    if car_class not in state.class_lines:
        state.classes.append(car_class)
        state.class_lines[car_class] = []
        state.class_bests[car_class] = SortedList()
    car = CarChart(car=car_no, idx=len(state.cars), car_class=car_class)
    state.cars[car_no] = car
    return car


def _session_started(state: LapChart, ev: SessionStarted) -> None:
    state.session_kind = ev.session_kind.value
    state.race = ev.session_kind is SessionKind.RACE
    for entry in ev.entries:
        if entry.car not in state.cars:
            _add_car(state, entry.car, entry.car_class)


def _crossed(lines: list[_LapLine | None], lap: int, at_ms: int) -> tuple[int, int, int]:
    """Count one more car over lap ``lap``: (its place, gap to the first, to the one ahead)."""
    while len(lines) <= lap:
        lines.append(None)
    line = lines[lap]
    if line is None:
        line = lines[lap] = _LapLine(at_ms)
    line.count += 1
    gap, interval = at_ms - line.leader_ms, at_ms - line.last_ms
    line.last_ms = at_ms
    return line.count, gap, interval if line.count > 1 else _NONE


def _rank(bests: SortedList, key: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """(rank, gap to the first, to the one ahead) of ``key`` among ``bests``."""
    if key is None:
        return 0, _NONE, _NONE
    at = bests.index(key)
    gap = key[0] - bests[0][0]
    return at + 1, gap, key[0] - bests[at - 1][0] if at else _NONE


def _set_best(state: LapChart, car: CarChart, key: tuple[int, int, int] | None) -> None:
    if car.best_key is not None:
        state.bests.remove(car.best_key)
        state.class_bests[car.car_class].remove(car.best_key)
    car.best_key = key
    if key is not None:
        state.bests.add(key)
        state.class_bests[car.car_class].add(key)


def _lap_completed(state: LapChart, ev: LapCompleted) -> None:
    car = state.cars.get(ev.car)
    if car is None:
        car = _add_car(state, ev.car, "")
    if state.race:
        pos, gap, interval = _crossed(state.lines, ev.lap, ev.session_time_ms)
        class_pos = _crossed(state.class_lines[car.car_class], ev.lap, ev.session_time_ms)[0]
        car.record(ev.lap, pos, class_pos, gap, interval)
        return
    ms = ev.lap_time_ms
    if ev.valid and ms is not None:
        car.times.extend((ev.lap, ms))
        if car.best_key is None or ms < car.best_key[0]:
            state.sets += 1
            _set_best(state, car, (ms, state.sets, car.idx))
    pos, gap, interval = _rank(state.bests, car.best_key)
    class_pos = _rank(state.class_bests[car.car_class], car.best_key)[0]
    car.record(ev.lap, pos, class_pos, gap, interval)


def _lap_deleted(state: LapChart, ev: LapDeleted) -> None:
    car = state.cars.get(ev.car)
    if car is None or state.race:
        return
    times = car.times
    kept = array("q")
    for i in range(0, len(times), 2):
        if times[i] != ev.lap:
            kept.extend((times[i], times[i + 1]))
    if len(kept) == len(times):
        return
    car.times = kept
    best: tuple[int, int, int] | None = None
    for i in range(0, len(kept), 2):
        if best is None or kept[i + 1] < best[0]:
            state.sets += 1
            best = (kept[i + 1], state.sets, car.idx)
    if best != car.best_key:
        _set_best(state, car, best)


_HANDLERS: Final[dict[type, Callable[[LapChart, Any], None]]] = {
    SessionStarted: _session_started,
    LapCompleted: _lap_completed,
    LapDeleted: _lap_deleted,
}


def apply(state: LapChart, event: Event) -> LapChart:
    """Fold one event into the chart (in place): O(1) a lap in races, O(log n) else."""
    if type(event) is LapCompleted:
        _lap_completed(state, event)
    else:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(state, event)
    return state


def _opt(value: int) -> int | None:
    return None if value == _NONE else value


def view(state: LapChart) -> dict[str, Any]:
    """The window: per car its last ``window`` laps as ``[lap, pos, class pos, gap, int]``.

    A position of ``None`` is a car without a time yet (qualifying); gaps in ms.
    """
    window = window_for(len(state.cars))
    rows = []
    for car in state.cars.values():
        start = max(len(car.lap) - window, 0)
        laps = [
            [car.lap[i], car.pos[i] or None, car.class_pos[i] or None, _opt(car.gap[i]),
             _opt(car.interval[i])]
            for i in range(start, len(car.lap))
        ]
        rows.append({"car": car.car, "class": car.car_class, "laps": laps})
    return {"session_kind": state.session_kind, "window": window,
            "columns": ["lap", "position", "class_position", "gap_ms", "interval_ms"],
            "rows": rows}


def full_history(state: LapChart) -> dict[str, list[list[int | None]]]:
    """Every lap of every car (no window): for offline charts of a whole session."""
    return {
        car.car: [[car.lap[i], car.pos[i] or None, car.class_pos[i] or None, _opt(car.gap[i]),
                   _opt(car.interval[i])] for i in range(len(car.lap))]
        for car in state.cars.values()
    }


def merge_rows(history: dict[str, dict[int, list[Any]]], rows: list[dict[str, Any]]) -> None:
    """Merge published rows (a state's or a change's) into ``history``: car -> lap -> cell.

    A reader that merges every state and change it hears keeps the whole chart, however
    small the window of the retained state.
    """
    for row in rows:
        laps = history.setdefault(str(row["car"]), {})
        for cell in row.get("laps") or ():
            laps[int(cell[0])] = cell


CONSUMER: Final = Consumer(
    name="lap-chart",
    description="per car and lap: position, class position, gap to the leader and to the "
    "car ahead (a window of recent laps)",
    initial=initial,
    apply=apply,
    view=view,
)
