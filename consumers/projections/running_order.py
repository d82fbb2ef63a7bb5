"""Running order: the field as a timing screen shows it, folded one event at a time.

A race ranks by laps, then by the crossing time of the last counted lap, whatever
the car's status (a retired car keeps its place by distance); qualifying and
practice rank by best valid lap (ties: who set it first), cars without a time
after them by laps. A disqualified car ranks last.

Cost: ``apply`` is O(log n) per event at most, O(1) for a lap. The order lives
in ``SortedList``s (the whole field and each class) of integer ranking keys, so
a car that moves re-keys itself instead of the field being re-sorted. A lap only
notes that its car moved; the keys of the cars that moved are brought up to date
when the order is read (``view()``, called when a state is published, coalesced,
or at the end), O(moved x log n), so a car crossing the line ten times between
two publications is re-keyed once. Positions, gaps and intervals are derived in
``view()`` too. Only rare events touch more than one car: ``ChequeredFlag``
re-counts the cars that carry a penalty, and a
``LapDeleted`` or ``TimePenalty`` rescans that one car's laps.

A time penalty delays every crossing of the car. Once the chequered flag has
fallen at ``T``, a car finishes at its first (shifted) crossing at or after
``T`` and its later laps do not count, so a penalty, even one handed out after
the race, can cost laps. Each car keeps its crossing times (``array('q')``) so
that such a penalty re-counts that car alone, with a bisection.

The state pickles (checkpoints) and depends only on the events folded: when
views were taken changes which keys are settled, never what they settle to.
"""

from __future__ import annotations

import enum
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, Final

import msgspec
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from consumers.api import Consumer
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
    SessionKind,
    SessionStarted,
    TimePenalty,
)

__all__ = [
    "CONSUMER",
    "ROW",
    "VIEW",
    "CarState",
    "Marker",
    "RunningOrder",
    "RunningOrderRow",
    "RunningOrderView",
    "Status",
    "apply",
    "initial",
    "typed_view",
    "view",
]


