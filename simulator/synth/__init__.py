"""Synthetic fields: plausible multi-class sessions of any size, from a seed.

``load("synth:cars=1000,seed=7,laps=50,classes=HYPERCAR:LMGT3,session=race")``
returns a ``Source`` whose ``events()`` is a fresh, deterministic stream each call
(the same spec gives byte-identical logs). The model lives in ``model`` (fitted to
the real 2024 Bahrain race), the spec in ``spec``, the stream in ``generator``.
"""

from __future__ import annotations

from collections.abc import Iterator

from simulator.contract import Event
from simulator.derive import build_log
from simulator.sources import Granularity, Source
from simulator.synth.generator import Field
from simulator.synth.spec import (
    SynthSpec,
    add_synth_options,
    parse_spec,
    source_from_options,
    spec_from_options,
)

__all__ = [
    "Field",
    "SynthSpec",
    "add_synth_options",
    "events",
    "load",
    "parse_spec",
    "source_from_options",
    "spec_from_options",
]


def events(spec: SynthSpec, *, session_id: str | None = None,
           granularity: Granularity = "lap") -> Iterator[Event]:
    """The session's event log, streamed (seq 1..n)."""
    field = Field(spec)
    return build_log(
        session_id=session_id or spec.session_id(),
        started=field.started(),
        crossings=field.crossings(),
        corrections=field.corrections(),
        granularity=granularity,
        source=spec.text(),
    )


def load(spec: str | SynthSpec, *, session_id: str | None = None,
         granularity: Granularity = "lap") -> Source:
    """A synthetic source; ``spec`` is ``synth:key=value,...`` or a ``SynthSpec``."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    sid = session_id or parsed.session_id()
    return Source(
        name=parsed.text(),
        session_id=sid,
        open_events=lambda: events(parsed, session_id=sid, granularity=granularity),
    )
