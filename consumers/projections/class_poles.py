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

from array import array
from bisect import bisect_right
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from consumers.api import Consumer
from simulator.contract import (
    ChequeredFlag,
    Event,
    LapCompleted,
    LapDeleted,
    SessionStarted,
)

__all__ = [
    "CONSUMER",
    "ROW",
    "VIEW",
    "ClassPole",
    "ClassPoles",
    "PoleCar",
    "PoleChange",
    "PoleGap",
    "apply",
    "initial",
    "typed_view",
    "view",
]

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
_NEVER: Final = -(1 << 62)  # before any session time


def _key(lap_time_ms: int, set_at_ms: int, idx: int) -> int:
    when = min(max(set_at_ms + _TIME_BIAS, 0), _TIME_MASK)
    return (((lap_time_ms << _TIME_BITS) | when) << _IDX_BITS) | idx


class PoleCar:
    """One car's eligible laps (valid, timed, before its flag) and its best of them."""

    __slots__ = ("best", "best_ms", "car", "car_class", "driver", "idx", "key", "laps",
                 "last_crossing", "stints")

    def __init__(self, *, car: str, idx: int, car_class: str) -> None:
        self.car = car
        self.idx = idx
        self.car_class = car_class
        # Only laps that may count, three ints each: lap time, crossing, lap number. A
        # deletion rescans these. Plain ints in an array: nothing kept per lap as
        # Python objects (memory, checkpoints, allocator churn).
        self.laps = array("q")
        self.best = -1  # which of those laps is the best; -1: none
        self.best_ms = _NO_LAP  # its time, kept apart for the hot path
        self.key = -1  # -1: not in the class list
        # Its latest crossing: once one is at or after the flag, the car has finished
        # and its later laps (a cool-down lap) count for nothing.
        self.last_crossing = _NEVER
        # Who drove which laps: (first lap, driver) at every driver change.
        self.driver = ""
        self.stints: list[tuple[int, str]] = []

    def driver_of(self, lap: int) -> str:
        i = bisect_right(self.stints, lap, key=lambda stint: stint[0]) - 1
        return self.stints[i][1] if i >= 0 else ""

    def best_lap(self) -> tuple[int, int, str] | None:
        """``(lap time, lap, driver)`` of the best lap."""
        if self.best < 0:
            return None
        i = 3 * self.best
        return self.laps[i], self.laps[i + 2], self.driver_of(self.laps[i + 2])


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
        car = state.by_idx[key & _IDX_MASK]
        best = car.best_lap()
        assert best is not None
        entry.update(car=car.car, driver=best[2], lap=best[1], lap_time_ms=best[0])
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
    if ev.driver != car.driver:
        car.stints.append((ev.lap, ev.driver))
        car.driver = ev.driver
    flag_ms = state.chequered_ms
    # A lap that ends after the car took the flag counts for nothing (a cool-down lap).
    if ev.valid and ms is not None and (flag_ms is None or car.last_crossing < flag_ms):
        laps = car.laps
        laps.extend((ms, t, ev.lap))
        if ms < car.best_ms:
            _set_best(state, car, len(laps) // 3 - 1)
            if car.key == state.bests[car.car_class][0]:
                _check_pole(state, car.car_class, ev, "lap")
    car.last_crossing = t


def _set_best(state: ClassPoles, car: PoleCar, best: int) -> None:
    """Make lap ``best`` the car's best (-1: it has none) and move its class key."""
    bests = state.bests[car.car_class]
    if car.key >= 0:
        bests.remove(car.key)
    car.best = best
    if best < 0:
        car.best_ms, car.key = _NO_LAP, -1
    else:
        ms, at = car.laps[3 * best], car.laps[3 * best + 1]
        car.best_ms, car.key = ms, _key(ms, at, car.idx)
        bests.add(car.key)


def _lap_deleted(state: ClassPoles, ev: LapDeleted) -> None:
    car = state.cars.get(ev.car)
    if car is None:
        return
    laps = car.laps
    n = len(laps) // 3
    j = next((j for j in range(n) if laps[3 * j + 2] == ev.lap), -1)
    if j < 0:
        return  # not an eligible lap (or deleted already): nothing to take away
    del laps[3 * j: 3 * j + 3]
    if j < car.best:
        car.best -= 1  # the laps after it moved up
    elif j == car.best:
        best = -1
        for i in range(n - 1):  # laps are in time order: the first of equal times wins
            if best < 0 or laps[3 * i] < laps[3 * best]:
                best = i
        _set_best(state, car, best)
        _check_pole(state, car.car_class, ev, "deleted")


def _chequered(state: ClassPoles, ev: ChequeredFlag) -> None:
    # A car finishes at its first crossing at or after this moment (one crossing at
    # the very moment of the flag included): each car's last crossing tells.
    state.chequered_ms = ev.session_time_ms


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


class PoleGap(msgspec.Struct, frozen=True, kw_only=True):
    """A car of the class, by best valid lap; all null for a car without one."""

    car: str
    best_lap_ms: int | None
    lap: int | None
    driver: str | None
    gap_ms: int | None


class PoleChange(msgspec.Struct, frozen=True, kw_only=True):
    """One change of pole holder or time; ``car`` null: nobody holds it any more."""

    car: str | None
    driver: str | None
    lap: int | None
    lap_time_ms: int | None
    session_time_ms: int
    seq: int
    cause: Cause


class ClassPole(msgspec.Struct, frozen=True, kw_only=True):
    """One class: its pole (or fastest lap), every car's gap to it, and the history."""

    car: str | None
    driver: str | None
    lap: int | None
    lap_time_ms: int | None
    cars: list[PoleGap]
    history: list[PoleChange]


# The type of the published view (class -> pole), for ``lapcast schema``.
VIEW: Final = dict[str, ClassPole]
# A changed row: one class.
ROW: Final = ClassPole


def typed_view(state: ClassPoles) -> dict[str, ClassPole]:
    """Per class: the pole (or fastest lap), each car's gap to it, and the history."""
    out: dict[str, ClassPole] = {}
    for name in state.classes:
        bests = state.bests[name]
        cars: list[PoleGap] = []
        pole_ms = 0
        for key in bests:
            car: PoleCar = state.by_idx[key & _IDX_MASK]
            best = car.best_lap()
            assert best is not None  # a car is in the class list only with a best lap
            ms, lap, driver = best
            if not cars:
                pole_ms = ms
            cars.append(PoleGap(car=car.car, best_lap_ms=ms, lap=lap, driver=driver,
                                gap_ms=ms - pole_ms))
        for car_no in state.class_cars[name]:  # cars without a valid lap come last
            if state.cars[car_no].best < 0:
                cars.append(PoleGap(car=car_no, best_lap_ms=None, lap=None, driver=None,
                                    gap_ms=None))
        pole = cars[0] if bests else None
        out[name] = ClassPole(
            car=pole.car if pole else None,
            driver=pole.driver if pole else None,
            lap=pole.lap if pole else None,
            lap_time_ms=pole.best_lap_ms if pole else None,
            cars=cars,
            history=[PoleChange(**h) for h in state.history[name]],
        )
    return out


def view(state: ClassPoles) -> dict[str, Any]:
    """``typed_view`` in plain builtins: what is published and ``lapcast fold`` prints."""
    plain: dict[str, Any] = msgspec.to_builtins(typed_view(state))
    return plain


CONSUMER: Final = Consumer(
    name="class-poles",
    description="best valid lap per class (pole or fastest lap) and each car's gap to it",
    initial=initial,
    apply=apply,
    view=view,
)
