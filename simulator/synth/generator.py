"""A synthetic session as a stream of crossings, deterministic from the seed.

How it stays small and repeatable at 10,000 cars and a million laps:

* Every car has its own ``random.Random`` seeded from ``(seed, car index)`` and a
  generator that drives it lap by lap; a heap of each car's next crossing time
  merges the cars in session-time order (ties by car index). Nothing else is kept:
  the memory is a few kilobytes per car, whatever the number of laps.
* A car's laps depend only on its own draws and on the yellow periods, which are
  drawn up front from the session's own ``Random``. So the moment of any car's lap
  k can be found by driving that one car alone: that is how corrections (decided
  after a lap, but handed to ``build_log`` up front) get their time.
* No global ``random``, no clock, no set or dict iteration order in a decision: the
  same spec gives the same crossings, and ``build_log`` the same bytes.

What a car does in a race: lap 1 from a rolling start in grid order (each class's
grid in order of pace, its spread kept as in the real race whatever the field size);
then green laps from the model, stints to the fuel limit (or cut short), an in-lap
into the pits, an out-lap carrying the pit time, a driver change now and then,
retirement at a fitted hazard (into the pits or out on track). Every lap that
overlaps a yellow period is slowed for the part of it under yellow (the time in the
pit lane is not). A red-flag period (``red=N``, off by default) is one more such
period, slow enough that the cars cover about a lap during it. The first car to
complete ``laps`` takes the chequered flag; every car finishes at its next crossing.

In qualifying a car goes out in runs (out-lap, two or three flying laps, in-lap),
sits in the garage between them, and stops at its lap budget or its first crossing
after the session's time is up.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from simulator.contract import Entry, Flag, SessionKind
from simulator.derive import Correction, Crossing
from simulator.synth.model import (
    CLASSES,
    DECISION_DELAY_MS,
    DELETED_LAP_RATE,
    FCY,
    PENALTIES_MS,
    PENALTY_PER_CAR_HOUR,
    QUALIFYING,
    SAFETY_CAR,
    ClassModel,
    YellowModel,
)
from simulator.synth.spec import SynthSpec

__all__ = ["Field", "YellowPeriod"]

_HOUR_MS: Final = 3_600_000
# No green lap is quicker than this share of the class's base (so a chequered flag
# can be bounded from below: see ``Field.earliest_chequer_ms``).
_FLOOR: Final = 0.95
# Kinds of lap a car's generator reports, as bits: a one-lap stint is both.
_LAP: Final = 0
_OUT: Final = 1
_IN: Final = 2

_MANUFACTURERS: Final = {
    "HYPERCAR": ("Toyota", "Ferrari", "Porsche", "Cadillac", "Peugeot", "Alpine", "BMW",
                 "Lamborghini", "Isotta Fraschini"),
    "LMP2": ("Oreca",),
    "LMGTE": ("Porsche", "Ferrari", "Aston Martin", "Chevrolet"),
    "LMGT3": ("Ferrari", "Porsche", "BMW", "McLaren", "Lexus", "Ford", "Corvette",
              "Aston Martin", "Lamborghini"),
}
_DELETE_REASONS: Final = ("track limits", "track limits at turn 4", "track limits at turn 8")
_PENALTY_REASONS: Final = ("causing a collision", "pit lane speeding",
                           "unsafe release", "overtaking under yellow")

# A crossing as a car's generator reports it:
# (time ms, lap, lap ms, (s1, s2, s3), kind, pit ms or None, driver index)
Lap = tuple[int, int, int, tuple[int, int, int], int, int | None, int]


@dataclass(frozen=True, slots=True)
class YellowPeriod:
    start_ms: int
    end_ms: int
    flag: Flag
    slow_factor: float


@dataclass(frozen=True, slots=True)
class _Car:
    """What is drawn for a car before its first lap."""

    index: int
    number: str
    model: ClassModel
    pace_ms: float  # base + car offset
    driver_offsets: tuple[float, ...]
    retire_ms: float  # math.inf: never
    retire_in_pit: bool
    seed: str


class Field:
    """The cars and yellows of one spec; ``crossings()`` and ``corrections()`` stream it."""

    def __init__(self, spec: SynthSpec) -> None:
        self.spec = spec
        self.race = spec.session == "race"
        rng = random.Random(f"lapcast-synth/{spec.seed}/field")
        self.models = [CLASSES[name] for name in spec.classes]
        self.cars = [self._draw_car(i) for i in range(spec.cars)]
        self.lap1_ms = self._grid()
        fastest = min(m.base_ms for m in self.models)
        slowest = max(m.base_ms for m in self.models)
        if self.race:
            self.duration_ms: int | None = None
            # The leader's time, roughly: laps, plus a stop per fuel stint.
            stops = spec.laps / min(m.fuel_stint_laps_mean for m in self.models)
            self.expected_ms = round(spec.laps * fastest * 1.03 + stops * 90_000)
        else:
            minutes = math.ceil(spec.laps * slowest * QUALIFYING.minutes_per_lap_budget
                                / 60_000)
            self.duration_ms = max(10, minutes) * 60_000
            self.expected_ms = self.duration_ms
        self.yellows = self._draw_yellows(rng)
        if spec.red is not None:
            self.yellows = self._with_red(self.yellows, spec.red, spec.red_minutes)
        self._starts = [y.start_ms for y in self.yellows]
        self._corrections = self._draw_corrections(rng)

    # --- setup ------------------------------------------------------------------------

    def _draw_car(self, index: int) -> _Car:
        model = self.models[index % len(self.models)]
        seed = f"lapcast-synth/{self.spec.seed}/car/{index}"
        rng = random.Random(seed + "/setup")
        pace = model.base_ms + rng.gauss(0.0, model.car_sd_ms)
        drivers = tuple(rng.gauss(0.0, model.driver_sd_ms) for _ in range(model.drivers))
        # Drawn whatever the factor, so that the rest of the field stays the same.
        draw = rng.expovariate(model.retire_per_hour) * _HOUR_MS
        factor = self.spec.retirements
        retire = draw / factor if self.race and factor > 0 else math.inf
        return _Car(index=index, number=str(index + 1), model=model, pace_ms=pace,
                    driver_offsets=drivers, retire_ms=retire,
                    retire_in_pit=rng.random() < 0.5, seed=seed)

    def _grid(self) -> list[int]:
        """Lap 1 of every car: each class's grid in order of pace, its real spread kept."""
        lap1 = [0] * len(self.cars)
        for model in self.models:
            cars = [c for c in self.cars if c.model is model]
            cars.sort(key=lambda c: (c.pace_ms + c.driver_offsets[0], c.index))
            n = len(cars)
            for rank, car in enumerate(cars):
                frac = rank / (n - 1) if n > 1 else 0.0
                lap1[car.index] = round(model.lap1_first_ms + model.lap1_spread_ms * frac)
        return lap1

    def _draw_yellows(self, rng: random.Random) -> list[YellowPeriod]:
        hours = self.expected_ms / _HOUR_MS
        drawn: list[tuple[int, YellowModel]] = []
        for model, fixed in ((FCY, self.spec.fcy), (SAFETY_CAR, self.spec.sc)):
            default = _poisson(rng, model.per_hour * hours) if self.race else 0
            count = default if fixed is None else fixed
            for _ in range(count):
                # Not on the opening laps, not in the last few minutes.
                start = rng.uniform(0.1, 0.9) * self.expected_ms
                drawn.append((round(start), model))
        drawn.sort(key=lambda d: (d[0], d[1].flag))
        periods: list[YellowPeriod] = []
        for start, model in drawn:
            if periods and start < periods[-1].end_ms + 60_000:
                start = periods[-1].end_ms + 60_000  # one minute of green in between
            length = round(rng.uniform(model.duration_ms_min, model.duration_ms_max))
            periods.append(YellowPeriod(start_ms=start, end_ms=start + length,
                                        flag=Flag(model.flag), slow_factor=model.slow_factor))
        return periods

    def _with_red(self, yellows: list[YellowPeriod], minute: int,
                  minutes: int) -> list[YellowPeriod]:
        """The yellows with a red-flag period in them (yellows it overlaps are dropped).

        Under red the cars crawl to the pit lane and wait: the period slows them so that
        each covers about a lap and a fifth of the slowest class's lap in it, so every
        car crosses the line under red once or twice and its next lap spans the rest.
        """
        start = minute * 60_000
        end = start + minutes * 60_000
        slowest = max(m.base_ms for m in self.models)
        red = YellowPeriod(start_ms=start, end_ms=end, flag=Flag.RED,
                           slow_factor=max(1.0, (end - start) / (1.2 * slowest)))
        kept = [y for y in yellows if y.end_ms <= start or y.start_ms >= end]
        return sorted([*kept, red], key=lambda y: y.start_ms)

    def earliest_chequer_ms(self) -> int:
        """No race's chequered flag can fall before this (laps at the floor, no stop)."""
        if not self.race:
            assert self.duration_ms is not None
            return self.duration_ms
        quickest = min(m.base_ms for m in self.models) * _FLOOR
        return min(self.lap1_ms) + math.floor((self.spec.laps - 1) * quickest)

    def _draw_corrections(self, rng: random.Random) -> list[Correction]:
        spec = self.spec
        out: list[Correction] = []
        if self.race:
            expected_laps = spec.cars * spec.laps * 0.93
            for _ in range(_poisson(rng, DELETED_LAP_RATE * expected_laps)):
                car = self.cars[rng.randrange(spec.cars)]
                lap = rng.randint(2, spec.laps) if spec.laps >= 2 else 1
                delay = rng.randint(*DECISION_DELAY_MS)
                reason = rng.choice(_DELETE_REASONS)
                crossed = self._lap_crossing(car, lap, flying_only=False)
                if crossed is not None:
                    out.append(Correction(session_time_ms=crossed + delay, kind="lap-deleted",
                                          car=car.number, lap=lap, reason=reason,
                                          synthesized=True))
            hours = self.expected_ms / _HOUR_MS
            for _ in range(_poisson(rng, PENALTY_PER_CAR_HOUR * spec.cars * hours)):
                car = self.cars[rng.randrange(spec.cars)]
                at = round(rng.uniform(0.05, 1.0) * self.expected_ms)
                out.append(Correction(session_time_ms=at, kind="time-penalty", car=car.number,
                                      penalty_ms=rng.choice(PENALTIES_MS),
                                      reason=rng.choice(_PENALTY_REASONS), synthesized=True))
        else:
            flying = spec.cars * spec.laps * 0.5
            for _ in range(_poisson(rng, QUALIFYING.deleted_lap_rate * flying)):
                car = self.cars[rng.randrange(spec.cars)]
                lap = rng.randint(1, spec.laps)
                delay = rng.randint(DECISION_DELAY_MS[0] // 2, DECISION_DELAY_MS[0] * 2)
                crossed = self._lap_crossing(car, lap, flying_only=True)
                if crossed is not None:
                    out.append(Correction(session_time_ms=crossed + delay, kind="lap-deleted",
                                          car=car.number, lap=lap,
                                          reason=rng.choice(_DELETE_REASONS), synthesized=True))
        return out

    def _lap_crossing(self, car: _Car, lap: int, *, flying_only: bool) -> int | None:
        """When ``car`` completes ``lap``, if it surely does (and is a flying lap if asked)."""
        bound = self.earliest_chequer_ms()
        previous = 0
        for t, n, _, _, kind, _, _ in self._drive(car):
            if n == lap:
                # The lap is driven if the car had not finished before it started.
                if previous < bound and (lap == 1 or previous > 0) and not (flying_only and kind):
                    return t
                return None
            previous = t
        return None

    # --- driving ----------------------------------------------------------------------

    def _drive(self, car: _Car) -> Iterator[Lap]:
        rng = random.Random(car.seed + "/laps")
        if self.race:
            return _race_laps(self, car, rng)
        return _qualifying_laps(self, car, rng)

    def advance(self, t0: int, work_ms: float) -> int:
        """The moment a car that starts at ``t0`` has done ``work_ms`` of green driving."""
        t = float(t0)
        periods = self.yellows
        i = bisect_right(self._starts, t0) - 1
        if i < 0 or periods[i].end_ms <= t0:
            i += 1
        while i < len(periods):
            p = periods[i]
            if p.start_ms > t:
                if t + work_ms <= p.start_ms:
                    return round(t + work_ms)
                work_ms -= p.start_ms - t
                t = p.start_ms
            capacity = (p.end_ms - t) / p.slow_factor
            if work_ms <= capacity:
                return round(t + work_ms * p.slow_factor)
            work_ms -= capacity
            t = p.end_ms
            i += 1
        return round(t + work_ms)

    def flag_at(self, t: int) -> Flag:
        i = bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.yellows[i].end_ms:
            return self.yellows[i].flag
        return Flag.GREEN

    # --- the outputs ------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        out = []
        for car in self.cars:
            makes = _MANUFACTURERS[car.model.name]
            out.append(Entry(
                car=car.number, car_class=car.model.name,
                team=f"Synthetic Racing {car.number}",
                manufacturer=makes[car.index // len(self.models) % len(makes)],
                drivers=[f"Driver {car.number}{'ABCDEFGH'[d]}" for d in range(car.model.drivers)],
                synthesized=True,
            ))
        return out

    def started(self) -> dict[str, Any]:
        """``SessionStarted``'s fields (without the envelope)."""
        spec = self.spec
        return {
            "series": "lapcast synthetic",
            "event_name": f"Synthetic {spec.session}, {spec.cars} cars, seed {spec.seed}",
            "session_kind": SessionKind.RACE if self.race else SessionKind.QUALIFYING,
            "scheduled_start": "2024-03-02T14:00:00.000+03:00",
            "time_zone": "Asia/Bahrain",
            "classes": list(spec.classes),
            "entries": self.entries(),
            "duration_ms": self.duration_ms,
            "distance_laps": spec.laps if self.race else None,
            "sectors": 3,
            "source": spec.text(),
        }

    def corrections(self) -> list[Correction]:
        return list(self._corrections)

    def crossings(self) -> Iterator[Crossing]:
        """Every car's crossings, merged in session-time order (ties: car index)."""
        cars = self.cars
        drivers = [[f"Driver {c.number}{'ABCDEFGH'[d]}" for d in range(c.model.drivers)]
                   for c in cars]
        drives: list[Iterator[Lap] | None] = []
        pending: list[Lap | None] = []
        heap: list[tuple[int, int]] = []
        for car in cars:
            drive = self._drive(car)
            first = next(drive, None)
            drives.append(drive)
            pending.append(first)
            if first is not None:
                heap.append((first[0], car.index))
        heapq.heapify(heap)
        chequer: int | None = self.duration_ms  # qualifying: the time is known
        race = self.race
        distance = self.spec.laps if race else None
        same_ms: list[int] = []  # cars that crossed at the current millisecond
        last_t = -1
        while heap:
            t, index = heapq.heappop(heap)
            lap = pending[index]
            if lap is None:
                continue  # stopped: it crossed at the very moment of the flag
            if t != last_t:
                same_ms.clear()
                last_t = t
            _, n, lap_ms, sectors, kind, pit_ms, driver = lap
            if chequer is None and n == distance:
                chequer = t
                # Cars that crossed at this millisecond already finished with the leader.
                for other in same_ms:
                    pending[other] = None
            done = chequer is not None and t >= chequer
            flag = Flag.CHEQUERED if done else self.flag_at(t)
            yield Crossing(
                session_time_ms=t, car=cars[index].number, driver=drivers[index][driver],
                lap=n, lap_time_ms=lap_ms, sector_times_ms=sectors, in_pit=bool(kind & _IN),
                pit_time_ms=pit_ms, flag=flag, synthesized=True,
                # Lap 1 of a race is timed from the start line: it never counts as a best.
                valid=not (race and n == 1),
            )
            if done:
                pending[index] = None
                continue
            same_ms.append(index)
            live = drives[index]
            nxt = next(live, None) if live is not None else None
            pending[index] = nxt
            if nxt is None:
                drives[index] = None
            else:
                heapq.heappush(heap, (nxt[0], index))


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; means here are small)."""
    if mean <= 0:
        return 0
    if mean > 500:  # the normal approximation, for enormous fields
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _sectors(rng: random.Random, model: ClassModel, lap_ms: int, *, head_ms: int = 0,
             tail_ms: int = 0) -> tuple[int, int, int]:
    """Split a lap into three sectors; ``head``/``tail`` (pit time) go to S1/S3."""
    driven = lap_ms - head_ms - tail_ms
    sd = model.sector_share_sd
    s1 = head_ms + max(0, round(driven * (model.sector_shares[0] + rng.gauss(0.0, sd))))
    s2 = max(0, round(driven * (model.sector_shares[1] + rng.gauss(0.0, sd))))
    s1 = min(s1, lap_ms)
    s2 = min(s2, lap_ms - s1)
    return (s1, s2, lap_ms - s1 - s2)


def _green_lap(rng: random.Random, model: ClassModel, pace: float, lap_sd: float) -> float:
    lap = pace + rng.gauss(0.0, lap_sd)
    if rng.random() < model.slow_lap_rate:
        lap += 4 * lap_sd + rng.expovariate(1.0 / model.slow_lap_mean_ms)
    return max(lap, model.base_ms * _FLOOR)


def _race_laps(field: Field, car: _Car, rng: random.Random) -> Iterator[Lap]:
    model = car.model
    distance = field.spec.laps
    advance = field.advance
    evo = model.evolution_ms_per_hour / _HOUR_MS
    deg = model.degradation_ms_per_lap
    driver = 0
    stint_target = _stint_length(rng, model)
    # Lap 1: the rolling start; the lap of a stint counts from 1.
    t = advance(0, field.lap1_ms[car.index])
    if t > car.retire_ms:
        return  # retired before completing a lap
    yield (t, 1, t, _sectors(rng, model, t), _LAP, None, 0)
    stint_lap = 1
    pit_next = False
    n = 1
    while n < distance:
        n += 1
        pit_ms: int | None = None
        kind = _LAP
        if pit_next:
            # The out-lap: the stop (not slowed by a yellow), then a lap of track.
            pit_ms = _pit_time(rng, model)
            if model.drivers > 1 and rng.random() < model.driver_change_rate:
                driver = (driver + 1 + rng.randrange(model.drivers - 1)) % model.drivers
            kind = _OUT
            stint_lap = 1
            stint_target = _stint_length(rng, model)
            pit_next = False
        else:
            stint_lap += 1
        pace = car.pace_ms + car.driver_offsets[driver] + deg * stint_lap + evo * t
        green = _green_lap(rng, model, pace, model.lap_sd_ms)
        if stint_lap >= stint_target and n < distance:
            kind |= _IN  # the stint's last lap ends in the pit lane
            green += model.in_lap_extra_ms
            pit_next = True
        if pit_ms is None:
            end = advance(t, green)
        else:
            end = advance(t + pit_ms, max(1.0, green + model.out_lap_extra_ms))
        if end > car.retire_ms:
            if car.retire_in_pit and pit_ms is None:
                # Into the pits for good: the lap ends in the pit lane.
                if not kind & _IN:
                    green += model.in_lap_extra_ms
                    end = advance(t, green)
                lap_ms = end - t
                yield (end, n, lap_ms,
                       _sectors(rng, model, lap_ms, tail_ms=model.in_lap_extra_ms),
                       _IN, None, driver)
            return
        lap_ms = end - t
        tail = model.in_lap_extra_ms if kind & _IN else 0
        yield (end, n, lap_ms, _sectors(rng, model, lap_ms, head_ms=pit_ms or 0, tail_ms=tail),
               kind, pit_ms, driver)
        t = end


def _pit_time(rng: random.Random, model: ClassModel) -> int:
    """A stop's pit time: a full service mostly; now and then a quick stop or a repair."""
    low = model.pit_ms_median - 3 * model.pit_ms_sd
    high = model.pit_ms_median + 3 * model.pit_ms_sd
    draw = rng.random()
    if draw < model.pit_short_rate:
        return round(rng.uniform(model.pit_short_min_ms, low))
    if draw < model.pit_short_rate + model.pit_long_rate:
        return round(high + rng.expovariate(1.0 / model.pit_long_mean_ms))
    return round(min(high, max(low, rng.gauss(model.pit_ms_median, model.pit_ms_sd))))


def _stint_length(rng: random.Random, model: ClassModel) -> int:
    fuel = max(1, round(rng.gauss(model.fuel_stint_laps_mean, model.fuel_stint_laps_sd)))
    if rng.random() < model.short_stint_rate:
        return rng.randint(1, fuel)
    return fuel


def _qualifying_laps(field: Field, car: _Car, rng: random.Random) -> Iterator[Lap]:
    q = QUALIFYING
    model = car.model
    assert field.duration_ms is not None
    end_of_session = field.duration_ms
    budget = field.spec.laps
    # One driver qualifies the car: the quickest of its crew.
    driver = min(range(model.drivers), key=lambda d: (car.driver_offsets[d], d))
    flying_pace = (car.pace_ms + car.driver_offsets[driver]) * q.pace_factor
    t = round(rng.uniform(0, q.first_exit_share) * end_of_session)
    n = 0
    garage_since: int | None = None
    while budget - n >= 3 and t < end_of_session:  # out-lap, a flying lap, in-lap
        # Out-lap: from the garage (its time there is the out-lap's pit time).
        n += 1
        out_ms = round(model.base_ms * q.out_lap_factor * rng.uniform(0.97, 1.05))
        pit_ms = None if garage_since is None else t - garage_since
        start = garage_since if garage_since is not None else t
        end = t + out_ms
        lap_ms = end - start
        yield (end, n, lap_ms, _sectors(rng, model, lap_ms, head_ms=pit_ms or 0), _OUT,
               pit_ms, driver)
        t = end
        flying = rng.randint(*q.flying_laps)
        for i in range(flying):
            if n >= budget - 1 or t >= end_of_session:
                break
            n += 1
            pace = flying_pace + i * q.tyre_fade_ms
            lap_ms = round(max(model.base_ms * q.pace_factor * _FLOOR,
                               pace + rng.gauss(0.0, model.lap_sd_ms * q.lap_sd_factor)))
            t += lap_ms
            yield (t, n, lap_ms, _sectors(rng, model, lap_ms), _LAP, None, driver)
        if n >= budget or t >= end_of_session:
            return
        # In-lap, then the garage.
        n += 1
        lap_ms = round(model.base_ms * q.in_lap_factor) + model.in_lap_extra_ms
        t += lap_ms
        yield (t, n, lap_ms, _sectors(rng, model, lap_ms, tail_ms=model.in_lap_extra_ms),
               _IN, None, driver)
        garage_since = t
        t += rng.randint(*q.garage_ms)
        if budget - n <= q.flying_laps[1] + 2:
            # The last run: out as late as still lets the flying laps beat the flag.
            run_ms = model.base_ms * q.out_lap_factor + q.flying_laps[1] * flying_pace
            t = max(t, round(end_of_session - run_ms - rng.uniform(0, 90_000)))
        # Not worth going out for an out-lap that cannot start a flying lap in time.
        if t + model.base_ms * q.out_lap_factor >= end_of_session:
            return
