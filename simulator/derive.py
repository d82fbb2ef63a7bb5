"""From what a source describes (crossings, corrections) to the numbered event log.

Every loader (Al Kamel CSV, scenario TOML, synthetic field) reduces its input to
``Crossing`` and ``Correction`` values in session-time order and hands them to
``build_log``, which derives everything a source does not say explicitly, the
same way for all of them:

* ``SessionStarted`` at session time 0;
* ``FlagChanged`` before the first ``LapCompleted`` that shows a new flag;
* ``SectorCompleted`` at the moments the sector times imply (sector granularity);
* ``ChequeredFlag`` right after the crossing where it falls: the first crossing
  flagged CHEQUERED or, in a race, the leader (most laps) completing
  ``distance_laps`` or the leader's first crossing at or after ``duration_ms``; in
  qualifying and practice it falls at ``duration_ms`` itself;
* ``CarRetired`` at the end of a race for every car that never crossed the line at
  or after the chequered flag;
* ``SessionFinished`` last.

Red flags (a suspended session; ``Flag.RED``, Al Kamel's ``RF``):

* the flag changes to RED at the first crossing flagged RED and back at the first
  crossing after it that is not, like any other flag;
* a lap that ends under the red flag, or that was under way while it was out (the
  car's previous crossing came before the red flag ended: the lap that spans the
  suspension, 43 minutes in a real 6-hour race) counts for the classification but
  is emitted with ``valid=False``: it is never a best lap, nor a pole. Every
  projection that honours ``valid`` (lap 1 of a race is marked the same way) gets
  this for free, and a live fold and ``lapcast fold`` see the same log;
* a crossing under the red flag never brings out the chequered flag (a race whose
  time runs out while suspended ends under red);
* a race that ends under red with no chequered flag classifies the cars that were
  running at the red flag as finished on their last crossing (no event: the log
  ends with the flag RED and no ``ChequeredFlag``). Running at the red flag: the
  car crossed the line since it was shown, or less than a lap before it (its last
  crossing plus that lap's time reaches the red flag: a car in the pits for a stop
  when the race was suspended). Every other car gets ``CarRetired`` ("stopped before
  the red flag").

The chequered-flag semantic every projection relies on: a car finishes at its first
crossing at or after the ``ChequeredFlag``'s session time (session time, not seq
order, decides, so a car crossing at the very same millisecond as the leader also
finishes).

Memory: in lap granularity ``build_log`` streams; it holds one small record per car
and the crossings that share one millisecond. Corrections are few and are held in
memory, sorted. In sector granularity it buffers: a sector of a car's lap is known
only when the car's next crossing is read, so events wait in a heap until every car
still in the field has crossed past them (the watermark is the earliest last
crossing among the cars). A car that stops for good holds the watermark at its last
crossing, so the rest of the session is buffered until the end.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from simulator.contract import (
    CarRetired,
    ChequeredFlag,
    Disqualified,
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
from simulator.errors import SourceError
from simulator.eventlog import EventLogBuilder

__all__ = ["Correction", "CorrectionKind", "Crossing", "Granularity", "build_log"]

Granularity = Literal["lap", "sector"]
CorrectionKind = Literal["lap-deleted", "time-penalty", "disqualified"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Crossing:
    """One lap as a source describes it, before numbering."""

    session_time_ms: int  # the moment the car crossed the line
    car: str
    driver: str
    lap: int
    lap_time_ms: int | None
    sector_times_ms: tuple[int | None, ...] = ()
    in_pit: bool = False
    pit_time_ms: int | None = None
    flag: Flag = Flag.GREEN
    valid: bool = True
    synthesized: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Correction:
    """A correction decided at a moment of the session."""

    session_time_ms: int
    kind: CorrectionKind
    car: str
    reason: str
    lap: int | None = None  # lap-deleted
    penalty_ms: int | None = None  # time-penalty
    synthesized: bool = False


# Order of items sharing one millisecond: the qualifying chequered flag first (a car
# crossing at that moment finishes), then sectors (the last sector of a lap ends at
# its crossing), then crossings in source order, then corrections ("after a crossing
# at the same time").
_RANK_TIMED_FLAG: Final = 0
_RANK_SECTOR: Final = 1
_RANK_CROSSING: Final = 2
_RANK_CORRECTION: Final = 3

_NEVER: Final = -1


@dataclass(slots=True, kw_only=True)
class _Car:
    laps: int = 0
    last_ms: int = _NEVER
    last_lap_ms: int = 0  # the time of the lap completed at ``last_ms`` (0: untimed)


def build_log(
    *,
    session_id: str,
    started: dict[str, Any],
    crossings: Iterable[Crossing],
    corrections: Iterable[Correction] = (),
    granularity: Granularity = "lap",
    epoch: int = 1,
    source: str | None = None,
    initial_flag: Flag = Flag.GREEN,
) -> Iterator[Event]:
    """The numbered event log of a session, streamed.

    ``started`` holds the ``SessionStarted`` fields except the envelope. ``crossings``
    must be in session-time order (``SourceError`` naming ``source`` otherwise);
    ``corrections`` may come in any order. ``source`` names the input in errors
    (default: the session id).
    """
    return _LogDeriver(
        session_id=session_id,
        started=started,
        granularity=granularity,
        epoch=epoch,
        source=source or session_id,
        initial_flag=initial_flag,
    ).run(crossings, corrections)


class _LogDeriver:
    """The state of one derivation; ``run`` is a generator over it."""

    def __init__(self, *, session_id: str, started: dict[str, Any], granularity: Granularity,
                 epoch: int, source: str, initial_flag: Flag) -> None:
        if granularity not in ("lap", "sector"):
            raise ValueError(f"granularity must be 'lap' or 'sector', not {granularity!r}")
        self.log = EventLogBuilder(session_id, epoch=epoch)
        self.started = started
        self.sectors = granularity == "sector"
        self.source = source
        self.kind = SessionKind(started["session_kind"])
        self.duration_ms: int | None = started.get("duration_ms")
        self.distance_laps: int | None = started.get("distance_laps")
        self.flag = initial_flag
        self.cars: dict[str, _Car] = {}
        for entry in started.get("entries") or ():
            self.cars.setdefault(entry.car, _Car())
        self.max_laps = 0
        self.leader: str | None = None
        self.best: tuple[int, str] | None = None  # (lap time, car), qualifying leader
        self.chequered_ms: int | None = None
        # Red flags: when the flag last turned RED, and when it last left RED (a car
        # whose previous crossing came before that moment drove through the suspension).
        self.red_since_ms = 0 if initial_flag is Flag.RED else _NEVER
        self.red_end_ms = _NEVER
        self.last_ms = 0
        self.heap: list[tuple[int, int, int, Any]] = []
        self.counter = itertools.count()
        # Sector granularity: each car's last crossing as read (emission lags behind) and
        # the watermark heap of (last crossing ms, car), stale entries skipped lazily. An
        # entrant not seen yet holds the watermark at 0: its lap 1 may start at any time.
        self.read: dict[str, int] = {}
        self.marks: list[tuple[int, str]] = [(0, car) for car in self.cars]
        heapq.heapify(self.marks)

    # --- the generator ---------------------------------------------------------------

    def run(self, crossings: Iterable[Crossing],
            corrections: Iterable[Correction]) -> Iterator[Event]:
        yield self.log.emit(SessionStarted, session_time_ms=0, **self.started)
        for correction in corrections:
            if correction.session_time_ms < 0:
                raise SourceError(self.source, f"{correction.kind} of car {correction.car} at "
                                  f"{correction.session_time_ms} ms, before the session started")
            self._push(correction.session_time_ms, _RANK_CORRECTION, correction)
        if self.kind is not SessionKind.RACE and self.duration_ms is not None:
            self._push(self.duration_ms, _RANK_TIMED_FLAG, None)
        previous_ms = 0
        for crossing in crossings:
            t = crossing.session_time_ms
            if t < 0:
                raise SourceError(self.source, f"car {crossing.car} lap {crossing.lap} crosses "
                                  f"at {t} ms, before the session started")
            if t < previous_ms:
                raise SourceError(
                    self.source,
                    f"car {crossing.car} lap {crossing.lap} crosses at {t} ms, before the "
                    f"previous crossing at {previous_ms} ms: crossings must be in time order",
                )
            previous_ms = t
            if self.sectors:
                self._push_sectors(crossing)  # before the watermark records this crossing
                self._push(t, _RANK_CROSSING, crossing)
                yield from self._flush(self._watermark(crossing))
            else:
                # Nothing derived later can come before this crossing: release the past.
                yield from self._flush(t)
                self._push(t, _RANK_CROSSING, crossing)
        yield from self._flush(None)
        yield from self._finish()

    # --- ordering --------------------------------------------------------------------

    def _push(self, t: int, rank: int, item: Any) -> None:
        heapq.heappush(self.heap, (t, rank, next(self.counter), item))

    def _flush(self, before_ms: int | None) -> Iterator[Event]:
        heap = self.heap
        while heap and (before_ms is None or heap[0][0] < before_ms):
            t, rank, _, item = heapq.heappop(heap)
            if rank == _RANK_CROSSING:
                yield from self._crossing(item)
            elif rank == _RANK_SECTOR:
                yield self.log.emit(SectorCompleted, session_time_ms=max(t, self.last_ms),
                                    **item)
            elif rank == _RANK_CORRECTION:
                yield self._correction(item)
            else:
                yield from self._timed_chequered(t)
            self.last_ms = max(self.last_ms, t)

    def _watermark(self, crossing: Crossing) -> int:
        """The earliest last crossing (as read) among the cars: nothing can come before it."""
        self.read[crossing.car] = crossing.session_time_ms
        marks = self.marks
        heapq.heappush(marks, (crossing.session_time_ms, crossing.car))
        while True:
            t, car = marks[0]
            if self.read.get(car, 0) == t:
                return t
            heapq.heappop(marks)  # stale: the car has crossed since

    def _push_sectors(self, crossing: Crossing) -> None:
        """Queue the lap's SectorCompleted events at the moments its sector times imply."""
        times = crossing.sector_times_ms
        if not times:
            return
        t = crossing.session_time_ms
        previous = self.read.get(crossing.car)
        if previous is not None:
            start = previous
        elif crossing.lap_time_ms is not None:
            start = max(0, t - crossing.lap_time_ms)
        else:
            start = 0
        n = len(times)
        moments: list[int | None] = [None] * n
        moments[n - 1] = t  # the last sector ends at the line
        # Forward from the lap's start while every earlier sector is known...
        acc = start
        for i in range(n - 1):
            s = times[i]
            if s is None:
                break
            acc += s
            moments[i] = acc
        # ...and backward from the line for sectors after an unknown one.
        acc = t
        for i in range(n - 1, 0, -1):
            s = times[i]
            if s is None:
                break
            acc -= s
            if moments[i - 1] is None:
                moments[i - 1] = acc
        for i, (s, moment) in enumerate(zip(times, moments, strict=True)):
            if s is None or moment is None:
                continue
            # Rounding in the export can put a moment a millisecond outside the lap.
            moment = min(max(moment, start), t)
            self._push(moment, _RANK_SECTOR, {
                "car": crossing.car, "driver": crossing.driver, "lap": crossing.lap,
                "sector": i + 1, "sector_time_ms": s,
            })

    # --- events ----------------------------------------------------------------------

    def _crossing(self, c: Crossing) -> Iterator[Event]:
        t = c.session_time_ms
        log = self.log
        if self.chequered_ms is None and c.flag is not self.flag:
            yield from self._change_flag(t, c.flag)
        state = self.cars.get(c.car)
        if state is None:
            state = self.cars[c.car] = _Car()
        # A lap under the red flag, or under way while it was out, is never a best lap.
        valid = c.valid and c.flag is not Flag.RED and self.red_end_ms <= state.last_ms
        yield log.emit(
            LapCompleted, session_time_ms=t, car=c.car, driver=c.driver, lap=c.lap,
            lap_time_ms=c.lap_time_ms, sector_times_ms=list(c.sector_times_ms),
            in_pit=c.in_pit, pit_time_ms=c.pit_time_ms, flag=c.flag, valid=valid,
            synthesized=c.synthesized,
        )
        state.laps = c.lap
        state.last_ms = t
        state.last_lap_ms = c.lap_time_ms or 0
        took_lead = c.lap > self.max_laps
        if took_lead:
            self.max_laps = c.lap
            self.leader = c.car
        if valid and c.lap_time_ms is not None and (
            self.best is None or c.lap_time_ms < self.best[0]
        ):
            self.best = (c.lap_time_ms, c.car)
        if self.chequered_ms is not None:
            return
        falls = c.flag is Flag.CHEQUERED
        # Under a red flag the session is suspended: its time or distance running out
        # then brings no chequered flag (the race ends under red).
        if self.kind is SessionKind.RACE and took_lead and c.flag is not Flag.RED:
            if self.distance_laps is not None and c.lap >= self.distance_laps:
                falls = True
            if self.duration_ms is not None and t >= self.duration_ms:
                falls = True
        if falls:
            yield from self._chequered(t)

    def _timed_chequered(self, t: int) -> Iterator[Event]:
        if self.chequered_ms is None:
            yield from self._chequered(t)

    def _chequered(self, t: int) -> Iterator[Event]:
        leader = self._leader()
        if leader is None:
            return  # nobody to give the flag to: an empty session
        self.chequered_ms = t
        yield self.log.emit(ChequeredFlag, session_time_ms=t, leader=leader,
                            laps=self.cars[leader].laps)
        if self.flag is not Flag.CHEQUERED:
            yield from self._change_flag(t, Flag.CHEQUERED)

    def _change_flag(self, t: int, flag: Flag) -> Iterator[Event]:
        if self.flag is Flag.RED:
            self.red_end_ms = t
        elif flag is Flag.RED:
            self.red_since_ms = t
        yield self.log.emit(FlagChanged, session_time_ms=t, flag=flag, previous=self.flag)
        self.flag = flag

    def _leader(self) -> str | None:
        if self.kind is not SessionKind.RACE and self.best is not None:
            return self.best[1]
        if self.leader is not None:
            return self.leader
        return next(iter(self.cars), None)

    def _correction(self, c: Correction) -> Event:
        t = c.session_time_ms
        if c.kind == "lap-deleted":
            if c.lap is None:
                raise SourceError(self.source, f"lap-deleted correction of car {c.car} "
                                  f"at {t} ms has no lap")
            return self.log.emit(LapDeleted, session_time_ms=t, car=c.car, lap=c.lap,
                                 reason=c.reason, synthesized=c.synthesized)
        if c.kind == "time-penalty":
            if c.penalty_ms is None:
                raise SourceError(self.source, f"time-penalty correction of car {c.car} "
                                  f"at {t} ms has no penalty_ms")
            return self.log.emit(TimePenalty, session_time_ms=t, car=c.car,
                                 penalty_ms=c.penalty_ms, reason=c.reason,
                                 synthesized=c.synthesized)
        if c.kind == "disqualified":
            return self.log.emit(Disqualified, session_time_ms=t, car=c.car, reason=c.reason,
                                 synthesized=c.synthesized)
        raise SourceError(self.source, f"unknown correction kind {c.kind!r} for car {c.car}")

    def _finish(self) -> Iterator[Event]:
        end = self.last_ms
        if self.kind is SessionKind.RACE and self.chequered_ms is not None:
            flag_ms = self.chequered_ms
            for car, state in self.cars.items():
                if state.last_ms < flag_ms:
                    yield self.log.emit(
                        CarRetired, session_time_ms=end, car=car, laps=state.laps,
                        reason=("never crossed the line" if state.last_ms == _NEVER
                                else "never took the chequered flag"),
                    )
        elif self.kind is SessionKind.RACE and self.flag is Flag.RED:
            # Ended under red: the cars running at the red flag (a crossing since, or
            # less than a lap before it) are classified on their last crossing.
            for car, state in self.cars.items():
                if state.last_ms == _NEVER or (
                        state.last_ms + state.last_lap_ms < self.red_since_ms):
                    yield self.log.emit(
                        CarRetired, session_time_ms=end, car=car, laps=state.laps,
                        reason=("never crossed the line" if state.last_ms == _NEVER
                                else "stopped before the red flag"),
                    )
        yield self.log.emit(SessionFinished, session_time_ms=end)
