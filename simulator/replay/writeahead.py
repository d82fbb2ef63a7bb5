"""Write-ahead: an event reaches the journal before its message reaches the wire.

``WriteAhead`` wraps the engine's ``JournalWriter``. ``append`` buffers the lines of
the events about to be published and queues one flush on the event loop; only once
that flush has succeeded does it let ``Delivery`` publish the messages queued
meanwhile (one write(2) for all the messages of a loop iteration, and no message
before its events are in the journal). ``fsync_loop`` makes the journal durable in
the background (see ``simulator.journal`` for the policy); ``sync`` does it at once
(pause, seek, finish).

When the journal cannot be written (disk full, I/O error, read-only), ``failure``
holds the ``JournalError`` and ``on_failure`` is called, once: nothing queued is
published, and ``append`` refuses from then on. The engine stops and says ``error``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from simulator.contract import Event, encode
from simulator.journal import JournalError, JournalWriter
from simulator.replay.delivery import Delivery

__all__ = ["WriteAhead"]

log = structlog.get_logger()


class WriteAhead:
    """The journal side of publishing: append, flush before publish, fsync behind."""

    def __init__(self, journal: JournalWriter, delivery: Delivery, *,
                 fsync_interval_s: float, on_failure: Callable[[JournalError], None]) -> None:
        self.journal = journal
        self.delivery = delivery
        self.fsync_interval_s = fsync_interval_s
        self.on_failure = on_failure
        self.failure: JournalError | None = None
        self._flush_scheduled = False

    def append(self, events: list[Event]) -> list[bytes]:
        """Journal ``events``; returns their JSON lines (the JSON payloads too).

        The message carrying them must go through ``Delivery.send`` before the next
        await: the flush queued here launches it. ``JournalError`` once failed.
        """
        if self.failure is not None:
            raise self.failure
        journal = self.journal
        lines = []
        try:
            for event in events:
                line = encode(event, "json")
                journal.append(event.epoch, event.seq, line)
                lines.append(line)
        except JournalError as exc:
            self._fail(exc)
            raise
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return lines

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.flush():
            self.delivery.launch_queued()

    def flush(self) -> bool:
        """Flush to the OS now; False (and the failure recorded) if it cannot be."""
        if self.failure is not None:
            return False
        try:
            self.journal.flush()
        except JournalError as exc:
            self._fail(exc)
            return False
        return True

    def sync(self) -> None:
        """Flush and fsync now (a failure is recorded, not raised)."""
        if self.failure is None:
            try:
                self.journal.sync()
            except JournalError as exc:
                self._fail(exc)

    async def fsync_loop(self) -> None:
        journal = self.journal
        while self.failure is None:
            await asyncio.sleep(self.fsync_interval_s)
            if journal.dirty:
                try:
                    await asyncio.to_thread(journal.fsync_now)
                except JournalError as exc:
                    self._fail(exc)

    def close(self) -> None:
        try:
            self.journal.close()
        except JournalError as exc:
            self._fail(exc)

    def _fail(self, exc: JournalError) -> None:
        if self.failure is None:
            self.failure = exc
            log.info("journal failed: publishing stops", error=str(exc))  # the CLI says it
            self.on_failure(exc)
