"""Class poles: the best valid lap of each class, and who holds it.

In qualifying that lap is the class pole; in a race, the class fastest lap. Each
car's gap to its class pole is derived in ``view()``. A ``LapDeleted`` that takes
the pole lap away hands the pole to the next best: the deleted car's best is
rescanned from its own laps and the class's ``SortedList`` of bests gives the new
holder, so no event costs more than O(log n) plus that one car's laps.

``history`` keeps every change of pole holder or time per class, with its cause
(``"lap"``: a faster lap; ``"deleted"``: the pole lap was deleted), so "provisional
pole, then deleted" stays visible after the fact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from consumers.api import Consumer
from simulator.contract import (
    ChequeredFlag,
    Event,
    LapCompleted,
    LapDeleted,
    SessionStarted,
)

__all__ = ["CONSUMER", "ClassPoles", "PoleCar", "apply", "initial", "view"]

Cause = Literal["lap", "deleted"]

# Key of a car's best in its class list: lap time, then the moment it was set (the
# first to set a time keeps the better place), then the car index (unique, and maps
# the key back to its car). One int compares faster than a tuple.
_IDX_BITS: Final = 24
_IDX_MASK: Final = (1 << _IDX_BITS) - 1
_TIME_BITS: Final = 47
_TIME_BIAS: Final = 1 << 45
_TIME_MASK: Final = (1 << _TIME_BITS) - 1
_NO_LAP: Final = 1 << 62  # above any lap time: `ms < best_ms` needs no None test


def _key(lap_time_ms: int, set_at_ms: int, idx: int) -> int:
    when = min(max(set_at_ms + _TIME_BIAS, 0), _TIME_MASK)
    return (((lap_time_ms << _TIME_BITS) | when) << _IDX_BITS) | idx


class PoleCar:
    """One car's eligible laps (valid, timed, before its flag) and its best of them."""

    __slots__ = ("after_flag", "best", "best_ms", "car", "car_class", "idx", "key", "laps")

    def __init__(self, *, car: str, idx: int, car_class: str) -> None:
        self.car = car
        self.idx = idx
        self.car_class = car_class
        # Only laps that may count, as (lap time, crossing, lap, driver): a deletion
        # rescans these, and min() of them is the best lap, first set first.
        self.laps: list[tuple[int, int, int, str]] = []
        self.best: tuple[int, int, int, str] | None = None
        self.best_ms = _NO_LAP  # the best lap's time, kept apart for the hot path
        self.key = -1  # -1: not in the class list
        self.after_flag = False


class ClassPoles:
    """The fold's state."""

    __slots__ = (
        "bests",
        "by_idx",
        "cars",
        "chequered_ms",
        "class_cars",
        "classes",
        "history",
        "last_cross_ms",
        "last_crossers",
        "names",
        "poles",
    )

    def __init__(self) -> None:
        self.classes: list[str] = []
        self.cars: dict[str, PoleCar] = {}
        self.by_idx: list[PoleCar] = []
        self.class_cars: dict[str, list[str]] = {}
        self.bests: dict[str, SortedList] = {}  # class -> keys of the cars' bests
        self.poles: dict[str, int | None] = {}  # class -> key of the pole, None: no pole
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.chequered_ms: int | None = None
        self.last_cross_ms: int | None = None
        self.last_crossers: list[str] = []
        # One str per driver name, shared by all their laps (a decoded event brings its
        # own copy: keeping one per lap would grow memory and checkpoints).
        self.names: dict[str, str] = {}


def initial() -> ClassPoles:
    return ClassPoles()


def _add_class(state: ClassPoles, name: str) -> None:
    if name not in state.bests:
        state.classes.append(name)
        state.bests[name] = SortedList()
        state.poles[name] = None
        state.history[name] = []
        state.class_cars[name] = []


def _add_car(state: ClassPoles, car_no: str, car_class: str) -> PoleCar:
    _add_class(state, car_class)
    car = PoleCar(car=car_no, idx=len(state.by_idx), car_class=car_class)
    state.cars[car_no] = car
    state.by_idx.append(car)
    state.class_cars[car_class].append(car_no)
    return car


def _check_pole(state: ClassPoles, name: str, ev: Event, cause: Cause) -> None:
    """Record a change of pole holder or time in the class history."""
    bests = state.bests[name]
    key = bests[0] if bests else None
    if key == state.poles[name]:
        return
    state.poles[name] = key
    entry: dict[str, Any] = {"car": None, "driver": None, "lap": None, "lap_time_ms": None,
                             "session_time_ms": ev.session_time_ms, "seq": ev.seq,
                             "cause": cause}
    if key is not None:
        best = state.by_idx[key & _IDX_MASK].best
        assert best is not None
        entry.update(car=state.by_idx[key & _IDX_MASK].car, driver=best[3], lap=best[2],
                     lap_time_ms=best[0])
    state.history[name].append(entry)


