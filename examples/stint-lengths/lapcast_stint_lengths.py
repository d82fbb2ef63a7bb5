"""Stint lengths per driver: laps of each stint, a stint ending when the car pits."""

from typing import Any

from consumers.api import Consumer
from simulator.contract import Event, LapCompleted


def initial() -> dict[str, Any]:
    # open: car -> driver of the stint under way (None after a pit stop);
    # stints: "#car driver" -> laps of each stint, the last one possibly under way.
    return {"open": {}, "stints": {}}


def apply(state: dict[str, Any], event: Event) -> dict[str, Any]:
    if isinstance(event, LapCompleted):
        driver = f"#{event.car} {event.driver}"
        stints = state["stints"].setdefault(driver, [])
        if state["open"].get(event.car) != driver:  # a pit stop or a driver change
            stints.append(0)
        stints[-1] += 1
        state["open"][event.car] = None if event.in_pit else driver
    return state


def view(state: dict[str, Any]) -> Any:
    return state["stints"]


CONSUMER = Consumer(name="stint-lengths", description="laps of each stint, per driver",
                    initial=initial, apply=apply, view=view)
