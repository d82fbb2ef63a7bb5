"""A live consumer's health: its counters, how far behind it is, the retained document.

Published (retained) on ``.../consumers/{name}/status`` by the publisher; the last
will on the same topic says ``lost``. The fields are a contract with the boards and
the stress test: add fields, never rename one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from consumers.identity import LogIdentity
from consumers.sequencer import Sequencer
from simulator.contract import ConsumerHealth, ConsumerLost, ConsumerState, encode

__all__ = ["Counters", "Health"]


@dataclass(kw_only=True)
class Counters:
    """What the health message reports, besides the sequencer's own counts."""

    events_applied: int = 0
    dead_letters: int = 0
    refused: int = 0
    catchups: int = 0
    reconnects: int = 0
    checkpoints: int = 0


class Health:
    """The health document of one consumer, from its sequencer and counters."""

    def __init__(self, *, consumer: str, session_id: str, client_id: str,
                 sequencer: Sequencer, counters: Counters) -> None:
        self.consumer = consumer
        self.session_id = session_id
        self.client_id = client_id
        self.sequencer = sequencer
        self.counters = counters
        # Set once the runner is stopping: the last health says "stopped".
        self.stopping = False
        # Says why the state was last dropped, if it was (set by the runner).
        self.identity: LogIdentity | None = None
        self._behind_since_ns: int | None = None

    def track_lag(self) -> None:
        """Note when the consumer fell behind the log's head (after every change of it)."""
        if self.sequencer.lag_events == 0:
            self._behind_since_ns = None
        elif self._behind_since_ns is None:
            self._behind_since_ns = time.time_ns()

    def report(self) -> ConsumerHealth:
        seq = self.sequencer
        folder = seq.folder
        lag_events = seq.lag_events
        behind = self._behind_since_ns
        state: ConsumerState
        if self.stopping:
            state = "stopped"
        elif seq.caught_up:
            state = "live"
        else:
            state = "catching-up"
        counters = self.counters
        identity = self.identity
        return ConsumerHealth(
            consumer=self.consumer,
            session_id=self.session_id,
            client_id=self.client_id,
            state=state,
            events_applied=counters.events_applied,
            epoch=folder.epoch,
            last_seq=folder.seq,
            head_epoch=seq.head_epoch,
            head_seq=seq.head_seq,
            lag_events=lag_events,
            # How long the consumer has been behind the engine's log (0 when caught up).
            lag_ms=(time.time_ns() - behind) // 1_000_000 if lag_events and behind else 0,
            pending=seq.pending,
            dead_letters=counters.dead_letters,
            refused=counters.refused,
            duplicates=seq.counts.duplicates,
            catchups=counters.catchups,
            reconnects=counters.reconnects,
            checkpoints=counters.checkpoints,
            log_id=folder.log_id,
            reset=msgspec.UNSET if identity is None or identity.reset is None
            else identity.reset,
            # Copies of a seq found to differ from the engine's own (dead-lettered).
            conflicts=seq.counts.conflicts,
        )

    def document(self) -> dict[str, Any]:
        """The health as plain data (what ``payload`` encodes)."""
        doc: dict[str, Any] = msgspec.to_builtins(self.report())
        return doc

    def payload(self) -> bytes:
        return encode(self.report())

    def lost_payload(self) -> bytes:
        """The last will: what the broker publishes if the consumer vanishes."""
        return encode(ConsumerLost(state="lost", consumer=self.consumer,
                                   session_id=self.session_id, client_id=self.client_id))
