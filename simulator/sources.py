"""Every kind of source, behind one call: ``load_source(spec)``.

* ``*.csv``: an Al Kamel "analysis" export (``simulator.alkamel``)
* ``*.toml``: a lapcast scenario file (``simulator.scenario``)
* ``*.jsonl``: an engine journal; its latest epoch (``simulator.journal``)
* ``synth:cars=1000,seed=7,...``: a synthetic field (``simulator.synth``)

A ``Source`` can be iterated more than once (the engine re-reads it for a
backward seek) and may stream (a synthetic field of a million laps is never held
in memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simulator.contract import Event
from simulator.errors import LapcastError

__all__ = ["Granularity", "Source", "load_source"]

Granularity = Literal["lap", "sector"]


@dataclass(frozen=True, kw_only=True)
class Source:
    """A loaded source: ``events()`` yields its whole log, seq 1..n, in order."""

    name: str
    session_id: str
    open_events: Callable[[], Iterator[Event]]
    # Number of events when known without iterating (None for a stream).
    size: int | None = None

    def events(self) -> Iterator[Event]:
        return self.open_events()


def load_source(
    spec: str, *, session_id: str | None = None, granularity: Granularity = "lap"
) -> Source:
    """Load ``spec`` as a source; ``session_id`` overrides the one it would get."""
    if spec.startswith("synth:") or spec == "synth":
        from simulator import synth

        return synth.load(spec, session_id=session_id, granularity=granularity)
    path = Path(spec)
    if not path.exists():
        raise LapcastError(f"{spec}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        from simulator import alkamel

        return alkamel.load(path, session_id=session_id, granularity=granularity)
    if suffix == ".toml":
        from simulator import scenario

        return scenario.load(path, session_id=session_id, granularity=granularity)
    if suffix in (".jsonl", ".journal", ".ndjson"):
        from simulator import journal

        return journal.load(path, session_id=session_id)
    raise LapcastError(
        f"{spec}: unknown source type {suffix!r} "
        "(expected an Al Kamel .csv, a scenario .toml, a journal .jsonl or synth:...)"
    )
