"""Where the replay stands in its source: the events of the current epoch, in order.

``scan`` reads a source once (count and end, which seeking needs, and the log id,
``simulator.logid``); ``Cursor`` walks it, stamping every event with the epoch under
way and the ``SessionStarted`` with the log id. A backward seek ``restart``s it at
seq 1 of the next epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import msgspec

from simulator.contract import Event, SessionStarted
from simulator.errors import LapcastError
from simulator.logid import LogDigest
from simulator.sources import Source

__all__ = ["Cursor", "Scanned", "scan"]


class Scanned(NamedTuple):
    total_events: int
    end_ms: int
    log_id: str


def scan(source: Source) -> Scanned:
    """The number of events, the session time of the last and the log id, checking
    that seq is gapless."""
    count, end = 0, 0
    digest = LogDigest()
    for event in source.events():
        count += 1
        if event.seq != count:
            raise LapcastError(f"{source.name}: seq {event.seq} where {count} was "
                               "expected (a source is gapless from 1)")
        end = event.session_time_ms
        digest.add(event)
    if count == 0:
        raise LapcastError(f"{source.name}: no events to replay")
    return Scanned(count, end, digest.hexdigest())


class Cursor:
    """The events of the current epoch, in order, stamped with the epoch."""

    def __init__(self, source: Source, epoch: int, *, log_id: str = "") -> None:
        self.source = source
        self.log_id = log_id
        self.restart(epoch)

    def restart(self, epoch: int) -> None:
        self.epoch = epoch
        self._events: Iterator[Event] = iter(self.source.events())
        self._next: Event | None = None
        self._expected = 1
        self._done = False

    @property
    def handed(self) -> int:
        """The last seq taken (journaled and handed out) in this epoch; 0 before any."""
        return self._expected - 1

    def peek(self) -> Event | None:
        if self._next is None and not self._done:
            event = next(self._events, None)
            if event is None:
                self._done = True
                return None
            if event.seq != self._expected:
                raise LapcastError(f"{self.source.name}: seq {event.seq} where "
                                   f"{self._expected} was expected (a source is gapless)")
            if event.epoch != self.epoch:
                event = msgspec.structs.replace(event, epoch=self.epoch)
            if type(event) is SessionStarted and self.log_id:
                event = msgspec.structs.replace(event, log_id=self.log_id)
            self._next = event
        return self._next

    def take(self) -> Event:
        event = self.peek()
        assert event is not None
        self._next = None
        self._expected += 1
        return event
