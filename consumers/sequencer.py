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

Conflicts: a duplicate seq whose decoded event differs from the copy applied (or
buffered) is not a mere duplicate: one of the two is not the engine's. The
sequencer remembers the last ``memory`` events it applied to compare them (a
duplicate older than that is only counted: it is older than anything the live
window lets in, see ``consumers/belief.py``), records the dispute, and
``missing()`` asks for that seq first. The engine's copy (``offer(engine=True)``:
a catch-up reply, from its journal) settles it: every other copy goes to
``conflicting`` for the caller to dead-letter; a wrong copy still buffered is
replaced; a wrong copy already applied sets ``rewind_to`` and the caller refolds
(``rewind``) from a checkpoint before it, or from the start.

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
    CONFLICT = "conflict"  # a duplicate that differs: the engine's copy will decide


@dataclass(kw_only=True)
class SequencerCounts:
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    deferred: int = 0
    # Copies found to differ from the engine's own (dead-lettered by the caller).
    conflicts: int = 0


class Sequencer:
    """Orders events for one ``Folder``; knows how far the log goes (the head)."""

    __slots__ = (
        "_disputed",
        "_heap",
        "_pending",
        "_recent",
        "_top",
        "conflicting",
        "counts",
        "folder",
        "head_epoch",
        "head_seq",
        "last_applied",
        "max_pending",
        "memory",
        "needs_sync",
        "rewind_to",
    )

    def __init__(self, folder: Folder[Any], *, max_pending: int = 200_000,
                 memory: int = 8192) -> None:
        self.folder = folder
        self.max_pending = max_pending
        self.memory = memory
        self.counts = SequencerCounts()
        # Buffered events of the target epoch, by seq, and a heap of their seqs.
        self._pending: dict[int, Event] = {}
        self._heap: list[int] = []
        self._top = 0  # the highest seq buffered (0 when nothing is)
        # The last ``memory`` events applied in the folder's epoch, by seq, for the
        # comparison of duplicates.
        self._recent: dict[int, Event] = {}
        # Seqs of the target epoch with copies that differ: seq -> the copies at stake.
        self._disputed: dict[int, list[Event]] = {}
        # Copies found not to be the engine's since the caller last emptied this.
        self.conflicting: list[Event] = []
        # The lowest seq whose applied copy was not the engine's: refold before it.
        self.rewind_to: int | None = None
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
    def disputed(self) -> int:
        return len(self._disputed)

    @property
    def lag_events(self) -> int:
        """How many events the log is known to have that the fold has not applied."""
        return max(0, self.head_seq - (self.next_seq - 1)) if self.head_epoch else 0

    @property
    def caught_up(self) -> bool:
        return (not self.needs_sync and self.lag_events == 0 and not self._pending
                and not self._disputed)

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
        self._top = 0
        self._disputed.clear()

    def clip(self, bound: int) -> list[Event]:
        """The engine announced that its log goes at most to ``bound`` in the head epoch
        (its head plus the in-flight window): forget anything said to lie beyond it.

        Returns the events beyond ``bound`` that were buffered, or applied (then
        ``rewind_to`` asks for a refold before them), for the caller to dead-letter.
        Cheap when nothing lies beyond: this runs on every announcement.
        """
        bound = max(bound, 0)
        self.head_seq = min(self.head_seq, bound)
        beyond: list[Event] = []
        folder = self.folder
        if folder.epoch == self.head_epoch and folder.seq > bound:
            beyond = [e for s, e in sorted(self._recent.items()) if s > bound]
            for event in beyond:
                del self._recent[event.seq]
            self._rewind(bound + 1)
        for seq in [s for s in self._disputed if s > bound]:
            beyond.extend(self._disputed.pop(seq))
        if self._top > bound:
            buffered = [e for s, e in self._pending.items() if s > bound]
            for event in buffered:
                del self._pending[event.seq]
            self._heap = list(self._pending)
            heapq.heapify(self._heap)
            self._top = max(self._pending, default=0)
            beyond.extend(buffered)
        return beyond

    # --- events ------------------------------------------------------------------

    def offer(self, event: Event, *, engine: bool = False) -> Offer:
        """Take one event (live, or ``engine``'s own copy from catch-up); apply what has
        become contiguous."""
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
        seq = event.seq
        if seq < next_seq or seq in self._pending:
            return self._duplicate(event, engine=engine)
        if seq > next_seq:
            if len(self._pending) >= self.max_pending:
                # Never skip: the head already records it, so catch-up fetches it later.
                self.counts.deferred += 1
                return Offer.DEFERRED
            self._pending[seq] = event
            heapq.heappush(self._heap, seq)
            if seq > self._top:
                self._top = seq
            if engine and self._disputed:
                self._settle(event, None)
            return Offer.BUFFERED
        self._apply(event)
        if engine and self._disputed:
            self._settle(event, None)
        self._drain()
        return Offer.APPLIED

    def offer_run(self, events: list[Event]) -> int:
        """Apply the events of one message at once, as far as each is the very next one
        (the common case: a batch straight from the engine); how many, from the front.

        What ``offer`` would do for each, without its per-event bookkeeping; it stops at
        the first event that is not the next one of the folder's epoch (or at once with
        anything buffered, a new epoch or an empty fold), leaving the rest to ``offer``.
        A fold that raises leaves ``folder.seq`` at the last event applied.
        """
        folder = self.folder
        epoch, expected = folder.epoch, folder.seq + 1
        if (self._pending or self._disputed or expected == 1 or epoch != self.head_epoch
                or not events or events[0].seq != expected):
            return 0
        apply = folder.apply
        recent, memory = self._recent, self.memory  # as _apply keeps it, for duplicates
        first = expected
        for event in events:
            if event.seq != expected or event.epoch != epoch:
                break
            apply(event)
            recent[expected] = event
            recent.pop(expected - memory, None)
            expected += 1
        count = expected - first
        self.counts.applied += count
        self.last_applied = events[:count] if count < len(events) else events
        if expected - 1 > self.head_seq:
            self.head_seq = expected - 1
        return count

    def _apply(self, event: Event) -> None:
        applied = self.folder.apply(event)
        # The sequencer only hands over the next event, so the folder never refuses one.
        assert applied, f"folder refused epoch {event.epoch} seq {event.seq}"
        self.counts.applied += 1
        self.last_applied.append(event)
        recent = self._recent
        seq = event.seq
        if seq == 1:
            recent.clear()  # seq 1 of an epoch: the folder started over
        recent[seq] = event
        recent.pop(seq - self.memory, None)

    # --- duplicates and conflicts ---------------------------------------------------

    def _duplicate(self, event: Event, *, engine: bool) -> Offer:
        seq = event.seq
        buffered = seq >= self.next_seq
        known = self._pending[seq] if buffered else self._recent.get(seq)
        self.counts.duplicates += 1
        if engine:
            if known is not None and known != event:
                # Keep the engine's copy (applied, it stands for what a refold will apply).
                if buffered:
                    self._pending[seq] = event
                else:
                    self._recent[seq] = event
                    self._rewind(seq)
                self._forged(known)
            if self._disputed:
                self._settle(event, known)
            return Offer.DUPLICATE
        # Beyond the memory, a duplicate cannot be compared: it only counts as one.
        if known is None or known == event:
            return Offer.DUPLICATE
        copies = self._disputed.setdefault(seq, [])
        if not any(copy == event for copy in copies):
            copies.append(event)
        return Offer.CONFLICT

    def _settle(self, engine_copy: Event, in_place: Event | None) -> None:
        """The engine's copy of a disputed seq has come: every other copy is not its."""
        copies = self._disputed.pop(engine_copy.seq, None)
        for copy in copies or ():
            if copy is not in_place and copy != engine_copy:
                self._forged(copy)

    def _forged(self, event: Event) -> None:
        self.counts.conflicts += 1
        self.conflicting.append(event)

    def _rewind(self, seq: int) -> None:
        if self.rewind_to is None or seq < self.rewind_to:
            self.rewind_to = seq

    def rewind(self, folder: Folder[Any]) -> None:
        """Fold again from ``folder`` (a checkpoint before ``rewind_to``, or a fresh one).

        What was applied after it is fetched again from the engine's log by catch-up;
        each copy applied before is kept as disputed, so that one the engine's copy
        contradicts is reported in ``conflicting`` when that copy comes.
        """
        old = self.folder
        self.folder = folder
        self.rewind_to = None
        kept = folder.seq if folder.epoch == old.epoch else 0
        for seq in [s for s in self._recent if s > kept]:
            copies = self._disputed.setdefault(seq, [])
            applied = self._recent.pop(seq)
            if not any(copy == applied for copy in copies):
                copies.append(applied)
        if not kept:
            self._recent.clear()

    def _drain(self) -> None:
        while self._heap and self._heap[0] == self.next_seq:
            seq = heapq.heappop(self._heap)
            self._apply(self._pending.pop(seq))
        # Seqs below next can remain in the heap only as leftovers; drop them.
        while self._heap and self._heap[0] < self.next_seq:
            self._pending.pop(heapq.heappop(self._heap), None)
        if not self._pending:
            self._top = 0

    # --- what catch-up must fetch ------------------------------------------------

    def missing(self) -> CatchupRequest | None:
        """The next range to fetch, or None when nothing is known to be missing."""
        epoch, next_seq = self.target_epoch, self.next_seq
        if self._disputed:
            # A conflict first: the engine's copy decides what the fold holds (with the
            # gap before a disputed seq not applied yet, in the same request).
            return CatchupRequest(epoch=epoch, from_seq=min(min(self._disputed), next_seq),
                                  to_seq=max(self._disputed))
        if self._heap and self._heap[0] > next_seq:
            return CatchupRequest(epoch=epoch, from_seq=next_seq, to_seq=self._heap[0] - 1)
        if self.needs_sync:
            return CatchupRequest(epoch=epoch, from_seq=next_seq, to_seq=None)
        if self.head_epoch == epoch and self.head_seq >= next_seq:
            return CatchupRequest(epoch=epoch, from_seq=next_seq, to_seq=self.head_seq)
        return None
