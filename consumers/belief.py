"""Believe the engine, not the events topic: how far a live event may take a consumer.

Anyone who can publish on the events topic can send a well-formed event (the dev
profile is anonymous; the secure profile's ACL is the real defence, this is defence
in depth). Such an event must not move the consumer where the engine's log does not
go. The rule, applied to every live event before the ``Sequencer`` sees it:

* an event of an epoch above the one the engine announced is **held**, never adopted;
* in the announced epoch, an event whose seq lies beyond the announced head plus the
  in-flight window is **held**; the window (``IN_FLIGHT_WINDOW`` while the engine
  says ``running``, 0 when it is paused, finished or stopped, as nothing is then in
  flight) covers what the engine publishes between two announcements, so the rule
  adds no latency to the engine's own events;
* events of older epochs go on to the sequencer, which counts them stale.

The engine announces ``(epoch, head)`` on its retained status (``head_seq``: the last
seq it journaled, so at least every seq on the wire; ``last_seq`` for an engine that
does not say) at least every 20 ms and every ``IN_FLIGHT_WINDOW // 4`` events while
it publishes (``simulator.contract``); a catch-up reply announces the journal's end
too (``confirm``). At each announcement, a held event now within the bound goes on;
one still beyond it is dead-lettered with the reason. The sequencer forgets what it
buffered or applied beyond the bound (``Sequencer.clip``): those go to the dead
letters too, and an applied one makes the consumer refold.

Everything is held before the first announcement of the process: no event is
applied on the word of the events topic alone. A held event asks catch-up for an
open-ended sync: the reply is the engine's (or its journal's) word. Held events are
bounded (``max_held``): beyond that an event is dead-lettered at once; the engine's
copy of any seq the log really has comes back by catch-up.

No I/O, no clock: the runner feeds it and the tests drive it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumers.sequencer import Sequencer
from simulator.contract import IN_FLIGHT_WINDOW, Event

__all__ = ["Belief", "Unconfirmed"]


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    """A live event the engine's announcement did not confirm: dead-letter it."""

    event: Event
    reason: str


class Belief:
    """The engine's latest announcement, and the live events it does not cover yet."""

    __slots__ = ("_bound", "_held", "epoch", "head", "heard", "max_held", "running",
                 "sequencer", "window")

    def __init__(self, sequencer: Sequencer, *, window: int = IN_FLIGHT_WINDOW,
                 max_held: int = 10_000) -> None:
        self.sequencer = sequencer
        self.window = window
        self.max_held = max_held
        # The engine's own word, and only its word: never moved by an event.
        self.heard = False
        self.epoch = 0
        self.head = 0
        # Until a status says otherwise, something may be in flight.
        self.running = True
        self._bound = -1
        # Held events by (epoch, seq), with their engine publish stamps (ns) if any.
        self._held: dict[tuple[int, int], tuple[Event, int | None]] = {}

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def bound(self) -> int:
        """The highest seq of the announced epoch a live event may have (-1: none yet)."""
        return self._bound

    def admits(self, event: Event) -> bool:
        """Whether the engine's word covers ``event`` (the hot path: keep it cheap)."""
        epoch = self.epoch
        return event.epoch < epoch or (event.epoch == epoch and event.seq <= self._bound)

    def hold(self, event: Event, stamp: int | None = None) -> Unconfirmed | None:
        """Keep ``event`` (and its publish stamp) until the next announcement; or, if
        the hold is full, why not."""
        key = (event.epoch, event.seq)
        if key not in self._held and len(self._held) >= self.max_held:
            return Unconfirmed(event, f"{self._beyond(event)}, and {self.max_held} "
                                      "events are held already")
        previous = self._held.get(key, (None, None))[0]
        self._held[key] = (event, stamp)
        if previous is not None and previous != event:
            # Two copies of a seq beyond the log so far: neither is the engine's yet.
            return Unconfirmed(previous, f"{self._beyond(previous)}, replaced by "
                                         "another copy")
        return None

    def announce(self, epoch: int, head: int, *, running: bool
                 ) -> tuple[list[tuple[Event, int | None]], list[Unconfirmed]]:
        """The engine's status says its log reaches ``(epoch, head)``, and whether it is
        publishing (``running``). Learn it in the sequencer first (``learn_head``).

        Returns the held events now covered, with their stamps, in log order (offer
        them), and what is
        not confirmed: held events still beyond, and what the sequencer buffered or
        applied beyond (``Sequencer.clip``).
        """
        if epoch > self.epoch or not self.heard:
            self.epoch, self.head = epoch, head
        elif epoch == self.epoch:
            self.head = max(self.head, head)
        self.heard = True
        self.running = running
        self._bound = self.head + (self.window if running else 0)
        unconfirmed: list[Unconfirmed] = []
        if self.sequencer.head_epoch == self.epoch:
            unconfirmed = [Unconfirmed(e, self._beyond(e))
                           for e in self.sequencer.clip(self._bound)]
        if not self._held:
            return [], unconfirmed
        held, self._held = self._held, {}
        released: list[tuple[Event, int | None]] = []
        for key in sorted(held):
            event = held[key][0]
            if self.admits(event):
                released.append(held[key])
            else:
                unconfirmed.append(Unconfirmed(event, self._beyond(event)))
        return released, unconfirmed

    def confirm(self, epoch: int, head: int
                ) -> tuple[list[tuple[Event, int | None]], list[Unconfirmed]]:
        """A catch-up reply (the engine's journal) says the log reaches ``(epoch, head)``:
        an announcement too, that leaves the engine's running state as it was."""
        return self.announce(epoch, head, running=self.running)

    def _beyond(self, event: Event) -> str:
        if not self.heard:
            return (f"epoch {event.epoch} seq {event.seq}: no announcement by the engine "
                    "yet")
        if event.epoch > self.epoch:
            return f"epoch {event.epoch} beyond the engine's announced epoch {self.epoch}"
        return (f"epoch {event.epoch} seq {event.seq} beyond the engine's announced head "
                f"{self.head} + window {self._bound - self.head}")
