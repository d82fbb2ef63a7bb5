"""Strict seq order in front of a ``Folder``: buffer what is early, say what is missing.

Events reach a live consumer out of order and more than once (QoS 1 redelivery,
catch-up replies overlapping the live stream, a restart from a checkpoint). The
``Sequencer`` is the pure part of the runner that turns that into the one order
the fold accepts: an event that is next is applied at once, an earlier one is a
duplicate, a later one waits in a buffer, and ``missing()`` names the range that
catch-up must fetch before the buffer can drain. It never skips an event.

Epochs: the highest epoch the sequencer has heard of is the *target*. Buffered
events of older epochs are dropped (a backward seek voided them) and the folder
resets when seq 1 of the target epoch is applied (``Folder`` does that).

No I/O, no clock: the runner feeds it and the tests drive it directly.
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass
from typing import Any

from consumers.folding import Folder
from simulator.contract import CatchupRequest, Event

__all__ = ["Offer", "Sequencer", "SequencerCounts"]


class Offer(enum.Enum):
    """What happened to one offered event."""

    APPLIED = "applied"  # applied, possibly with buffered successors
    BUFFERED = "buffered"  # waits for the events before it
    DUPLICATE = "duplicate"  # already applied (or already buffered)
    STALE = "stale"  # of an epoch older than the target: void
    DEFERRED = "deferred"  # buffer full: not kept, catch-up will fetch it again


@dataclass(kw_only=True)
class SequencerCounts:
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    deferred: int = 0


class Sequencer:
    """Orders events for one ``Folder``; knows how far the log goes (the head)."""

    __slots__ = (
        "_heap",
        "_pending",
        "counts",
        "folder",
        "head_epoch",
        "head_seq",
        "last_applied",
        "max_pending",
        "needs_sync",
    )

    def __init__(self, folder: Folder[Any], *, max_pending: int = 200_000) -> None:
        self.folder = folder
        self.max_pending = max_pending
        self.counts = SequencerCounts()
        # Buffered events of the target epoch, by seq, and a heap of their seqs.
        self._pending: dict[int, Event] = {}
        self._heap: list[int] = []
        # The furthest point of the log known to exist: (epoch, last seq).
        self.head_epoch = folder.epoch
        self.head_seq = folder.seq
        # True until the engine (or the journal) has told us where the log ends:
        # a consumer that starts late, after the last live event, must still catch up.
        self.needs_sync = True
        # The events applied by the latest call to ``offer``, for the runner's
        # latency stamps and checkpoint counting.
        self.last_applied: list[Event] = []

    # --- where we are ------------------------------------------------------------

    @property
    def target_epoch(self) -> int:
        return max(self.head_epoch, self.folder.epoch, 1)

    @property
    def next_seq(self) -> int:
        """The seq the fold needs next, in the target epoch."""
        return self.folder.seq + 1 if self.folder.epoch == self.target_epoch else 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def lag_events(self) -> int:
        """How many events the log is known to have that the fold has not applied."""
        return max(0, self.head_seq - (self.next_seq - 1)) if self.head_epoch else 0

    @property
    def caught_up(self) -> bool:
        return not self.needs_sync and self.lag_events == 0 and not self._pending

    # --- what the engine tells us ------------------------------------------------

    def learn_head(self, epoch: int, last_seq: int, *, synced: bool = False) -> None:
        """The engine's log reaches ``(epoch, last_seq)`` (status message or catch-up reply).

        ``synced`` says the figure is authoritative for the epoch (the answer to an
        open-ended catch-up), which ends the need to sync.
        """
        if epoch < self.head_epoch:
            return
        if epoch > self.head_epoch:
            self._enter_epoch(epoch)
            self.head_seq = 0
        self.head_seq = max(self.head_seq, last_seq)
        if synced:
            self.needs_sync = False

    def learn_epoch(self, epoch: int) -> None:
        """A newer epoch exists but how far it goes is unknown: sync it again."""
        if epoch > self.head_epoch:
            self._enter_epoch(epoch)
            self.head_seq = 0
            self.needs_sync = True

    def request_sync(self) -> None:
        """Ask ``missing()`` for an open-ended catch-up (on every (re)connect)."""
        self.needs_sync = True

    def restart(self, log_id: str = "") -> None:
        """Drop everything: the folder's state, the buffer, the head; fold (the log
        ``log_id``) from the start, after a sync (``consumers.identity``)."""
        self.folder.restart(log_id)
        self._pending.clear()
        self._heap.clear()
        self.head_epoch = 0
        self.head_seq = 0
        self.needs_sync = True

    def _enter_epoch(self, epoch: int) -> None:
        # A backward seek voided every buffered event of the older epochs.
        self.head_epoch = epoch
        self._pending.clear()
        self._heap.clear()

    # --- events ------------------------------------------------------------------

    def offer(self, event: Event) -> Offer:
        """Take one event (live or caught up); apply what has become contiguous."""
        self.last_applied = []
        if event.epoch < self.target_epoch:
            self.counts.stale += 1
            return Offer.STALE
        if event.epoch > self.head_epoch:
            self._enter_epoch(event.epoch)
            self.head_seq = 0
        if event.seq > self.head_seq:
            self.head_seq = event.seq
        next_seq = self.next_seq
        if event.seq < next_seq or event.seq in self._pending:
            self.counts.duplicates += 1
            return Offer.DUPLICATE
        if event.seq > next_seq:
            if len(self._pending) >= self.max_pending:
                # Never skip: the head already records it, so catch-up fetches it later.
                self.counts.deferred += 1
                return Offer.DEFERRED
            self._pending[event.seq] = event
            heapq.heappush(self._heap, event.seq)
            return Offer.BUFFERED
        self._apply(event)
        self._drain()
        return Offer.APPLIED

    def _apply(self, event: Event) -> None:
        applied = self.folder.apply(event)
        # The sequencer only hands over the next event, so the folder never refuses one.
        assert applied, f"folder refused epoch {event.epoch} seq {event.seq}"
        self.counts.applied += 1
        self.last_applied.append(event)

    def _drain(self) -> None:
        while self._heap and self._heap[0] == self.next_seq:
            seq = heapq.heappop(self._heap)
            self._apply(self._pending.pop(seq))
        # Seqs below next can remain in the heap only as leftovers; drop them.
        while self._heap and self._heap[0] < self.next_seq:
            self._pending.pop(heapq.heappop(self._heap), None)

    # --- what catch-up must fetch ------------------------------------------------

    def missing(self) -> CatchupRequest | None:
        """The next range to fetch, or None when nothing is known to be missing."""
        epoch, next_seq = self.target_epoch, self.next_seq
        if self._heap and self._heap[0] > next_seq:
            return CatchupRequest(epoch=epoch, from_seq=next_seq, to_seq=self._heap[0] - 1)
        if self.needs_sync:
            return CatchupRequest(epoch=epoch, from_seq=next_seq, to_seq=None)
        if self.head_epoch == epoch and self.head_seq >= next_seq:
            return CatchupRequest(epoch=epoch, from_seq=next_seq, to_seq=self.head_seq)
        return None
