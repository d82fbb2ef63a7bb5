"""A generated session for tests and benchmarks of the engine (no file needed).

``generated_source(cars=30, laps=100)`` is a race of ``cars`` cars that each lap
in about ``lap_ms``, numbered through ``EventLogBuilder`` like any loader's log:
``SessionStarted`` at 0, then one ``LapCompleted`` per car and lap in time order,
then ``SessionFinished``. Deterministic: the same arguments give the same events.
"""

from __future__ import annotations

from simulator.contract import (
    Entry,
    Event,
    LapCompleted,
    SessionFinished,
    SessionKind,
    SessionStarted,
)
from simulator.eventlog import EventLogBuilder
from simulator.sources import Source

__all__ = ["generated_events", "generated_source"]


def generated_events(session_id: str, *, cars: int = 30, laps: int = 100,
                     lap_ms: int = 100_000, spread_ms: int = 997) -> list[Event]:
    """The events of a generated race, seq 1..n (``cars * laps + 2`` of them)."""
    log = EventLogBuilder(session_id)
    numbers = [str(n + 1) for n in range(cars)]
    events: list[Event] = [log.emit(
        SessionStarted, session_time_ms=0, series="TEST", event_name="Generated race",
        session_kind=SessionKind.RACE, scheduled_start="2024-03-02T14:00:00+03:00",
        time_zone="Asia/Bahrain", classes=["HYPERCAR"],
        entries=[Entry(car=n, car_class="HYPERCAR", team=f"Team {n}", drivers=[f"Driver {n}"])
                 for n in numbers],
        source="generated",
    )]
    # Car i laps in lap_ms + i * spread_ms: crossings interleave and drift apart.
    crossings = sorted(
        (lap * (lap_ms + i * spread_ms), i, lap)
        for i in range(cars) for lap in range(1, laps + 1)
    )
    for t, i, lap in crossings:
        events.append(log.emit(LapCompleted, session_time_ms=t, car=numbers[i],
                               driver=f"Driver {numbers[i]}", lap=lap,
                               lap_time_ms=lap_ms + i * spread_ms))
    events.append(log.emit(SessionFinished, session_time_ms=crossings[-1][0] if crossings else 0))
    return events


def generated_source(session_id: str, **kwargs: int) -> Source:
    events = generated_events(session_id, **kwargs)
    return Source(name="generated", session_id=session_id, open_events=lambda: iter(events),
                  size=len(events))
