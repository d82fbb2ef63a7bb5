"""Write-ahead: an event reaches the journal before its message reaches the wire.

``WriteAhead`` wraps the engine's ``JournalWriter``. ``append`` buffers the lines of
the events about to be published and queues one flush on the event loop; the loop
runs callbacks in order, so the flush runs before the publish tasks started after
it: one write(2) for all the messages of a loop iteration. ``fsync_loop`` makes the
journal durable in the background (see ``simulator.journal`` for the policy);
``sync`` does it at once (pause, seek, finish).
"""

from __future__ import annotations

import asyncio

from simulator.contract import Event, encode
from simulator.journal import JournalWriter

__all__ = ["WriteAhead"]


class WriteAhead:
    """The journal side of publishing: append, flush before publish, fsync behind."""

    def __init__(self, journal: JournalWriter, *, fsync_interval_s: float) -> None:
        self.journal = journal
        self.fsync_interval_s = fsync_interval_s
        self._flush_scheduled = False

    def append(self, events: list[Event]) -> list[bytes]:
        """Journal ``events``; returns their JSON lines (the JSON payloads too)."""
        journal = self.journal
        lines = []
        for event in events:
            line = encode(event, "json")
            journal.append(event.epoch, event.seq, line)
            lines.append(line)
        if not self._flush_scheduled:
            # Queued before the publish task of these events (and any other this
            # iteration): the journal reaches the OS before the message reaches the wire.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return lines

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.journal.flush()

    def sync(self) -> None:
        """Flush and fsync now."""
        self.journal.sync()

    async def fsync_loop(self) -> None:
        journal = self.journal
        while True:
            await asyncio.sleep(self.fsync_interval_s)
            if journal.dirty:
                await asyncio.to_thread(journal.fsync_now)

    def close(self) -> None:
        self.journal.close()