def _session_started(state: ClassPoles, ev: SessionStarted) -> None:
    for name in ev.classes:
        _add_class(state, name)
    for entry in ev.entries:
        if entry.car not in state.cars:
            _add_car(state, entry.car, entry.car_class)


def _lap_completed(state: ClassPoles, ev: LapCompleted) -> None:
    car = state.cars.get(ev.car)
    if car is None:
        car = _add_car(state, ev.car, "")
    t = ev.session_time_ms
    ms = ev.lap_time_ms
    # A lap that ends after the car took the flag counts for nothing (a cool-down lap).
    if ev.valid and ms is not None and not car.after_flag:
        lap = (ms, t, ev.lap, state.names.setdefault(ev.driver, ev.driver))
        car.laps.append(lap)
        if ms < car.best_ms:
            _set_best(state, car, lap)
            bests = state.bests[car.car_class]
            if car.key == bests[0]:
                _check_pole(state, car.car_class, ev, "lap")
    if state.chequered_ms is not None and t >= state.chequered_ms:
        car.after_flag = True
    if t != state.last_cross_ms:
        state.last_cross_ms = t
        state.last_crossers = [ev.car]
    else:
        state.last_crossers.append(ev.car)


def _set_best(state: ClassPoles, car: PoleCar, lap: tuple[int, int, int, str] | None) -> None:
    """Make ``lap`` the car's best (None: it has none) and move its key in the class list."""
    bests = state.bests[car.car_class]
    if car.key >= 0:
        bests.remove(car.key)
    car.best = lap
    if lap is None:
        car.best_ms, car.key = _NO_LAP, -1
    else:
        car.best_ms, car.key = lap[0], _key(lap[0], lap[1], car.idx)
        bests.add(car.key)


def _lap_deleted(state: ClassPoles, ev: LapDeleted) -> None:
    car = state.cars.get(ev.car)
    if car is None:
        return
    kept = [lap for lap in car.laps if lap[2] != ev.lap]
    if len(kept) == len(car.laps):
        return  # not an eligible lap (or deleted already): nothing to take away
    car.laps = kept
    if car.best is not None and car.best[2] == ev.lap:
        _set_best(state, car, min(kept) if kept else None)
        _check_pole(state, car.car_class, ev, "deleted")


def _chequered(state: ClassPoles, ev: ChequeredFlag) -> None:
    state.chequered_ms = ev.session_time_ms
    # A car that crossed at the very moment the flag fell has finished.
    if state.last_cross_ms is not None and state.last_cross_ms >= ev.session_time_ms:
        for car_no in state.last_crossers:
            state.cars[car_no].after_flag = True


_HANDLERS: Final[dict[type, Callable[[ClassPoles, Any], None]]] = {
    SessionStarted: _session_started,
    LapCompleted: _lap_completed,
    LapDeleted: _lap_deleted,
    ChequeredFlag: _chequered,
}


def apply(state: ClassPoles, event: Event) -> ClassPoles:
    """Fold one event into the class poles (in place), in O(log n)."""
    if type(event) is LapCompleted:  # nearly every event: skip the table
        _lap_completed(state, event)
    else:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(state, event)
    return state


def view(state: ClassPoles) -> dict[str, Any]:
    """Per class: the pole (or fastest lap), each car's gap to it, and the history."""
    out: dict[str, Any] = {}
    for name in state.classes:
        bests = state.bests[name]
        pole = state.by_idx[bests[0] & _IDX_MASK].best if bests else None
        cars: list[dict[str, Any]] = []
        for key in bests:
            car = state.by_idx[key & _IDX_MASK]
            ms, _, lap, driver = car.best
            cars.append({"car": car.car, "best_lap_ms": ms, "lap": lap, "driver": driver,
                         "gap_ms": ms - pole[0] if pole is not None else None})
        for car_no in state.class_cars[name]:  # cars without a valid lap come last
            if state.cars[car_no].best is None:
                cars.append({"car": car_no, "best_lap_ms": None, "lap": None, "driver": None,
                             "gap_ms": None})
        record: dict[str, Any] = {"car": None, "driver": None, "lap": None,
                                  "lap_time_ms": None}
        if pole is not None:
            record = {"car": state.by_idx[bests[0] & _IDX_MASK].car, "driver": pole[3],
                      "lap": pole[2], "lap_time_ms": pole[0]}
        record["cars"] = cars
        record["history"] = [dict(h) for h in state.history[name]]
        out[name] = record
    return out


CONSUMER: Final = Consumer(
    name="class-poles",
    description="best valid lap per class (pole or fastest lap) and each car's gap to it",
    initial=initial,
    apply=apply,
    view=view,
)
