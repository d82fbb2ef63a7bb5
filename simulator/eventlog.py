"""Numbering events: the one place that hands out ``seq`` and fills the envelope.

Loaders (Al Kamel CSV, scenario TOML, synthetic fields) describe what happened and
call ``EventLogBuilder.emit`` in session-time order; the builder stamps each event
with the session id, epoch and the next gapless ``seq``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from simulator.contract import EventBase

__all__ = ["EventLogBuilder"]

E = TypeVar("E", bound=EventBase)


class EventLogBuilder:
    __slots__ = ("epoch", "last_time_ms", "seq", "session_id")

    def __init__(self, session_id: str, *, epoch: int = 1) -> None:
        self.session_id = session_id
        self.epoch = epoch
        self.seq = 0
        self.last_time_ms: int | None = None

    def emit(self, event_type: type[E], *, session_time_ms: int, **fields: Any) -> E:
        """The next event of the log. Session time never goes backwards."""
        if self.last_time_ms is not None and session_time_ms < self.last_time_ms:
            raise ValueError(
                f"{event_type.__name__} at {session_time_ms} ms comes before the previous "
                f"event at {self.last_time_ms} ms: loaders must emit in time order"
            )
        self.seq += 1
        self.last_time_ms = session_time_ms
        return event_type(
            session_id=self.session_id,
            epoch=self.epoch,
            seq=self.seq,
            session_time_ms=session_time_ms,
            **fields,
        )
