"""The consumer API: a projection is a pure fold plus a name.

A consumer is what ``lapcast consume NAME`` runs and what ``lapcast fold`` folds
offline: the same ``apply`` in both places. Writing one takes a few lines::

    from consumers.api import Consumer
    from simulator.contract import Event, LapCompleted

    def apply(laps: dict[str, int], event: Event) -> dict[str, int]:
        if isinstance(event, LapCompleted):
            laps[event.car] = laps.get(event.car, 0) + 1
        return laps

    CONSUMER = Consumer(name="lap-count", description="laps per car",
                        initial=dict, apply=apply)

and registering ``CONSUMER`` under the entry-point group ``lapcast.consumers``.

Rules for ``apply``: no I/O, no clock, no randomness; the same events give the
same state. It may update the state it owns in place and return it (for speed);
``initial`` must return a fresh state every call. State must be picklable (the
runner checkpoints it) and ``view(state)`` must be encodable by msgspec (dicts,
lists, numbers, strings, Structs): it is what gets published on
``.../state/{name}`` and printed by ``lapcast fold --json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from simulator.contract import Event

__all__ = ["Consumer", "rows_of"]

S = TypeVar("S")


def _identity(state: Any) -> Any:
    return state


@dataclass(frozen=True, kw_only=True)
class Consumer(Generic[S]):
    """A named fold over the event stream.

    ``name`` is kebab-case (``running-order``): it names the consumer on the
    command line and in topics; ``json_key`` (snake_case) names it in JSON.
    ``on_changes``, when given, is called by the live runner with the rows that
    changed since the last publication (``{row_key: row or None if removed}``).
    """

    name: str
    description: str
    initial: Callable[[], S]
    apply: Callable[[S, Event], S]
    view: Callable[[S], Any] = _identity
    on_changes: Callable[[dict[str, Any]], None] | None = None

    @property
    def json_key(self) -> str:
        return self.name.replace("-", "_")


def rows_of(view: Any) -> dict[str, Any]:
    """Split a view into keyed rows, so that changes can be published row by row.

    A list of objects with a ``car`` field is keyed by car; a mapping by its keys;
    a view with a ``rows`` list (an object) by the rows' ``car``; anything else is
    one row keyed ``""``.
    """
    if isinstance(view, dict):
        rows = view.get("rows")
        if isinstance(rows, list) and all(isinstance(r, dict) and "car" in r for r in rows):
            return {str(r["car"]): r for r in rows}
        return {str(k): v for k, v in view.items()}
    if isinstance(view, list) and all(isinstance(r, dict) and "car" in r for r in view):
        return {str(r["car"]): r for r in view}
    return {"": view}
