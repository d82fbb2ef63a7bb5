"""What a state is stamped with besides ``(epoch, seq)``: latency and session time.

The engine stamps every events message with its publish time (the MQTT v5 user
property ``published_at_ns``). A published state carries the latest such time
among the events it reflects, so a probe (``lapcast stress``, ``bench/latency.py``)
measures engine-to-state latency; an event buffered while a gap is fetched keeps
its stamp until it is applied. The session time of the last event applied rides
along, into the state document and the checkpoint.
"""

from __future__ import annotations

from typing import Any, Final

import aiomqtt

from simulator import contract
from simulator.contract import Event

__all__ = ["PUBLISHED_AT", "Stamps", "published_at"]

# The MQTT v5 user property the engine stamps on every events message.
PUBLISHED_AT: Final = contract.PUBLISHED_AT


def published_at(message: aiomqtt.Message) -> int | None:
    """The engine's publish time of an events message (ns), if it carries a valid one."""
    props: Any = message.properties
    for key, value in getattr(props, "UserProperty", None) or ():
        if key == PUBLISHED_AT:
            try:
                return int(value)
            except ValueError:
                return None
    return None


class Stamps:
    """The latest engine publish time and the session time of the events applied."""

    __slots__ = ("_buffered", "published_at_ns", "session_time_ms")

    def __init__(self, *, published_at_ns: int = 0, session_time_ms: int = 0) -> None:
        self.published_at_ns = published_at_ns
        self.session_time_ms = session_time_ms
        # Publish times of buffered events, applied later: {(epoch, seq): ns}.
        self._buffered: dict[tuple[int, int], int] = {}

    def applied(self, stamp: int | None, applied: list[Event], pending: int) -> None:
        """``applied`` (the offered event first, then buffered ones it released)."""
        if stamp:
            self.published_at_ns = max(self.published_at_ns, stamp)
        for later in applied[1:]:
            kept = self._buffered.pop((later.epoch, later.seq), None)
            if kept:
                self.published_at_ns = max(self.published_at_ns, kept)
        if not pending:
            self._buffered.clear()
        self.session_time_ms = applied[-1].session_time_ms

    def restart(self) -> None:
        """The state was dropped (``consumers.identity``): nothing is reflected yet."""
        self.published_at_ns = 0
        self.session_time_ms = 0
        self._buffered.clear()

    def buffered(self, event: Event, stamp: int | None) -> None:
        if stamp:
            self._buffered[(event.epoch, event.seq)] = stamp
