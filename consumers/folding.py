"""Folding in seq order, exactly once in effect: the part every consumer shares.

``Folder`` wraps a consumer's pure ``apply`` with the envelope rules of the log:
events apply strictly in ``seq`` order; an ``(epoch, seq)`` already applied is
ignored; a higher epoch (a backward seek) drops the state and starts over; a gap
raises ``SequenceGap`` so that the caller (the live runner) fetches what is missing
before going on. The same class serves ``lapcast fold``, the live runner and tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from consumers.api import Consumer
from simulator.contract import Event
from simulator.errors import SequenceGap

__all__ = ["Folder", "fold_all"]

S = TypeVar("S")


class Folder(Generic[S]):
    """The state of one consumer and the position ``(epoch, seq)`` it reflects."""

    __slots__ = ("consumer", "epoch", "log_id", "seq", "state")

    def __init__(self, consumer: Consumer[S]) -> None:
        self.consumer = consumer
        self.state: S = consumer.initial()
        self.epoch = 0
        self.seq = 0
        # The log the state belongs to (``simulator.logid``): "" while unknown. The live
        # runner sets it from the engine's word; the fold never looks at it.
        self.log_id = ""

    def restart(self, log_id: str = "") -> None:
        """Drop the state: fold (the log ``log_id``) from the start."""
        self.state = self.consumer.initial()
        self.epoch = 0
        self.seq = 0
        self.log_id = log_id

    def apply(self, event: Event) -> bool:
        """Apply ``event`` if it is the next one; False if it was already applied.

        Raises ``SequenceGap`` if events are missing before it.
        """
        if event.epoch != self.epoch:
            if event.epoch < self.epoch:
                return False  # a stale epoch: its events no longer count
            if event.seq != 1:
                raise SequenceGap(event.epoch, 1, event.seq)
            # A backward seek started a new epoch: the old state is void.
            self.state = self.consumer.initial()
            self.epoch = event.epoch
            self.seq = 0
        if event.seq <= self.seq:
            return False
        if event.seq != self.seq + 1:
            raise SequenceGap(self.epoch, self.seq + 1, event.seq)
        self.state = self.consumer.apply(self.state, event)
        self.seq = event.seq
        return True

    def view(self) -> Any:
        return self.consumer.view(self.state)

    # Checkpoints pickle the folder: state and position always travel together.
    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.consumer.name, "epoch": self.epoch, "seq": self.seq,
                "state": self.state, "log_id": self.log_id}

    def __setstate__(self, data: dict[str, Any]) -> None:
        from consumers.registry import load_consumer

        self.consumer = load_consumer(data["name"])
        self.epoch = data["epoch"]
        self.seq = data["seq"]
        self.state = data["state"]
        self.log_id = data.get("log_id", "")


def fold_all(consumers: Iterable[Consumer[Any]], events: Iterable[Event]) -> list[Folder[Any]]:
    """Fold every event into every consumer, offline. Duplicates are ignored."""
    folders = [Folder(c) for c in consumers]
    for event in events:
        for folder in folders:
            folder.apply(event)
    return folders