class Status(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    RETIRED = "retired"
    DISQUALIFIED = "disqualified"


class Marker(enum.StrEnum):
    """How a board colours a time: purple, class colour, green, or plain."""

    OVERALL_BEST = "overall-best"
    CLASS_BEST = "class-best"
    PERSONAL_BEST = "personal-best"
    NONE = ""


# --- ranking keys -----------------------------------------------------------------------
# A key is one int so that SortedList compares machine-word-sized ints, not tuples
# (about 1.5x faster per insertion). From the low bits up:
#   car index (24 bits) | b: a time + bias (47 bits) | a: laps or best lap (45 bits)
#   | "no lap time" (1 bit, qualifying) | disqualified (1 bit)
# The car index makes every key unique and maps it back to its car.
_IDX_BITS: Final = 24
_IDX_MASK: Final = (1 << _IDX_BITS) - 1
_B_SHIFT: Final = _IDX_BITS
_B_BITS: Final = 47
_B_MASK: Final = (1 << _B_BITS) - 1
_TIME_BIAS: Final = 1 << 45  # session times may be negative (before the start)
_A_SHIFT: Final = _B_SHIFT + _B_BITS
_A_BITS: Final = 45
_A_MASK: Final = (1 << _A_BITS) - 1
_LAP_CAP: Final = (1 << 30) - 1
_NO_TIME_BIT: Final = 1 << (_A_SHIFT + _A_BITS)
_DQ_BIT: Final = _NO_TIME_BIT << 1

# "No sector time yet": larger than any real time, so `time < best` needs no None test.
_NO_TIME: Final = 1 << 62


class RankedList(SortedList):  # type: ignore[misc]
    """A ``SortedList`` of ranking keys that can move one key cheaply.

    Most re-keyings change a car's key without changing its rank (no overtaking
    at the line): ``replace`` then swaps the key in place, two bisections and no list
    surgery. It uses the list's internals (``_lists``/``_maxes``, stable across
    sortedcontainers 2.x): lengths do not change, so the positional index stays
    valid. A key that does change rank takes the ordinary remove and add.
    """

    def replace(self, old: int, new: int) -> None:
        lists: list[list[int]] = self._lists
        maxes: list[int] = self._maxes
        pos = bisect_left(maxes, old)
        sub = lists[pos]
        idx = bisect_left(sub, old)
        if new < old:  # the car gained: it must stay behind the key before it
            stays = sub[idx - 1] < new if idx else pos == 0 or lists[pos - 1][-1] < new
        elif idx + 1 < len(sub):  # it lost: it must stay ahead of the key after it
            stays = new < sub[idx + 1]
        else:
            stays = pos + 1 == len(lists) or new < lists[pos + 1][0]
        if stays:
            sub[idx] = new
            if idx + 1 == len(sub):
                maxes[pos] = new
        else:
            self.remove(old)
            self.add(new)


# A lap time and its validity in one int: the time when the lap may be a best lap,
# -1 when untimed, -2 - time when timed but not eligible (invalid, deleted, cool-down).
_UNTIMED: Final = -1


def _code(ms: int | None, eligible: bool) -> int:
    if ms is None:
        return _UNTIMED
    return ms if eligible else -2 - ms


def _lap_time(code: int) -> int | None:
    if code >= 0:
        return code
    return None if code == _UNTIMED else -2 - code


def _key(a: int, b: int, idx: int) -> int:
    return (
        ((a & _A_MASK) << _A_SHIFT)
        | (min(max(b + _TIME_BIAS, 0), _B_MASK) << _B_SHIFT)
        | idx
    )


class CarState:
    """Everything the running order knows about one car."""

    __slots__ = (
        "best_lap",
        "best_ms",
        "best_time",
        "car",
        "car_class",
        "counted",
        "disqualified",
        "driver",
        "drivers",
        "finished_under_red",
        "idx",
        "in_pit",
        "key",
        "last_sectors",
        "log",
        "manufacturer",
        "penalty_ms",
        "pit_stops",
        "prev_in_pit",
        "retired",
        "sector_bests",
        "team",
    )

    def __init__(self, *, car: str, idx: int, car_class: str, team: str,
                 manufacturer: str, drivers: list[str], sectors: int) -> None:
        self.car = car
        self.idx = idx
        self.car_class = car_class
        self.team = team
        self.manufacturer = manufacturer
        self.drivers = drivers
        self.driver = drivers[0] if drivers else ""
        # Three ints per lap completed, in order: crossing time, lap number and the lap
        # time coded with its validity (see _code). One flat array: one extend per lap,
        # and a compact checkpoint.
        self.log = array("q")
        self.counted = 0  # laps that count (a penalty can push the finish earlier)
        self.penalty_ms = 0
        self.retired = False
        self.disqualified = False
        # The race ended under a red flag with no chequered flag, the car still running.
        self.finished_under_red = False
        self.best_ms: int | None = None
        self.best_lap: int | None = None
        self.best_time = 0  # session time the best lap was set: first to set it ranks first
        self.sector_bests = [_NO_TIME] * sectors
        self.last_sectors: list[int | None] = [None] * sectors
        self.pit_stops = 0
        self.prev_in_pit = False  # the last lap was an in-lap
        self.in_pit = False
        self.key = 0

    @property
    def laps(self) -> int:
        return self.log[3 * self.counted - 2] if self.counted else 0

    @property
    def elapsed_ms(self) -> int | None:
        return self.log[3 * self.counted - 3] + self.penalty_ms if self.counted else None

    @property
    def last_lap(self) -> int | None:
        return self.log[-2] if self.log else None

    @property
    def last_lap_ms(self) -> int | None:
        return _lap_time(self.log[-1]) if self.log else None

    def took_flag(self, flag_ms: int | None) -> bool:
        """Whether its last counted crossing, shifted by its penalty, is at or after the flag.

        A car finishes at its first such crossing; its later laps do not count.
        """
        counted = self.counted
        return (flag_ms is not None and counted > 0
                and self.log[3 * counted - 3] + self.penalty_ms >= flag_ms)

    def status(self, flag_ms: int | None) -> Status:
        if self.disqualified:
            return Status.DISQUALIFIED
        if self.retired:
            return Status.RETIRED
        if self.took_flag(flag_ms) or self.finished_under_red:
            return Status.FINISHED
        return Status.RUNNING

    def __setstate__(self, state: tuple[Any, dict[str, Any]]) -> None:
        # A checkpoint pickled before a slot was added lacks it: defaults first.
        self.finished_under_red = False
        for part in state:
            for name, value in (part or {}).items():
                setattr(self, name, value)


class RunningOrder:
    """The fold's state: cars, the order of the field, session-wide bests."""

    __slots__ = (
        "by_idx",
        "cars",
        "chequered_ms",
        "class_order",
        "class_sector_bests",
        "classes",
        "finished",
        "flag",
        "moved",
        "order",
        "penalized",
        "race",
        "sector_bests",
        "sectors",
        "session_kind",
        "session_time_ms",
    )

    def __init__(self) -> None:
        self.session_kind = SessionKind.RACE
        self.race = True
        self.sectors = 3
        self.session_time_ms = 0
        self.flag: Flag | None = None
        self.chequered_ms: int | None = None
        self.finished = False
        self.classes: list[str] = []
        self.cars: dict[str, CarState] = {}
        self.by_idx: list[CarState] = []
        self.order = RankedList()
        self.class_order: dict[str, RankedList] = {}
        self.moved: set[int] = set()  # cars whose ranking key may be stale (by index)
        self.sector_bests: list[int] = [_NO_TIME] * self.sectors
        self.class_sector_bests: dict[str, list[int]] = {}
        self.penalized: set[str] = set()


def initial() -> RunningOrder:
    return RunningOrder()


# --- keeping the order ------------------------------------------------------------------


def _rank_key(state: RunningOrder, car: CarState) -> int:
    if state.race:
        counted = car.counted
        if counted:
            lap = min(car.log[3 * counted - 2], _LAP_CAP)
            key = _key(_LAP_CAP - lap, car.log[3 * counted - 3] + car.penalty_ms, car.idx)
        else:
            key = _key(_LAP_CAP, 0, car.idx)
    elif car.best_ms is not None:
        key = _key(car.best_ms, car.best_time, car.idx)
    else:
        counted = car.counted
        last = car.log[3 * counted - 3] if counted else 0
        key = _NO_TIME_BIT | _key(_LAP_CAP - min(car.laps, _LAP_CAP), last, car.idx)
    if car.disqualified:
        key |= _DQ_BIT
    return key


def _reposition(state: RunningOrder, car: CarState) -> None:
    """Note that the car's ranking key may have changed; ``_settle`` applies it."""
    state.moved.add(car.idx)


def _settle(state: RunningOrder) -> None:
    """Re-key the cars that moved since the last view: O(moved x log n).

    Done when the order is read, not per event: a lap only notes that its car
    moved, so a car crossing the line ten times between two publications is
    re-keyed once. The order's content depends only on the events folded, never
    on when views were taken.
    """
    for idx in sorted(state.moved):
        car = state.by_idx[idx]
        key = _rank_key(state, car)
        old = car.key
        if key != old:
            state.order.replace(old, key)
            state.class_order[car.car_class].replace(old, key)
            car.key = key
    state.moved.clear()


def _add_car(state: RunningOrder, car_no: str, entry: Entry | None) -> CarState:
    car_class = entry.car_class if entry is not None else ""
    car = CarState(
        car=car_no,
        idx=len(state.by_idx),
        car_class=car_class,
        team=entry.team if entry is not None else "",
        manufacturer=entry.manufacturer if entry is not None else "",
        drivers=list(entry.drivers) if entry is not None else [],
        sectors=state.sectors,
    )
    state.cars[car_no] = car
    state.by_idx.append(car)
    if car_class not in state.class_order:
        state.class_order[car_class] = RankedList()
        state.class_sector_bests[car_class] = [_NO_TIME] * state.sectors
        if car_class not in state.classes:
            state.classes.append(car_class)
    car.key = _rank_key(state, car)
    state.order.add(car.key)
    state.class_order[car_class].add(car.key)
    return car


def _car(state: RunningOrder, car_no: str) -> CarState:
    car = state.cars.get(car_no)
    return car if car is not None else _add_car(state, car_no, None)


def _recount(state: RunningOrder, car: CarState) -> None:
    """Which laps count, given the flag and the car's penalty: O(log laps)."""
    log = car.log
    n = len(log) // 3
    flag_ms = state.chequered_ms
    if flag_ms is None:
        car.counted = n
        return
    first = bisect_left(range(n), flag_ms - car.penalty_ms, key=lambda i: log[3 * i])
    car.counted = first + 1 if first < n else n


def _rescan_best(car: CarState) -> None:
    """The car's best valid lap, from its own laps (after a deletion)."""
    best_ms: int | None = None
    best_lap: int | None = None
    best_time = 0
    log = car.log
    for i in range(0, len(log), 3):
        ms = log[i + 2]
        if ms >= 0 and (best_ms is None or ms < best_ms):
            best_ms, best_lap, best_time = ms, log[i + 1], log[i]
    car.best_ms, car.best_lap, car.best_time = best_ms, best_lap, best_time


def _grow_sectors(state: RunningOrder, count: int) -> None:
    # A source with more sectors than SessionStarted announced: widen every list once.
    extra = count - state.sectors
    state.sectors = count
    state.sector_bests.extend([_NO_TIME] * extra)
    for bests in state.class_sector_bests.values():
        bests.extend([_NO_TIME] * extra)
    for car in state.by_idx:
        car.sector_bests.extend([_NO_TIME] * extra)  # last_sectors: view() pads it


def _sector_time(state: RunningOrder, car: CarState, i: int, ms: int) -> None:
    # A class best is never above a personal best, nor the overall best above a class
    # best: most sector times stop at the first comparison.
    bests = car.sector_bests
    if ms < bests[i]:
        bests[i] = ms
        class_bests = state.class_sector_bests[car.car_class]
        if ms < class_bests[i]:
            class_bests[i] = ms
            if ms < state.sector_bests[i]:
                state.sector_bests[i] = ms


# --- one function per event type --------------------------------------------------------


def _session_started(state: RunningOrder, ev: SessionStarted) -> None:
    state.session_kind = SessionKind(ev.session_kind)  # a str when built by hand
    state.race = state.session_kind is SessionKind.RACE
    if ev.sectors > state.sectors:
        _grow_sectors(state, ev.sectors)
    for name in ev.classes:
        if name not in state.classes:
            state.classes.append(name)
    for entry in ev.entries:
        car = state.cars.get(entry.car)
        if car is None:
            _add_car(state, entry.car, entry)
    for car in state.by_idx:  # the kind decides the ranking: rekey the (empty) field
        _reposition(state, car)


def _lap_completed(state: RunningOrder, ev: LapCompleted) -> None:
    # The hot path: one call per lap of every car. Kept flat on purpose (no helper
    # calls for the common case), see bench/fold.py.
    car = state.cars.get(ev.car)
    if car is None:
        car = _add_car(state, ev.car, None)
    t = ev.session_time_ms
    ms = ev.lap_time_ms
    lap = ev.lap
    log = car.log
    flag_ms = state.chequered_ms
    # Once the flag is out, a car that had already crossed the line at or after it is
    # on a cool-down lap (no best lap), and a car that took the flag (its crossings
    # shifted by its penalty) adds no laps.
    cooldown = flag_ms is not None and bool(log) and log[-3] >= flag_ms
    counts = flag_ms is None or not car.took_flag(flag_ms)
    # A race's lap 1 arrives with valid=False from the loader (timed from the start line).
    eligible = ev.valid and not cooldown and ms is not None
    # (`ms if eligible` is _code(ms, True) without the call: eligible implies a time.)
    log.extend((t, lap, ms if eligible else _code(ms, False)))  # type: ignore[arg-type]
    if ev.driver:
        car.driver = ev.driver

    if car.prev_in_pit:  # the lap after an in-lap completes the stop
        car.pit_stops += 1
    car.prev_in_pit = car.in_pit = ev.in_pit

    sectors = ev.sector_times_ms
    if sectors:
        if len(sectors) > state.sectors:
            _grow_sectors(state, len(sectors))
        car.last_sectors = sectors  # shared with the event: never edited in place
        bests = car.sector_bests
        for i, s in enumerate(sectors):
            # A race's first sector 1 is timed from the start line, not the finish line.
            if (s is not None and s < bests[i] and not cooldown
                    and not (i == 0 and lap == 1 and state.race)):
                _sector_time(state, car, i, s)

    if counts:
        car.counted = len(log) // 3

    improved = eligible and (car.best_ms is None or ms < car.best_ms)  # type: ignore[operator]
    if improved:
        car.best_ms, car.best_lap, car.best_time = ms, lap, t
    state.moved.add(car.idx)  # its key changes in a race, and may in qualifying


def _sector_completed(state: RunningOrder, ev: SectorCompleted) -> None:
    car = _car(state, ev.car)
    i = ev.sector - 1
    if ev.sector > state.sectors:
        _grow_sectors(state, ev.sector)
    # A new lap has begun at sector 1: its sectors replace the previous lap's. Never
    # edit the list in place: it may be a LapCompleted's own list.
    last: list[int | None] = [None] * state.sectors
    if i:
        last[: len(car.last_sectors)] = car.last_sectors
    last[i] = ev.sector_time_ms
    car.last_sectors = last
    car.in_pit = False  # it is out on track again
    if ev.driver:
        car.driver = ev.driver
    flag_ms = state.chequered_ms
    after_flag = flag_ms is not None and bool(car.log) and car.log[-3] >= flag_ms
    if not (state.race and ev.lap == 1 and i == 0) and not after_flag:
        _sector_time(state, car, i, ev.sector_time_ms)


def _lap_deleted(state: RunningOrder, ev: LapDeleted) -> None:
    car = state.cars.get(ev.car)
    if car is None:
        return
    log = car.log
    n = len(log) // 3
    i = bisect_left(range(n), ev.lap, key=lambda j: log[3 * j + 1])
    if i >= n or log[3 * i + 1] != ev.lap or log[3 * i + 2] < 0:
        return  # no such lap, or it never counted
    log[3 * i + 2] = -2 - log[3 * i + 2]
    if car.best_lap == ev.lap:
        _rescan_best(car)
        _reposition(state, car)


def _time_penalty(state: RunningOrder, ev: TimePenalty) -> None:
    car = _car(state, ev.car)
    car.penalty_ms += ev.penalty_ms
    state.penalized.add(ev.car)
    _recount(state, car)
    _reposition(state, car)


def _disqualified(state: RunningOrder, ev: Disqualified) -> None:
    car = _car(state, ev.car)
    car.disqualified = True
    _reposition(state, car)


def _car_retired(state: RunningOrder, ev: CarRetired) -> None:
    _car(state, ev.car).retired = True


def _flag_changed(state: RunningOrder, ev: FlagChanged) -> None:
    state.flag = Flag(ev.flag)


def _chequered(state: RunningOrder, ev: ChequeredFlag) -> None:
    state.chequered_ms = ev.session_time_ms
    state.flag = Flag.CHEQUERED
    # Events come in time order, so no crossing so far is after the flag: a car that
    # crossed at its very moment (a car crosses at most once in a millisecond) has
    # counted that lap, which is its finish, and every other car finishes at its next
    # crossing. Only a car with a penalty may already be past the flag in shifted time.
    for car_no in sorted(state.penalized):
        car = state.cars[car_no]
        _recount(state, car)
        _reposition(state, car)


def _session_finished(state: RunningOrder, ev: SessionFinished) -> None:
    state.finished = True
    if state.race and state.chequered_ms is None and state.flag is Flag.RED:
        # A race that ends under red: the cars still running (the log retired the
        # others) are classified as finished on their last crossing.
        for car in state.by_idx:
            if not car.retired and not car.disqualified and car.counted:
                car.finished_under_red = True


_HANDLERS: Final[dict[type, Callable[[RunningOrder, Any], None]]] = {
    SessionStarted: _session_started,
    LapCompleted: _lap_completed,
    SectorCompleted: _sector_completed,
    LapDeleted: _lap_deleted,
    TimePenalty: _time_penalty,
    Disqualified: _disqualified,
    CarRetired: _car_retired,
    FlagChanged: _flag_changed,
    ChequeredFlag: _chequered,
    SessionFinished: _session_finished,
}


def apply(state: RunningOrder, event: Event) -> RunningOrder:
    """Fold one event into the running order (in place), in O(log n)."""
    state.session_time_ms = event.session_time_ms
    if type(event) is LapCompleted:  # nearly every event: skip the table
        _lap_completed(state, event)
    else:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(state, event)
    return state


# --- the view: positions, gaps and markers, derived once per publication ----------------


def _marker(ms: int | None, overall: int | None, class_best: int | None,
            personal: int | None) -> Marker:
    if ms is None:
        return Marker.NONE
    if ms == overall:
        return Marker.OVERALL_BEST
    if ms == class_best:
        return Marker.CLASS_BEST
    if ms == personal:
        return Marker.PERSONAL_BEST
    return Marker.NONE


def _gap(race: bool, car: CarState, ref: CarState | None) -> tuple[int | None, int]:
    """``(ms, laps)`` behind ``ref``: laps when lapped, else milliseconds."""
    if ref is None or ref is car or car.disqualified:
        return None, 0
    if race:
        laps, ref_laps = car.laps, ref.laps
        if not laps or not ref_laps:
            return None, 0
        if ref_laps > laps:
            return None, ref_laps - laps
        return car.elapsed_ms - ref.elapsed_ms, 0  # type: ignore[operator]
    if car.best_ms is None or ref.best_ms is None:
        return None, 0
    return car.best_ms - ref.best_ms, 0


def _best_of(cars: list[CarState]) -> CarState | None:
    best: CarState | None = None
    for car in cars:
        if car.best_ms is not None and not car.disqualified and (
            best is None or (car.best_ms, car.best_time, car.idx)
            < (best.best_ms, best.best_time, best.idx)
        ):
            best = car
    return best


def _none_if_unset(times: list[int]) -> list[int | None]:
    return [None if t == _NO_TIME else t for t in times]


class RunningOrderRow(msgspec.Struct, frozen=True, kw_only=True):
    """One car of the running order. ``*_ms`` and ``*_laps`` of a gap: laps when lapped
    (``*_ms`` is then null), else milliseconds; null/0 for the leader or without laps."""

    position: int
    class_position: int
    car: str
    car_class: str = msgspec.field(name="class")
    team: str
    manufacturer: str
    driver: str
    status: Status
    laps: int
    elapsed_ms: int | None
    gap_ms: int | None
    gap_laps: int
    interval_ms: int | None
    interval_laps: int
    class_gap_ms: int | None
    class_gap_laps: int
    class_interval_ms: int | None
    class_interval_laps: int
    best_lap_ms: int | None
    best_lap: int | None
    last_lap_ms: int | None
    last_lap: int | None
    last_lap_marker: Marker
    sector_bests_ms: list[int | None]
    sector_markers: list[Marker]
    # The sectors of the lap under way or just completed, coloured like the last lap.
    last_sectors_ms: list[int | None]
    last_sector_markers: list[Marker]
    pit_stops: int
    in_pit: bool
    penalty_ms: int


class RunningOrderView(msgspec.Struct, frozen=True, kw_only=True):
    """The running order as published on ``.../state/running-order``: rows in position order."""

    session_kind: SessionKind
    session_time_ms: int
    flag: Flag | None
    chequered: bool
    finished: bool
    classes: list[str]
    rows: list[RunningOrderRow]


# The type of the published view (the state document's ``state``), for ``lapcast schema``.
VIEW: Final = RunningOrderView
# A changed row: one car.
ROW: Final = RunningOrderRow


def typed_view(state: RunningOrder) -> RunningOrderView:
    """The running order as published: one row per car, in position order."""
    _settle(state)
    race = state.race
    ordered = [state.by_idx[key & _IDX_MASK] for key in state.order]
    fastest = _best_of(ordered)
    class_fastest = {
        name: _best_of([state.by_idx[key & _IDX_MASK] for key in keys])
        for name, keys in state.class_order.items()
    }
    overall_sectors = state.sector_bests
    class_position: dict[str, int] = {}
    class_leader: dict[str, CarState] = {}
    class_prev: dict[str, CarState] = {}
    rows: list[RunningOrderRow] = []
    leader: CarState | None = None
    prev: CarState | None = None
    for position, car in enumerate(ordered, 1):
        name = car.car_class
        class_position[name] = class_position.get(name, 0) + 1
        c_leader = class_leader.setdefault(name, car)
        gap_ms, gap_laps = _gap(race, car, leader)
        int_ms, int_laps = _gap(race, car, prev)
        c_gap_ms, c_gap_laps = _gap(race, car, c_leader)
        c_int_ms, c_int_laps = _gap(race, car, class_prev.get(name))
        class_best_car = class_fastest.get(name)
        last_lap = car.last_lap
        if last_lap is not None and last_lap == car.best_lap:
            if car is fastest:
                last_marker = Marker.OVERALL_BEST
            elif car is class_best_car:
                last_marker = Marker.CLASS_BEST
            else:
                last_marker = Marker.PERSONAL_BEST
        else:
            last_marker = Marker.NONE
        class_sectors = state.class_sector_bests[name]
        bests = car.sector_bests
        last_sectors = list(car.last_sectors)
        last_sectors.extend([None] * (len(bests) - len(last_sectors)))
        rows.append(RunningOrderRow(
            position=position,
            class_position=class_position[name],
            car=car.car,
            car_class=name,
            team=car.team,
            manufacturer=car.manufacturer,
            driver=car.driver,
            status=car.status(state.chequered_ms),
            laps=car.laps,
            elapsed_ms=car.elapsed_ms,
            gap_ms=gap_ms,
            gap_laps=gap_laps,
            interval_ms=int_ms,
            interval_laps=int_laps,
            class_gap_ms=c_gap_ms,
            class_gap_laps=c_gap_laps,
            class_interval_ms=c_int_ms,
            class_interval_laps=c_int_laps,
            best_lap_ms=car.best_ms,
            best_lap=car.best_lap,
            last_lap_ms=car.last_lap_ms,
            last_lap=last_lap,
            last_lap_marker=last_marker,
            sector_bests_ms=_none_if_unset(bests),
            sector_markers=[
                _marker(None if b == _NO_TIME else b, overall_sectors[i], class_sectors[i], b)
                for i, b in enumerate(bests)
            ],
            last_sectors_ms=last_sectors,
            last_sector_markers=[
                _marker(s, overall_sectors[i], class_sectors[i], bests[i])
                for i, s in enumerate(last_sectors)
            ],
            pit_stops=car.pit_stops,
            in_pit=car.in_pit,
            penalty_ms=car.penalty_ms,
        ))
        if leader is None:
            leader = car
        prev = car
        class_prev[name] = car
    return RunningOrderView(
        session_kind=state.session_kind,
        session_time_ms=state.session_time_ms,
        flag=state.flag,
        chequered=state.chequered_ms is not None,
        finished=state.finished,
        classes=list(state.classes),
        rows=rows,
    )


def view(state: RunningOrder) -> dict[str, Any]:
    """``typed_view`` in plain builtins: what is published and ``lapcast fold`` prints."""
    plain: dict[str, Any] = msgspec.to_builtins(typed_view(state))
    return plain


CONSUMER: Final = Consumer(
    name="running-order",
    description="overall and class positions, gaps, laps, bests, pit stops, status",
    initial=initial,
    apply=apply,
    view=view,
)
