"""When a live consumer checkpoints: every K events or T ms, and at a stop.

A checkpoint is the folder's state plus ``(epoch, seq)`` and the stamps, in the
format of ``checkpoint.py``. The state is pickled on the event loop, which keeps
state and seq consistent; the write and its fsyncs (milliseconds, more on a slow
disk) run in a worker thread, so they hold up neither the fold nor publications.
A state that takes long to checkpoint is checkpointed less often (``CHECKPOINT_BUDGET``,
over the CPU time of the pickling and of the write): a longer catch-up after a crash,
not a starved fold. A failed write is logged and
folding goes on: a missing checkpoint costs a longer catch-up, not correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Final

import structlog

from consumers import checkpoint
from consumers.health import Counters
from consumers.sequencer import Sequencer
from consumers.stamps import Stamps

__all__ = ["CHECKPOINT_BUDGET", "CheckpointSchedule"]

log = structlog.get_logger()

# A checkpoint waits this many times the CPU time the last one took (pickling on the
# loop, writing in the worker thread) after the previous one: at most ~1/N of the time
# goes to checkpoints. A long race's state (60 cars, 6,000 laps: 8 MB, ~6 ms) is then
# checkpointed about every 0.3 s, a small one every K events or T ms as configured.
CHECKPOINT_BUDGET: Final = 50


class CheckpointSchedule:
    """Checkpoints one consumer's folder: ``applied()`` counts, ``run()`` writes."""

    def __init__(self, *, path: Path, session_id: str, consumer: str, sequencer: Sequencer,
                 stamps: Stamps, counters: Counters, every_events: int,
                 every_ms: int) -> None:
        self.path = path
        self.session_id = session_id
        self.consumer = consumer
        self.sequencer = sequencer
        self.stamps = stamps
        self.counters = counters
        self.every_events = every_events
        self.every_s = every_ms / 1000
        self._unsaved = 0  # events applied since the last checkpoint
        self._due = asyncio.Event()  # K events since the last checkpoint
        self._failed = False
        self._writing: asyncio.Future[None] | None = None  # a write in a worker thread
        self._snapshot_s = 0.0  # how long the last checkpoint took to pickle
        self._write_s = 0.0  # CPU time of the last write (its worker thread's)
        self._snapshot_at = 0.0  # when it was taken (monotonic)
        # A write in flight when the fold went back (``rewound``) may hold what it undid.
        self._stale_write = False

    def applied(self, count: int) -> None:
        """``count`` more events applied (the hot path calls this)."""
        self._unsaved += count
        if self._unsaved >= self.every_events:
            self._due.set()

    def rewound(self) -> None:
        """The fold went back (a conflict): a checkpoint may hold an event that was not
        the engine's. Replace it now by the folder as it is (none if from the start),
        and again once a write in flight, of the state before, has landed."""
        self._stale_write = self._writing is not None and not self._writing.done()
        self._replace()

    def _replace(self) -> None:
        folder = self.sequencer.folder
        self._unsaved = 0
        if self._failed:
            return
        try:
            if folder.seq == 0:
                self.path.unlink(missing_ok=True)
            else:
                snapshot = self._snapshot(force=True, always=True)
                if snapshot is not None:
                    checkpoint.write(self.path, snapshot[0])
        except (OSError, checkpoint.CheckpointError) as exc:
            log.error("checkpoint failed", error=str(exc))

    def fold_failed(self) -> None:
        """The fold raised: its state may be half updated, so it is never checkpointed."""
        self._failed = True

    async def run(self) -> None:
        """Every K events or T ms: pickle here, write in a worker thread."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every_s):
                    await self._due.wait()
            self._due.clear()
            cost = self._snapshot_s + self._write_s
            rest = self._snapshot_at + CHECKPOINT_BUDGET * cost - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)
            snapshot = self._snapshot()
            if snapshot is None:
                continue
            self._writing = asyncio.ensure_future(
                asyncio.to_thread(self._write, snapshot[0]))
            try:
                # Shielded: a stop must not leave an older write to land after the last one.
                await asyncio.shield(self._writing)
            except checkpoint.CheckpointError as exc:
                log.error("checkpoint failed", error=str(exc))
                continue
            finally:
                if self._stale_write:
                    self._stale_write = False
                    self._replace()
            self._saved(snapshot[1])

    def _write(self, payload: list[bytes]) -> None:
        """``checkpoint.write`` in the worker thread, its CPU time noted for the budget."""
        started = time.thread_time()
        try:
            checkpoint.write(self.path, payload)
        finally:
            self._write_s = time.thread_time() - started

    async def final(self) -> None:
        """The checkpoint of a stop, on the loop, after any write still in a worker thread."""
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        if self._stale_write:
            self._stale_write = False
            self._replace()
        snapshot = self._snapshot(force=True)
        if snapshot is None:
            return
        try:
            checkpoint.write(self.path, snapshot[0])
        except checkpoint.CheckpointError as exc:
            log.error("checkpoint failed", error=str(exc))
            return
        self._saved(snapshot[1])

    def _snapshot(self, *, force: bool = False,
                  always: bool = False) -> tuple[list[bytes], int] | None:
        """The checkpoint's bytes now and the events they cover; None if not needed."""
        folder = self.sequencer.folder
        if self._failed:
            return None
        if self.sequencer.disputed and not always:
            # A conflict is open: the fold may hold a copy the engine's will contradict.
            return None
        if not always and not self._unsaved and not (
                force and folder.seq and not self.path.exists()):
            return None
        started = time.thread_time()  # CPU, as the budget means
        try:
            payload = checkpoint.encode_parts(checkpoint.Checkpoint(
                session_id=self.session_id, consumer=self.consumer, epoch=folder.epoch,
                seq=folder.seq, state=folder.state, published_at_ns=self.stamps.published_at_ns,
                session_time_ms=self.stamps.session_time_ms, log_id=folder.log_id,
            ), self.path)
        except checkpoint.CheckpointError as exc:
            log.error("checkpoint failed", error=str(exc))
            return None
        self._snapshot_s = time.thread_time() - started
        self._snapshot_at = time.monotonic()
        return payload, self._unsaved

    def _saved(self, covered: int) -> None:
        self._unsaved = max(0, self._unsaved - covered)
        self.counters.checkpoints += 1
