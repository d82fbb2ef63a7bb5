"""Find consumers by name: the built-in projections and user plug-ins alike.

Both come through the entry-point group ``lapcast.consumers`` (lapcast registers
its own four there too), so a user's consumer is a peer of the built-in ones.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from consumers.api import Consumer
from simulator.errors import LapcastError

__all__ = ["ALL_BUILTIN", "BUILTIN", "available", "load_consumer"]

GROUP = "lapcast.consumers"
# The projections the terminal board reads (the demo and the stress test run these).
BUILTIN = ("running-order", "class-poles", "championship")
# Every built-in projection: those and the lap chart the web page draws. `lapcast fold`
# folds them all.
ALL_BUILTIN = (*BUILTIN, "lap-chart")


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> dict[str, str]:
    """Name -> ``module:attr`` of every installed consumer."""
    return {name: ep.value for name, ep in sorted(_entry_points().items())}


def load_consumer(name: str) -> Consumer[Any]:
    """The consumer registered as ``name`` (or given as ``module:attr``)."""
    eps = _entry_points()
    if name in eps:
        obj = eps[name].load()
    elif ":" in name:
        obj = EntryPoint(name=name, value=name, group=GROUP).load()
    else:
        known = ", ".join(sorted(eps)) or "none"
        raise LapcastError(f"no consumer named {name!r} (installed: {known})")
    if not isinstance(obj, Consumer):
        raise LapcastError(f"{name!r} is a {type(obj).__name__}, not a consumers.api.Consumer")
    return obj
